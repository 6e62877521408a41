//! `butane` on the golden corpus in `golden/butane/cases.txt`: Butane
//! configs with upstream Butane's exact output, diagnostics and exit codes
//! (recorded by `golden/butane/regenerate.py` from upstream v0.29), run
//! through the oxcore binary linked as `butane`.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

struct Case {
    name: String,
    args: Vec<String>,
    input: String,
    stdout: String,
    stderr: String,
    exit: i32,
}

const NO_EOL: &str = "\\ no newline at end";

/// Decodes the `| `-prefixed output lines (see regenerate.py).
fn decode(lines: &[&str]) -> String {
    let mut out = String::new();
    for l in lines {
        if *l == NO_EOL {
            out.pop();
            continue;
        }
        let text = if *l == "|" {
            ""
        } else {
            l.strip_prefix("| ").expect("encoded output line")
        };
        out.push_str(text);
        out.push('\n');
    }
    out
}

/// Shell-style splitting of the `args:` line (quotes, no expansion).
fn split_args(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut any = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                any = true;
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    cur.push(c);
                }
            }
            '"' => {
                any = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => cur.extend(chars.next()),
                        c => cur.push(c),
                    }
                }
            }
            c if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn cases() -> Vec<Case> {
    let text = include_str!("golden/butane/cases.txt");
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let name = lines[i]
            .strip_prefix("=== ")
            .expect("case header")
            .to_string();
        i += 1;
        let mut args = Vec::new();
        if let Some(a) = lines.get(i).and_then(|l| l.strip_prefix("args:")) {
            args = split_args(a.trim());
            i += 1;
        }
        let start = i;
        while lines[i] != "--- stdout" {
            i += 1;
        }
        let mut input = lines[start..i].join("\n");
        if !input.is_empty() {
            input.push('\n');
        }
        i += 1;
        let start = i;
        while lines[i] != "--- stderr" {
            i += 1;
        }
        let stdout = decode(&lines[start..i]);
        i += 1;
        let start = i;
        while !lines[i].starts_with("--- exit ") {
            i += 1;
        }
        let stderr = decode(&lines[start..i]);
        let exit = lines[i]["--- exit ".len()..].parse().expect("exit code");
        i += 1;
        out.push(Case {
            name,
            args,
            input,
            stdout,
            stderr,
            exit,
        });
    }
    out
}

/// Cases where oxcore still differs from upstream, with the reason. Each is
/// reported (not silently skipped) on every run; docs/butane.md lists them.
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[
    (
        "boot-device-tang-null-url-anchored-storage",
        "a finding under an aliased `storage` is located at the anchor",
    ),
    (
        "merge-duplicate-mount-units-and-user-unit",
        "duplicate user units beside a generated mount unit map to another entry",
    ),
    (
        "merge-boot-device-user-luks-root-cex",
        "findings on a user LUKS root merged into boot_device's map to the user's fields",
    ),
];

#[test]
fn golden_corpus_matches_upstream() {
    let files = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/butane/files"
    ));
    let files_s = files.to_str().unwrap().to_string();
    let bin_dir = tempfile::tempdir().unwrap();
    let butane = bin_dir.path().join("butane");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_oxcore"), &butane).unwrap();
    let all = cases();
    assert!(
        all.len() > 300,
        "the golden corpus lost cases: {}",
        all.len()
    );
    let mut failures = Vec::new();
    for (name, why) in KNOWN_DIFFERENCES {
        eprintln!("KNOWN DIFFERENCE, not compared: {name}: {why}");
    }
    for c in &all {
        if KNOWN_DIFFERENCES.iter().any(|(n, _)| *n == c.name) {
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.bu"), &c.input).unwrap();
        let args: Vec<String> = c
            .args
            .iter()
            .map(|a| a.replace("FILESDIR", &files_s))
            .collect();
        let out = Command::new(&butane)
            .arg0("butane")
            .args(&args)
            .arg("config.bu")
            .current_dir(dir.path())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let norm = |b: &[u8]| String::from_utf8_lossy(b).replace(&files_s, "FILESDIR");
        let (stdout, stderr) = (norm(&out.stdout), norm(&out.stderr));
        if stdout != c.stdout || stderr != c.stderr || out.status.code() != Some(c.exit) {
            failures.push(format!(
                "{}:\n--- expected stdout\n{}--- got\n{}--- expected stderr\n{}--- got\n{}--- exit {} vs {:?}",
                c.name, c.stdout, stdout, c.stderr, stderr, c.exit, out.status.code()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        all.len(),
        failures.join("\n")
    );
}
