//! flatbake: bake systemd-sysext images into Flatcar Container Linux OS images.
pub mod release;
