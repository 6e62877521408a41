//! Validation (placeholder while rules are written).
use crate::report::Report;
use crate::types::Config;
use crate::version::Version;

/// Validates a config.
pub fn validate(_c: &Config, _v: Version) -> Report {
    Report::default()
}
