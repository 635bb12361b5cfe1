//! Fetching and verifying Flatcar releases (WIP).
pub mod channel;
pub mod verify;
