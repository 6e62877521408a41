//! The base schema's source checks (upstream's stage 4, `base/v0_*`'s
//! `Validate`): resources (one source each; inline Ignition configs in
//! `merge`/`replace` parsed and validated at the target spec), modes that
//! look decimal, mount units, trees, units and quadlets. The variants add
//! theirs in [`crate::config`].

use crate::decode::Base;
use crate::report::{Path, Report, Seg, p};
use crate::sugar::quadlet_template;
use crate::types::*;
use crate::variant::Target;

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

/// The base's source checks, in upstream's walk order.
pub(crate) fn source(c: &Config, t: &Target, r: &mut Report) {
    let v = t.base;
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
}
