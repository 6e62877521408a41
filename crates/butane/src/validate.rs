//! Source checks (stage 4), variant restrictions on the output (stage 6),
//! and openshift's checks and MachineConfig output.

use ignition_config::types as ign;

use crate::decode::Base;
use crate::p;
use crate::report::{Path, Report, Seg};
use crate::translate::Cx;
use crate::types::*;
use crate::variant::{Target, Variant};

fn join(base: &Path, rest: &[Seg]) -> Path {
    let mut p = base.clone();
    p.0.extend_from_slice(rest);
    p
}

const DECIMAL_MODE: &str =
    "unreasonable mode would be reasonable if specified in octal; remember to add a leading zero";

/// Whether a mode looks like what people mean (upstream's heuristic for the
/// decimal-mode warning).
fn typical(mode: i64, dir: bool) -> bool {
    if mode == 0 {
        return true;
    }
    let (mut had_r, mut had_w, mut had_x) = (false, false, false);
    for shift in [0, 3, 6] {
        let t = (mode >> shift) & 7;
        let (r, w, x) = (t & 4 != 0, t & 2 != 0, t & 1 != 0);
        if (!r && had_r) || (!w && had_w) || (!x && had_x) {
            return false;
        }
        if x && had_r && !had_x {
            return false;
        }
        if (w || x) && !r {
            return false;
        }
        had_r |= r;
        had_w |= w;
        had_x |= x;
    }
    if !had_r {
        return false;
    }
    if dir {
        if !had_x || mode & 0o4000 != 0 || (mode & 0o3000 != 0 && !had_w) {
            return false;
        }
    } else {
        if mode & 0o6000 != 0 && (!had_x || mode & 2 != 0) {
            return false;
        }
        if mode & 0o1000 != 0 {
            return false;
        }
    }
    true
}

fn decimal_mode(mode: Option<i64>, dir: bool) -> bool {
    let Some(m) = mode else { return false };
    if !(0..=7777).contains(&m) {
        return false;
    }
    let digits = format!("{m}");
    if digits.bytes().any(|b| b > b'7') {
        return false;
    }
    let octal = i64::from_str_radix(&digits, 8).unwrap_or(0);
    !typical(m, dir) && typical(octal, dir)
}

/// Source checks, in upstream's walk order.
pub fn source(c: &Config, t: &Target, r: &mut Report) {
    let v = t.base;
    if t.variant == Variant::Fcos && t.minor >= 6 {
        crate::fcos::config_hook(c, t, r);
    }
    let merge_p = p!["ignition", "config", "merge"];
    for (i, res) in c.ignition.config.merge.iter().enumerate() {
        resource(res, &join(&merge_p, &[Seg::Index(i)]), true, t, r);
    }
    resource(
        &c.ignition.config.replace,
        &p!["ignition", "config", "replace"],
        true,
        t,
        r,
    );
    let ca_p = p!["ignition", "security", "tls", "certificate_authorities"];
    for (i, res) in c
        .ignition
        .security
        .tls
        .certificate_authorities
        .iter()
        .enumerate()
    {
        resource(res, &join(&ca_p, &[Seg::Index(i)]), false, t, r);
    }
    for (i, d) in c.storage.directories.iter().enumerate() {
        if decimal_mode(d.mode, true) {
            r.warn(p!["storage", "directories", i, "mode"], DECIMAL_MODE);
        }
    }
    for (i, f) in c.storage.files.iter().enumerate() {
        if decimal_mode(f.mode, false) {
            r.warn(p!["storage", "files", i, "mode"], DECIMAL_MODE);
        }
        for (j, a) in f.append.iter().enumerate() {
            resource(a, &p!["storage", "files", i, "append", j], false, t, r);
        }
        resource(
            &f.contents,
            &p!["storage", "files", i, "contents"],
            false,
            t,
            r,
        );
    }
    for (i, fs) in c.storage.filesystems.iter().enumerate() {
        if fs.with_mount_unit != Some(true) || v < Base::V0_2 {
            continue;
        }
        let empty = |s: &Option<String>| s.as_deref().is_none_or(str::is_empty);
        let fmt_msg = "format is required if with_mount_unit is true";
        let path_msg = "path is required if with_mount_unit is true and format is not swap";
        if v >= Base::V0_4 {
            if empty(&fs.format) {
                r.error(p!["storage", "filesystems", i, "format"], fmt_msg);
            } else if fs.format.as_deref() != Some("swap") && empty(&fs.path) {
                r.error(p!["storage", "filesystems", i, "path"], path_msg);
            }
        } else {
            if empty(&fs.path) {
                r.error(p!["storage", "filesystems", i, "path"], path_msg);
            }
            if empty(&fs.format) {
                r.error(p!["storage", "filesystems", i, "format"], fmt_msg);
            }
        }
    }
    for (i, l) in c.storage.luks.iter().enumerate() {
        resource(
            &l.key_file,
            &p!["storage", "luks", i, "key_file"],
            false,
            t,
            r,
        );
    }
    for (i, tree) in c.storage.trees.iter().enumerate() {
        if tree.local.is_empty() {
            r.error(p!["storage", "trees", i], "local is required");
        }
    }
    let two_sources = "only one of the following can be set: contents, contents_local";
    for (i, u) in c.systemd.units.iter().enumerate() {
        if v >= Base::V0_5 && u.contents.is_some() && u.contents_local.is_some() {
            r.error(p!["systemd", "units", i, "contents_local"], two_sources);
        }
        for (j, d) in u.dropins.iter().enumerate() {
            if v >= Base::V0_5 && d.contents.is_some() && d.contents_local.is_some() {
                r.error(
                    p!["systemd", "units", i, "dropins", j, "contents_local"],
                    two_sources,
                );
            }
        }
    }
    for (n, q) in c.systemd.quadlets.iter().enumerate() {
        const EXTS: [&str; 8] = [
            ".container",
            ".volume",
            ".network",
            ".kube",
            ".image",
            ".build",
            ".pod",
            ".artifact",
        ];
        if !EXTS.iter().any(|e| q.name.ends_with(e)) {
            r.error(
                p!["systemd", "quadlets", n, "name"],
                "unsupported file extension for quadlet: must be one of .container, .volume, .network, .kube, .image, .build, .pod, or .artifact",
            );
        } else if quadlet_template(&q.name).is_some() {
            let msg = "template instances cannot have contents or contents_local";
            if q.contents.is_some() {
                r.error(p!["systemd", "quadlets", n, "contents"], msg);
            }
            if q.contents_local.is_some() {
                r.error(p!["systemd", "quadlets", n, "contents_local"], msg);
            }
        } else if q.contents.is_some() && q.contents_local.is_some() {
            r.error(p!["systemd", "quadlets", n, "contents_local"], two_sources);
        }
        for (j, d) in q.dropins.iter().enumerate() {
            if d.contents.is_some() && d.contents_local.is_some() {
                r.error(
                    p!["systemd", "quadlets", n, "dropins", j, "contents_local"],
                    two_sources,
                );
            }
        }
    }
    if matches!(t.variant, Variant::Fcos | Variant::Openshift) {
        crate::fcos::validate(c, t, r);
    }
    if t.variant == Variant::Openshift {
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
}

/// `web@8080.container` → `web@.container`; `None` for non-instances.
pub fn quadlet_template(name: &str) -> Option<String> {
    let a = name.find('@')?;
    let d = name.rfind('.')?;
    if a + 1 == d || d < a {
        return None;
    }
    Some(format!("{}@.{}", &name[..a], &name[d + 1..]))
}

fn resource(res: &Resource, path: &Path, config: bool, t: &Target, r: &mut Report) {
    let msg = "only one of the following can be set: inline, local, source";
    if t.base == Base::V0_1 {
        if res.inline.is_some() && res.source.is_some() {
            r.error(join(path, &[Seg::Key("inline")]), msg);
        }
        return;
    }
    let set = [
        ("local", res.local.is_some()),
        ("inline", res.inline.is_some()),
        ("source", res.source.is_some()),
    ];
    if set.iter().filter(|(_, s)| *s).count() > 1
        && let Some((last, _)) = set.iter().rev().find(|(_, s)| *s)
    {
        r.error(join(path, &[Seg::Key(last)]), msg);
        return;
    }
    if config && let Some(inline) = &res.inline {
        embedded_config(inline, path, t, r);
    }
}

/// An inline Ignition config in `merge`/`replace` is checked as upstream
/// does: parsed at the target spec and validated, its findings on its own
/// paths.
fn embedded_config(inline: &str, path: &Path, t: &Target, r: &mut Report) {
    let version = match ignition_config::embedded_version(inline.as_bytes()) {
        Ok(v) => v.unwrap_or_default(),
        Err(failure) => {
            let msg = failure
                .report
                .entries
                .first()
                .map(|e| e.message.clone())
                .unwrap_or_else(|| "unexpected end of JSON input".into());
            r.entries.push(crate::report::Entry {
                severity: ignition_config::Severity::Error,
                path: Path::root(),
                // Located at the top of the Butane document, as upstream.
                mark: None,
                message: msg,
            });
            r.error(join(path, &[Seg::Key("inline")]), "config is not valid");
            return;
        }
    };
    let version = version.as_str();
    if ignition_config::version::Semver::parse(version).is_some() && version != t.ignition.as_str()
    {
        r.warn(
            join(path, &[Seg::Key("version")]),
            "skipping validation for the merge/replace ignition config due to an unkown version",
        );
        return;
    }
    match ignition_config::parse(inline.as_bytes()) {
        Ok((_, rep)) => push_inner(rep, r),
        Err(f) => {
            let located = f.report.entries.iter().any(|e| e.path.is_none());
            push_inner(f.report, r);
            if located {
                r.error(join(path, &[Seg::Key("inline")]), "config is not valid");
            }
        }
    }
}

fn push_inner(rep: ignition_config::Report, r: &mut Report) {
    for e in rep.entries {
        r.entries.push(crate::report::Entry {
            severity: e.severity,
            path: e.path.unwrap_or_default(),
            mark: None,
            message: e.message,
        });
    }
}

fn nonempty_error(cx: &mut Cx<'_>, json: Path, msg: &str) {
    let yaml = cx.ts.map(&json);
    cx.report.error(yaml, msg);
}

/// Variant restrictions on the output.
/// (openshift's filters apply to the MachineConfig, so not in raw mode.)
pub fn filters(out: &ign::Config, c: &Config, t: &Target, raw: bool, cx: &mut Cx<'_>) {
    let _ = c;
    let s = &out.storage;
    match t.variant {
        Variant::Flatcar => {
            for (i, l) in s.luks.iter().enumerate() {
                if t.experimental {
                    if l.cex != ign::Cex::default() {
                        nonempty_error(
                            cx,
                            p!["storage", "luks", i, "cex"],
                            "cex is not currently supported on the target platform",
                        );
                    }
                } else if l.clevis != ign::Clevis::default() {
                    nonempty_error(
                        cx,
                        p!["storage", "luks", i, "clevis"],
                        "clevis is not supported in this spec version",
                    );
                }
            }
        }
        Variant::R4e | Variant::Fiot => {
            if out.kernel_arguments != ign::KernelArguments::default() {
                nonempty_error(
                    cx,
                    p!["kernelArguments"],
                    "kernel argument customization is not supported in this spec version",
                );
            }
            if !s.disks.is_empty() {
                nonempty_error(
                    cx,
                    p!["storage", "disks"],
                    "disk customization is not supported in this spec version",
                );
            }
            if !s.filesystems.is_empty() {
                nonempty_error(
                    cx,
                    p!["storage", "filesystems"],
                    "filesystem customization is not supported in this spec version",
                );
            }
            if !s.luks.is_empty() {
                nonempty_error(
                    cx,
                    p!["storage", "luks"],
                    "luks is not supported in this spec version",
                );
            }
            if !s.raid.is_empty() {
                nonempty_error(
                    cx,
                    p!["storage", "raid"],
                    "raid is not supported in this spec version",
                );
            }
        }
        Variant::Openshift if !raw => openshift_filters(out, t, cx),
        Variant::Openshift => {}
        Variant::Fcos => {}
    }
}

fn openshift_filters(out: &ign::Config, t: &Target, cx: &mut Cx<'_>) {
    if t.minor >= 14 && out.kernel_arguments != ign::KernelArguments::default() {
        nonempty_error(
            cx,
            p!["kernelArguments"],
            "this section cannot be used for kernel arguments in this spec version; use openshift.kernel_arguments instead",
        );
    }
    if !out.passwd.groups.is_empty() {
        nonempty_error(
            cx,
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
                nonempty_error(cx, p!["passwd", "users", i, key], msg);
            }
        }
    }
    if !out.storage.directories.is_empty() {
        nonempty_error(
            cx,
            p!["storage", "directories"],
            "directories are not supported in this spec version",
        );
    }
    for (i, f) in out.storage.files.iter().enumerate() {
        if !f.append.is_empty() {
            nonempty_error(
                cx,
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
            nonempty_error(
                cx,
                p!["storage", "files", i, "contents", "compression"],
                "file compression is not supported in this spec version",
            );
        }
        if !f.contents.http_headers.is_empty() {
            nonempty_error(
                cx,
                p!["storage", "files", i, "contents", "httpHeaders"],
                "file HTTP headers are not supported in this spec version",
            );
        }
    }
    if !out.storage.links.is_empty() {
        nonempty_error(
            cx,
            p!["storage", "links"],
            "links are not supported in this spec version",
        );
    }
}

/// openshift's RHCOS/MCO checks and FIPS options, on the translated config.
pub fn openshift_checks(c: &Config, out: &mut ign::Config, raw: bool, cx: &mut Cx<'_>) {
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
            yaml.0.extend(crate::translate::snake_rest(&json.0));
            cx.report.error(yaml, msg);
        } else {
            nonempty_error(cx, json, &msg);
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
pub fn machine_config_yaml(
    c: &Config,
    out: &ign::Config,
    target: Target,
    root: Option<&crate::yaml::Node>,
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
    let config: serde_json::Value =
        serde_json::from_str(&crate::output_json(out, target, root, false))
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
    let body = crate::yamlout::emit(&serde_json::Value::Object(mc));
    format!("# Generated by Butane; do not edit\n{body}")
        .trim_matches('\n')
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_mode_heuristic() {
        assert!(decimal_mode(Some(644), false));
        assert!(decimal_mode(Some(755), false));
        assert!(!decimal_mode(Some(420), false));
        assert!(!decimal_mode(Some(0o644), false));
        assert!(decimal_mode(Some(755), true));
        assert!(!decimal_mode(Some(493), true));
    }

    #[test]
    fn quadlet_templates() {
        assert_eq!(
            quadlet_template("web@8080.container").as_deref(),
            Some("web@.container")
        );
        assert_eq!(quadlet_template("web@.container"), None);
        assert_eq!(quadlet_template("db.volume"), None);
    }
}
