//! The disk image as a whole: its partition table, Flatcar's partition roles, and
//! hole-aware copying between images.

pub mod gpt;
pub mod layout;
pub mod region;
pub mod sparse;
