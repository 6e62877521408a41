//! Release tooling end to end: compose into `next`, promote to `testing`
//! with a rollout, barriers and dead-ends, and signed metadata.

mod common;

use common::ok;
use std::path::Path;
use std::process::{Command, Output};

fn oxcore(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_oxcore"))
        .args(args)
        .output()
        .unwrap()
}

fn tree(dir: &Path, motd: &str) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir.join("usr/etc")).unwrap();
    std::fs::write(dir.join("usr/etc/motd"), motd).unwrap();
}

fn sha256_hex(data: &[u8]) -> String {
    let out = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(data)?;
            c.wait_with_output()
        });
    String::from_utf8(out.unwrap().stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn compose_promote_rules_and_signed_metadata() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, meta, t) = (
        tmp.path().join("repo"),
        tmp.path().join("meta"),
        tmp.path().join("tree"),
    );
    let keys = ok(oxcore(&["ostree", "generate-key"]));
    let keyfile = tmp.path().join("key");
    std::fs::write(&keyfile, &keys).unwrap();
    let public = keys
        .lines()
        .find_map(|l| l.strip_prefix("public: "))
        .unwrap()
        .to_string();
    ok(oxcore(&[
        "ostree",
        &format!("--repo={}", repo.display()),
        "init",
        "--mode=archive",
    ]));
    let (r, m, k) = (
        repo.to_str().unwrap(),
        meta.to_str().unwrap(),
        keyfile.to_str().unwrap(),
    );
    let compose = |version: &str, arch: &str| {
        oxcore(&[
            "release",
            "compose",
            "--repo",
            r,
            "--metadata",
            m,
            "--sign-key",
            k,
            "--stream",
            "next",
            "--arch",
            arch,
            "--tree",
            t.to_str().unwrap(),
            "--version",
            version,
        ])
    };
    tree(&t, "one");
    ok(compose("41.20261125.1.0", "x86_64"));
    ok(compose("41.20261125.1.0", "aarch64"));
    tree(&t, "two");
    let image = tmp
        .path()
        .join("fedora-coreos-41.20261201.1.0-qemu.x86_64.qcow2.xz");
    std::fs::write(&image, b"a disk image").unwrap();
    let out = ok(oxcore(&[
        "release",
        "compose",
        "--repo",
        r,
        "--metadata",
        m,
        "--sign-key",
        k,
        "--stream",
        "next",
        "--tree",
        t.to_str().unwrap(),
        "--version",
        "41.20261201.1.0",
        &format!("--artifact=qemu:qcow2.xz:disk={}", image.display()),
    ]));
    let second = out.split_whitespace().nth(2).unwrap().to_string();

    // Refused: a version of another stream, an older one, a repeat.
    let refs_before = ok(oxcore(&[
        "ostree",
        &format!("--repo={r}"),
        "rev-parse",
        "fedora/x86_64/coreos/next",
    ]));
    for (v, want) in [
        ("41.20261202.3.0", "stream id 3 but stream next is 1"),
        ("41.20261120.1.0", "is not newer than 41.20261201.1.0"),
        ("41.20261201.1.0", "already has an x86_64 commit"),
        ("41.2026120.1.0", "invalid version"),
    ] {
        let out = compose(v, "x86_64");
        assert!(!out.status.success(), "{v} accepted");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(want),
            "{v}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        ok(oxcore(&[
            "ostree",
            &format!("--repo={r}"),
            "rev-parse",
            "fedora/x86_64/coreos/next"
        ])),
        refs_before
    );

    // The index, in upstream's shape.
    let index = json(&meta.join("prod/streams/next/releases.json"));
    assert_eq!(index["stream"], "next");
    assert_eq!(index["releases"][0]["version"], "41.20261125.1.0");
    assert_eq!(index["releases"][0]["commits"].as_array().unwrap().len(), 2);
    assert_eq!(
        index["releases"][1]["commits"][0]["checksum"],
        second.as_str()
    );
    assert!(
        index["releases"][1]["metadata"]
            .as_str()
            .unwrap()
            .ends_with("/prod/streams/next/builds/41.20261201.1.0/release.json")
    );
    let release = json(&meta.join("prod/streams/next/builds/41.20261201.1.0/release.json"));
    assert_eq!(
        release["architectures"]["x86_64"]["commit"],
        second.as_str()
    );
    assert!(meta.join("streams/next.json").is_file() && meta.join("updates/next.json").is_file());
    // The artifact: copied, listed with its location and sha256 in the
    // release and in the stream metadata.
    let disk =
        &release["architectures"]["x86_64"]["media"]["qemu"]["artifacts"]["qcow2.xz"]["disk"];
    assert_eq!(disk["sha256"], sha256_hex(b"a disk image").as_str());
    let location = disk["location"].as_str().unwrap();
    assert!(location.ends_with("/prod/streams/next/builds/41.20261201.1.0/x86_64/fedora-coreos-41.20261201.1.0-qemu.x86_64.qcow2.xz"), "{location}");
    assert_eq!(
        std::fs::read(
            meta.join("prod/streams/next/builds/41.20261201.1.0/x86_64")
                .join(image.file_name().unwrap())
        )
        .unwrap(),
        b"a disk image"
    );
    // Signed: the signature of its SHA-256 digest, beside it, checked as
    // a stream; a changed image fails.
    assert_eq!(
        disk["signature"].as_str(),
        Some(format!("{location}.sig").as_str())
    );
    let published = meta
        .join("prod/streams/next/builds/41.20261201.1.0/x86_64")
        .join(image.file_name().unwrap());
    let pubkey = keyfile.with_extension("pub");
    std::fs::write(&pubkey, format!("public: {public}\n")).unwrap();
    let good = ok(oxcore(&[
        "release",
        "verify",
        "--key",
        pubkey.to_str().unwrap(),
        "--artifacts",
        published.to_str().unwrap(),
    ]));
    assert!(good.ends_with(": good signature\n"), "{good}");
    let tampered = tmp.path().join(image.file_name().unwrap());
    std::fs::write(&tampered, b"a disk imagf").unwrap();
    std::fs::copy(
        format!("{}.sig", published.display()),
        format!("{}.sig", tampered.display()),
    )
    .unwrap();
    let bad = oxcore(&[
        "release",
        "verify",
        "--key",
        pubkey.to_str().unwrap(),
        "--artifacts",
        tampered.to_str().unwrap(),
    ]);
    assert_eq!(bad.status.code(), Some(1));
    let stream_doc = json(&meta.join("streams/next.json"));
    assert_eq!(
        stream_doc["architectures"]["x86_64"]["artifacts"]["qemu"]["release"],
        "41.20261201.1.0"
    );
    assert_eq!(
        stream_doc["architectures"]["x86_64"]["artifacts"]["qemu"]["formats"]["qcow2.xz"]["disk"]["location"],
        location
    );

    // Promote to testing with a rollout over 24 hours.
    let out = ok(oxcore(&[
        "release",
        "promote",
        "--repo",
        r,
        "--metadata",
        m,
        "--sign-key",
        k,
        "--from",
        "next",
        "--to",
        "testing",
        "--rollout-hours",
        "24",
        "41.20261201.1.0",
    ]));
    let promoted = out.split_whitespace().nth(2).unwrap().to_string();
    assert!(
        out.contains("fedora/x86_64/coreos/testing 41.20261201.2.0"),
        "{out}"
    );
    let show = |c: &str| ok(oxcore(&["ostree", &format!("--repo={r}"), "show", c]));
    let content = |s: &str| {
        s.lines()
            .find(|l| l.starts_with("ContentChecksum"))
            .unwrap()
            .to_string()
    };
    assert_eq!(
        content(&show(&promoted)),
        content(&show(&second)),
        "the same tree"
    );
    assert!(show(&promoted).contains("Version: 41.20261201.2.0"));
    let updates = json(&meta.join("updates/testing.json"));
    assert_eq!(
        updates["releases"][0]["metadata"]["rollout"]["duration_minutes"],
        1440
    );
    // A second promotion of the same release is refused.
    let again = oxcore(&[
        "release",
        "promote",
        "--repo",
        r,
        "--metadata",
        m,
        "--from",
        "next",
        "--to",
        "testing",
        "41.20261201.1.0",
    ]);
    assert!(!again.status.success());

    // Rules.
    ok(oxcore(&[
        "release",
        "barrier",
        "--metadata",
        m,
        "--sign-key",
        k,
        "--stream",
        "next",
        "41.20261125.1.0",
        "--reason",
        "https://example.invalid/1",
    ]));
    ok(oxcore(&[
        "release",
        "deadend",
        "--metadata",
        m,
        "--sign-key",
        k,
        "--stream",
        "next",
        "41.20261201.1.0",
        "--reason",
        "https://example.invalid/2",
    ]));
    let bad = oxcore(&[
        "release",
        "barrier",
        "--metadata",
        m,
        "--stream",
        "next",
        "40.20200101.1.0",
        "--reason",
        "x",
    ]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not in stream next"));
    // Names become path components: nothing may climb out of the tree.
    let escape = oxcore(&[
        "release",
        "barrier",
        "--metadata",
        m,
        "--stream",
        "../../etc",
        "41.20261125.1.0",
        "--reason",
        "x",
    ]);
    assert!(String::from_utf8_lossy(&escape.stderr).contains("invalid stream name '../../etc'"));
    let escape = compose("41.20261202.1.0", "../x86_64");
    assert!(String::from_utf8_lossy(&escape.stderr).contains("invalid architecture name"));

    // Every file is signed; a changed byte is caught.
    let files: Vec<String> = [
        "prod/streams/next/releases.json",
        "prod/streams/testing/releases.json",
        "prod/streams/testing/builds/41.20261201.2.0/release.json",
        "streams/next.json",
        "updates/next.json",
        "updates/testing.json",
    ]
    .iter()
    .map(|f| meta.join(f).display().to_string())
    .collect();
    let mut args = vec!["release", "verify", "--key", &public];
    args.extend(files.iter().map(String::as_str));
    ok(oxcore(&args));
    let victim = meta.join("updates/next.json");
    let mut text = std::fs::read_to_string(&victim).unwrap();
    text = text.replace("example.invalid/2", "example.invalid/3");
    std::fs::write(&victim, text).unwrap();
    let out = oxcore(&[
        "release",
        "verify",
        "--key",
        &public,
        victim.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    ok(oxcore(&["ostree", &format!("--repo={r}"), "fsck"]));
}
