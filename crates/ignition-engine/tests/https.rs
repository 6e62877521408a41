//! `https://` resources from a real TLS server on 127.0.0.1 (Python's
//! `http.server` wrapped in its `ssl` module), with a CA and server
//! certificate made by the `openssl` command for each test. Without
//! python3 or openssl the tests print SKIP and pass (fail under OXCORE_STRICT).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use ignition_config::types::{Proxy, Resource, Timeouts, Verification};
use ignition_engine::resource::Fetcher;

/// A CA, a server certificate for 127.0.0.1 signed by it, and an HTTPS
/// server over a directory (test-support's); stopped on drop.
struct Tls {
    certs: test_support::Certs,
    www: tempfile::TempDir,
    _server: test_support::TlsServer,
    port: u16,
}

fn tls() -> Option<Tls> {
    let certs = test_support::Certs::new("oxcore test CA")?;
    let cert = certs.issue("server", &["IP:127.0.0.1"]);
    let www = tempfile::tempdir().unwrap();
    let server = test_support::TlsServer::start(www.path(), &cert, &certs.path("server.key"))?;
    let port = server.port;
    Some(Tls {
        certs,
        www,
        _server: server,
        port,
    })
}

impl Tls {
    fn put(&self, name: &str, data: &[u8]) {
        std::fs::write(self.www.path().join(name), data).unwrap();
    }
    fn ca_resource(&self) -> Resource {
        let pem = String::from_utf8(self.certs.read("ca.pem")).unwrap();
        Resource {
            source: Some(format!(
                "data:,{}",
                pem.replace('\n', "%0A").replace(' ', "%20")
            )),
            ..Resource::default()
        }
    }
}

fn quick() -> Timeouts {
    Timeouts {
        http_response_headers: Some(5),
        http_total: Some(2),
    }
}

/// A fetcher with quick timeouts trusting `cas` besides the system's.
fn trusting(cas: Vec<Resource>) -> Fetcher {
    Fetcher {
        timeouts: quick(),
        certificate_authorities: cas,
        ..Fetcher::default()
    }
}

/// A resource with only a source.
fn source(url: String) -> Resource {
    Resource {
        source: Some(url),
        ..Resource::default()
    }
}

fn sha512(data: &[u8]) -> String {
    use sha2::Digest;
    let h = sha2::Sha512::digest(data);
    format!(
        "sha512-{}",
        h.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

#[test]
fn trusts_the_configs_certificate_authorities() {
    let Some(t) = tls() else {
        return;
    };
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    t.put("blob", &data);
    let url = format!("https://127.0.0.1:{}/blob", t.port);
    let resource = Resource {
        source: Some(url.clone()),
        verification: Verification {
            hash: Some(sha512(&data)),
        },
        ..Resource::default()
    };
    let with_ca = trusting(vec![t.ca_resource()]);
    let got = with_ca.fetch(&resource).unwrap().unwrap();
    assert!(got == data, "contents differ");

    // Without the CA the server is not trusted, and the error says so.
    let without = trusting(Vec::new());
    let err = without.fetch(&resource).unwrap_err().to_string();
    eprintln!("untrusted: {err}");
    assert!(err.contains(&url), "{err}");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
}

#[test]
fn checks_the_servers_name() {
    let Some(t) = tls() else {
        return;
    };
    t.put("f", b"x");
    // The certificate is for 127.0.0.1, not for "localhost".
    let f = trusting(vec![t.ca_resource()]);
    let ok = f.fetch(&source(format!("https://127.0.0.1:{}/f", t.port)));
    assert_eq!(ok.unwrap().unwrap(), b"x");
    let err = f
        .fetch(&source(format!("https://localhost:{}/f", t.port)))
        .unwrap_err()
        .to_string();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
}

#[test]
fn a_bad_certificate_authority_is_named() {
    let Some(t) = tls() else {
        return;
    };
    let f = trusting(vec![source("data:,not%20a%20certificate".into())]);
    let err = f
        .fetch(&source(format!("https://127.0.0.1:{}/f", t.port)))
        .unwrap_err()
        .to_string();
    assert!(err.contains("certificate authority 0"), "{err}");
    // A CA whose hash does not match is refused before it is trusted.
    let mut ca = t.ca_resource();
    ca.verification.hash = Some(sha512(b"something else"));
    let f = trusting(vec![ca]);
    let err = f
        .fetch(&source(format!("https://127.0.0.1:{}/f", t.port)))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("certificateAuthorities.0") && err.contains("hash"),
        "{err}"
    );
}

/// `httpsProxy` is reached with `CONNECT`, and TLS runs through the
/// tunnel end to end. The proxy is a small CONNECT relay in this test.
#[test]
fn https_goes_through_the_proxy_with_connect() {
    let Some(t) = tls() else {
        return;
    };
    t.put("via-proxy", b"tunnelled");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { continue };
            let mut reader = BufReader::new(client.try_clone().unwrap());
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            let target = head.split_whitespace().nth(1).unwrap_or("").to_string();
            seen2.lock().unwrap().push(head);
            let Ok(mut upstream) = TcpStream::connect(&target) else {
                let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n");
                continue;
            };
            client
                .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .unwrap();
            let mut up2 = upstream.try_clone().unwrap();
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut reader, &mut up2);
            });
            let mut buf = [0u8; 8192];
            while let Ok(n) = upstream.read(&mut buf) {
                if n == 0 || client.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    });
    let f = Fetcher {
        proxy: Proxy {
            https_proxy: Some(proxy_url),
            ..Proxy::default()
        },
        ..trusting(vec![t.ca_resource()])
    };
    let got = f
        .fetch(&source(format!("https://127.0.0.1:{}/via-proxy", t.port)))
        .unwrap()
        .unwrap();
    assert_eq!(got, b"tunnelled");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(
        seen[0].starts_with(&format!("CONNECT 127.0.0.1:{} HTTP/1.1\r\n", t.port)),
        "{seen:?}"
    );
}
