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

pub mod decode;
pub mod fcos;
pub mod files;
pub mod goflate;
pub mod report;
pub mod sugar;
pub mod translate;
pub mod types;
pub mod validate;
pub mod variant;
pub mod yaml;
pub mod yamlout;

use std::path::PathBuf;

use ignition_config::version::Semver;

use crate::decode::{Decode, Decoder, bu_struct};
use crate::report::{Path, Report, Seg, Severity};
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
    pub output: Result<String, String>,
}

fn fail(report: Report, message: impl Into<String>) -> Outcome {
    Outcome {
        report,
        output: Err(message.into()),
    }
}

/// Transpiles a Butane config.
pub fn transpile(input: &[u8], opts: &Options) -> Outcome {
    let text = match std::str::from_utf8(input) {
        Ok(t) => t.strip_prefix('\u{feff}').unwrap_or(t),
        Err(_) => {
            return fail(
                Report::default(),
                "Error unmarshaling yaml: yaml: invalid leading UTF-8 octet",
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
                format!(
                    "Error unmarshaling yaml: yaml: {at}{}",
                    yaml::libyaml_message(&e.message)
                ),
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
fn common_fields(root: Option<&Node>) -> Result<Target, String> {
    let mut d = Decoder::new(decode::Base::V0_1, 0, "", "");
    let fields = match root {
        Some(r) => {
            d.document();
            CommonFields::decode(r, &mut d).unwrap_or_default()
        }
        None => CommonFields::default(),
    };
    if let Some(fatal) = d.fatal {
        return Err(format!("Error unmarshaling yaml: yaml: {fatal}"));
    }
    if !d.errors.is_empty() {
        return Err(format!(
            "Error unmarshaling yaml: yaml: unmarshal errors:\n  {}",
            d.errors.join("\n  ")
        ));
    }
    let CommonFields { variant, version } = fields;
    if variant.is_empty() {
        return Err("error parsing variant; must be specified".into());
    }
    let Some(semver) = Semver::parse(&version) else {
        return Err("error parsing version; must be a valid semver".into());
    };
    if variant == "rhcos"
        && semver.numbers == [0, 1, 0]
        && semver.pre.is_empty()
        && semver.meta.is_empty()
    {
        return Err("rhcos variant has been removed; use openshift variant instead: https://coreos.github.io/butane/upgrading-openshift/".into());
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
        format!("No translator exists for variant {variant} with version {v}")
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
        return fail(Report::default(), format!("yaml: {fatal}"));
    }
    if !d.errors.is_empty() {
        return fail(
            Report::default(),
            format!("yaml: unmarshal errors:\n  {}", d.errors.join("\n  ")),
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
    validate::source(&config, &target, &mut report);
    if report.is_fatal() {
        return fail(report, "source config is invalid");
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
        return fail(cx.report, "source config is invalid");
    }
    if matches!(target.variant, Variant::Fcos | Variant::Openshift) {
        fcos::translate(&config, &mut out, &mut cx);
        if cx.report.is_fatal() {
            return fail(cx.report, "source config is invalid");
        }
    }
    let mut output = None;
    if target.variant == Variant::Openshift {
        match sugar::openshift(&config, &mut out, opts.raw, opts.pretty, &mut cx) {
            Some(o) => output = Some(o),
            None => return fail(cx.report, "source config is invalid"),
        }
    }
    validate::filters(&out, &config, &target, opts.raw, &mut cx);
    if cx.report.is_fatal() {
        return fail(cx.report, "source config is invalid");
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
        return fail(cx.report, "config generated was invalid");
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

/// The output config as upstream writes it for the target spec. Ignition
/// 3.2 made a LUKS volume's `clevis` and its `custom` pin pointers: written
/// (`{}`) whenever the source has them, even empty.
pub(crate) fn output_json(
    out: &ignition_config::Config,
    target: Target,
    root: Option<&Node>,
    pretty: bool,
) -> String {
    let plain = ignition_config::to_go_json_for(out, target.ignition, pretty);
    if target.ignition != ignition_config::Version::V3_2 {
        return plain;
    }
    let Some(root) = root else { return plain };
    let present = |path: &Path| report::exists_at_all(root, path);
    let mut hints = Vec::new();
    let mut i = 0;
    while present(&p!["storage", "luks", i]) {
        let name = report::scalar_at(root, &p!["storage", "luks", i, "name"]).unwrap_or_default();
        let clevis = report::mapping_at(root, &p!["storage", "luks", i, "clevis"]);
        let custom = report::mapping_at(root, &p!["storage", "luks", i, "clevis", "custom"]);
        if clevis || custom {
            hints.push((name, custom));
        }
        i += 1;
    }
    if hints.is_empty() {
        return plain;
    }
    // The first hint of each name, as a search in order would find.
    let mut by_name: std::collections::HashMap<&str, bool> = std::collections::HashMap::new();
    for (n, custom) in &hints {
        by_name.entry(n.as_str()).or_insert(*custom);
    }
    let mut v: serde_json::Value = serde_json::from_str(&ignition_config::to_go_json_for(
        out,
        target.ignition,
        false,
    ))
    .expect("our own JSON parses");
    if let Some(luks) = v
        .pointer_mut("/storage/luks")
        .and_then(|l| l.as_array_mut())
    {
        for l in luks {
            let Some(m) = l.as_object_mut() else { continue };
            let name = m
                .get("name")
                .and_then(|n| n.as_str())
                .unwrap_or_default()
                .to_string();
            let Some(&custom) = by_name.get(name.as_str()) else {
                continue;
            };
            if !m.contains_key("clevis") {
                m.shift_insert(0, "clevis".into(), serde_json::json!({}));
            }
            if custom && let Some(c) = m.get_mut("clevis").and_then(|c| c.as_object_mut()) {
                let custom = c.entry("custom").or_insert_with(|| serde_json::json!({}));
                if let Some(cm) = custom.as_object_mut() {
                    if !cm.contains_key("config") {
                        cm.shift_insert(0, "config".into(), serde_json::json!(""));
                    }
                    cm.entry("pin").or_insert_with(|| serde_json::json!(""));
                }
                // `custom` comes first in a clevis.
                if let Some(value) = c.shift_remove("custom") {
                    c.shift_insert(0, "custom".into(), value);
                }
            }
        }
    }
    ignition_config::to_go_json(&v, pretty)
}
