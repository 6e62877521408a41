//! What oxcore's tests share, so each crate's tests need no copy:
//!
//! - [`skip`]: a test whose tool is missing says `SKIP: why` and passes
//!   locally, but fails under `OXCORE_STRICT` (set by `.ci/run`), so CI
//!   never goes green with a suite that did not run;
//! - [`Certs`]: a CA and certificates made by the `openssl` command;
//! - [`TlsServer`]: Python's HTTP server behind TLS, over a directory;
//! - [`RawServer`]: a TCP server on 127.0.0.1 whose answers the test
//!   writes byte by byte (hostile lengths, redirects, stalls), counting
//!   connections and recording requests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Whether CI asked that nothing be skipped.
pub fn strict() -> bool {
    std::env::var_os("OXCORE_STRICT").is_some_and(|v| !v.is_empty() && v != "0")
}

/// Skips the calling test, saying why; under `OXCORE_STRICT` the missing
/// tool is a failure instead.
#[track_caller]
pub fn skip(why: &str) {
    if strict() {
        panic!("OXCORE_STRICT: this test needs what is missing: {why}");
    }
    eprintln!("SKIP: {why}");
}

/// Whether `cmd ARGS` runs and succeeds; skips (see [`skip`]) when not.
#[track_caller]
pub fn have(cmd: &str, args: &[&str], what_for: &str) -> bool {
    let ok = Command::new(cmd)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        skip(&format!("`{cmd}` is not installed; {what_for}"));
    }
    ok
}

/// Whether this runs as root (loop devices, mounts, chown); skips when not.
#[track_caller]
pub fn root(what_for: &str) -> bool {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().next().map(str::to_string))
        })
        .unwrap_or_default();
    let ok = uid == "0";
    if !ok {
        skip(&format!("not root; {what_for}"));
    }
    ok
}

/// Set in the copy of a test that [`rerun_in_private_mount_namespace`]
/// started.
const PRIVATE_MOUNT_NS: &str = "OXCORE_TEST_PRIVATE_MOUNT_NS";

/// Whether this process is the copy of a test that
/// [`rerun_in_private_mount_namespace`] started, with mounts of its own.
pub fn in_private_mount_namespace() -> bool {
    std::env::var_os(PRIVATE_MOUNT_NS).is_some()
}

/// Runs test `name` of the running test binary again, alone, in a child
/// process with a private mount namespace (`unshare --mount --propagation
/// private`), so it can mount over host paths (a tmpfs over `/run/udev`
/// beside a udev daemon the host runs) without the host seeing it. Panics
/// with the child's output when it fails or did not run exactly that one
/// test; skips (see [`skip`]) when `unshare` cannot make the namespace.
#[track_caller]
pub fn rerun_in_private_mount_namespace(name: &str) {
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--"])
        .arg(&exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(PRIVATE_MOUNT_NS, "1")
        .output();
    let out = match out {
        Ok(out) => out,
        Err(e) => {
            skip(&format!("{name}: `unshare` (util-linux) cannot run: {e}"));
            return;
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && stderr.contains("unshare failed") {
        skip(&format!(
            "{name}: no private mount namespace here: {stderr}"
        ));
        return;
    }
    assert!(
        out.status.success() && stdout.contains("test result: ok. 1 passed"),
        "{name}, run again in a private mount namespace, failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    // What the copy printed (a SKIP: line too) shows in this run's output.
    eprint!("{stderr}");
}

/// Runs a command in `dir`, panicking with its stderr on failure.
#[track_caller]
pub fn run_in(dir: &Path, args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Certificates in a temporary directory: `ca.pem`/`ca.key`, and per
/// server name `NAME.pem`/`NAME.key`.
pub struct Certs {
    /// Holds the files.
    pub dir: tempfile::TempDir,
}

impl Certs {
    /// A new CA (`/CN=<cn>`); `None` (after [`skip`]) without `openssl`.
    #[track_caller]
    pub fn new(cn: &str) -> Option<Certs> {
        if !have("openssl", &["version"], "certificates are made with it") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        run_in(
            dir.path(),
            &[
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN={cn}"),
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ],
        );
        Some(Certs { dir })
    }

    /// A certificate `name.pem` signed by the CA, valid for
    /// `subject_alt_names` (`IP:127.0.0.1`, `DNS:localhost`).
    pub fn issue(&self, name: &str, subject_alt_names: &[&str]) -> PathBuf {
        let d = self.dir.path();
        run_in(
            d,
            &[
                "openssl",
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=oxcore test server",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
            ],
        );
        std::fs::write(
            d.join(format!("{name}.ext")),
            format!("subjectAltName={}\n", subject_alt_names.join(",")),
        )
        .unwrap();
        run_in(
            d,
            &[
                "openssl",
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
                "-out",
                &format!("{name}.pem"),
            ],
        );
        d.join(format!("{name}.pem"))
    }

    /// A self-signed certificate that is also a CA (`CA:TRUE`), made to
    /// be used directly as a server's certificate for 127.0.0.1 and
    /// localhost: `name.pem`/`name.key`.
    pub fn self_signed_ca_server(&self, name: &str) -> PathBuf {
        let d = self.dir.path();
        run_in(
            d,
            &[
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1,DNS:localhost",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.pem"),
            ],
        );
        d.join(format!("{name}.pem"))
    }

    /// A file's path in the directory.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// A file's bytes.
    pub fn read(&self, file: &str) -> Vec<u8> {
        std::fs::read(self.path(file)).unwrap()
    }
}

const TLS_SERVER: &str = r#"
import http.server, ssl, sys, functools
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])
httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[2], sys.argv[3])
httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
print(httpd.server_address[1], flush=True)
httpd.serve_forever()
"#;

/// Python's threaded HTTP server behind TLS, serving a directory; stopped
/// when dropped.
pub struct TlsServer {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl TlsServer {
    /// Serves `www` with `cert`/`key` (PEM files); `None` (after
    /// [`skip`]) without python3.
    #[track_caller]
    pub fn start(www: &Path, cert: &Path, key: &Path) -> Option<TlsServer> {
        if !have("python3", &["--version"], "the TLS test server is Python's") {
            return None;
        }
        let mut child = Command::new("python3")
            .args(["-c", TLS_SERVER])
            .arg(www)
            .arg(cert)
            .arg(key)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().expect("server port");
        Some(TlsServer { child, port })
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request as [`RawServer`] received it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The request line (`GET /x HTTP/1.1`).
    pub line: String,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Which connection (0, 1, …) it came on.
    pub connection: usize,
    /// The head as sent (request line and header lines, CRLFs kept).
    pub head: String,
    /// The body (by `Content-Length`).
    pub body: Vec<u8>,
}

impl Seen {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The request target (`/x?y`).
    pub fn target(&self) -> &str {
        self.line.split_whitespace().nth(1).unwrap_or("")
    }
}

/// What the handler answers: bytes to write, and whether to keep the
/// connection for another request.
pub struct Reply {
    /// Written as is.
    pub bytes: Vec<u8>,
    /// Read another request on the same connection.
    pub keep_alive: bool,
}

impl Reply {
    /// `200 OK` with `body` and its length, keeping the connection.
    pub fn ok(body: &[u8]) -> Reply {
        let mut bytes =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        bytes.extend_from_slice(body);
        Reply {
            bytes,
            keep_alive: true,
        }
    }

    /// A status line and headers (no body), closing the connection.
    pub fn head(status: &str, headers: &[(&str, &str)]) -> Reply {
        let mut s = format!("HTTP/1.1 {status}\r\n");
        for (k, v) in headers {
            s.push_str(&format!("{k}: {v}\r\n"));
        }
        s.push_str("Content-Length: 0\r\n\r\n");
        Reply {
            bytes: s.into_bytes(),
            keep_alive: true,
        }
    }

    /// Raw bytes, then close.
    pub fn raw(bytes: impl Into<Vec<u8>>) -> Reply {
        Reply {
            bytes: bytes.into(),
            keep_alive: false,
        }
    }
}

type Handler = dyn Fn(&Seen) -> Reply + Send + Sync;

/// A TCP server on 127.0.0.1 answering with what the test writes.
pub struct RawServer {
    /// Its port.
    pub port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    connections: Arc<AtomicUsize>,
}

impl RawServer {
    /// Starts serving with `handler` (threads live until the test ends).
    pub fn start(handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> RawServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let handler: Arc<Handler> = Arc::new(handler);
        let (s, c) = (seen.clone(), connections.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let id = c.fetch_add(1, Ordering::SeqCst);
                let (s, h) = (s.clone(), handler.clone());
                std::thread::spawn(move || serve_conn(conn, id, &s, &*h));
            }
        });
        RawServer {
            port,
            seen,
            connections,
        }
    }

    /// `http://127.0.0.1:PORT` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The requests so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

fn serve_conn(conn: TcpStream, id: usize, seen: &Mutex<Vec<Seen>>, handler: &Handler) {
    let mut w = conn.try_clone().unwrap();
    let mut r = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut head = line.clone();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            head.push_str(&h);
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let req = Seen {
            line: line.trim_end().to_string(),
            headers,
            connection: id,
            head,
            body,
        };
        seen.lock().unwrap().push(req.clone());
        let reply = handler(&req);
        if w.write_all(&reply.bytes).is_err() || !reply.keep_alive {
            return;
        }
    }
}

/// The address a server we started prints as its first line of output,
/// `listening on ADDR` (`oxcore graph serve`).
pub fn listening_addr(child: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().expect("stdout piped"))
        .read_line(&mut line)
        .unwrap();
    line.trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("no listening line: {line:?}"))
        .to_string()
}

/// A plain `GET` of `path` from `addr` (one connection, closed after):
/// (status, the head lower-cased, the body). `extra` is more header lines,
/// each ending in CRLF.
pub fn http_get(addr: &str, path: &str, extra: &str) -> (u16, String, String) {
    http_request(addr, "GET", path, extra, "")
}

/// One request on its own connection, closed after: (status, the head
/// lower-cased, the body). `extra` is more header lines, each ending in
/// CRLF; a body gets its `Content-Length`. A server may answer and close
/// before it has read an oversized body: the failed write is ignored and
/// the answer read; what arrived before a reset counts. Panics when no
/// status line came within 60 s.
pub fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    extra: &str,
    body: &str,
) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    let length = if body.is_empty() {
        String::new()
    } else {
        format!("Content-Length: {}\r\n", body.len())
    };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{length}{extra}\r\n{body}"
    );
    let _ = s.write_all(request.as_bytes());
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, head.to_lowercase(), body.to_string())
}
