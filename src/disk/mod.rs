//! The disk image as a whole: reading it (raw or qcow2, one partition at a time), its
//! partition table, Flatcar's partition roles, and hole-aware copying between images.

pub mod gpt;
pub mod grow;
pub mod image;
pub mod layout;
pub mod qcow2map;
pub mod sparse;
