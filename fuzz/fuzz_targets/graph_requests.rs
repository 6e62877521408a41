//! The graph server's inputs: metadata made from the fuzz bytes (any
//! versions, rules, epochs, durations, percentages), graphs built and
//! filtered for any wariness and time, and any query string. Nothing may
//! panic, edges must point at nodes, and no edge may leave a dead-end.
#![no_main]

use libfuzzer_sys::fuzz_target;
use release::graph::{Graph, Scheme, wariness};
use release::meta::{Commit, IndexRelease, Reason, ReleaseIndex, Rollout, UpdateEntry, UpdateRules, UpdatesDoc};

fuzz_target!(|data: &[u8]| {
    let mut bytes = data.iter().copied();
    let mut next = || bytes.next().unwrap_or(0);
    let n = usize::from(next() % 40);
    let mut index = ReleaseIndex::default();
    let mut updates = UpdatesDoc::default();
    for i in 0..n {
        let arch = if next() % 5 == 0 { "aarch64" } else { "x86_64" };
        let checksum = if next() % 7 == 0 { String::new() } else { format!("{i:064x}") };
        // Versions may repeat: rules then apply to the first match.
        let version = format!("{}.{}", next() % 30, next());
        index.releases.push(IndexRelease {
            commits: vec![Commit { architecture: arch.into(), checksum }],
            version: version.clone(),
            ..Default::default()
        });
        let flags = next();
        let epoch = i64::from_le_bytes([next(), next(), next(), next(), next(), next(), next(), next()]);
        let duration = u64::from_le_bytes([next(), next(), next(), next(), next(), next(), next(), next()]);
        let pct = f64::from(next() as i8) / 64.0;
        updates.releases.push(UpdateEntry {
            version,
            metadata: UpdateRules {
                barrier: (flags & 1 != 0).then(|| Reason { reason: (flags & 8 != 0).then(String::new) }),
                deadend: (flags & 2 != 0).then(|| Reason { reason: Some("r".into()) }),
                rollout: (flags & 4 != 0).then(|| Rollout {
                    start_epoch: (flags & 16 != 0).then_some(epoch),
                    start_percentage: (flags & 32 != 0).then_some(pct),
                    duration_minutes: (flags & 64 != 0).then_some(duration),
                }),
            },
        });
    }
    let now = i64::from_le_bytes([next(), next(), next(), next(), next(), next(), next(), next()]);
    let w = wariness(Some(&format!("{}", f64::from(next()) / 200.0)), None);
    for scheme in [Scheme::Checksum, Scheme::Oci] {
        let (g, _) = Graph::build(&index, &updates, "x86_64", scheme);
        let f = g.filtered(w, now);
        for &(a, b) in &f.edges {
            assert!(a < g.nodes.len() && b < g.nodes.len());
            assert!(!g.nodes[a].deadend);
        }
        let json: serde_json::Value = serde_json::from_slice(&g.to_json_filtered(w, now)).unwrap();
        assert_eq!(json["edges"].as_array().unwrap().len(), f.edges.len());
        let prepared = graph_server::state::Prepared::new(g);
        let (body, _) = prepared.body(w, now);
        assert_eq!(serde_json::from_slice::<serde_json::Value>(&body).unwrap(), json);
    }
    let rest: Vec<u8> = bytes.collect();
    let _ = graph_server::params(&String::from_utf8_lossy(&rest));
});
