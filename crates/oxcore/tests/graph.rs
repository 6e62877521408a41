//! The graph server as a node sees it: a real `oxcore graph serve` on
//! 127.0.0.1, metadata in upstream's layout in a directory, requests over
//! TCP.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use release::graph::{Graph, Scheme, wariness};
use release::meta::{ReleaseIndex, UpdatesDoc};

const NOW: i64 = 1_800_000_000;

struct Server {
    child: Child,
    addr: String,
    log: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(metadata: &Path, stats: &Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_oxcore"))
            .args([
                "graph",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--stream",
                "stable",
                "--stream",
                "testing",
            ])
            .args([
                "--arch",
                "x86_64",
                "--arch",
                "aarch64",
                "--refresh-secs",
                "1",
            ])
            .arg(format!("--fake-now={NOW}"))
            .arg("--metadata")
            .arg(metadata)
            .arg("--stats-db")
            .arg(stats)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(stats.with_extension("log")).unwrap())
            .spawn()
            .unwrap();
        let addr = test_support::listening_addr(&mut child);
        Server {
            child,
            addr,
            log: stats.with_extension("log"),
        }
    }

    /// (status, headers, body) of a GET.
    fn get(&self, path: &str, extra: &str) -> (u16, String, String) {
        test_support::http_get(&self.addr, path, extra)
    }

    fn stop(mut self) {
        // SIGTERM: statistics are flushed before exit.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

fn write_metadata(dir: &Path) -> (ReleaseIndex, UpdatesDoc) {
    let versions = [
        "41.20260101.3.0",
        "41.20260115.3.0",
        "41.20260201.3.0",
        "41.20260215.3.0",
        "42.20260301.3.0",
        "42.20260315.3.0",
    ];
    let releases: Vec<serde_json::Value> = versions
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let mut commits = vec![serde_json::json!({"architecture": "x86_64", "checksum": format!("{i:064x}")})];
            if i != 3 {
                commits.push(serde_json::json!({"architecture": "aarch64", "checksum": format!("{:064x}", i + 100)}));
            }
            serde_json::json!({
                "commits": commits,
                "oci-images": [{"architecture": "x86_64", "image": "quay.io/fedora/fedora-coreos",
                                "digest-ref": format!("quay.io/fedora/fedora-coreos@sha256:{i:064x}")}],
                "version": v,
                "metadata": format!("https://example.invalid/prod/streams/stable/builds/{v}/release.json"),
            })
        })
        .collect();
    let index = serde_json::json!({"note": "test", "stream": "stable", "metadata": {"last-modified": "2026-03-15T00:00:00Z"}, "releases": releases});
    let updates = serde_json::json!({"stream": "stable", "metadata": {"last-modified": "2026-03-15T00:00:00Z"}, "releases": [
        {"version": versions[1], "metadata": {"barrier": {"reason": "https://example.invalid/issue/1"}}},
        {"version": versions[2], "metadata": {"deadend": {"reason": "https://example.invalid/issue/2"}}},
        {"version": versions[4], "metadata": {"rollout": {"start_epoch": NOW - 3600, "start_percentage": 0.25, "duration_minutes": 240}}},
        {"version": versions[5], "metadata": {"rollout": {"start_epoch": NOW + 3600, "start_percentage": 0.0, "duration_minutes": 60}}},
    ]});
    std::fs::create_dir_all(dir.join("prod/streams/stable")).unwrap();
    std::fs::create_dir_all(dir.join("updates")).unwrap();
    std::fs::write(
        dir.join("prod/streams/stable/releases.json"),
        index.to_string(),
    )
    .unwrap();
    std::fs::write(dir.join("updates/stable.json"), updates.to_string()).unwrap();
    (
        serde_json::from_value(index).unwrap(),
        serde_json::from_value(updates).unwrap(),
    )
}

fn edges(body: &str) -> Vec<(usize, usize)> {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    v["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e[0].as_u64().unwrap() as usize,
                e[1].as_u64().unwrap() as usize,
            )
        })
        .collect()
}

#[test]
fn serves_the_graph_a_node_should_see() {
    let tmp = tempfile::tempdir().unwrap();
    let meta = tmp.path().join("meta");
    let (index, updates) = write_metadata(&meta);
    let server = Server::start(&meta, &tmp.path().join("stats.redb"));
    let q = |extra: &str| format!("/v1/graph?basearch=x86_64&stream=stable{extra}");

    // The full graph (wariness 0 sees every rollout that has started… and
    // the one that has not, whose share is 0 and 0 is not greater).
    let (status, head, body) = server.get(&q("&rollout_wariness=0.000000"), "");
    assert_eq!(status, 200);
    assert!(head.contains("content-type: application/json"), "{head}");
    assert!(head.contains("cache-control: public, max-age=60"), "{head}");
    let (expected, _) = Graph::build(&index, &updates, "x86_64", Scheme::Checksum);
    assert_eq!(edges(&body), expected.filtered(0.0, NOW).edges);
    assert_eq!(
        edges(&body),
        vec![(1, 5), (3, 5), (4, 5), (1, 4), (3, 4), (0, 1)]
    );
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let node = &json["nodes"][4];
    assert_eq!(node["version"], "42.20260301.3.0");
    assert_eq!(node["payload"], format!("{:064x}", 4));
    assert_eq!(
        node["metadata"]["org.fedoraproject.coreos.updates.rollout"],
        "true"
    );
    assert_eq!(
        node["metadata"]["org.fedoraproject.coreos.updates.start_value"],
        "0.25"
    );
    assert_eq!(
        node["metadata"]["org.fedoraproject.coreos.releases.age_index"],
        "4"
    );
    assert_eq!(
        json["nodes"][2]["metadata"]["org.fedoraproject.coreos.updates.deadend"],
        "true"
    );

    // Share now of the first rollout: 0.25 + 0.75 * 60/240 = 0.4375.
    assert_eq!(
        edges(&server.get(&q("&rollout_wariness=0.43"), "").2),
        vec![(1, 4), (3, 4), (0, 1)]
    );
    assert_eq!(
        edges(&server.get(&q("&rollout_wariness=0.5"), "").2),
        vec![(0, 1)]
    );
    // Clamped: 7 is 1.
    assert_eq!(
        edges(&server.get(&q("&rollout_wariness=7"), "").2),
        vec![(0, 1)]
    );
    // From the UUID when no wariness is given.
    let uuid = "0123456789abcdef0123456789abcdef";
    let w = wariness(None, Some(uuid));
    let got = edges(
        &server
            .get(
                &q(&format!(
                    "&node_uuid={uuid}&os_version=41.20260115.3.0&platform=qemu&group=default"
                )),
                "",
            )
            .2,
    );
    assert_eq!(got, expected.filtered(w, NOW).edges, "wariness {w}");

    // A release without an aarch64 commit is not in that graph.
    let (_, _, arm) = server.get(
        "/v1/graph?basearch=aarch64&stream=stable&rollout_wariness=0",
        "",
    );
    let arm: serde_json::Value = serde_json::from_str(&arm).unwrap();
    assert_eq!(arm["nodes"].as_array().unwrap().len(), 5);
    // OCI payloads.
    let (_, _, oci) = server.get(&q("&oci=true"), "");
    let oci: serde_json::Value = serde_json::from_str(&oci).unwrap();
    assert_eq!(
        oci["nodes"][0]["payload"],
        format!("quay.io/fedora/fedora-coreos@sha256:{:064x}", 0)
    );
    assert_eq!(
        oci["nodes"][0]["metadata"]["org.fedoraproject.coreos.scheme"],
        "oci"
    );

    // ETag and If-None-Match.
    let (_, head, _) = server.get(&q("&rollout_wariness=0.5"), "");
    let etag = head
        .lines()
        .find_map(|l| l.strip_prefix("etag: "))
        .unwrap()
        .trim()
        .to_string();
    let (status, _, body) = server.get(
        &q("&rollout_wariness=0.5"),
        &format!("If-None-Match: {etag}\r\n"),
    );
    assert_eq!((status, body.as_str()), (304, ""));

    // Errors are JSON, as the protocol recommends.
    for (path, code, kind, value) in [
        (
            "/v1/graph?stream=stable",
            400,
            "missing_parameter",
            "basearch",
        ),
        (
            "/v1/graph?basearch=x86_64",
            400,
            "missing_parameter",
            "stream",
        ),
        (
            "/v1/graph?basearch=x86_64&stream=stable&stream=next",
            400,
            "duplicate_parameter",
            "stream",
        ),
        // As upstream: empty is missing, oci is exactly true or false.
        (
            "/v1/graph?basearch=x86_64&stream=",
            400,
            "missing_parameter",
            "stream",
        ),
        (
            "/v1/graph?basearch=&stream=stable",
            400,
            "missing_parameter",
            "basearch",
        ),
        (
            "/v1/graph?basearch=x86_64&stream=stable&oci=1",
            400,
            "invalid_parameter",
            "oci",
        ),
        (
            "/v1/graph?basearch=x86_64&stream=stable&oci=",
            400,
            "invalid_parameter",
            "oci",
        ),
        (
            "/v1/graph?basearch=x86_64&stream=nope",
            404,
            "unknown_stream",
            "nope",
        ),
        (
            "/v1/graph?basearch=riscv64&stream=stable",
            404,
            "unknown_basearch",
            "riscv64",
        ),
    ] {
        let (status, head, body) = server.get(path, "");
        assert_eq!(status, code, "{path}");
        assert!(head.contains("application/json"));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (v["kind"].as_str().unwrap(), v["value"].as_str().unwrap()),
            (kind, value),
            "{path}"
        );
    }
    // A stream whose metadata never loaded answers an empty graph.
    let (status, _, body) = server.get("/v1/graph?basearch=x86_64&stream=testing", "");
    assert_eq!((status, body.as_str()), (200, r#"{"nodes":[],"edges":[]}"#));

    // Metrics and status.
    let (_, head, metrics) = server.get("/metrics", "");
    assert!(head.contains("text/plain"));
    assert!(
        metrics.contains(
            "oxcore_graph_requests_total{stream=\"stable\",basearch=\"x86_64\",status=\"200\"}"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("oxcore_graph_nodes{stream=\"stable\",basearch=\"aarch64\"} 5"),
        "{metrics}"
    );
    assert!(
        metrics.contains("oxcore_graph_upstream_ok{stream=\"testing\"} 0"),
        "{metrics}"
    );
    let (_, _, status) = server.get("/status", "");
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert!(
        status["streams"]["testing"]["error"]
            .as_str()
            .unwrap()
            .contains("releases.json")
    );
    assert_eq!(status["streams"]["stable"]["releases"], 6);

    // Broken metadata keeps the last good graph, and says so.
    std::fs::write(meta.join("prod/streams/stable/releases.json"), "{ not json").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let (status, _, body) = server.get(&q("&rollout_wariness=0"), "");
    assert_eq!(status, 200);
    assert_eq!(edges(&body), expected.filtered(0.0, NOW).edges);
    let (_, _, st) = server.get("/status", "");
    let st: serde_json::Value = serde_json::from_str(&st).unwrap();
    assert!(
        st["streams"]["stable"]["error"]
            .as_str()
            .unwrap()
            .contains("releases.json"),
        "{st}"
    );
    assert!(
        server
            .get("/metrics", "")
            .2
            .contains("oxcore_graph_upstream_ok{stream=\"stable\"} 0")
    );
    // And the log says it (tracing, on stderr).
    let log = std::fs::read_to_string(&server.log).unwrap();
    assert!(log.contains("graph server listening"), "{log}");
    assert!(
        log.contains("metadata refresh failed; keeping the last good graph"),
        "{log}"
    );

    // The dashboard.
    let (status, head, html) = server.get("/", "");
    assert_eq!(status, 200);
    assert!(head.contains("text/html"));
    for needle in [
        "Stream stable",
        "<svg",
        "42.20260301.3.0",
        "Rollouts",
        "43.8%",
        "Last refresh failed",
    ] {
        assert!(html.contains(needle), "dashboard lacks {needle}");
    }
    server.stop();
}

#[test]
fn fleet_statistics_count_distinct_nodes_and_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let meta = tmp.path().join("meta");
    write_metadata(&meta);
    let db = tmp.path().join("stats.redb");
    let server = Server::start(&meta, &db);
    for (uuid, version, platform) in [
        ("00000000000000000000000000000001", "41.20260115.3.0", "aws"),
        (
            "00000000000000000000000000000002",
            "41.20260115.3.0",
            "qemu",
        ),
        (
            "00000000000000000000000000000002",
            "42.20260301.3.0",
            "qemu",
        ),
        (
            "00000000000000000000000000000003",
            "42.20260301.3.0",
            "metal",
        ),
    ] {
        let path = format!(
            "/v1/graph?basearch=x86_64&stream=stable&node_uuid={uuid}&os_version={version}&platform={platform}"
        );
        assert_eq!(server.get(&path, "").0, 200);
    }
    server.stop();
    let raw = std::fs::read(&db).unwrap();
    assert!(
        !raw.windows(32)
            .any(|w| w == b"00000000000000000000000000000001"),
        "a UUID stored in clear"
    );
    let server = Server::start(&meta, &db);
    let (_, _, body) = server.get("/v1/stats", "");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["weeks"][0]["nodes"], 3, "{v}");
    let by = &v["weeks"][0]["by_version"]["stable"];
    // Node 2 moved from 41… to 42… this week: counted once in all, and in
    // each version it ran.
    assert_eq!(
        (&by["41.20260115.3.0"], &by["42.20260301.3.0"]),
        (&2.into(), &2.into()),
        "{v}"
    );
    assert_eq!(v["weeks"][0]["by_platform"]["qemu"], 1, "{v}");
    assert_eq!(v["weeks"][0]["by_basearch"]["x86_64"], 3, "{v}");
    let (_, _, html) = server.get("/", "");
    assert!(html.contains("Nodes by version, per week"));
    assert!(html.contains("metal"));

    // Sketches merge: the same server's twice still counts 3 nodes.
    let (_, _, with) = server.get("/v1/stats?sketches=true", "");
    let (a, b, plain) = (
        tmp.path().join("a.json"),
        tmp.path().join("b.json"),
        tmp.path().join("plain.json"),
    );
    std::fs::write(&a, &with).unwrap();
    std::fs::write(&b, &with).unwrap();
    std::fs::write(&plain, &body).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_oxcore"))
        .args(["graph", "merge-stats"])
        .args([&a, &b])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let merged: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(merged["weeks"][0]["nodes"], 3, "{merged}");
    assert_eq!(merged["weeks"][0]["by_platform"]["metal"], 1, "{merged}");
    // A document without sketches is refused, naming it.
    let out = Command::new(env!("CARGO_BIN_EXE_oxcore"))
        .args(["graph", "merge-stats"])
        .args([&a, &plain])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("plain.json") && err.contains("no sketches"),
        "{err}"
    );
    server.stop();
}

/// With descriptors exhausted (EMFILE) the server pauses its accepts
/// instead of spinning on them, and serves again once connections close.
#[test]
fn descriptor_exhaustion_pauses_accepts_and_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let meta = tmp.path().join("meta");
    write_metadata(&meta);
    let config = tmp.path().join("graph.toml");
    // More connections allowed than descriptors, and held for a minute.
    std::fs::write(
        &config,
        format!(
            "metadata = {:?}\nlisten = [\"127.0.0.1:0\"]\nstreams = [\"stable\"]\narchitectures = [\"x86_64\"]\nmax_connections = 1000\nheader_read_timeout_secs = 60\n",
            meta.display().to_string()
        ),
    )
    .unwrap();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 48 && exec \"$0\" graph serve --config {}",
            config.display()
        ))
        .arg(env!("CARGO_BIN_EXE_oxcore"))
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(tmp.path().join("log")).unwrap())
        .spawn()
        .unwrap();
    let addr = test_support::listening_addr(&mut child);
    let server = Server {
        child,
        addr,
        log: tmp.path().join("log"),
    };
    // 80 connections: the server runs out of descriptors (48) on the way.
    let held: Vec<TcpStream> = (0..80)
        .map(|_| TcpStream::connect(&server.addr).unwrap())
        .collect();
    std::thread::sleep(std::time::Duration::from_secs(3));
    let log = std::fs::read_to_string(&server.log).unwrap();
    assert!(
        log.contains("accepting a connection failed; pausing"),
        "{log}"
    );
    drop(held);
    // Served again (the backlog drains first; retry for a while).
    let mut metrics = String::new();
    for _ in 0..100 {
        if let Ok(mut s) = TcpStream::connect(&server.addr) {
            let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(5)));
            let _ = write!(
                s,
                "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            );
            let mut raw = String::new();
            if s.read_to_string(&mut raw).is_ok() && raw.starts_with("HTTP/1.1 200") {
                metrics = raw;
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let errors: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("oxcore_graph_accept_errors_total "))
        .unwrap_or_else(|| panic!("not served again: {metrics:?}"))
        .parse()
        .unwrap();
    // Paused 10 ms doubling to 1 s over ~3 s: a dozen failures. A loop
    // retrying at once fails hundreds of thousands of times.
    assert!((1..1000).contains(&errors), "{errors} failed accepts");
    // And a graph request works.
    assert_eq!(
        server.get("/v1/graph?basearch=x86_64&stream=stable", "").0,
        200
    );
    server.stop();
}
