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

#[test]
fn ignition_stages_run_once_on_first_boot() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("sysroot")).unwrap();
    std::fs::write(d.join("config.ign"), r#"{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/hello","contents":{"source":"data:,hi"}}]}}"#).unwrap();
    let stage = |name: &str, cmdline: &str| {
        std::fs::write(d.join("cmdline"), cmdline).unwrap();
        oxcore()
            .args(["ignition", "--stage", name, "--platform", "file"])
            .arg("--root")
            .arg(d.join("sysroot"))
            .arg("--config-cache")
            .arg(d.join("run/ignition.json"))
            .arg("--state-file")
            .arg(d.join("run/state"))
            .arg("--neednet")
            .arg(d.join("run/neednet"))
            .arg("--system-config-dir")
            .arg(d.join("none"))
            .arg("--cmdline")
            .arg(d.join("cmdline"))
            .env("IGNITION_CONFIG_FILE", d.join("config.ign"))
            .output()
            .unwrap()
    };
    // Not the first boot: nothing happens.
    let out = stage("fetch-offline", "root=/dev/sda\n");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("not the first boot"));
    assert!(!d.join("run/ignition.json").exists());
    for name in [
        "fetch-offline",
        "kargs",
        "disks",
        "mount",
        "files",
        "umount",
    ] {
        let out = stage(name, "ignition.firstboot\n");
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        std::fs::read_to_string(d.join("sysroot/etc/hello")).unwrap(),
        "hi"
    );
    assert!(d.join("sysroot/etc/.ignition-result.json").exists());
}
