//! Fetching and verifying Flatcar releases (WIP).
pub mod bz2blocks;
pub mod channel;
pub mod decompress;
pub mod progress;
pub mod verify;
