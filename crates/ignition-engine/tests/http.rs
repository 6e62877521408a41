//! Remote resources over HTTP, from a real server on 127.0.0.1.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use ignition_config::types::{HttpHeader, Proxy, Resource, Timeouts};
use ignition_engine::http::{HttpError, get};
use ignition_engine::resource::{FetchError, Fetcher};

/// A server that answers from a routing function and counts requests.
struct Server {
    base: String,
    hits: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<String>>>,
}

fn serve(route: fn(&str, usize) -> String) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (h, s) = (hits.clone(), seen.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                request.push_str(&line);
            }
            let n = h.fetch_add(1, Ordering::SeqCst);
            let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
            s.lock().unwrap().push(request);
            let _ = stream.write_all(route(&path, n).as_bytes());
        }
    });
    Server { base, hits, seen }
}

fn ok(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn quick() -> Timeouts {
    Timeouts {
        http_response_headers: Some(5),
        http_total: Some(3),
    }
}

#[test]
fn bodies_redirects_and_headers() {
    let s = serve(|path, _| {
        match path {
        "/plain" => ok("hello"),
        "/chunked" => "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n".into(),
        "/moved" => "HTTP/1.1 302 Found\r\nLocation: /plain\r\nContent-Length: 0\r\n\r\n".into(),
        _ => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".into(),
    }
    });
    let headers = [HttpHeader {
        name: "X-Token".into(),
        value: Some("abc".into()),
    }];
    assert_eq!(
        get(
            &format!("{}/plain", s.base),
            &headers,
            &Proxy::default(),
            &quick()
        )
        .unwrap(),
        b"hello"
    );
    assert!(s.seen.lock().unwrap()[0].contains("X-Token: abc"));
    assert_eq!(
        get(
            &format!("{}/chunked", s.base),
            &[],
            &Proxy::default(),
            &quick()
        )
        .unwrap(),
        b"hello world"
    );
    assert_eq!(
        get(
            &format!("{}/moved", s.base),
            &[],
            &Proxy::default(),
            &quick()
        )
        .unwrap(),
        b"hello"
    );
    // 4xx is final: one request, no retry.
    let before = s.hits.load(Ordering::SeqCst);
    assert_eq!(
        get(
            &format!("{}/missing", s.base),
            &[],
            &Proxy::default(),
            &quick()
        ),
        Err(HttpError::Status(404))
    );
    assert_eq!(s.hits.load(Ordering::SeqCst), before + 1);
}

#[test]
fn server_errors_are_retried() {
    let s = serve(|_, n| {
        if n < 2 {
            "HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n".into()
        } else {
            ok("finally")
        }
    });
    assert_eq!(
        get(&format!("{}/x", s.base), &[], &Proxy::default(), &quick()).unwrap(),
        b"finally"
    );
    assert_eq!(s.hits.load(Ordering::SeqCst), 3);
}

#[test]
fn unreachable_servers_time_out_under_http_total() {
    // Nothing listens on this port once the listener is dropped.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let t = Timeouts {
        http_response_headers: Some(1),
        http_total: Some(1),
    };
    match get(
        &format!("http://127.0.0.1:{port}/"),
        &[],
        &Proxy::default(),
        &t,
    ) {
        Err(HttpError::TimedOut(last)) => assert!(last.contains("Connection refused"), "{last}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn proxies_get_the_absolute_url() {
    let proxy = serve(|path, _| {
        if path.starts_with("http://") {
            ok("via proxy")
        } else {
            ok("direct")
        }
    });
    let p = Proxy {
        http_proxy: Some(proxy.base.clone()),
        ..Proxy::default()
    };
    assert_eq!(
        get("http://origin.invalid/file", &[], &p, &quick()).unwrap(),
        b"via proxy"
    );
    assert!(proxy.seen.lock().unwrap()[0].starts_with("GET http://origin.invalid/file HTTP/1.1"));
}

#[test]
fn remote_contents_are_verified_before_use() {
    let s = serve(|_, _| ok("hi\n"));
    let f = Fetcher {
        timeouts: quick(),
        ..Fetcher::default()
    };
    let mut r = Resource {
        source: Some(format!("{}/f", s.base)),
        ..Resource::default()
    };
    r.verification.hash =
        Some("sha256-98ea6e4f216f2fb4b69fff9b3a44842c38686ca685f3f55dc48c5d3fb1107be4".into());
    assert_eq!(f.fetch(&r).unwrap().unwrap(), b"hi\n");
    r.verification.hash = Some(format!("sha256-{}", "1".repeat(64)));
    assert!(matches!(f.fetch(&r), Err(FetchError::HashMismatch { .. })));
    let offline = Fetcher {
        offline: true,
        ..Fetcher::default()
    };
    assert!(matches!(
        offline.fetch(&r),
        Err(FetchError::Unsupported { .. })
    ));
}

#[test]
fn fetch_offline_defers_to_fetch_for_a_remote_config() {
    use ignition_engine::stages::{self, Env, Fetched};
    let s = serve(|_, _| {
        ok(r#"{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/remote"}]}}"#)
    });
    let dir = tempfile::tempdir().unwrap();
    let mut e = Env::new(&dir.path().join("sysroot"), "metal");
    e.config_cache = dir.path().join("ignition.json");
    e.state_file = dir.path().join("state");
    e.neednet = dir.path().join("neednet");
    e.system_dirs = vec![];
    e.cmdline = dir.path().join("cmdline");
    std::fs::write(
        &e.cmdline,
        format!(
            "ignition.firstboot ignition.config.url={}/config.ign",
            s.base
        ),
    )
    .unwrap();
    assert_eq!(stages::fetch(&e, true).unwrap(), Fetched::NeedNet);
    assert!(e.neednet.exists());
    assert_eq!(stages::fetch(&e, false).unwrap(), Fetched::Cached);
    assert_eq!(
        stages::cached(&e).unwrap().storage.files[0].path,
        "/etc/remote"
    );
}

#[test]
fn ignition_headers_are_sent_and_none_follow_a_redirect() {
    let s = serve(|path, _| match path {
        "/moved" => "HTTP/1.1 302 Found\r\nLocation: /plain\r\nContent-Length: 0\r\n\r\n".into(),
        _ => ok("x"),
    });
    let headers = [HttpHeader {
        name: "X-Token".into(),
        value: Some("secret".into()),
    }];
    get(
        &format!("{}/moved", s.base),
        &headers,
        &Proxy::default(),
        &quick(),
    )
    .unwrap();
    let seen = s.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(
        seen[0]
            .contains("Accept: application/vnd.coreos.ignition+json;version=3.6.0, */*;q=0.1\r\n"),
        "{}",
        seen[0]
    );
    assert!(seen[0].contains("Accept-Encoding: identity\r\n"));
    assert!(seen[0].contains("X-Token: secret\r\n"));
    // As upstream's fetcher: a redirect carries none of them.
    assert!(!seen[1].contains("X-Token"), "{}", seen[1]);
}

#[test]
fn a_hostile_length_neither_aborts_nor_balloons_a_fetch() {
    let s =
        serve(|_, _| "HTTP/1.1 200 OK\r\nContent-Length: 1099511627776\r\n\r\nonly this".into());
    let f = Fetcher {
        timeouts: quick(),
        ..Fetcher::default()
    };
    let r = Resource {
        source: Some(format!("{}/huge", s.base)),
        ..Resource::default()
    };
    // Into memory: refused by its size.
    match f.fetch(&r) {
        Err(FetchError::Bad { reason, .. }) => {
            assert!(reason.contains("more than the"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // Streamed: the body breaks off after 9 bytes, which is an error, not
    // an allocation of a terabyte.
    let mut out = Vec::new();
    assert!(f.fetch_to(&r, &mut out).is_err());
    assert!(out.len() <= 9);
}

/// File contents are streamed into a temporary file and checked before the
/// path is touched: a large file is written whole, and one that fails its
/// hash leaves nothing (no file, no temporary file, no parent directory).
#[test]
fn remote_files_are_streamed_and_verified_before_the_path_is_touched() {
    use sha2::Digest;
    // 20 MB, chunked, from a server thread.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let block = vec![b'z'; 1 << 20];
    let sum = {
        let mut h = sha2::Sha512::new();
        for _ in 0..20 {
            h.update(&block);
        }
        h.finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut line = String::new();
            let mut r = BufReader::new(stream.try_clone().unwrap());
            while r.read_line(&mut line).unwrap_or(0) > 2 {
                line.clear();
            }
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
            for _ in 0..20 {
                let _ = stream.write_all(format!("{:x}\r\n", 1 << 20).as_bytes());
                let _ = stream.write_all(&vec![b'z'; 1 << 20]);
                let _ = stream.write_all(b"\r\n");
            }
            let _ = stream.write_all(b"0\r\n\r\n");
        }
    });
    let config = |hash: &str| {
        ignition_config::parse(
            format!(
                r#"{{"ignition":{{"version":"3.4.0"}},"storage":{{"files":[{{"path":"/new/dir/big","contents":{{"source":"{base}/big","verification":{{"hash":"sha512-{hash}"}}}}}}]}}}}"#
            )
            .as_bytes(),
        )
        .unwrap()
        .0
    };
    let root = tempfile::tempdir().unwrap();
    let f = Fetcher {
        timeouts: quick(),
        ..Fetcher::default()
    };
    let bad = config(&"0".repeat(128));
    assert!(ignition_engine::apply_with(&bad, root.path(), &f).is_err());
    let left: Vec<_> = std::fs::read_dir(root.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    ignition_engine::apply_with(&config(&sum), root.path(), &f).unwrap();
    let written = std::fs::metadata(root.path().join("new/dir/big")).unwrap();
    assert_eq!(written.len(), 20 << 20);
    let names: Vec<String> = std::fs::read_dir(root.path().join("new/dir"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["big"]);
}
