//! The graph server's inputs: metadata made from the fuzz bytes (any
//! versions, rules, epochs, durations, percentages), graphs built and
//! filtered for any wariness and time, and any query string, parsed and
//! then answered by the server's handler (graph, statistics, dashboard)
//! with the statistics it records. Nothing may panic, edges must point at
//! nodes, no edge may leave a dead-end, a query is never longer to read
//! than its parameters allow, and the statistics only ever name versions
//! of the metadata, known platforms and `other`.
#![no_main]

use std::collections::HashSet;
use std::sync::Arc;

use graph_server::{Ctx, OTHER, Source, SourceError, State, Stats};
use hyper::Request;
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
        let prepared = graph_server::Prepared::new(g);
        let (body, _) = prepared.body(w, now);
        assert_eq!(serde_json::from_slice::<serde_json::Value>(&body).unwrap(), json);
    }
    let rest: Vec<u8> = bytes.collect();
    let query = String::from_utf8_lossy(&rest);
    if let Ok(q) = graph_server::GraphQuery::parse(&query) {
        // Parsing is a function of the text.
        assert_eq!(graph_server::GraphQuery::parse(&query), Ok(q.clone()));
        if q.scope().is_ok() {
            assert!(!q.basearch.as_deref().unwrap_or("").is_empty());
        }
    }

    // The handler, on a server whose stable stream is this metadata.
    let state = Arc::new(State::new(vec!["stable".into()], vec!["x86_64".into()]));
    state.refresh(&Mem(index.clone(), updates.clone()), now);
    let ctx = Ctx {
        state,
        metrics: Default::default(),
        stats: Stats::open(None, Some("fuzz")).expect("in memory"),
        fake_now: Some(now),
        cache_control: "public, max-age=60".into(),
        platforms: ["qemu".to_string(), "metal".to_string()].into_iter().collect(),
    };
    for prefix in [
        "/v1/graph?",
        "/v1/graph?basearch=x86_64&stream=stable&node_uuid=0123&",
        "/v1/stats?",
        "/?",
    ] {
        let uri = format!("{prefix}{}", uri_safe(&rest));
        let Ok(req) = Request::get(uri.as_str()).body(()) else { continue };
        let resp = graph_server::respond(&ctx, &req);
        assert_ne!(resp.status(), 500, "{uri}");
    }
    let known: HashSet<&str> = index.releases.iter().map(|r| r.version.as_str()).collect();
    for week in ctx.stats.summary() {
        for (stream, versions) in &week.by_version {
            assert_eq!(stream, "stable");
            for v in versions.keys() {
                assert!(v == OTHER || known.contains(v.as_str()), "{v:?}");
            }
        }
        for p in week.by_platform.keys() {
            assert!(["qemu", "metal", OTHER].contains(&p.as_str()), "{p:?}");
        }
    }
});

/// The bytes as a query a client could send: URI characters (and `%`) as
/// they are, anything else percent-encoded.
fn uri_safe(b: &[u8]) -> String {
    let mut s = String::new();
    for &c in b {
        if c.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&c) {
            s.push(char::from(c));
        } else {
            s.push_str(&format!("%{c:02X}"));
        }
    }
    s
}

/// Metadata in memory, in upstream's layout.
struct Mem(ReleaseIndex, UpdatesDoc);

impl Source for Mem {
    fn get(&self, rel: &str) -> Result<Vec<u8>, SourceError> {
        match rel {
            "prod/streams/stable/releases.json" => Ok(serde_json::to_vec(&self.0).expect("serializes")),
            "updates/stable.json" => Ok(serde_json::to_vec(&self.1).expect("serializes")),
            other => Err(SourceError::Unavailable(format!("{other}: none"))),
        }
    }

    fn describe(&self, rel: &str) -> String {
        rel.to_string()
    }
}
