//! Re-export the unified error type

pub use crate::error::BackhandError;
