//! systemd units: unit files and dropins under `/etc/systemd/system`,
//! masking by a link to `/dev/null`, and enabling through the preset file
//! `/etc/systemd/system-preset/20-ignition.preset`, as upstream does (units
//! are enabled by systemd's first-boot preset pass). Template instances of
//! one template share one line (`enable foo@.service a b`); the lines are
//! sorted by unit name, as upstream sorts them.
//!
//! `enabled: false` writes `disable NAME` only when the unit is enabled in
//! the root, and then first removes its enablement links, as upstream:
//! `systemctl --root ROOT is-enabled NAME`, then `systemctl --root ROOT
//! disable NAME`. Without `systemctl` (an initramfs may lack it) the same
//! rule is applied by looking at the root: the unit counts as enabled when
//! a link named after it is in a `*.wants`, `*.requires` or `*.upholds`
//! directory of `/etc/systemd/system`, and those links are removed. (That
//! misses what only `systemctl` knows, such as aliases.) A template with
//! instances is passed to `systemctl` as one argument
//! (`foo@.service a b`), exactly as upstream does; `systemctl` refuses the
//! name, so no `disable` line is written for it, upstream's behaviour.

use ignition_config::Config;

use crate::root::{Root, RootError};

const UNIT_DIR: &str = "/etc/systemd/system";
const PRESET: &str = "/etc/systemd/system-preset/20-ignition.preset";

/// A failure, with the config path of the unit.
#[derive(Debug, thiserror::Error)]
pub enum UnitError {
    /// Writing into the root failed.
    #[error("{at}: {error}")]
    Root {
        /// JSON path of the unit.
        at: String,
        /// The failure.
        error: RootError,
    },
    /// `systemctl` failed.
    #[error("{at}: {message}")]
    Command {
        /// JSON path of the units.
        at: String,
        /// The command line and what it said.
        message: String,
    },
}

/// `foo@bar.service` → (`foo@.service`, `bar`); the template itself has
/// the empty instance, as upstream groups it.
fn instance(name: &str) -> Option<(String, String)> {
    let (prefix, rest) = name.split_once('@')?;
    let dot = rest.rfind('.')?;
    Some((
        format!("{prefix}@{}", &rest[dot..]),
        rest[..dot].to_string(),
    ))
}

/// Runs `systemctl --root ROOT VERB UNIT` with the tools' deadline.
fn systemctl(
    tool: &std::path::Path,
    root: &Root,
    verb: &str,
    unit: &str,
) -> Result<crate::cmd::Output, crate::cmd::RunError> {
    let argv = vec![
        tool.display().to_string(),
        "--root".into(),
        root.path().display().to_string(),
        verb.into(),
        unit.into(),
    ];
    crate::cmd::run(&argv, None)
}

const ENABLEMENT_DIRS: [&str; 3] = [".wants", ".requires", ".upholds"];

/// The enablement links of `unit` in the root's `/etc/systemd/system`.
fn enablement_links(root: &Root, unit: &str) -> Result<Vec<String>, RootError> {
    let dir = match root.open_dir(UNIT_DIR) {
        Ok(d) => d,
        Err(e) if e.error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut links = Vec::new();
    let entries = rustix::fs::Dir::read_from(&dir).map_err(|e| RootError {
        op: "read directory",
        path: UNIT_DIR.into(),
        error: e.into(),
    })?;
    for entry in entries {
        let entry = entry.map_err(|e| RootError {
            op: "read directory",
            path: UNIT_DIR.into(),
            error: e.into(),
        })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !ENABLEMENT_DIRS.iter().any(|s| name.ends_with(s)) {
            continue;
        }
        let link = format!("{UNIT_DIR}/{name}/{unit}");
        if root.kind(&link)? == Some(crate::root::NodeKind::Link) {
            links.push(link);
        }
    }
    links.sort();
    Ok(links)
}

/// Whether `disable UNIT` belongs in the preset file: only for a unit
/// enabled in the root, whose enablement links are removed first.
fn disable(root: &Root, unit: &str, opts: &crate::Options) -> Result<bool, UnitError> {
    let at = || "$.systemd.units".to_string();
    let Some(tool) = &opts.systemctl else {
        if unit.contains(char::is_whitespace) {
            return Ok(false);
        }
        let links =
            enablement_links(root, unit).map_err(|error| UnitError::Root { at: at(), error })?;
        for l in &links {
            root.remove(l)
                .map_err(|error| UnitError::Root { at: at(), error })?;
        }
        return Ok(!links.is_empty());
    };
    let enabled = systemctl(tool, root, "is-enabled", unit).map_err(|e| UnitError::Command {
        at: at(),
        message: e.to_string(),
    })?;
    if !enabled.status.success() {
        return Ok(false);
    }
    let out = systemctl(tool, root, "disable", unit).map_err(|e| UnitError::Command {
        at: at(),
        message: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(UnitError::Command {
            at: at(),
            message: format!(
                "cannot remove the enablement links of {unit}: `{}` failed ({}): {}",
                crate::cmd::command_line(&[
                    &tool.display().to_string(),
                    "--root",
                    &root.path().display().to_string(),
                    "disable",
                    unit
                ]),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(true)
}

/// Writes the units and the preset file.
pub fn apply(config: &Config, root: &Root, opts: &crate::Options) -> Result<usize, UnitError> {
    let units = &config.systemd.units;
    let mut presets: Vec<(String, Vec<String>, bool)> = Vec::new();
    for (i, u) in units.iter().enumerate() {
        let at = format!("$.systemd.units.{i}");
        let e = |error| UnitError::Root {
            at: at.clone(),
            error,
        };
        let path = format!("{UNIT_DIR}/{}", u.name);
        // A unit with empty contents is not written (an empty dropin is).
        if let Some(c) = u.contents.as_deref().filter(|c| !c.is_empty()) {
            root.write_file(&path, c.as_bytes(), 0o644, None)
                .map_err(e)?;
        }
        for (j, d) in u.dropins.iter().enumerate() {
            // A dropin without contents is not written (empty ones are).
            let Some(c) = d.contents.as_deref() else {
                continue;
            };
            root.write_file(&format!("{path}.d/{}", d.name), c.as_bytes(), 0o644, None)
                .map_err(|error| UnitError::Root {
                    at: format!("{at}.dropins.{j}"),
                    error,
                })?;
        }
        match u.mask {
            Some(true) => root.symlink(&path, "/dev/null", None).map_err(e)?,
            // Unmasking removes a mask link.
            Some(false)
                if root.kind(&path).map_err(e)? == Some(crate::root::NodeKind::Link)
                    && root.read_link(&path).map_err(e)? == "/dev/null" =>
            {
                root.remove(&path).map_err(e)?
            }
            _ => {}
        }
        if let Some(enabled) = u.enabled {
            let (name, inst) = match instance(&u.name) {
                Some((t, i)) => (t, Some(i)),
                None => (u.name.clone(), None),
            };
            match presets
                .iter_mut()
                .find(|(n, _, en)| *n == name && *en == enabled)
            {
                Some((_, insts, _)) => insts.extend(inst),
                None => presets.push((name, inst.into_iter().collect(), enabled)),
            }
        }
    }
    if !presets.is_empty() {
        // Sorted as upstream sorts its map keys, `NAME-enabled` or
        // `NAME-disabled`.
        presets.sort_by_cached_key(|(name, _, enabled)| {
            format!("{name}-{}", if *enabled { "enabled" } else { "disabled" })
        });
        let mut lines = String::new();
        for (name, insts, enabled) in presets {
            let unit = if name.contains('@') {
                format!("{name} {}", insts.join(" "))
            } else {
                name
            };
            if enabled {
                lines.push_str(&format!("enable {unit}\n"));
            } else if disable(root, &unit, opts)? {
                lines.push_str(&format!("disable {unit}\n"));
            }
        }
        if !lines.is_empty() {
            let mut text = match root.read_file(PRESET) {
                Ok(b) => String::from_utf8_lossy(&b).into_owned(),
                Err(e) if e.error.kind() == std::io::ErrorKind::NotFound => String::new(),
                Err(error) => {
                    return Err(UnitError::Root {
                        at: "$.systemd.units".into(),
                        error,
                    });
                }
            };
            text.push_str(&lines);
            root.write_file(PRESET, text.as_bytes(), 0o644, None)
                .map_err(|error| UnitError::Root {
                    at: "$.systemd.units".into(),
                    error,
                })?;
        }
    }
    Ok(units.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_instances() {
        assert_eq!(
            instance("getty@tty1.service"),
            Some(("getty@.service".into(), "tty1".into()))
        );
        assert_eq!(
            instance("getty@.service"),
            Some(("getty@.service".into(), String::new()))
        );
        assert_eq!(instance("a.service"), None);
    }
}
