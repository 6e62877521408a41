//! The oxcore command line: links, demo, help.

use std::process::Command;

fn oxcore() -> Command {
    Command::new(env!("CARGO_BIN_EXE_oxcore"))
}

#[test]
fn install_links_creates_working_links_and_refuses_to_clobber() {
    let dir = tempfile::tempdir().unwrap();
    let out = oxcore()
        .arg("install-links")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let link = dir.path().join("ignition-validate");
    let target = std::fs::read_link(&link).unwrap();
    assert_eq!(
        target.canonicalize().unwrap(),
        std::path::Path::new(env!("CARGO_BIN_EXE_oxcore"))
            .canonicalize()
            .unwrap()
    );
    // The link behaves as the upstream tool.
    let usage = Command::new(&link).output().unwrap();
    assert_eq!(usage.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&usage.stderr).contains("[flags] config.ign"));

    let again = oxcore()
        .arg("install-links")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists; use --force"));
    let forced = oxcore()
        .args(["install-links", "--force"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(forced.status.success());
    // No temporary link is left behind.
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["butane", "ignition-validate"]);

    let missing = oxcore()
        .arg("install-links")
        .arg(dir.path().join("nope"))
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not a directory"));
}

#[test]
fn demo_runs_on_embedded_defaults() {
    let out = oxcore().arg("demo").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("valid, no warnings"), "{text}");
    assert!(text.contains("unit hello.service (enabled)"), "{text}");
}

#[test]
fn help_and_version() {
    let out = oxcore().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["demo", "ignition", "install-links"] {
        assert!(text.contains(cmd), "{text}");
    }
    let out = oxcore().arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("oxcore "));
    let bad = oxcore().arg("frobnicate").output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
}
