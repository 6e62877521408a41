//! Prometheus metrics in the text exposition format, prefixed
//! `oxcore_graph_`: requests by stream, architecture and status, graph
//! sizes, refresh age and failures.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::locks::lock;

use crate::state::Snapshot;

/// Request counters.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    /// Failed `accept` calls (descriptors exhausted, …).
    pub(crate) accept_errors: AtomicU64,
    /// Connections open now.
    pub(crate) connections: AtomicI64,
    /// Requests whose handler panicked (answered 500).
    pub(crate) panics: AtomicU64,
}

impl Metrics {
    /// Counts one `/v1/graph` answer.
    pub(crate) fn request(&self, stream: &str, arch: &str, status: u16) {
        let mut m = lock(&self.requests);
        // Label values come from requests: keep unknown ones in one bucket
        // so a client cannot grow the map without bound.
        let key = if status == 200 {
            (stream.to_string(), arch.to_string(), status)
        } else {
            (String::new(), String::new(), status)
        };
        *m.entry(key).or_default() += 1;
    }

    /// The exposition text.
    pub(crate) fn render(&self, snap: &Snapshot, now: i64) -> String {
        let mut out = String::new();
        out.push_str("# HELP oxcore_graph_requests_total Graph requests by stream, architecture and HTTP status.\n");
        out.push_str("# TYPE oxcore_graph_requests_total counter\n");
        for ((s, a, st), n) in lock(&self.requests).iter() {
            let _ = writeln!(
                out,
                "oxcore_graph_requests_total{{stream=\"{s}\",basearch=\"{a}\",status=\"{st}\"}} {n}"
            );
        }
        out.push_str(
            "# HELP oxcore_graph_nodes Nodes in the graph.\n# TYPE oxcore_graph_nodes gauge\n",
        );
        let mut keys: Vec<_> = snap.graphs.keys().collect();
        keys.sort();
        for k in &keys {
            if k.2 == release::graph::Scheme::Checksum {
                let _ = writeln!(
                    out,
                    "oxcore_graph_nodes{{stream=\"{}\",basearch=\"{}\"}} {}",
                    k.0,
                    k.1,
                    snap.graphs[*k].graph.nodes.len()
                );
            }
        }
        out.push_str("# HELP oxcore_graph_edges Edges in the graph (before the rollout policy).\n# TYPE oxcore_graph_edges gauge\n");
        for k in &keys {
            if k.2 == release::graph::Scheme::Checksum {
                let _ = writeln!(
                    out,
                    "oxcore_graph_edges{{stream=\"{}\",basearch=\"{}\"}} {}",
                    k.0,
                    k.1,
                    snap.graphs[*k].graph.edges.len()
                );
            }
        }
        out.push_str("# HELP oxcore_graph_refresh_age_seconds Age of the graph in use.\n# TYPE oxcore_graph_refresh_age_seconds gauge\n");
        for (s, st) in &snap.status {
            if let Some(b) = st.built_at {
                let _ = writeln!(
                    out,
                    "oxcore_graph_refresh_age_seconds{{stream=\"{s}\"}} {}",
                    now - b
                );
            }
        }
        out.push_str("# HELP oxcore_graph_refresh_failures_total Failed metadata refreshes.\n# TYPE oxcore_graph_refresh_failures_total counter\n");
        for (s, st) in &snap.status {
            let _ = writeln!(
                out,
                "oxcore_graph_refresh_failures_total{{stream=\"{s}\"}} {}",
                st.failures
            );
        }
        out.push_str("# HELP oxcore_graph_upstream_ok Whether the last refresh of the stream succeeded.\n# TYPE oxcore_graph_upstream_ok gauge\n");
        for (s, st) in &snap.status {
            let _ = writeln!(
                out,
                "oxcore_graph_upstream_ok{{stream=\"{s}\"}} {}",
                u8::from(st.error.is_none())
            );
        }
        let _ = writeln!(
            out,
            "# HELP oxcore_graph_accept_errors_total Failed accepts (each followed by a pause).\n# TYPE oxcore_graph_accept_errors_total counter\noxcore_graph_accept_errors_total {}",
            self.accept_errors.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP oxcore_graph_connections Open client connections.\n# TYPE oxcore_graph_connections gauge\noxcore_graph_connections {}",
            self.connections.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP oxcore_graph_handler_panics_total Requests whose handler panicked (answered 500).\n# TYPE oxcore_graph_handler_panics_total counter\noxcore_graph_handler_panics_total {}",
            self.panics.load(Ordering::Relaxed)
        );
        out
    }
}
