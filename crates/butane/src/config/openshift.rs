//! The openshift variant (4.8.0 to 4.22.0, 4.23.0-experimental): fcos's
//! schema and sugar plus `metadata` and `openshift`, written as a
//! MachineConfig for the Machine Config Operator (or, with `--raw`, as the
//! Ignition config inside it), under the restrictions of the RHCOS
//! Ignition the MCO accepts. Upstream: `config/openshift/v4_*`.

use ignition_config::types as ign;

use crate::output::output_json;
use crate::report::{Path, Report, p};
use crate::translate::{Cx, snake_rest};
use crate::types::*;
use crate::variant::Target;
use crate::yaml::Node;
use crate::yamlout;

/// openshift's source checks: `metadata`, `openshift.kernel_type`, and
/// the kernel argument CEX needs (4.19 and later).
pub(crate) fn source(c: &Config, t: &Target, r: &mut Report) {
    if c.metadata.name.is_empty() {
        r.error(p!["metadata", "name"], "metadata.name is required");
    }
    let role = c
        .metadata
        .labels
        .0
        .iter()
        .find(|(k, _)| k == "machineconfiguration.openshift.io/role");
    if role.is_none_or(|(_, v)| v.is_empty()) {
        r.error(
            p!["metadata", "labels"],
            "machineconfiguration.openshift.io/role label is required",
        );
    }
    if let Some(k) = c.openshift.kernel_type.as_deref()
        && !matches!(k, "" | "default" | "realtime")
    {
        r.error(
            p!["openshift", "kernel_type"],
            "must be empty, \"default\", or \"realtime\"",
        );
    }
    if t.minor >= 19 {
        let need = "rd.luks.key=/etc/luks/cex.key";
        let has = c
            .openshift
            .kernel_arguments
            .iter()
            .flatten()
            .any(|a| a == need);
        let msg = "'rd.luks.key=/etc/luks/cex.key' must be set as kernel argument when CEX is enabled for the boot device";
        if c.boot_device.luks.cex.enabled == Some(true) && !has {
            r.error(p!["openshift", "kernel_arguments"], msg);
        }
        if c.storage
            .luks
            .iter()
            .any(|l| l.name == "root" && l.cex.enabled == Some(true))
            && !has
        {
            r.error(p!["openshift", "kernel_arguments"], msg);
        }
    }
}

/// openshift: wraps the config in a MachineConfig (or, with `raw`, checks
/// and returns the Ignition config). Returns the output text, or `None`
/// after errors.
pub(crate) fn output(
    c: &Config,
    out: &mut ign::Config,
    raw: bool,
    pretty: bool,
    cx: &mut Cx<'_>,
) -> Option<String> {
    checks(c, out, raw, cx);
    if !raw && cx.report.is_fatal() {
        return None;
    }
    let os = &c.openshift;
    if raw {
        let msg = "field ignored in raw mode";
        if os.kernel_arguments.is_some() {
            cx.report.warn(p!["openshift", "kernel_arguments"], msg);
        }
        if os.extensions.is_some() {
            cx.report.warn(p!["openshift", "extensions"], msg);
        }
        if os.fips.is_some() {
            cx.report.warn(p!["openshift", "fips"], msg);
        }
        if os.kernel_type.as_deref().is_some_and(|k| !k.is_empty()) {
            cx.report.warn(p!["openshift", "kernel_type"], msg);
        }
        if cx.report.is_fatal() {
            return None;
        }
        return Some(output_json(out, cx.target, cx.ts.root, pretty));
    }
    Some(machine_config_yaml(c, out, cx.target, cx.ts.root))
}

/// openshift's restrictions on the output (on the MachineConfig's config,
/// so not in raw mode).
pub(crate) fn filters(out: &ign::Config, t: &Target, cx: &mut Cx<'_>) {
    if t.minor >= 14 && out.kernel_arguments != ign::KernelArguments::default() {
        cx.output_error(p!["kernelArguments"],
            "this section cannot be used for kernel arguments in this spec version; use openshift.kernel_arguments instead",
        );
    }
    if !out.passwd.groups.is_empty() {
        cx.output_error(
            p!["passwd", "groups"],
            "groups are not supported in this spec version",
        );
    }
    let msg = "fields other than \"name\", \"ssh_authorized_keys\", and \"password_hash\" (4.13.0+) are not supported in this spec version";
    for (i, u) in out.passwd.users.iter().enumerate() {
        let checks: [(&'static str, bool); 12] = [
            ("gecos", u.gecos.is_some()),
            ("groups", !u.groups.is_empty()),
            ("homeDir", u.home_dir.is_some()),
            ("noCreateHome", u.no_create_home.is_some()),
            ("noLogInit", u.no_log_init.is_some()),
            ("noUserGroup", u.no_user_group.is_some()),
            ("passwordHash", t.minor <= 12 && u.password_hash.is_some()),
            ("primaryGroup", u.primary_group.is_some()),
            ("shell", u.shell.is_some()),
            ("shouldExist", u.should_exist.is_some()),
            ("system", u.system.is_some()),
            ("uid", u.uid.is_some()),
        ];
        for (key, set) in checks {
            if set {
                cx.output_error(p!["passwd", "users", i, key], msg);
            }
        }
    }
    if !out.storage.directories.is_empty() {
        cx.output_error(
            p!["storage", "directories"],
            "directories are not supported in this spec version",
        );
    }
    for (i, f) in out.storage.files.iter().enumerate() {
        if !f.append.is_empty() {
            cx.output_error(
                p!["storage", "files", i, "append"],
                "appending to files is not supported in this spec version",
            );
        }
        if t.minor <= 9
            && f.contents
                .compression
                .as_deref()
                .is_some_and(|c| !c.is_empty())
        {
            cx.output_error(
                p!["storage", "files", i, "contents", "compression"],
                "file compression is not supported in this spec version",
            );
        }
        if !f.contents.http_headers.is_empty() {
            cx.output_error(
                p!["storage", "files", i, "contents", "httpHeaders"],
                "file HTTP headers are not supported in this spec version",
            );
        }
    }
    if !out.storage.links.is_empty() {
        cx.output_error(
            p!["storage", "links"],
            "links are not supported in this spec version",
        );
    }
}

/// openshift's RHCOS/MCO checks and FIPS options, on the translated config.
fn checks(c: &Config, out: &mut ign::Config, raw: bool, cx: &mut Cx<'_>) {
    let t = cx.target;
    if c.openshift.fips == Some(true) && t.minor <= 19 {
        for l in &mut out.storage.luks {
            let has = l
                .options
                .iter()
                .any(|o| o == "--cipher" || o.starts_with("--cipher=") || o == "-c");
            if !has {
                l.options.push("--cipher".into());
                l.options.push("aes-cbc-essiv:sha256".into());
            }
        }
    }
    let mut errors: Vec<(Path, String)> = Vec::new();
    for (i, fs) in out.storage.filesystems.iter().enumerate() {
        match fs.format.as_deref() {
            Some("btrfs") => errors.push((
                p!["storage", "filesystems", i, "format"],
                "btrfs is not supported in this spec version".into(),
            )),
            Some("none") if t.minor >= 14 => errors.push((
                p!["storage", "filesystems", i, "format"],
                "format \"none\" is not supported in this spec version".into(),
            )),
            _ => {}
        }
    }
    for (i, f) in out.storage.files.iter().enumerate() {
        if let Some(src) = &f.contents.source
            && let Some(scheme) = src.split_once(':').map(|(s, _)| s.to_ascii_lowercase())
            && scheme != "data"
            && !scheme.is_empty()
        {
            errors.push((
                p!["storage", "files", i, "contents", "source"],
                "file contents source must be data URL in this spec version".into(),
            ));
        }
        if t.minor >= 10 && f.mode.is_some_and(|m| m & !0o777 != 0) {
            errors.push((
                p!["storage", "files", i, "mode"],
                "special mode bits are not supported in this spec version".into(),
            ));
        }
    }
    for (i, u) in out.passwd.users.iter().enumerate() {
        if u.name != "core" {
            errors.push((
                p!["passwd", "users", i, "name"],
                "users other than \"core\" are not supported in this spec version".into(),
            ));
        }
    }
    for (json, msg) in errors {
        if raw {
            // Upstream maps these through the MachineConfig's paths, which
            // raw mode does not record: they stay under `spec.config`.
            let mut yaml = p!["spec", "config"];
            yaml.0.extend(snake_rest(&json.0));
            cx.report.error(yaml, msg);
        } else {
            cx.output_error(json, &msg);
        }
    }
    if t.minor >= 23
        && let Some(f) = out
            .storage
            .files
            .iter_mut()
            .find(|f| f.path == "/boot/grub2/user.cfg")
        && f.append.len() == 1
    {
        f.contents = f.append.remove(0);
    }
}

/// The MachineConfig, as YAML with upstream's header, key order and styles.
fn machine_config_yaml(
    c: &Config,
    out: &ign::Config,
    target: Target,
    root: Option<&Node>,
) -> String {
    let mut meta = serde_json::Map::new();
    meta.insert("name".into(), c.metadata.name.clone().into());
    if !c.metadata.labels.0.is_empty() {
        let labels: serde_json::Map<String, serde_json::Value> = c
            .metadata
            .labels
            .0
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().into()))
            .collect();
        meta.insert("labels".into(), labels.into());
    }
    let config: serde_json::Value = serde_json::from_str(&output_json(out, target, root, false))
        .unwrap_or(serde_json::Value::Null);
    let mut spec = serde_json::Map::new();
    spec.insert("config".into(), config);
    let os = &c.openshift;
    if let Some(k) = os.kernel_arguments.as_ref().filter(|k| !k.is_empty()) {
        spec.insert("kernelArguments".into(), k.clone().into());
    }
    if let Some(e) = os.extensions.as_ref().filter(|e| !e.is_empty()) {
        spec.insert("extensions".into(), e.clone().into());
    }
    if let Some(f) = os.fips {
        spec.insert("fips".into(), f.into());
    }
    if let Some(k) = os.kernel_type.as_deref().filter(|k| !k.is_empty()) {
        spec.insert("kernelType".into(), k.into());
    }
    let mut mc = serde_json::Map::new();
    mc.insert(
        "apiVersion".into(),
        "machineconfiguration.openshift.io/v1".into(),
    );
    mc.insert("kind".into(), "MachineConfig".into());
    mc.insert("metadata".into(), meta.into());
    mc.insert("spec".into(), spec.into());
    let body = yamlout::emit(&serde_json::Value::Object(mc));
    format!("# Generated by Butane; do not edit\n{body}")
        .trim_matches('\n')
        .to_string()
}
