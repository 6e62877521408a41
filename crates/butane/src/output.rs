//! The Ignition JSON written for a target spec, as upstream writes it:
//! Go's field order and omissions, and Ignition 3.2's pointer quirk for a
//! LUKS volume's `clevis` and `custom` (written, even empty, whenever the
//! source has them).

use crate::report::{self, Path, p};
use crate::variant::Target;
use crate::yaml::Node;

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
