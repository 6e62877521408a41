//! `tftp://` resources from a real TFTP server (`in.tftpd` of Debian's
//! tftpd-hpa) on 127.0.0.1. Without it (or without root, which it needs
//! to change to its user) the tests print SKIP and pass.

use std::net::UdpSocket;
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ignition_config::types::{Resource, Verification};
use ignition_engine::resource::{FetchError, Fetcher};
use ignition_engine::tftp::{self, TftpError};

/// A tftpd serving a temporary directory, stopped on drop.
struct Tftpd {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Tftpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Tftpd {
    fn url(&self, path: &str) -> String {
        format!("tftp://127.0.0.1:{}/{path}", self.port)
    }

    fn put(&self, name: &str, data: &[u8]) {
        let path = self.dir.path().join(name);
        std::fs::write(&path, data).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
}

fn tftpd(test: &str) -> Option<Tftpd> {
    let binary = ["/usr/sbin/in.tftpd", "/sbin/in.tftpd"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let Some(binary) = binary else {
        test_support::skip(&format!(
            "{test}: needs in.tftpd (Debian package tftpd-hpa)"
        ));
        return None;
    };
    if !is_root() {
        test_support::skip(&format!("{test}: in.tftpd needs root"));
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // A free UDP port: bound, noted, released.
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(binary)
        .args(["--foreground", "--listen", "--secure", "--user", "nobody"])
        .arg("--address")
        .arg(format!("127.0.0.1:{port}"))
        .arg(dir.path())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let server = Tftpd { child, port, dir };
    // Ready once it answers.
    server.put("ready", b"ready");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match tftp::get(&server.url("ready"), Duration::from_millis(200)) {
            Ok(d) if d == b"ready" => return Some(server),
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            r => panic!("in.tftpd did not come up on port {port}: {r:?}"),
        }
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

/// Deterministic bytes of any length.
fn bytes(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

#[test]
fn fetches_files_of_every_block_shape() {
    let Some(server) = tftpd("fetches_files_of_every_block_shape") else {
        return;
    };
    // Empty, short, exactly one and three blocks (ending in an empty
    // block), and long enough that block numbers pass 255.
    for (i, n) in [0usize, 1, 511, 512, 1536, 1537, 200_000]
        .into_iter()
        .enumerate()
    {
        let data = bytes(n, i as u32 + 1);
        let name = format!("f{i}");
        server.put(&name, &data);
        let got = tftp::get(&server.url(&name), tftp::TIMEOUT).unwrap();
        assert_eq!(got.len(), n, "{name}");
        assert!(got == data, "{name}: contents differ");
    }
}

#[test]
fn resources_are_verified_and_decompressed() {
    let Some(server) = tftpd("resources_are_verified_and_decompressed") else {
        return;
    };
    use sha2::Digest;
    let data = bytes(70_000, 7);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &data).unwrap();
    server.put("config.gz", &gz.finish().unwrap());
    let hash = |d: &[u8]| {
        let h = sha2::Sha512::digest(d);
        format!(
            "sha512-{}",
            h.iter().map(|b| format!("{b:02x}")).collect::<String>()
        )
    };
    let resource = |hash: String| Resource {
        source: Some(server.url("config.gz")),
        compression: Some("gzip".into()),
        verification: Verification { hash: Some(hash) },
        ..Resource::default()
    };
    let online = Fetcher::default();
    let got = online.fetch(&resource(hash(&data))).unwrap().unwrap();
    assert!(got == data, "decompressed contents differ");

    // A wrong hash is refused, naming the URL.
    let err = online.fetch(&resource(hash(b"other"))).unwrap_err();
    assert!(matches!(err, FetchError::HashMismatch { .. }), "{err}");
    assert!(err.to_string().contains(&server.url("config.gz")), "{err}");

    // Offline, a tftp resource is left for the networked fetch stage.
    let offline = Fetcher {
        offline: true,
        ..Fetcher::default()
    };
    let err = offline.fetch(&resource(hash(&data))).unwrap_err();
    assert!(matches!(err, FetchError::Unsupported { .. }), "{err}");
}

#[test]
fn a_missing_file_is_the_servers_error() {
    let Some(server) = tftpd("a_missing_file_is_the_servers_error") else {
        return;
    };
    match tftp::get(&server.url("nothing-here"), tftp::TIMEOUT) {
        Err(TftpError::Server { code, message }) => {
            assert_eq!(code, 1, "{message}");
            assert!(!message.is_empty());
        }
        other => panic!("expected a server error, got {other:?}"),
    }
    let err = Fetcher::default()
        .fetch(&Resource {
            source: Some(server.url("nothing-here")),
            ..Resource::default()
        })
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("nothing-here") && err.contains("server error (1)"),
        "{err}"
    );
}

/// Lost packets are recovered by sending the last packet again, and a
/// packet from a stranger is refused with "unknown transfer ID" without
/// disturbing the transfer. A hand-driven server on 127.0.0.1 drops what
/// the test wants dropped.
#[test]
fn recovers_lost_packets_and_refuses_strangers() {
    let listen = UdpSocket::bind("127.0.0.1:0").unwrap();
    let url = format!("tftp://{}/lossy", listen.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        let mut buf = [0u8; 600];
        let recv = |s: &UdpSocket, buf: &mut [u8]| {
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let (n, from) = s.recv_from(buf).unwrap();
            (buf[..n].to_vec(), from)
        };
        // The first request is "lost": the client must send it again.
        let (rrq1, _) = recv(&listen, &mut buf);
        let (rrq2, client) = recv(&listen, &mut buf);
        assert_eq!(rrq1, rrq2);
        assert_eq!(&rrq1[..2], &[0, 1]);
        assert!(rrq1.ends_with(b"/lossy\0octet\0"), "{rrq1:?}");
        let tid = UdpSocket::bind("127.0.0.1:0").unwrap();
        let data = |block: u16, body: &[u8]| {
            let mut p = vec![0, 3];
            p.extend_from_slice(&block.to_be_bytes());
            p.extend_from_slice(body);
            p
        };
        // A stranger sends block 1 first: refused with error 5.
        let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
        tid.send_to(&data(1, &[b'a'; 512]), client).unwrap();
        let (ack1, _) = recv(&tid, &mut buf);
        assert_eq!(ack1, [0, 4, 0, 1]);
        stranger.send_to(&data(2, b"wrong"), client).unwrap();
        let (refusal, _) = recv(&stranger, &mut buf);
        assert_eq!(&refusal[..4], &[0, 5, 0, 5], "{refusal:?}");
        // ACK 1 is "lost": the client repeats it after its timeout.
        let (again, _) = recv(&tid, &mut buf);
        assert_eq!(again, [0, 4, 0, 1]);
        tid.send_to(&data(2, b"end"), client).unwrap();
        let (ack2, _) = recv(&tid, &mut buf);
        assert_eq!(ack2, [0, 4, 0, 2]);
    });
    let got = tftp::get(&url, Duration::from_millis(300)).unwrap();
    server.join().unwrap();
    let mut want = vec![b'a'; 512];
    want.extend_from_slice(b"end");
    assert_eq!(got, want);
}

#[test]
fn gives_up_after_five_sends() {
    let listen = UdpSocket::bind("127.0.0.1:0").unwrap();
    let url = format!("tftp://{}/silent", listen.local_addr().unwrap());
    let err = tftp::get(&url, Duration::from_millis(50)).unwrap_err();
    assert!(matches!(err, TftpError::Timeout(1)), "{err}");
    listen.set_nonblocking(true).unwrap();
    let mut requests = 0;
    let mut buf = [0u8; 100];
    while listen.recv_from(&mut buf).is_ok() {
        requests += 1;
    }
    assert_eq!(requests, 5);
}
