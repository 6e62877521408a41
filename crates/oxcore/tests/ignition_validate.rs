//! `ignition-validate` as users run it: the oxcore binary through a link of
//! that name, on the golden cases in `golden/cases.txt` (input, stdout,
//! stderr, exit code), and against upstream's `ignition-validate` where the
//! Debian package is installed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Case {
    name: String,
    input: String,
    stdout: Vec<String>,
    stderr: Vec<String>,
    exit: i32,
}

fn cases() -> Vec<Case> {
    let text = include_str!("golden/cases.txt");
    let mut out = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(header) = lines.next() {
        let name = header
            .strip_prefix("=== ")
            .expect("case header")
            .to_string();
        let mut input = Vec::new();
        for l in lines.by_ref() {
            if l == "--- stdout" {
                break;
            }
            input.push(l);
        }
        let mut stdout = Vec::new();
        for l in lines.by_ref() {
            if l == "--- stderr" {
                break;
            }
            stdout.push(l.to_string());
        }
        let mut stderr = Vec::new();
        let mut exit = None;
        for l in lines.by_ref() {
            if let Some(code) = l.strip_prefix("--- exit ") {
                exit = Some(code.parse().expect("exit code"));
                break;
            }
            stderr.push(l.to_string());
        }
        out.push(Case {
            name,
            input: input.join("\n"),
            stdout,
            stderr,
            exit: exit.expect("exit line"),
        });
    }
    out
}

/// A directory with `ignition-validate` linked to the oxcore binary.
fn linked_tool() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("ignition-validate");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_oxcore"), &link).unwrap();
    (dir, link)
}

fn run(tool: &Path, file: &Path) -> Output {
    Command::new(tool).arg(file).output().unwrap()
}

fn lines(b: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(b)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn golden_cases() {
    let (dir, tool) = linked_tool();
    let all = cases();
    assert!(all.len() > 80, "the golden file lost cases");
    let mut failures = Vec::new();
    for c in &all {
        let file = dir.path().join(format!("{}.ign", c.name));
        std::fs::write(&file, &c.input).unwrap();
        let out = run(&tool, &file);
        let stderr: Vec<String> = lines(&out.stderr);
        if lines(&out.stdout) != c.stdout || stderr != c.stderr || out.status.code() != Some(c.exit)
        {
            failures.push(format!(
                "{}:\n  expected {:?} {:?} exit {}\n  got      {:?} {:?} exit {:?}",
                c.name,
                c.stdout,
                c.stderr,
                c.exit,
                lines(&out.stdout),
                stderr,
                out.status.code()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn subcommand_matches_link() {
    let (dir, tool) = linked_tool();
    let file = dir.path().join("c.ign");
    std::fs::write(
        &file,
        r#"{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"x"}]}}"#,
    )
    .unwrap();
    let a = run(&tool, &file);
    let b = Command::new(env!("CARGO_BIN_EXE_oxcore"))
        .args(["ignition", "validate"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(a.stdout, b.stdout);
    assert_eq!(a.status.code(), Some(1));
    assert_eq!(b.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&a.stdout),
        "error at $.storage.files.0.path, line 1 col 61: path not absolute\n"
    );
}

#[test]
fn stdin_and_cli_errors_like_go_flag() {
    let (dir, tool) = linked_tool();
    let mut child = Command::new(&tool)
        .arg("-")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(br#"{"ignition":{"version":"3.0.0"},"x":1}"#)
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "warning at $.x, line 1 col 33: unused key x\n"
    );
    assert_eq!(out.status.code(), Some(0));

    let usage = Command::new(&tool).output().unwrap();
    assert_eq!(usage.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&usage.stderr).starts_with("Usage:\n  "));

    let bad = Command::new(&tool).arg("-x").output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr).starts_with("flag provided but not defined: -x\n")
    );

    let help = Command::new(&tool).arg("--help").output().unwrap();
    assert_eq!(help.status.code(), Some(0));

    let version = Command::new(&tool).arg("-version").output().unwrap();
    assert_eq!(version.status.code(), Some(0));
    assert!(!version.stdout.is_empty());

    let missing = Command::new(&tool)
        .arg(dir.path().join("nope.ign"))
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&missing.stderr),
        format!(
            "couldn't read config: open {}: no such file or directory\n",
            dir.path().join("nope.ign").display()
        )
    );
    let is_dir = Command::new(&tool).arg(dir.path()).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&is_dir.stderr),
        format!(
            "couldn't read config: read {}: is a directory\n",
            dir.path().display()
        )
    );
}

/// Messages that upstream added after the Debian package's Ignition 2.14;
/// lines with them are left out of the comparison with that oracle.
const NEWER_THAN_DEBIAN: &[&str] = &[
    "user/group ignored for hard link",
    "path conflicts with systemd unit or dropin",
    "filesystem overwrites partitioned device",
    "device matches disk with wipeTable enabled",
    "doesn't have Install section",
];

/// Rewordings between Ignition 2.14 and the upstream oxcore follows.
fn normalize_debian(line: &str) -> String {
    line.replace(": Unused key ", ": unused key ")
        .replace(
            "not supported in spec versions older than 3.4.0",
            "not supported or functional in spec versions older than 3.6.0",
        )
        .replace(
            "Unused keys may not be reported.",
            "Unused keys may not be reported",
        )
}

/// Sorts each run of consecutive `unused key` lines.
fn sort_unused_runs(lines: &mut [String]) {
    let is_unused = |l: &String| l.contains(": unused key ");
    let mut i = 0;
    while i < lines.len() {
        let start = i;
        while i < lines.len() && is_unused(&lines[i]) {
            i += 1;
        }
        lines[start..i].sort();
        i = i.max(start + 1);
    }
}

#[test]
fn oracle_debian_ignition_validate() {
    let oracle = Path::new("/usr/bin/ignition-validate");
    if !oracle.exists() {
        test_support::skip(
            "oracle_debian_ignition_validate: /usr/bin/ignition-validate is missing \
             (Debian package `ignition`; ./test.sh installs it)",
        );
        return;
    }
    let (dir, tool) = linked_tool();
    let supported = ["3.0.0", "3.1.0", "3.2.0", "3.3.0"];
    let mut compared = 0;
    let mut failures = Vec::new();
    for c in cases() {
        // Debian's Ignition 2.14 knows specs up to 3.3.0.
        let newer = ["3.4.0", "3.5.0", "3.6.0", "3.7.0"]
            .iter()
            .any(|v| c.input.contains(v));
        let older_known = supported.iter().any(|v| c.input.contains(v));
        if newer && !older_known {
            continue;
        }
        let file = dir.path().join(format!("{}.ign", c.name));
        std::fs::write(&file, &c.input).unwrap();
        let up = run(oracle, &file);
        let ours = run(&tool, &file);
        let keep = |l: &String| !NEWER_THAN_DEBIAN.iter().any(|m| l.contains(m));
        let mut up_lines: Vec<String> = lines(&up.stdout)
            .iter()
            .map(|l| normalize_debian(l))
            .collect();
        let mut our_lines: Vec<String> = lines(&ours.stdout).into_iter().filter(keep).collect();
        // Upstream prints the unused keys of one object in Go's random map
        // order; the golden test pins oxcore's order, here only the set counts.
        sort_unused_runs(&mut up_lines);
        sort_unused_runs(&mut our_lines);
        let dropped_error = lines(&ours.stdout)
            .iter()
            .any(|l| !keep(l) && l.starts_with("error"));
        let mut same = up_lines == our_lines && lines(&up.stderr) == lines(&ours.stderr);
        if !dropped_error {
            same &= up.status.code() == ours.status.code();
        }
        if !same {
            failures.push(format!(
                "{}:\n  upstream {:?}\n  oxcore   {:?}",
                c.name, up_lines, our_lines
            ));
        }
        compared += 1;
    }
    assert!(compared > 60, "only {compared} cases compared");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
