//! flatbake: bake systemd-sysext images into Flatcar Container Linux OS images and
//! re-emit them as vendor images, rootless.
//!
//! Where things live: [`disk`] (GPT, Flatcar's partitions, sparse copies), [`fs`] (the
//! filesystems inside: ext4 ROOT, btrfs OEM, FAT ESP), [`sysext`] (sysext images and
//! their metadata), [`release`] (fetching and verifying Flatcar releases), [`bake`] (the pipeline), [`cli`] (the command line).

#[macro_use]
pub mod out;

pub mod app;
pub mod arch;
pub mod bake;
pub mod cleanup;
pub mod cli;
pub mod disk;
pub(crate) mod facts;
pub mod format;
pub mod fs;
pub mod ignition;
pub(crate) mod input;
pub(crate) mod inspect;
pub mod legacy;
pub mod platform;
pub mod release;
pub mod spec;
pub(crate) mod suggest;
pub mod sysext;
pub mod tools;
pub(crate) mod util;
