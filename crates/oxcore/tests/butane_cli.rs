//! `butane` as users run it: the oxcore binary through a link of that name.

use std::path::PathBuf;
use std::process::{Command, Output};

fn tool() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("butane");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_oxcore"), &link).unwrap();
    (dir, link)
}

fn run(tool: &PathBuf, args: &[&str], cwd: &std::path::Path) -> Output {
    Command::new(tool)
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

const GOOD: &str = "variant: fcos\nversion: 1.5.0\nstorage:\n  files:\n    - path: /etc/motd\n      contents:\n        inline: hi\n";

#[test]
fn output_file_is_written_whole_or_not_at_all() {
    let (dir, butane) = tool();
    std::fs::write(dir.path().join("c.bu"), GOOD).unwrap();
    std::fs::write(
        dir.path().join("out.ign"),
        "old contents that are longer than the new ones, to catch truncation bugs",
    )
    .unwrap();
    let out = run(&butane, &["-o", "out.ign", "c.bu"], dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written = std::fs::read_to_string(dir.path().join("out.ign")).unwrap();
    assert_eq!(
        written,
        "{\"ignition\":{\"version\":\"3.4.0\"},\"storage\":{\"files\":[{\"path\":\"/etc/motd\",\"contents\":{\"compression\":\"\",\"source\":\"data:,hi\"}}]}}\n"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(dir.path().join("out.ign"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o644
    );

    // An invalid config leaves the previous output untouched.
    std::fs::write(
        dir.path().join("bad.bu"),
        "variant: fcos\nversion: 1.5.0\nstorage:\n  files:\n    - path: rel\n",
    )
    .unwrap();
    let out = run(&butane, &["-o", "out.ign", "bad.bu"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.ign")).unwrap(),
        written
    );

    // A directory that does not exist: an error, and nothing left behind.
    let out = run(&butane, &["-o", "missing/out.ign", "c.bu"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .starts_with("Failed to write config to missing/out.ign: ")
    );
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["bad.bu", "butane", "c.bu", "out.ign"]);
}

#[test]
fn subcommand_and_link_agree() {
    let (dir, butane) = tool();
    std::fs::write(dir.path().join("c.bu"), GOOD).unwrap();
    let a = run(&butane, &["--pretty", "c.bu"], dir.path());
    let b = Command::new(env!("CARGO_BIN_EXE_oxcore"))
        .args(["butane", "--pretty", "c.bu"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(a.status.success());
    assert_eq!(a.stdout, b.stdout);
    assert!(String::from_utf8_lossy(&a.stdout).starts_with("{\n  \"ignition\": {\n"));
}

#[test]
fn strict_fails_on_warnings_and_usage_errors_exit_2() {
    let (dir, butane) = tool();
    std::fs::write(
        dir.path().join("w.bu"),
        "variant: fcos\nversion: 1.5.0\nfoo: 1\n",
    )
    .unwrap();
    let ok = run(&butane, &["w.bu"], dir.path());
    assert_eq!(ok.status.code(), Some(0));
    let strict = run(&butane, &["--strict", "--raw-errors", "w.bu"], dir.path());
    assert_eq!(strict.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&strict.stderr),
        "warning at $.foo, line 3 col 1: unused key foo\nConfig produced warnings and --strict was specified\n"
    );
    assert!(strict.stdout.is_empty());
    let usage = run(&butane, &["--frobnicate"], dir.path());
    assert_eq!(usage.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&usage.stderr).ends_with("unknown flag: --frobnicate\n"));
}
