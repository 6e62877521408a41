//! Helpers the integration tests share: checking a command's outcome and a
//! static HTTP server on 127.0.0.1.
#![allow(dead_code)] // each test binary uses its own subset

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

/// The oxcore binary under test.
pub fn oxcore() -> Command {
    Command::new(env!("CARGO_BIN_EXE_oxcore"))
}

/// Whether the real `ostree` command is there to be the oracle (says SKIP
/// when not).
pub fn have_ostree() -> bool {
    let ok = Command::new("ostree")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        test_support::skip(
            "the `ostree` command is not installed (apt-get install ostree); oracle test not run",
        );
    }
    ok
}

/// Whether the crash points are compiled in (says SKIP when not).
pub fn failpoints_built() -> bool {
    let on = cfg!(feature = "failpoints");
    if !on {
        test_support::skip("built without the `failpoints` feature (./test.sh enables it)");
    }
    on
}

/// The stdout of a system tool (`losetup`, `sgdisk`, `debugfs`) that must
/// succeed.
#[track_caller]
pub fn run(argv: &[&str]) -> String {
    let o = Command::new(argv[0]).args(&argv[1..]).output().unwrap();
    assert!(
        o.status.success(),
        "{argv:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The stdout of a command that must have succeeded (its output in the
/// panic message otherwise).
#[track_caller]
pub fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A static HTTP server, stopped when dropped; `.1` is its port.
pub struct Server(pub Child, pub u16);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Serves `dir` on 127.0.0.1 with bench/serve.py (Python's threaded server
/// with a listen backlog that fits parallel pulls).
pub fn serve(dir: &Path) -> Server {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../bench/serve.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line.trim().strip_prefix("port ").unwrap().parse().unwrap();
    Server(child, port)
}
