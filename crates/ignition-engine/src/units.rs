//! systemd units: unit files and dropins under `/etc/systemd/system`,
//! masking by a link to `/dev/null`, and enabling through the preset file
//! `/etc/systemd/system-preset/20-ignition.preset`, as upstream does (units
//! are enabled by systemd's first-boot preset pass). Template instances of
//! one template share one line (`enable foo@.service a b`).

use ignition_config::Config;

use crate::root::{Root, RootError};

const UNIT_DIR: &str = "/etc/systemd/system";
const PRESET: &str = "/etc/systemd/system-preset/20-ignition.preset";

/// A failure, with the config path of the unit.
#[derive(Debug, thiserror::Error)]
#[error("{at}: {error}")]
pub struct UnitError {
    /// JSON path of the unit.
    pub at: String,
    /// The failure.
    pub error: RootError,
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

/// Writes the units and the preset file.
pub fn apply(config: &Config, root: &Root) -> Result<usize, UnitError> {
    let units = &config.systemd.units;
    let mut presets: Vec<(String, Vec<String>, bool)> = Vec::new();
    for (i, u) in units.iter().enumerate() {
        let at = format!("$.systemd.units.{i}");
        let e = |error| UnitError {
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
                .map_err(|error| UnitError {
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
        let mut text = root
            .read_file(PRESET)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        for (name, insts, enabled) in presets {
            let verb = if enabled { "enable" } else { "disable" };
            if name.contains('@') {
                text.push_str(&format!("{verb} {name} {}\n", insts.join(" ")));
            } else {
                text.push_str(&format!("{verb} {name}\n"));
            }
        }
        root.write_file(PRESET, text.as_bytes(), 0o644, None)
            .map_err(|error| UnitError {
                at: "$.systemd.units".into(),
                error,
            })?;
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
