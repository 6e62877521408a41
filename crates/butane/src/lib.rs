//! Butane: human-friendly YAML configs to Ignition JSON, for every variant
//! (fcos, flatcar, r4e, fiot, openshift) and version, with upstream's sugar,
//! diagnostics and output.
//!
//! [`transpile`] runs upstream's pipeline: read `variant` and `version`,
//! decode the YAML with yaml.v3's rules, report unused keys, run the source
//! checks, translate (expanding the sugar and recording where every output
//! field came from), apply the variant's restrictions, then check the
//! output with the Ignition library and map its findings back to the YAML.
//! Docs: <https://coreos.github.io/butane/>.

//!
//! | module | job |
//! |---|---|
//! | `yaml` | the YAML tree with positions, resolved as yaml.v3 resolves |
//! | `decode`, `types` | the tree into Butane's types, with yaml.v3's rules |
//! | `variant` | which variant versions exist and what each builds on |
//! | `validate` | the base schema's source checks |
//! | `translate`, `sugar` | the generic copy, the base sugar, the translation set |
//! | `config` | each variant's checks, sugar, restrictions and output |
//! | `files`, `goflate` | `local` files, data URLs, Go's gzip |
//! | `output`, `yamlout` | the Ignition JSON and MachineConfig YAML written |
//! | `report` | findings on YAML paths, printed as upstream prints them |

mod config;
mod decode;
mod files;
mod goflate;
mod output;
mod report;
mod sugar;
mod translate;
mod types;
mod validate;
mod variant;
mod yaml;
mod yamlout;

pub use files::{errno_text, go_error};
pub use report::{Entry, Report};
pub use yaml::Mark;

use std::path::PathBuf;

use ignition_config::version::Semver;

use crate::decode::{Decode, Decoder, bu_struct};
use crate::output::output_json;
use crate::report::{Path, Seg, Severity};
use crate::types::Config;
use crate::variant::{Target, Variant};
use crate::yaml::Node;

/// How to transpile.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `-d/--files-dir`: where `local` paths point.
    pub files_dir: Option<PathBuf>,
    /// `-r/--raw`: openshift emits Ignition instead of a MachineConfig.
    pub raw: bool,
    /// `-p/--pretty`: indented JSON.
    pub pretty: bool,
    /// The process exits right after: the parse tree and the intermediate
    /// configs are left allocated instead of freed one by one (a tenth of
    /// the time of a large config).
    pub exiting: bool,
}

/// What a transpilation produced.
#[derive(Debug)]
pub struct Outcome {
    /// Findings, positioned in the source.
    pub report: Report,
    /// The output (without the final newline), or why there is none
    /// (printed after `Error translating config: `).
    pub output: Result<String, Error>,
}

/// Why a config has no output; the text is upstream's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The input is not YAML (or not UTF-8), or `variant` and `version`
    /// are not strings: yaml.v3's message.
    #[error("Error unmarshaling yaml: {0}")]
    Syntax(String),
    /// `variant` is missing or empty.
    #[error("error parsing variant; must be specified")]
    NoVariant,
    /// `version` is not a semver.
    #[error("error parsing version; must be a valid semver")]
    BadVersion,
    /// `variant: rhcos`, version 0.1.0, which upstream removed.
    #[error(
        "rhcos variant has been removed; use openshift variant instead: https://coreos.github.io/butane/upgrading-openshift/"
    )]
    RhcosRemoved,
    /// No such version of the variant.
    #[error("No translator exists for variant {variant} with version {version}")]
    NoTranslator {
        /// The variant asked for.
        variant: String,
        /// The version asked for, normalized.
        version: String,
    },
    /// The config does not decode into the version's types (type
    /// mismatches, excessive aliasing): yaml.v3's message.
    #[error("{0}")]
    Decode(String),
    /// The source config has errors (in the report).
    #[error("source config is invalid")]
    InvalidSource,
    /// The generated Ignition config is invalid (errors in the report).
    #[error("config generated was invalid")]
    InvalidOutput,
}

fn fail(report: Report, error: Error) -> Outcome {
    Outcome {
        report,
        output: Err(error),
    }
}

/// Transpiles a Butane config.
pub fn transpile(input: &[u8], opts: &Options) -> Outcome {
    let text = match std::str::from_utf8(input) {
        Ok(t) => t.strip_prefix('\u{feff}').unwrap_or(t),
        Err(_) => {
            return fail(
                Report::default(),
                Error::Syntax("yaml: invalid leading UTF-8 octet".into()),
            );
        }
    };
    let doc = match yaml::parse(text) {
        Ok(d) => d,
        Err(e) => {
            let at = if e.mark.line == 0 {
                String::new()
            } else {
                format!("line {}: ", e.mark.line)
            };
            return fail(
                Report::default(),
                Error::Syntax(format!("yaml: {at}{}", yaml::libyaml_message(&e.message))),
            );
        }
    };
    let root = doc.root();
    let target = match common_fields(root) {
        Ok(t) => t,
        Err(e) => return fail(Report::default(), e),
    };
    let mut outcome = run(root, target, opts);
    outcome.report.correlate(root);
    if opts.exiting {
        std::mem::forget(doc);
    }
    outcome
}

bu_struct! {
    /// Upstream's first pass reads only these (`config.commonFields`).
    CommonFields(Builtin, "config.commonFields") {
        /// The version.
        version: String = "version" @ decode::Since::Base(decode::Base::V0_1),
        /// The variant.
        variant: String = "variant" @ decode::Since::Base(decode::Base::V0_1),
    }
}

/// Reads `variant` and `version` as upstream's first pass does (a yaml.v3
/// decode of its own, with its own count against excessive aliasing).
fn common_fields(root: Option<&Node>) -> Result<Target, Error> {
    let mut d = Decoder::new(decode::Base::V0_1, 0, "", "");
    let fields = match root {
        Some(r) => {
            d.document();
            CommonFields::decode(r, &mut d).unwrap_or_default()
        }
        None => CommonFields::default(),
    };
    if let Some(fatal) = d.fatal {
        return Err(Error::Syntax(format!("yaml: {fatal}")));
    }
    if !d.errors.is_empty() {
        return Err(Error::Syntax(format!(
            "yaml: unmarshal errors:\n  {}",
            d.errors.join("\n  ")
        )));
    }
    let CommonFields { variant, version } = fields;
    if variant.is_empty() {
        return Err(Error::NoVariant);
    }
    let Some(semver) = Semver::parse(&version) else {
        return Err(Error::BadVersion);
    };
    if variant == "rhcos"
        && semver.numbers == [0, 1, 0]
        && semver.pre.is_empty()
        && semver.meta.is_empty()
    {
        return Err(Error::RhcosRemoved);
    }
    Target::lookup(&variant, &semver).ok_or_else(|| {
        let [a, b, c] = semver.numbers;
        let mut v = format!("{a}.{b}.{c}");
        if !semver.pre.is_empty() {
            v.push_str(&format!("-{}", semver.pre));
        }
        if !semver.meta.is_empty() {
            v.push_str(&format!("+{}", semver.meta));
        }
        Error::NoTranslator {
            variant,
            version: v,
        }
    })
}

fn run(root: Option<&Node>, target: Target, opts: &Options) -> Outcome {
    // Decode.
    let os_pkg = if target.variant == Variant::Openshift {
        target.variant_pkg()
    } else {
        String::new()
    };
    let fcos_pkg = match target.variant {
        Variant::Fcos => target.variant_pkg(),
        Variant::Openshift => target.fcos_pkg(),
        _ => String::new(),
    };
    let mut d = Decoder::new(target.base, target.fcos_minor, &fcos_pkg, &os_pkg);
    let config = match root {
        Some(r) => {
            d.document();
            Config::decode(r, &mut d).unwrap_or_default()
        }
        None => Config::default(),
    };
    if let Some(fatal) = d.fatal {
        return fail(Report::default(), Error::Decode(format!("yaml: {fatal}")));
    }
    if !d.errors.is_empty() {
        return fail(
            Report::default(),
            Error::Decode(format!(
                "yaml: unmarshal errors:\n  {}",
                d.errors.join("\n  ")
            )),
        );
    }
    let mut report = Report::default();
    let mut unused = std::mem::take(&mut d.unused);
    unused.sort_by(|a, b| a.order.cmp(&b.order));
    for u in unused {
        let message = if u.mismatch {
            format!(
                "context tree does not match content tree at {}. Line and column reporting may be inconsistent. Unused keys may not be reported",
                u.path
            )
        } else {
            format!(
                "unused key {}",
                u.path.0.last().and_then(Seg::key).unwrap_or_default()
            )
        };
        report.entries.push(report::Entry {
            severity: Severity::Warning,
            path: u.path,
            mark: Some(u.mark),
            message,
        });
    }

    // Source checks.
    config::source(&config, &target, &mut report);
    if report.is_fatal() {
        return fail(report, Error::InvalidSource);
    }

    // Translate.
    let mut cx = translate::Cx {
        target,
        files_dir: opts.files_dir.as_deref(),
        allow_compression: !(target.variant == Variant::Openshift && target.minor <= 9),
        report,
        ts: translate::Ts::new(root),
    };
    let mut out = sugar::translate(&config, &mut cx);
    if cx.report.is_fatal() {
        return fail(cx.report, Error::InvalidSource);
    }
    config::translate(&config, &mut out, &mut cx);
    if cx.report.is_fatal() {
        return fail(cx.report, Error::InvalidSource);
    }
    let output = match config::output(&config, &mut out, opts.raw, opts.pretty, &mut cx) {
        Some(Some(o)) => Some(o),
        Some(None) => return fail(cx.report, Error::InvalidSource),
        None => None,
    };
    config::filters(&out, opts.raw, &mut cx);
    if cx.report.is_fatal() {
        return fail(cx.report, Error::InvalidSource);
    }

    // Check the output as Ignition would.
    let mut generated = ignition_config::validate::duplicates(&out, target.ignition);
    generated.extend(ignition_config::validate::type_checks(
        &out,
        target.ignition,
    ));
    let mut invalid = false;
    for e in generated.entries {
        invalid |= e.severity == Severity::Error;
        let path = cx.ts.map(e.path.as_ref().unwrap_or(&Path::root()));
        cx.report.entries.push(report::Entry {
            severity: e.severity,
            path,
            mark: None,
            message: e.message,
        });
    }
    if invalid {
        return fail(cx.report, Error::InvalidOutput);
    }
    let text = match output {
        Some(o) => o,
        None => output_json(&out, target, root, opts.pretty),
    };
    let outcome = Outcome {
        report: cx.report,
        output: Ok(text),
    };
    if opts.exiting {
        std::mem::forget((config, out, cx.ts));
    }
    outcome
}
