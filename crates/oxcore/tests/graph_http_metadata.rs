//! The graph server reading its metadata over HTTP from a server that turns
//! hostile: a claimed length of a terabyte must neither abort it nor grow
//! it, and a refresh that fails keeps the last good graph.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use test_support::{RawServer, Reply};

struct Graph(Child, String);

impl Drop for Graph {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(metadata: &str, log: &std::path::Path) -> Graph {
    let mut child = Command::new(env!("CARGO_BIN_EXE_oxcore"))
        .args([
            "graph",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--stream",
            "stable",
        ])
        .args([
            "--arch",
            "x86_64",
            "--refresh-secs",
            "1",
            "--metadata",
            metadata,
        ])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let addr = test_support::listening_addr(&mut child);
    Graph(child, addr)
}

/// The number of nodes in the stable x86_64 graph, and the status.
fn nodes(addr: &str) -> (u16, usize) {
    let (status, _, body) =
        test_support::http_get(addr, "/v1/graph?basearch=x86_64&stream=stable", "");
    let n = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["nodes"].as_array().map(Vec::len))
        .unwrap_or(0);
    (status, n)
}

fn metadata(path: &str) -> Option<Vec<u8>> {
    let rel = |v: &str, c: u8| {
        serde_json::json!({"version": v, "metadata": "x",
            "commits": [{"architecture": "x86_64", "checksum": format!("{c:064x}")}]})
    };
    let doc = match path {
        "/prod/streams/stable/releases.json" => serde_json::json!({"stream": "stable",
            "metadata": {"last-modified": "2026-01-01T00:00:00Z"},
            "releases": [rel("41.20260101.3.0", 1), rel("41.20260115.3.0", 2)]}),
        "/updates/stable.json" => serde_json::json!({"stream": "stable",
            "metadata": {"last-modified": "2026-01-01T00:00:00Z"}, "releases": []}),
        _ => return None,
    };
    Some(doc.to_string().into_bytes())
}

#[test]
fn hostile_metadata_servers_neither_abort_nor_erase_the_graph() {
    let hostile = Arc::new(AtomicBool::new(false));
    let h = hostile.clone();
    let server = RawServer::start(move |req| {
        if h.load(Ordering::SeqCst) {
            return Reply::raw(
                &b"HTTP/1.1 200 OK\r\nContent-Length: 1099511627776\r\n\r\n{\"releases\":"[..],
            );
        }
        match metadata(req.target()) {
            Some(b) => Reply::ok(&b),
            None => Reply::head("404 Not Found", &[]),
        }
    });
    let tmp = tempfile::tempdir().unwrap();
    let g = start(&server.url(""), &tmp.path().join("a.log"));
    assert_eq!(nodes(&g.1), (200, 2));
    hostile.store(true, Ordering::SeqCst);
    // Refreshes run every second and fail now; the graph stays.
    let before = server.seen().len();
    while server.seen().len() < before + 2 {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(nodes(&g.1), (200, 2), "the last good graph is kept");
    assert!(g.0.id() > 0);
    // Hostile from the start: the server runs, and says why it has nothing.
    let g2 = start(&server.url(""), &tmp.path().join("b.log"));
    let (status, n) = nodes(&g2.1);
    assert_eq!(n, 0, "status {status}");
    drop(g2);
    let log = std::fs::read_to_string(tmp.path().join("b.log")).unwrap();
    assert!(log.contains("larger than"), "{log}");
}
