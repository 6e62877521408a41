//! Butane and ignition-validate do work linear in the size of the config,
//! counted rather than timed: every shape of config (tests/common/scale.rs)
//! runs at 1x and 8x its size under valgrind's cachegrind, without cache
//! simulation, which counts the instructions the process executes (the
//! same count on every run, whatever the machine's load). 8x the config
//! must cost less than 12x the instructions; a step that rescans the text
//! for every block scalar, or searches every recorded path for every
//! finding, costs far more (about 50x here before those were fixed).
//!
//! `OXCORE_LINEAR_BIN` runs another oxcore binary (to show an old build
//! failing).

#[path = "common/scale.rs"]
mod scale;

use std::path::{Path, PathBuf};
use std::process::Command;

use scale::{SHAPES, Shape};

const BASE: usize = 150;
const BOUND: f64 = 12.0;

fn oxcore_bin() -> PathBuf {
    std::env::var_os("OXCORE_LINEAR_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_oxcore")))
}

/// Instructions executed by `argv0 args` (run as the link `argv0`), and its
/// standard output.
fn instructions(link: &Path, args: &[&Path]) -> (u64, Vec<u8>) {
    let out = Command::new("valgrind")
        .args([
            "--tool=cachegrind",
            "--cache-sim=no",
            "--cachegrind-out-file=/dev/null",
        ])
        .arg(link)
        .args(args)
        .output()
        .expect("run valgrind");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let refs = stderr
        .lines()
        .find_map(|l| {
            l.split_once("I   refs:")
                .map(|(_, n)| n.trim().replace(',', ""))
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no instruction count from valgrind:\n{stderr}"));
    (refs, out.stdout)
}

struct Counted {
    butane: u64,
    validate: u64,
}

fn count(shape: Shape, dir: &Path, n: usize, bin: &Path) -> Counted {
    let config = shape.write(dir, n);
    let butane = dir.join("butane");
    let validate = dir.join("ignition-validate");
    std::os::unix::fs::symlink(bin, &butane).expect("link butane");
    std::os::unix::fs::symlink(bin, &validate).expect("link ignition-validate");
    let files = dir.join("files");
    let (b, json) = instructions(&butane, &[Path::new("-d"), &files, &config]);
    assert!(!json.is_empty(), "{shape:?} x{n}: butane wrote no config");
    let ign = dir.join("config.ign");
    std::fs::write(&ign, json).expect("write the JSON");
    let (v, _) = instructions(&validate, &[&ign]);
    Counted {
        butane: b,
        validate: v,
    }
}

#[test]
fn butane_and_validate_are_linear() {
    if !test_support::have(
        "valgrind",
        &["--version"],
        "apt-get install valgrind; linearity not counted",
    ) {
        return;
    }
    let bin = oxcore_bin();
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut failures = Vec::new();
    for (k, &shape) in SHAPES.iter().enumerate() {
        let small = count(shape, &tmp.path().join(format!("{k}-1")), BASE, &bin);
        let large = count(shape, &tmp.path().join(format!("{k}-8")), 8 * BASE, &bin);
        for (what, a, b) in [
            ("butane", small.butane, large.butane),
            ("ignition-validate", small.validate, large.validate),
        ] {
            let growth = b as f64 / a as f64;
            eprintln!(
                "{:>14} {what:<18} {a:>14} -> {b:>14} instructions at 8x: {growth:.1}x",
                shape.name()
            );
            if growth >= BOUND {
                failures.push(format!("{} {what}: {growth:.1}x", shape.name()));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "work grows faster than the config (8x the config, at least {BOUND}x the instructions): {failures:?}"
    );
}
