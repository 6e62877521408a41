//! The Ignition config library: every spec from 3.0.0 to 3.7.0-experimental.
//!
//! * [`parse`] reads a config of any supported version, with upstream's
//!   diagnostics (JSON path, line and column, upstream's wording), and
//!   validates it.
//! * [`translate()`] moves a config to a newer spec version.
//! * [`merge()`] merges a child config over a parent, as
//!   `ignition.config.merge` and base configs do.
//! * [`to_json`] serializes a config the way upstream does (field order and
//!   omission of empty values).
//!
//! Spec documentation: <https://coreos.github.io/ignition/specs/>.

mod gojson;
mod json;
pub mod merge;
mod parse;
mod position;
pub mod report;
mod translate;
pub mod types;
mod unit;
pub mod url;
pub mod validate;
pub mod version;

pub use merge::merge;
pub use parse::{Failure, MAX_DEPTH, ParseError, embedded_version, parse, parse_unvalidated};
pub use report::{Entry, Path, Position, Report, Severity};
pub use translate::{TranslateError, translate};
pub use types::Config;
pub use version::Version;

pub use gojson::{to_go_json, to_go_json_for};
pub use util::go_quote;

/// Serializes a config as compact JSON the way upstream's Go tools do: keys
/// in spec order, unset and empty fields left out, Go's string escapes.
pub fn to_json(config: &Config) -> String {
    to_go_json(config, false)
}

/// Serializes a config as JSON indented by two spaces.
pub fn to_json_pretty(config: &Config) -> String {
    to_go_json(config, true)
}
