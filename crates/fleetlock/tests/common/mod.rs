//! What the FleetLock tests share: a server on 127.0.0.1, raw HTTP
//! requests as Zincati sends them, and a real etcd.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fleetlock::{Config, Running};

/// Starts a server from config text (service and status on random
/// loopback ports).
pub fn server(config: &str) -> Running {
    let text = format!(
        "[service]\naddress = \"127.0.0.1\"\nport = 0\ntls = false\n[status]\nenabled = true\naddress = \"127.0.0.1\"\nport = 0\n{config}"
    );
    let c = Config::parse(&text, Path::new("test.toml")).unwrap();
    fleetlock::start(c, false).unwrap()
}

/// One request; `(status, body)`.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    header: bool,
    body: &str,
) -> (u16, String) {
    let h = if header {
        "fleet-lock-protocol: true\r\n"
    } else {
        ""
    };
    let (status, _, body) = test_support::http_request(&addr.to_string(), method, path, h, body);
    (status, body)
}

/// The body Zincati sends (pretty-printed, id first).
pub fn zincati_body(group: &str, id: &str) -> String {
    format!(
        "{{\n  \"client_params\": {{\n    \"id\": \"{id}\",\n    \"group\": \"{group}\"\n  }}\n}}"
    )
}

/// `POST /v1/pre-reboot` as Zincati sends it.
pub fn lock(addr: SocketAddr, group: &str, id: &str) -> (u16, String) {
    request(
        addr,
        "POST",
        "/v1/pre-reboot",
        true,
        &zincati_body(group, id),
    )
}

/// `POST /v1/steady-state` as Zincati sends it.
pub fn unlock(addr: SocketAddr, group: &str, id: &str) -> (u16, String) {
    request(
        addr,
        "POST",
        "/v1/steady-state",
        true,
        &zincati_body(group, id),
    )
}

/// The holders of `group` as the server's status shows them.
pub fn holders(status: SocketAddr, group: &str) -> (u64, Vec<String>) {
    let (code, body) = request(status, "GET", "/v1/status", false, "");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let g = &v["groups"][group];
    let ids = g["holders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_str().unwrap().to_string())
        .collect();
    (g["slots"].as_u64().unwrap(), ids)
}

/// A free port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A real etcd (Debian's `etcd-server`) on random loopback ports with a
/// temporary data directory; killed when dropped.
pub struct Etcd {
    child: Option<Child>,
    pub dir: PathBuf,
    pub client_port: u16,
    peer_port: u16,
    /// With TLS: the CA, etcd's certificate and key; clients must show a
    /// certificate of the same CA.
    tls: Option<(PathBuf, PathBuf, PathBuf)>,
    _tmp: Option<tempfile::TempDir>,
}

impl Etcd {
    /// Starts one, or skips (see `test_support::skip`) without `etcd`.
    pub fn start(test: &str) -> Option<Etcd> {
        Etcd::start_with(test, None)
    }

    /// Starts one speaking TLS with `(ca, cert, key)` and requiring client
    /// certificates of that CA.
    pub fn start_with(test: &str, tls: Option<(PathBuf, PathBuf, PathBuf)>) -> Option<Etcd> {
        if !Path::new("/usr/bin/etcd").exists() {
            test_support::skip(&format!("{test}: needs etcd (Debian package etcd-server)"));
            return None;
        }
        let tmp = tempfile::tempdir().unwrap();
        let mut e = Etcd {
            child: None,
            dir: tmp.path().join("data"),
            client_port: free_port(),
            peer_port: free_port(),
            tls,
            _tmp: Some(tmp),
        };
        e.run();
        Some(e)
    }

    /// The client URL.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// Starts (again) on the same ports and data.
    pub fn run(&mut self) {
        let client = self.url();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let mut cmd = Command::new("/usr/bin/etcd");
        if let Some((ca, cert, key)) = &self.tls {
            cmd.arg("--cert-file")
                .arg(cert)
                .arg("--key-file")
                .arg(key)
                .arg("--trusted-ca-file")
                .arg(ca)
                .arg("--client-cert-auth");
        }
        let child = cmd
            .args(["--name", "t", "--data-dir"])
            .arg(&self.dir)
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &format!("t={peer}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let start = Instant::now();
        loop {
            if self.tls.is_some() {
                if TcpStream::connect(("127.0.0.1", self.client_port)).is_ok() {
                    std::thread::sleep(Duration::from_secs(2));
                    return;
                }
            } else if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.client_port)) {
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let _ =
                    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                let mut got = String::new();
                let _ = s.read_to_string(&mut got);
                if got.contains("\"health\":\"true\"") {
                    return;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "etcd did not become healthy"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills it (the data stays).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}
