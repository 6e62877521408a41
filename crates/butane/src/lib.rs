//! Butane.
pub mod yaml;
