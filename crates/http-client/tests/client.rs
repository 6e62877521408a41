//! The client against real servers on 127.0.0.1: raw ones that misbehave on
//! demand (hostile lengths, redirects anywhere), and Python's TLS server
//! with `openssl`-made certificates.

use std::time::Duration;

use http_client::{Client, Error, Request};
use test_support::{Certs, RawServer, Reply, TlsServer};

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

#[test]
fn requests_to_one_server_share_a_kept_alive_connection() {
    let s = RawServer::start(|_| Reply::ok(b"hello"));
    let c = client();
    for _ in 0..20 {
        let r = c.get(&s.url("/x")).unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.read_to_vec(100).unwrap(), b"hello");
    }
    assert_eq!(s.seen().len(), 20);
    assert_eq!(s.connections(), 1, "every request opened a connection");
}

#[test]
fn a_claimed_length_is_not_an_allocation_and_bodies_are_bounded() {
    // 1 TiB announced, 10 bytes sent.
    let s = RawServer::start(|_| {
        Reply::raw(&b"HTTP/1.1 200 OK\r\nContent-Length: 1099511627776\r\n\r\n0123456789"[..])
    });
    match client().get(&s.url("/big")).unwrap().read_to_vec(1 << 20) {
        Err(Error::TooLarge { limit, .. }) => assert_eq!(limit, 1 << 20),
        other => panic!("{other:?}"),
    }
    // An endless chunked body.
    let s = RawServer::start(|_| {
        let mut b = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..2000 {
            b.extend_from_slice(b"400\r\n");
            b.extend_from_slice(&[b'a'; 0x400]);
            b.extend_from_slice(b"\r\n");
        }
        Reply::raw(b)
    });
    match client()
        .get(&s.url("/endless"))
        .unwrap()
        .read_to_vec(100_000)
    {
        Err(Error::TooLarge { .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn credentials_stay_with_their_host_across_redirects() {
    let b = RawServer::start(|_| Reply::ok(b"landed"));
    let target = format!("http://localhost:{}/landing", b.port);
    let a = RawServer::start(move |_| Reply::head("302 Found", &[("Location", &target)]));
    let req = Request::get(&a.url("/start"))
        .header("Authorization", "Bearer secret-token")
        .header("X-Amz-Security-Token", "session")
        .header("Cookie", "c=1")
        .header("X-Custom", "kept");
    let r = client().send(&req).unwrap();
    assert_eq!(r.read_to_vec(100).unwrap(), b"landed");
    let at_a = &a.seen()[0];
    assert_eq!(at_a.header("authorization"), Some("Bearer secret-token"));
    let at_b = &b.seen()[0];
    assert_eq!(at_b.target(), "/landing");
    assert_eq!(at_b.header("authorization"), None, "{at_b:?}");
    assert_eq!(at_b.header("x-amz-security-token"), None);
    assert_eq!(at_b.header("cookie"), None);
    assert_eq!(at_b.header("x-custom"), Some("kept"), "as Go keeps it");
    // Ignition's fetcher drops every header on a redirect.
    let r = client()
        .send(&req.clone().drop_headers_on_redirect())
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(b.seen()[1].header("x-custom"), None);
}

#[test]
fn locations_resolve_as_rfc_3986_says_and_only_to_http() {
    let b = RawServer::start(|_| Reply::ok(b"b"));
    let other = format!("//localhost:{}/scheme-relative", b.port);
    let a = RawServer::start(move |req| match req.target() {
        "/dir/start" => Reply::head("301 Moved", &[("Location", "next?q=1")]),
        "/dir/next?q=1" => Reply::head("307 Again", &[("Location", "../up")]),
        "/up" => Reply::head("302 Found", &[("Location", &other)]),
        "/file" => Reply::head("302 Found", &[("Location", "file:///etc/passwd")]),
        "/tftp" => Reply::head("302 Found", &[("Location", "tftp://127.0.0.1/x")]),
        t if t.starts_with("/loop") => Reply::head("302 Found", &[("Location", "/loop")]),
        _ => Reply::ok(b"?"),
    });
    let c = client();
    let r = c.get(&a.url("/dir/start")).unwrap();
    assert_eq!(r.read_to_vec(10).unwrap(), b"b");
    let targets: Vec<String> = a.seen().iter().map(|s| s.target().to_string()).collect();
    assert_eq!(targets, ["/dir/start", "/dir/next?q=1", "/up"]);
    assert_eq!(b.seen()[0].target(), "/scheme-relative");
    for path in ["/file", "/tftp"] {
        match c.get(&a.url(path)) {
            Err(e @ Error::Redirect { .. }) => {
                assert!(e.to_string().contains("refusing to follow"), "{e}")
            }
            other => panic!("{path}: {other:?}"),
        }
    }
    let before = a.seen().len();
    match c.get(&a.url("/loop")) {
        Err(e @ Error::Redirect { .. }) => assert!(e.to_string().contains("10 redirects")),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        a.seen().len() - before,
        11,
        "the first request and 10 redirects"
    );
}

#[test]
fn headers_with_line_breaks_are_refused_before_sending() {
    let s = RawServer::start(|_| Reply::ok(b""));
    let req = Request::get(&s.url("/")).header("X-Evil", "a\r\nInjected: yes");
    match client().send(&req) {
        Err(e @ Error::Header { .. }) => assert!(e.to_string().contains("X-Evil"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert!(s.seen().is_empty());
}

#[test]
fn a_self_signed_ca_certificate_as_the_servers_is_trusted_only_when_configured() {
    let Some(certs) = Certs::new("unused CA") else {
        return;
    };
    let cert = certs.self_signed_ca_server("leaf");
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("f"), b"over tls").unwrap();
    let Some(server) = TlsServer::start(www.path(), &cert, &certs.path("leaf.key")) else {
        return;
    };
    let url = format!("https://127.0.0.1:{}/f", server.port);
    let trusting = Client::builder()
        .trust_pem(certs.read("leaf.pem"))
        .build()
        .unwrap();
    let r = trusting.get(&url).unwrap();
    assert_eq!(r.read_to_vec(100).unwrap(), b"over tls");
    // The same name through localhost.
    let r = trusting
        .get(&format!("https://localhost:{}/f", server.port))
        .unwrap();
    assert_eq!(r.status(), 200);
    // Not trusted: refused as a certificate error, at once.
    match client().get(&url) {
        Err(e) => assert!(e.is_certificate(), "{e}"),
        Ok(r) => panic!("accepted an untrusted certificate: {}", r.status()),
    }
}

#[test]
fn a_ca_signed_server_certificate_checks_its_name() {
    let Some(certs) = Certs::new("test CA") else {
        return;
    };
    // Valid for localhost only.
    let cert = certs.issue("server", &["DNS:localhost"]);
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("f"), b"x").unwrap();
    let Some(server) = TlsServer::start(www.path(), &cert, &certs.path("server.key")) else {
        return;
    };
    let c = Client::builder()
        .trust_pem(certs.read("ca.pem"))
        .build()
        .unwrap();
    assert_eq!(
        c.get(&format!("https://localhost:{}/f", server.port))
            .unwrap()
            .status(),
        200
    );
    match c.get(&format!("https://127.0.0.1:{}/f", server.port)) {
        Err(e) => assert!(e.is_certificate(), "{e}"),
        Ok(_) => panic!("a certificate for localhost was accepted for 127.0.0.1"),
    }
}

#[test]
fn a_server_that_never_answers_times_out() {
    let s = RawServer::start(|_| {
        std::thread::sleep(Duration::from_secs(30));
        Reply::ok(b"late")
    });
    let req = Request::get(&s.url("/")).timeout(Duration::from_millis(300));
    match client().send(&req) {
        Err(e @ Error::Timeout { .. }) => assert!(e.is_transient()),
        other => panic!("{other:?}"),
    }
}
