//! Lock + unlock round trips per second, and their latency, on loopback:
//! oxcore with the embedded store, oxcore on a real etcd, and airlock on
//! the same etcd when `$AIRLOCK` names its binary (built elsewhere; not
//! part of this repository). Each of `CLIENTS` (default 64) clients keeps
//! one connection and does pre-reboot then steady-state with its own id,
//! in a group with a slot for each, for `SECONDS` (default 5) per server.
//!
//! Run: `AIRLOCK=/path/to/airlock cargo bench -p fleetlock --bench roundtrip`

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One keep-alive connection.
struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    fn open(addr: SocketAddr) -> Conn {
        let s = TcpStream::connect(addr).unwrap();
        s.set_nodelay(true).unwrap();
        Conn {
            writer: s.try_clone().unwrap(),
            reader: BufReader::new(s),
        }
    }

    /// POSTs `body` to `path`; the status.
    fn post(&mut self, path: &str, body: &str) -> u16 {
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: b\r\nfleet-lock-protocol: true\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.writer.write_all(req.as_bytes()).unwrap();
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut length = 0usize;
        loop {
            line.clear();
            self.reader.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; length];
        self.reader.read_exact(&mut body).unwrap();
        status
    }
}

struct Figures {
    pairs_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: usize,
}

fn load(addr: SocketAddr, clients: usize, seconds: u64) -> Figures {
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            std::thread::spawn(move || {
                let mut conn = Conn::open(addr);
                let body =
                    format!("{{\"client_params\":{{\"id\":\"client-{c}\",\"group\":\"bench\"}}}}");
                let mut times = Vec::new();
                let mut errors = 0;
                while Instant::now() < end {
                    let t = Instant::now();
                    let a = conn.post("/v1/pre-reboot", &body);
                    let b = conn.post("/v1/steady-state", &body);
                    if a == 200 && b == 200 {
                        times.push(t.elapsed());
                    } else {
                        errors += 1;
                    }
                }
                (times, errors)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for t in threads {
        let (times, e) = t.join().unwrap();
        all.extend(times);
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    Figures {
        pairs_per_sec: all.len() as f64 / elapsed,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        errors,
    }
}

fn report(name: &str, f: &Figures) {
    println!(
        "{name:<32} {:>10.0} pairs/s   p50 {:>7.2} ms   p99 {:>7.2} ms   errors {}",
        f.pairs_per_sec, f.p50_ms, f.p99_ms, f.errors
    );
}

/// A config for a server on `port`, with a `bench` group of `slots`.
fn config(port: u16, backend: &str, slots: usize) -> String {
    format!(
        "[service]\naddress = \"127.0.0.1\"\nport = {port}\ntls = false\n{backend}\n[lock]\ndefault_slots = 1\n[[lock.groups]]\nname = \"bench\"\nslots = {slots}\n"
    )
}

fn wait_listening(port: u16) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "nothing listens on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let clients = env("CLIENTS", 64) as usize;
    let seconds = env("SECONDS", 5);
    let tmp = tempfile::tempdir_in(if Path::new("/dev/shm").is_dir() {
        "/dev/shm"
    } else {
        "/tmp"
    })
    .unwrap();
    println!(
        "{clients} clients, {seconds} s per server, on 127.0.0.1; a pair is pre-reboot + steady-state"
    );

    // oxcore, embedded store.
    let port = free_port();
    let text = config(
        port,
        &format!(
            "[embedded]\npath = \"{}\"",
            tmp.path().join("fl.redb").display()
        ),
        clients,
    );
    let srv = fleetlock::start(
        fleetlock::Config::parse(&text, Path::new("bench.toml")).unwrap(),
        false,
    )
    .unwrap();
    let embedded = load(srv.service, clients, seconds);
    report("oxcore, embedded (tmpfs)", &embedded);
    srv.stop().unwrap();

    // A real etcd.
    if !Path::new("/usr/bin/etcd").exists() {
        println!("SKIP etcd: /usr/bin/etcd is not installed (Debian package etcd-server)");
        return;
    }
    let (cport, pport) = (free_port(), free_port());
    let client_url = format!("http://127.0.0.1:{cport}");
    let peer_url = format!("http://127.0.0.1:{pport}");
    let _etcd = Killed(
        Command::new("/usr/bin/etcd")
            .args(["--name", "b", "--data-dir"])
            .arg(tmp.path().join("etcd"))
            .args([
                "--listen-client-urls",
                &client_url,
                "--advertise-client-urls",
                &client_url,
            ])
            .args([
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
            ])
            .args(["--initial-cluster", &format!("b={peer_url}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_listening(cport);
    std::thread::sleep(Duration::from_secs(2));
    let etcd3 = format!("[etcd3]\nendpoints = [\"{client_url}\"]");
    let port = free_port();
    let srv = fleetlock::start(
        fleetlock::Config::parse(&config(port, &etcd3, clients), Path::new("bench.toml")).unwrap(),
        false,
    )
    .unwrap();
    let ours = load(srv.service, clients, seconds);
    report("oxcore, etcd (tmpfs)", &ours);
    srv.stop().unwrap();

    let Some(airlock) = std::env::var_os("AIRLOCK") else {
        println!("SKIP airlock: set AIRLOCK to an airlock binary to run it beside");
        return;
    };
    let port = free_port();
    let cfg = tmp.path().join("airlock.toml");
    std::fs::write(&cfg, config(port, &etcd3, clients)).unwrap();
    let _a = Killed(
        Command::new(airlock)
            .args(["serve", "-c"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_listening(port);
    let theirs = load(
        format!("127.0.0.1:{port}").parse().unwrap(),
        clients,
        seconds,
    );
    report("airlock, etcd (tmpfs)", &theirs);
    if theirs.pairs_per_sec > 0.0 {
        println!(
            "ratio oxcore/airlock on etcd: {:.1}x pairs/s; embedded/airlock: {:.1}x",
            ours.pairs_per_sec / theirs.pairs_per_sec,
            embedded.pairs_per_sec / theirs.pairs_per_sec
        );
    }
}
