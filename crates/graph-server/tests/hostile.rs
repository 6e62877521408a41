//! The server under hostile clients, on 127.0.0.1: half-sent and idle
//! connections are closed, connections beyond the cap wait, oversized
//! queries are refused, and stopping writes the statistics.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use graph_server::{DirSource, Running, Settings};

fn metadata(dir: &Path) {
    std::fs::create_dir_all(dir.join("prod/streams/stable")).unwrap();
    std::fs::create_dir_all(dir.join("updates")).unwrap();
    std::fs::write(
        dir.join("prod/streams/stable/releases.json"),
        r#"{"stream":"stable","releases":[
            {"version":"41.1","commits":[{"architecture":"x86_64","checksum":"aa"}],"metadata":""},
            {"version":"41.2","commits":[{"architecture":"x86_64","checksum":"bb"}],"metadata":""}]}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("updates/stable.json"),
        r#"{"stream":"stable","releases":[{"version":"41.2","metadata":{"barrier":{"reason":"r"}}}]}"#,
    )
    .unwrap();
}

fn server(dir: &Path, extra: &str) -> Running {
    metadata(&dir.join("meta"));
    let settings = Settings::from_toml(&format!(
        "metadata = {:?}\nlisten = [\"127.0.0.1:0\"]\nstreams = [\"stable\"]\narchitectures = [\"x86_64\"]\n{extra}",
        dir.join("meta").display().to_string()
    ))
    .unwrap();
    let source = Arc::new(DirSource(dir.join("meta")));
    graph_server::start(settings, source, Some(1_800_000_000), false).unwrap()
}

/// Reads until the server closes the connection; `None` if it has not
/// within `wait`.
fn closed_within(s: &mut TcpStream, wait: Duration) -> Option<Vec<u8>> {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Some(got),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return None;
            }
            Err(e) => panic!("{e}"),
        }
    }
}

fn get(addr: &std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    // One write, and its error ignored: a server refusing an oversized
    // head answers and closes before it has read the rest (the write then
    // fails with EPIPE), and the answer is still there to read.
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let _ = s.write_all(request.as_bytes());
    let raw = closed_within(&mut s, Duration::from_secs(60)).expect("an answer");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn half_sent_and_idle_connections_are_closed() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = server(tmp.path(), "header_read_timeout_secs = 1");
    let addr = srv.addrs[0];
    // Slowloris: a request head that never ends.
    let mut half = TcpStream::connect(addr).unwrap();
    half.write_all(b"GET /v1/graph?basearch=x86_64&stream=stable HTTP/1.1\r\nHost: x\r\nX-a: ")
        .unwrap();
    // A connection that sends nothing.
    let mut silent = TcpStream::connect(addr).unwrap();
    // A kept-alive connection after its answer.
    let mut kept = TcpStream::connect(addr).unwrap();
    kept.write_all(b"GET /v1/graph?basearch=x86_64&stream=stable HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 12];
    kept.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    for (name, s) in [
        ("half-sent", &mut half),
        ("silent", &mut silent),
        ("kept-alive", &mut kept),
    ] {
        // Closed after about a second; a minute means never.
        assert!(
            closed_within(s, Duration::from_secs(60)).is_some(),
            "the {name} connection is still open"
        );
    }
    // The server still answers.
    assert_eq!(get(&addr, "/v1/graph?basearch=x86_64&stream=stable").0, 200);
    srv.stop().unwrap();
}

#[test]
fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = server(tmp.path(), "max_connections = 2");
    let addr = srv.addrs[0];
    let holders: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
    // Let the server take both.
    std::thread::sleep(Duration::from_millis(300));
    let mut third = TcpStream::connect(addr).unwrap();
    third
        .write_all(b"GET /v1/graph?basearch=x86_64&stream=stable HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert!(
        closed_within(&mut third, Duration::from_secs(1)).is_none(),
        "a third connection was served with two open and max_connections = 2"
    );
    drop(holders);
    let answer =
        closed_within(&mut third, Duration::from_secs(60)).expect("served once a slot is free");
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    srv.stop().unwrap();
}

#[test]
fn oversized_queries_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = server(tmp.path(), "");
    let addr = srv.addrs[0];
    // 12,000 parameters in 56 KB: beyond the 32 KiB head.
    let attack: String = (0..12_000).map(|i| format!("p{i}=&")).collect();
    assert!(attack.len() > 56_000);
    let (status, _) = get(
        &addr,
        &format!("/v1/graph?basearch=x86_64&stream=stable&{attack}"),
    );
    assert_eq!(status, 431);
    // Within the head, more parameters than a client sends.
    let (status, body) = get(
        &addr,
        &format!(
            "/v1/graph?basearch=x86_64&stream=stable&{}",
            "a=&".repeat(8000)
        ),
    );
    assert_eq!(status, 400);
    assert!(body.contains("too_many_parameters"), "{body}");
    // What Zincati sends still works.
    let (status, body) = get(
        &addr,
        "/v1/graph?basearch=x86_64&stream=stable&os_version=41.1&os_checksum=aa&group=default&node_uuid=0123456789abcdef0123456789abcdef&platform=qemu&rollout_wariness=0.500000",
    );
    assert_eq!(status, 200);
    assert!(body.contains("\"edges\":[[0,1]]"), "{body}");
    srv.stop().unwrap();
}

#[test]
fn stopping_writes_the_statistics() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("stats.redb");
    let srv = server(
        tmp.path(),
        &format!("stats_db = {:?}", db.display().to_string()),
    );
    let addr = srv.addrs[0];
    for (uuid, version) in [("01", "41.1"), ("02", "41.2"), ("03", "60KB")] {
        let version = if version == "60KB" {
            "9".repeat(60_000 / 8)
        } else {
            version.to_string()
        };
        let (status, _) = get(
            &addr,
            &format!(
                "/v1/graph?basearch=x86_64&stream=stable&node_uuid={uuid}&os_version={version}&platform=metal"
            ),
        );
        assert_eq!(status, 200);
    }
    // Stopped before the periodic write.
    srv.stop().unwrap();
    let srv = server(
        tmp.path(),
        &format!("stats_db = {:?}", db.display().to_string()),
    );
    let (_, body) = get(&srv.addrs[0], "/v1/stats");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let week = &v["weeks"][0];
    assert_eq!(week["nodes"], 3, "{v}");
    assert_eq!(
        week["by_version"]["stable"],
        serde_json::json!({"41.1": 1, "41.2": 1, "other": 1})
    );
    srv.stop().unwrap();
    assert!(std::fs::metadata(&db).unwrap().len() < 1 << 20);
}
