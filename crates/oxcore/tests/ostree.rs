//! The OS store against the real `ostree` command (Debian's 2022.7): the
//! same commits and trees for the same input, `ostree fsck` on what we
//! write, checkouts both ways, pulls both ways over a real HTTP server on
//! 127.0.0.1, signatures, and crash safety with failpoints.
//!
//! Tests that need `ostree` or root say so on stderr and return early.

mod common;

use common::serve;
use common::{failpoints_built, have_ostree, ok, oxcore};
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};

fn is_root() -> bool {
    let root = rustix_uid() == 0;
    if !root {
        test_support::skip("needs root (owners and bare repositories)");
    }
    root
}

fn rustix_uid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(1)
}

fn ox(repo: &Path, args: &[&str]) -> Output {
    oxcore()
        .arg("ostree")
        .arg(format!("--repo={}", repo.display()))
        .args(args)
        .output()
        .unwrap()
}

fn real(repo: &Path, args: &[&str]) -> Output {
    Command::new("ostree")
        .arg(format!("--repo={}", repo.display()))
        .args(args)
        .output()
        .unwrap()
}

/// Both tools print the same for the same arguments on `repo`.
#[track_caller]
fn agree(repo: &Path, args: &[&str]) {
    assert_eq!(
        ok(ox(repo, args)),
        ok(real(repo, args)),
        "oxcore and ostree differ on {args:?}"
    );
}

fn setfattr(path: &Path, name: &str, value: &str) -> bool {
    Command::new("setfattr")
        .args(["-h", "-n", name, "-v", value])
        .arg(path)
        .status()
        .is_ok_and(|s| s.success())
}

/// A tree with every kind of thing a commit records.
fn sample_tree(root: &Path) {
    let w = |p: &str, data: &[u8], mode: u32| {
        let path = root.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, data).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    w("usr/bin/tool", b"#!/bin/sh\necho hi\n", 0o755);
    w("usr/bin/suid", b"setuid", 0o4755);
    w("usr/share/doc/empty", b"", 0o644);
    w("usr/share/doc/readme", b"read me\n", 0o444);
    w("etc/shadow", b"root:*:1::::::\n", 0o000);
    w("etc/sticky-sgid", b"x", 0o2750);
    let big: Vec<u8> = (0..5_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    w("usr/lib/big.bin", &big, 0o644);
    std::fs::create_dir_all(root.join("var/empty")).unwrap();
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
    std::os::unix::fs::symlink("../../nowhere/at/all", root.join("usr/share/dangling")).unwrap();
    std::os::unix::fs::symlink("/etc/shadow", root.join("usr/share/abs")).unwrap();
    std::os::unix::fs::chown(root.join("usr/share/doc/readme"), Some(1000), Some(1001)).unwrap();
    std::os::unix::fs::lchown(root.join("usr/share/abs"), Some(7), Some(8)).unwrap();
    std::os::unix::fs::chown(root.join("var/empty"), Some(65534), Some(65534)).unwrap();
    let named = root.join("usr/share/doc/ünïcode name with spaces");
    std::fs::write(&named, b"names are UTF-8").unwrap();
    if !setfattr(&root.join("usr/bin/tool"), "user.kind", "binary")
        || !setfattr(&root.join("usr/share"), "user.dir", "shared")
    {
        eprintln!("note: setfattr unavailable; sample tree has no xattrs");
    }
}

const TS: &str = "--timestamp=2024-01-01T00:00:00Z";

/// What a checkout holds: per path, type, mode, owner, xattrs, content or
/// link target. Directory mtimes and file mtimes are left out (OSTree does
/// not record them).
fn snapshot(root: &Path, with_owner: bool) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    fn walk(root: &Path, dir: &Path, with_owner: bool, out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            let m = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let owner = if with_owner {
                format!("{}:{}", m.uid(), m.gid())
            } else {
                String::new()
            };
            let x = Command::new("getfattr")
                .args(["-h", "-d", "-m", "^user\\.", "--absolute-names"])
                .arg(&p)
                .output()
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .lines()
                        .skip(1)
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            let what = if m.file_type().is_symlink() {
                format!("link {} {owner}", std::fs::read_link(&p).unwrap().display())
            } else if m.is_dir() {
                format!("dir {:o} {owner} {x}", m.mode() & 0o7777)
            } else {
                let data = std::fs::read(&p).unwrap();
                let sum = ring_sum(&data);
                format!(
                    "file {:o} {owner} {x} {} {sum}",
                    m.mode() & 0o7777,
                    data.len()
                )
            };
            out.insert(rel, what);
            if m.is_dir() {
                walk(root, &p, with_owner, out);
            }
        }
    }
    walk(root, root, with_owner, &mut out);
    out
}

fn ring_sum(data: &[u8]) -> String {
    // A cheap stable digest is enough to compare contents.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    format!("{h:016x}")
}

#[test]
fn commits_match_ostree_in_every_mode_and_pass_its_fsck() {
    if !have_ostree() || !is_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    sample_tree(&tree);
    for mode in ["archive", "bare-user", "bare"] {
        let ours = tmp.path().join(format!("ours-{mode}"));
        let theirs = tmp.path().join(format!("theirs-{mode}"));
        ok(ox(&ours, &["init", &format!("--mode={mode}")]));
        ok(real(&theirs, &["init", &format!("--mode={mode}")]));
        let args = [
            "commit",
            "-b",
            "os/x86_64/main",
            "-s",
            "a subject",
            "-m",
            "a body\nwith lines",
            TS,
        ];
        let dir = format!("--tree=dir={}", tree.display());
        let a = ok(ox(
            &ours,
            &[&args[..], &["--add-metadata-string=version=41.1", &dir]].concat(),
        ));
        let b = ok(real(
            &theirs,
            &[&args[..], &["--add-metadata-string=version=41.1", &dir]].concat(),
        ));
        assert_eq!(a, b, "commit checksum with bindings, mode {mode}");
        // Same tree again with --no-bindings and owner overrides.
        let extra = ["--no-bindings", "--owner-uid=0", "--owner-gid=0", &dir];
        let a = ok(ox(&ours, &[&args[..], &extra[..]].concat()));
        let b = ok(real(&theirs, &[&args[..], &extra[..]].concat()));
        assert_eq!(
            a, b,
            "commit checksum with parent and owner overrides, mode {mode}"
        );
        // Skip list, read-only executables and a body from a file.
        let skip = tmp.path().join("skip");
        std::fs::write(&skip, "/usr/lib/big.bin\n/var/empty\n").unwrap();
        let body = tmp.path().join("body");
        std::fs::write(&body, "from a file\n").unwrap();
        let extra = [
            &format!("--skip-list={}", skip.display())[..],
            "--mode-ro-executables",
            &format!("--body-file={}", body.display()),
            "--no-bindings",
            &dir,
        ];
        let a = ok(ox(
            &ours,
            &[
                &["commit", "-b", "os/x86_64/main", "-s", "s", TS][..],
                &extra[..],
            ]
            .concat(),
        ));
        let b = ok(real(
            &theirs,
            &[
                &["commit", "-b", "os/x86_64/main", "-s", "s", TS][..],
                &extra[..],
            ]
            .concat(),
        ));
        assert_eq!(
            a, b,
            "commit with --skip-list, --mode-ro-executables, -F, mode {mode}"
        );
        // The real tool accepts everything we wrote and reads it the same.
        let fsck = ok(real(&ours, &["fsck"]));
        assert!(fsck.contains("no errors found"), "{fsck}");
        assert_eq!(
            ok(real(&ours, &["ls", "-R", "-C", "-X", "os/x86_64/main"])),
            ok(ox(&ours, &["ls", "-R", "-C", "-X", "os/x86_64/main"]))
        );
        assert_eq!(
            ok(real(&theirs, &["ls", "-R", "os/x86_64/main"])),
            ok(ox(&theirs, &["ls", "-R", "os/x86_64/main"]))
        );
        assert_eq!(
            ok(real(&ours, &["show", "os/x86_64/main"])),
            ok(ox(&ours, &["show", "os/x86_64/main"]))
        );
        assert_eq!(
            ok(real(&theirs, &["log", "os/x86_64/main"])),
            ok(ox(&theirs, &["log", "os/x86_64/main"]))
        );
        assert_eq!(
            ok(real(&ours, &["cat", "os/x86_64/main", "/usr/bin/tool"])),
            ok(ox(&theirs, &["cat", "os/x86_64/main", "/usr/bin/tool"]))
        );
        assert_eq!(
            ok(real(
                &theirs,
                &["diff", "os/x86_64/main^", "os/x86_64/main"]
            )),
            ok(ox(&theirs, &["diff", "os/x86_64/main^", "os/x86_64/main"]))
        );
        agree(&ours, &["show", "--raw", "os/x86_64/main"]);
        agree(&ours, &["ls", "-d", "os/x86_64/main", "/usr"]);
        agree(
            &theirs,
            &["show", "--print-metadata-key=version", "os/x86_64/main^^"],
        );
        ok(ox(&ours, &["summary", "-u"]));
        agree(&ours, &["summary", "--view"]);
        // And we fsck theirs.
        ok(ox(&theirs, &["fsck"]));
    }
}

#[test]
fn checkouts_reproduce_the_tree_both_ways() {
    if !have_ostree() || !is_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    sample_tree(&tree);
    let want = snapshot(&tree, true);
    let dir = format!("--tree=dir={}", tree.display());
    for mode in ["archive", "bare", "bare-user"] {
        let ours = tmp.path().join(format!("ours-{mode}"));
        let theirs = tmp.path().join(format!("theirs-{mode}"));
        ok(ox(&ours, &["init", &format!("--mode={mode}")]));
        ok(real(&theirs, &["init", &format!("--mode={mode}")]));
        ok(ox(&ours, &["commit", "-b", "main", TS, &dir]));
        ok(real(&theirs, &["commit", "-b", "main", TS, &dir]));
        if mode != "bare-user" {
            // A root checkout restores owners, modes and xattrs.
            let a = tmp.path().join(format!("real-of-ours-{mode}"));
            let b = tmp.path().join(format!("ours-of-theirs-{mode}"));
            ok(real(&ours, &["checkout", "main", a.to_str().unwrap()]));
            ok(ox(&theirs, &["checkout", "main", b.to_str().unwrap()]));
            assert_eq!(
                snapshot(&a, true),
                want,
                "ostree checkout of our {mode} commit"
            );
            assert_eq!(
                snapshot(&b, true),
                want,
                "our checkout of ostree's {mode} commit"
            );
        }
        // User mode: contents, links and names agree between the tools.
        let a = tmp.path().join(format!("u-real-{mode}"));
        let b = tmp.path().join(format!("u-ours-{mode}"));
        ok(real(
            &ours,
            &["checkout", "-U", "main", a.to_str().unwrap()],
        ));
        ok(ox(&ours, &["checkout", "-U", "main", b.to_str().unwrap()]));
        assert_eq!(
            snapshot(&b, false),
            snapshot(&a, false),
            "user-mode checkouts of {mode}"
        );
    }
}

#[test]
fn checkout_options_union_subpath_and_no_escape() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    std::fs::create_dir_all(tree.join("etc/conf.d")).unwrap();
    std::fs::write(tree.join("etc/conf.d/a"), "new a").unwrap();
    std::fs::write(tree.join("etc/motd"), "hello").unwrap();
    let repo = tmp.path().join("repo");
    ok(ox(&repo, &["init", "--mode=bare-user"]));
    commit_tree(&repo, &tree, "main", &[]);
    // Plain checkout refuses an existing destination.
    let dest = tmp.path().join("dest");
    std::fs::create_dir(&dest).unwrap();
    assert!(
        !ox(&repo, &["checkout", "-U", "main", dest.to_str().unwrap()])
            .status
            .success()
    );
    // Union keeps other files and replaces the commit's.
    std::fs::create_dir_all(dest.join("etc/conf.d")).unwrap();
    std::fs::write(dest.join("etc/conf.d/a"), "old a").unwrap();
    std::fs::write(dest.join("keep"), "mine").unwrap();
    ok(ox(
        &repo,
        &["checkout", "-U", "--union", "main", dest.to_str().unwrap()],
    ));
    assert_eq!(
        std::fs::read_to_string(dest.join("etc/conf.d/a")).unwrap(),
        "new a"
    );
    assert_eq!(std::fs::read_to_string(dest.join("keep")).unwrap(), "mine");
    // A symlink planted where the commit has a directory is not followed.
    let outside = tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let trap = tmp.path().join("trap");
    std::fs::create_dir(&trap).unwrap();
    std::os::unix::fs::symlink(&outside, trap.join("etc")).unwrap();
    let out = ox(
        &repo,
        &["checkout", "-U", "--union", "main", trap.to_str().unwrap()],
    );
    assert!(
        !out.status.success(),
        "checkout through a symlink must fail"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a directory"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "nothing written outside"
    );
    // Subpath: a directory, and a single file.
    let sub = tmp.path().join("sub");
    ok(ox(
        &repo,
        &[
            "checkout",
            "-U",
            "--subpath=/etc/conf.d",
            "main",
            sub.to_str().unwrap(),
        ],
    ));
    assert_eq!(std::fs::read_to_string(sub.join("a")).unwrap(), "new a");
    let one = tmp.path().join("motd");
    ok(ox(
        &repo,
        &[
            "checkout",
            "-U",
            "--subpath=etc/motd",
            "main",
            one.to_str().unwrap(),
        ],
    ));
    assert_eq!(std::fs::read_to_string(&one).unwrap(), "hello");
}

#[test]
fn fsck_reports_corruption_and_missing_objects() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    std::fs::create_dir_all(tree.join("d")).unwrap();
    std::fs::write(tree.join("d/f"), "content").unwrap();
    std::fs::write(tree.join("g"), "other").unwrap();
    let repo = tmp.path().join("repo");
    ok(ox(&repo, &["init", "--mode=archive"]));
    commit_tree(&repo, &tree, "main", &[]);
    ok(ox(&repo, &["fsck"]));
    let ls = ok(ox(&repo, &["ls", "-C", "main", "/g", "/d/f"]));
    let sums: Vec<&str> = ls
        .lines()
        .map(|l| l.split_whitespace().nth(4).unwrap())
        .collect();
    let path = |c: &str| repo.join(format!("objects/{}/{}.filez", &c[..2], &c[2..]));
    // Flip the content of one object: a different file with the same header.
    let good = std::fs::read(path(sums[0])).unwrap();
    let other = std::fs::read(path(sums[1])).unwrap();
    std::fs::write(path(sums[0]), &other).unwrap();
    let out = ox(&repo, &["fsck"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(sums[0]) && err.contains("Corrupted file object"),
        "{err}"
    );
    std::fs::write(path(sums[0]), good).unwrap();
    ok(ox(&repo, &["fsck"]));
    std::fs::remove_file(path(sums[1])).unwrap();
    let out = ox(&repo, &["fsck"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(sums[1]));
}

fn commit_tree(repo: &Path, tree: &Path, branch: &str, extra: &[&str]) -> String {
    let dir = format!("--tree=dir={}", tree.display());
    ok(ox(
        repo,
        &[&["commit", "-b", branch, TS, &dir][..], extra].concat(),
    ))
    .trim()
    .to_string()
}

#[test]
fn pulls_both_ways_over_http() {
    if !have_ostree() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    for i in 0..60 {
        let d = tree.join(format!("dir{}", i % 7));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(format!("f{i}")), format!("file {i}\n").repeat(i + 1)).unwrap();
    }
    // Our archive repo, served; the real ostree pulls it.
    let src = tmp.path().join("src");
    ok(ox(&src, &["init", "--mode=archive"]));
    let c1 = commit_tree(&src, &tree, "main", &["--no-bindings"]);
    ok(ox(&src, &["summary", "-u"]));
    let server = serve(&src);
    let url = format!("http://127.0.0.1:{}", server.1);
    let theirs = tmp.path().join("theirs");
    ok(real(&theirs, &["init", "--mode=bare-user"]));
    ok(real(
        &theirs,
        &["remote", "add", "--no-gpg-verify", "origin", &url],
    ));
    ok(real(&theirs, &["pull", "origin", "main"]));
    assert_eq!(ok(real(&theirs, &["rev-parse", "origin:main"])).trim(), c1);
    ok(real(&theirs, &["fsck"]));
    // We pull from the real tool's archive repo.
    let upstream = tmp.path().join("upstream");
    ok(real(&upstream, &["init", "--mode=archive"]));
    let dir = format!("--tree=dir={}", tree.display());
    let c2 = ok(real(&upstream, &["commit", "-b", "os/main", TS, &dir]))
        .trim()
        .to_string();
    let server2 = serve(&upstream);
    for mode in ["archive", "bare-user"] {
        let ours = tmp.path().join(format!("ours-{mode}"));
        ok(ox(&ours, &["init", &format!("--mode={mode}")]));
        ok(ox(
            &ours,
            &[
                "remote",
                "add",
                "--no-gpg-verify",
                "up",
                &format!("http://127.0.0.1:{}", server2.1),
            ],
        ));
        // No summary on their side: the ref is read from refs/heads.
        ok(ox(&ours, &["pull", "up", "os/main"]));
        assert_eq!(ok(ox(&ours, &["rev-parse", "up:os/main"])).trim(), c2);
        ok(real(&ours, &["fsck"]));
        ok(ox(&ours, &["fsck"]));
    }
    // A missing remote object is a clear error and moves no ref.
    let victim = std::fs::read_dir(src.join("objects"))
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "filez"))
        .unwrap();
    let saved = std::fs::read(&victim).unwrap();
    std::fs::remove_file(&victim).unwrap();
    let fresh = tmp.path().join("fresh");
    ok(ox(&fresh, &["init", "--mode=archive"]));
    ok(ox(&fresh, &["remote", "add", "o", &url]));
    let out = ox(&fresh, &["pull", "o", "main"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("missing") && err.contains(&url), "{err}");
    assert!(ok(ox(&fresh, &["refs"])).is_empty());
    // Corrupt content is refused, named by its URL.
    let mut bad = saved.clone();
    let last = bad.len() - 3;
    bad[last] ^= 0x55;
    std::fs::write(&victim, &bad).unwrap();
    let out = ox(&fresh, &["pull", "o", "main"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("objects/"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(ok(ox(&fresh, &["refs"])).is_empty());
    // Repaired, the pull completes, reusing what the failed pulls staged
    // (at least the commit, fetched before any tree).
    std::fs::write(&victim, &saved).unwrap();
    let fetched = |out: &str| {
        out.split_whitespace()
            .next()
            .unwrap()
            .parse::<usize>()
            .unwrap()
    };
    let whole = tmp.path().join("whole");
    ok(ox(&whole, &["init", "--mode=archive"]));
    let all = fetched(&ok_err(ox(
        &whole,
        &["pull", "o", "main", &format!("--url={url}")],
    )));
    let resumed = fetched(&ok_err(ox(&fresh, &["pull", "o", "main"])));
    assert!(
        resumed < all,
        "resumed pull fetched {resumed} of {all} objects"
    );
    assert_eq!(ok(ox(&fresh, &["rev-parse", "o:main"])).trim(), c1);
    ok(real(&fresh, &["fsck"]));
}

fn ok_err(out: Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    err
}

#[test]
fn signed_pulls_require_a_valid_signature() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("f"), "signed content").unwrap();
    let keys = ok(oxcore().args(["ostree", "generate-key"]).output().unwrap());
    let public = keys
        .lines()
        .find_map(|l| l.strip_prefix("public: "))
        .unwrap()
        .to_string();
    let secret = keys
        .lines()
        .find_map(|l| l.strip_prefix("secret: "))
        .unwrap()
        .to_string();
    let other = ok(oxcore().args(["ostree", "generate-key"]).output().unwrap());
    let other_secret = other
        .lines()
        .find_map(|l| l.strip_prefix("secret: "))
        .unwrap()
        .to_string();

    let src = tmp.path().join("src");
    ok(ox(&src, &["init", "--mode=archive"]));
    let good = commit_tree(&src, &tree, "signed", &[&format!("--sign={secret}")]);
    std::fs::write(tree.join("f"), "unsigned content").unwrap();
    commit_tree(&src, &tree, "unsigned", &[]);
    std::fs::write(tree.join("f"), "wrong key").unwrap();
    commit_tree(
        &src,
        &tree,
        "wrongkey",
        &[&format!("--sign={other_secret}")],
    );
    ok(ox(&src, &["summary", "-u", &format!("--sign={secret}")]));
    ok(ox(&src, &["sign", "--verify", "signed", &public]));
    assert!(
        !ox(&src, &["sign", "--verify", "unsigned", &public])
            .status
            .success()
    );
    assert!(
        !ox(&src, &["sign", "--verify", "wrongkey", &public])
            .status
            .success()
    );
    assert!(ok(ox(&src, &["show", "signed"])).contains("Found 1 ed25519 signature(s)"));

    let server = serve(&src);
    let dest = tmp.path().join("dest");
    ok(ox(&dest, &["init", "--mode=bare-user"]));
    ok(ox(
        &dest,
        &[
            "remote",
            "add",
            &format!("--sign-verify=ed25519=inline:{public}"),
            "o",
            &format!("http://127.0.0.1:{}", server.1),
        ],
    ));
    ok(ox(&dest, &["pull", "o", "signed"]));
    assert_eq!(ok(ox(&dest, &["rev-parse", "o:signed"])).trim(), good);
    for refname in ["unsigned", "wrongkey"] {
        let out = ox(&dest, &["pull", "o", refname]);
        assert!(
            !out.status.success(),
            "{refname} pulled without a valid signature"
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("ed25519"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!dest.join(format!("refs/remotes/o/{refname}")).exists());
    }
    // A summary whose signature does not match is refused before any ref.
    let mut sum = std::fs::read(src.join("summary")).unwrap();
    sum.push(0);
    std::fs::write(src.join("summary"), sum).unwrap();
    let out = ox(&dest, &["pull", "o", "signed"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("summary"));
}

#[test]
fn refs_prune_and_pull_local() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    let repo = tmp.path().join("repo");
    ok(ox(&repo, &["init", "--mode=archive"]));
    let mut commits = Vec::new();
    for i in 0..4 {
        std::fs::write(tree.join("f"), format!("version {i}")).unwrap();
        commits.push(commit_tree(&repo, &tree, "main", &[]));
    }
    assert_eq!(ok(ox(&repo, &["rev-parse", "main^"])).trim(), commits[2]);
    ok(ox(&repo, &["refs", "--create=keep", &commits[0]]));
    assert_eq!(ok(ox(&repo, &["refs"])), "keep\nmain\n");
    let before = ok(ox(&repo, &["prune", "--no-prune"]));
    assert!(before.contains("No unreachable objects"), "{before}");
    // Keep one parent of main; the first commit survives through `keep`.
    let out = ok(ox(&repo, &["prune", "--refs-only", "--depth=1"]));
    assert!(
        out.contains("Deleted 2 objects") || out.contains("Deleted"),
        "{out}"
    );
    assert!(
        !repo
            .join(format!(
                "objects/{}/{}.commit",
                &commits[1][..2],
                &commits[1][2..]
            ))
            .exists()
    );
    for c in [&commits[0], &commits[2], &commits[3]] {
        assert!(
            repo.join(format!("objects/{}/{}.commit", &c[..2], &c[2..]))
                .exists()
        );
    }
    ok(ox(&repo, &["fsck"]));
    ok(ox(&repo, &["refs", "--delete", "keep"]));
    assert_eq!(ok(ox(&repo, &["refs"])), "main\n");
    // pull-local into a bare-user repo re-hashes everything.
    let copy = tmp.path().join("copy");
    ok(ox(&copy, &["init", "--mode=bare-user"]));
    ok(ox(&copy, &["pull-local", repo.to_str().unwrap(), "main"]));
    assert_eq!(ok(ox(&copy, &["rev-parse", "main"])).trim(), commits[3]);
    ok(ox(&copy, &["fsck"]));
    assert_eq!(ok(ox(&copy, &["cat", "main", "/f"])), "version 3");
}

#[test]
fn bad_input_is_refused_with_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    ok(ox(&repo, &["init", "--mode=archive"]));
    let out = ox(
        &repo,
        &["commit", "-b", "main", "--tree=dir=/nonexistent/dir"],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/dir"));
    let out = ox(
        &repo,
        &[
            "commit",
            "-b",
            "bad..ref/",
            TS,
            &format!("--tree=dir={}", tmp.path().display()),
        ],
    );
    assert!(!out.status.success());
    let out = ox(&repo, &["show", "nope"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "error: Refspec 'nope' not found"
    );
    let out = ox(
        &repo,
        &[
            "commit",
            "-b",
            "x",
            "--timestamp=yesterday",
            &format!("--tree=dir={}", tmp.path().display()),
        ],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("Could not parse 'yesterday'"));
    // A fifo cannot be committed; nothing is left behind.
    let tree = tmp.path().join("withfifo");
    std::fs::create_dir(&tree).unwrap();
    assert!(
        Command::new("mkfifo")
            .arg(tree.join("pipe"))
            .status()
            .unwrap()
            .success()
    );
    let out = ox(
        &repo,
        &[
            "commit",
            "-b",
            "x",
            TS,
            &format!("--tree=dir={}", tree.display()),
        ],
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Unsupported file type"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(ok(ox(&repo, &["refs"])).is_empty());
    let bad = tmp.path().join("notrepo");
    std::fs::create_dir(&bad).unwrap();
    let out = ox(&bad, &["refs"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("notrepo/config"));
}

/// Runs `oxcore ostree` with a failpoint armed; the process must stop there.
fn killed_at(repo: &Path, point: &str, args: &[&str]) {
    let out = oxcore()
        .arg("ostree")
        .arg(format!("--repo={}", repo.display()))
        .args(args)
        .env("OSTREE_STORE_FAILPOINT", point)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(137),
        "failpoint {point} not reached: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn killed_commits_and_pulls_leave_a_consistent_repository() {
    if !failpoints_built() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    for i in 0..40 {
        std::fs::create_dir_all(tree.join(format!("d{}", i % 4))).unwrap();
        std::fs::write(tree.join(format!("d{}/f{i}", i % 4)), format!("{i}")).unwrap();
    }
    let repo = tmp.path().join("repo");
    ok(ox(&repo, &["init", "--mode=archive"]));
    let dir = format!("--tree=dir={}", tree.display());
    for point in [
        "object-staged:10",
        "before-commit-object",
        "before-sync",
        "objects-half-moved",
        "objects-moved",
    ] {
        killed_at(&repo, point, &["commit", "-b", "main", TS, &dir]);
        assert!(
            ok(ox(&repo, &["refs"])).is_empty(),
            "ref moved before the kill at {point}"
        );
        ok(ox(&repo, &["fsck"]));
        if have_ostree() {
            ok(real(&repo, &["fsck"]));
        }
    }
    let c = commit_tree(&repo, &tree, "main", &["--no-bindings"]);
    ok(ox(&repo, &["fsck"]));
    ok(ox(&repo, &["summary", "-u"]));
    // Pulls killed at every step, then resumed.
    let server = serve(&repo);
    let dest = tmp.path().join("dest");
    ok(ox(&dest, &["init", "--mode=bare-user"]));
    ok(ox(
        &dest,
        &[
            "remote",
            "add",
            "o",
            &format!("http://127.0.0.1:{}", server.1),
        ],
    ));
    for point in [
        "commit-fetched",
        "object-fetched:20",
        "before-pull-commit",
        "objects-half-moved",
    ] {
        killed_at(&dest, point, &["pull", "o", "main", "--connections=2"]);
        assert!(
            !dest.join("refs/remotes/o/main").exists(),
            "ref moved before the kill at {point}"
        );
        ok(ox(&dest, &["fsck"]));
    }
    ok(ox(&dest, &["pull", "o", "main"]));
    assert_eq!(ok(ox(&dest, &["rev-parse", "o:main"])).trim(), c);
    ok(ox(&dest, &["fsck"]));
    // A prune killed half-way leaves no commit without its objects.
    std::fs::write(tree.join("d0/f0"), "changed").unwrap();
    commit_tree(&repo, &tree, "main", &[]);
    killed_at(
        &repo,
        "prune-deleted:2",
        &["prune", "--refs-only", "--depth=0"],
    );
    ok(ox(&repo, &["fsck"]));
}

#[test]
fn pulls_over_https_trust_the_remotes_ca_and_nothing_else() {
    let (Some(certs), Some(other)) = (
        test_support::Certs::new("oxcore test CA"),
        test_support::Certs::new("another CA"),
    ) else {
        return;
    };
    let cert = certs.issue("server", &["IP:127.0.0.1"]);
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let tree = d.join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("f"), "over TLS").unwrap();
    let src = d.join("src");
    ok(ox(&src, &["init", "--mode=archive"]));
    let c = commit_tree(&src, &tree, "main", &["--no-bindings"]);
    let Some(server) = test_support::TlsServer::start(&src, &cert, &certs.path("server.key"))
    else {
        return;
    };
    let url = format!("https://127.0.0.1:{}", server.port);
    for (name, ca, good) in [
        ("right", Some(certs.path("ca.pem")), true),
        ("wrong", Some(other.path("ca.pem")), false),
        ("none", None, false),
    ] {
        let dest = d.join(format!("dest-{name}"));
        ok(ox(&dest, &["init", "--mode=archive"]));
        let mut args = vec!["remote".to_string(), "add".into()];
        if let Some(ca) = ca {
            args.push(format!("--set=tls-ca-path={}", ca.display()));
        }
        args.extend(["o".into(), url.clone()]);
        ok(ox(
            &dest,
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        ));
        let out = ox(&dest, &["pull", "o", "main"]);
        if good {
            ok(out);
            assert_eq!(ok(ox(&dest, &["rev-parse", "o:main"])).trim(), c);
        } else {
            assert!(
                !out.status.success(),
                "{name}: pulled without a trusted certificate"
            );
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("invalid peer certificate"), "{name}: {err}");
            assert!(ok(ox(&dest, &["refs"])).is_empty());
        }
    }
}

/// Every file under `dir`, relative, with its bytes.
fn files_under(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// A repository made by `ostree` holding every object kind (symlinks
/// absolute, relative and dangling, whose `.filez` has no body at all;
/// empty files; xattrs; a 5 MB file; directories that are only metadata;
/// owners and special bits) pulls into every mode: `ostree fsck` passes,
/// and `ostree` itself checks out the same tree from our repository as
/// from a repository it pulled itself.
#[test]
fn pulls_every_object_kind_ostree_writes_into_every_mode() {
    if !have_ostree() || !is_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    sample_tree(&tree);
    let upstream = tmp.path().join("upstream");
    ok(real(&upstream, &["init", "--mode=archive"]));
    let dir = format!("--tree=dir={}", tree.display());
    let c = ok(real(&upstream, &["commit", "-b", "os/main", TS, &dir]))
        .trim()
        .to_string();
    ok(real(&upstream, &["summary", "-u"]));
    let server = serve(&upstream);
    let url = format!("http://127.0.0.1:{}", server.1);
    for mode in ["archive", "bare-user", "bare", "bare-user-only"] {
        let (ours, theirs) = (
            tmp.path().join(format!("ours-{mode}")),
            tmp.path().join(format!("theirs-{mode}")),
        );
        let mut refusals = Vec::new();
        for (repo, real_tool) in [(&ours, false), (&theirs, true)] {
            let run = |args: &[&str]| {
                if real_tool {
                    real(repo, args)
                } else {
                    ox(repo, args)
                }
            };
            ok(run(&["init", &format!("--mode={mode}")]));
            ok(run(&["remote", "add", "--no-gpg-verify", "up", &url]));
            let out = run(&["pull", "up", "os/main"]);
            if !out.status.success() {
                let err = String::from_utf8_lossy(&out.stderr);
                // The setuid and setgid files cannot be held there.
                let why = err
                    .split("Content object")
                    .nth(1)
                    .unwrap_or(&err)
                    .trim()
                    .to_string();
                refusals.push(why);
            }
        }
        if mode == "bare-user-only" {
            // As ostree: refused, naming the object and its mode bits.
            // Both pull in parallel, so either of the two objects (the
            // setuid or the setgid file) may be the one named.
            assert_eq!(refusals.len(), 2, "{refusals:?}");
            for r in &refusals {
                // Ours also names the URL it came from.
                let r = r.split(" (from ").next().unwrap();
                let (object, why) = r.split_once(": ").unwrap_or(("", r));
                assert!(
                    object.len() == 64 && object.bytes().all(|b| b.is_ascii_hexdigit()),
                    "{refusals:?}"
                );
                assert!(
                    why == "invalid mode 0104755 with bits 04000"
                        || why == "invalid mode 0102750 with bits 02000",
                    "{refusals:?}"
                );
            }
            assert!(ok(ox(&ours, &["refs"])).is_empty(), "a ref moved");
            continue;
        }
        assert!(refusals.is_empty(), "{mode}: {refusals:?}");
        assert_eq!(ok(real(&ours, &["rev-parse", "up:os/main"])).trim(), c);
        ok(real(&ours, &["fsck"]));
        ok(ox(&ours, &["fsck"]));
        // The same listing (modes, owners, sizes, link targets, xattrs).
        assert_eq!(
            ok(real(&ours, &["ls", "-R", "-X", &c])),
            ok(real(&theirs, &["ls", "-R", "-X", &c])),
            "{mode}: listings differ"
        );
        // The same checkout, made by ostree from each repository.
        let user = if mode == "bare" { vec![] } else { vec!["-U"] };
        let co = |repo: &Path, name: &str| {
            let dest = tmp.path().join(format!("co-{mode}-{name}"));
            let mut args = vec!["checkout"];
            args.extend(&user);
            let d = dest.display().to_string();
            args.extend([c.as_str(), d.as_str()]);
            ok(real(repo, &args));
            snapshot(&dest, mode == "bare")
        };
        assert_eq!(
            co(&ours, "ours"),
            co(&theirs, "theirs"),
            "{mode}: checkouts differ"
        );
        if mode == "archive" {
            // Archive objects are kept byte for byte as ostree wrote them.
            let (a, b) = (
                files_under(&ours.join("objects")),
                files_under(&upstream.join("objects")),
            );
            assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
            assert!(a == b, "archive objects differ from upstream's");
        }
    }
}

/// Serves `repo`'s files, except what `hostile` answers instead.
fn serve_altered(
    repo: &Path,
    hostile: impl Fn(&str) -> Option<test_support::Reply> + Send + Sync + 'static,
) -> test_support::RawServer {
    let root = repo.to_path_buf();
    test_support::RawServer::start(move |req| {
        let path = req.target().trim_start_matches('/').to_string();
        if let Some(r) = hostile(&path) {
            return r;
        }
        match std::fs::read(root.join(&path)) {
            Ok(b) => test_support::Reply::ok(&b),
            Err(_) => test_support::Reply::head("404 Not Found", &[]),
        }
    })
}

/// A hostile server can neither make a pull hold what it claims nor feed
/// it without end: content is streamed and checked against the size its
/// header claims, metadata is capped at 10 MB (as OSTree), names it echoes
/// are cut short, and no ref moves.
#[test]
fn hostile_servers_neither_balloon_nor_corrupt_a_pull() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    std::fs::create_dir_all(tree.join("d")).unwrap();
    std::fs::write(tree.join("d/file"), "content\n".repeat(1000)).unwrap();
    let src = tmp.path().join("src");
    ok(ox(&src, &["init", "--mode=archive"]));
    let c = commit_tree(&src, &tree, "main", &["--no-bindings"]);
    let filez = files_under(&src.join("objects"))
        .into_keys()
        .find(|k| k.ends_with(".filez"))
        .unwrap();
    let pull = |server: &test_support::RawServer, mode: &str, r: &str| {
        let repo = tmp
            .path()
            .join(format!("node-{}-{mode}-{}", server.port, r.len()));
        ok(ox(&repo, &["init", &format!("--mode={mode}")]));
        ok(ox(
            &repo,
            &["remote", "add", "--no-gpg-verify", "o", &server.url("")],
        ));
        let out = ox(&repo, &["pull", "o", r]);
        let refs = ok(ox(&repo, &["refs"]));
        (out, refs)
    };
    // A .filez whose header claims 2 GiB.
    let mut lying = std::fs::read(src.join("objects").join(&filez)).unwrap();
    lying[8..16].copy_from_slice(&(2u64 << 30).to_be_bytes());
    let want = format!("objects/{filez}");
    let s = serve_altered(&src, move |p| {
        (p == want).then(|| test_support::Reply::ok(&lying))
    });
    for mode in ["archive", "bare-user"] {
        let (out, refs) = pull(&s, mode, "main");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(err.contains("header says 2147483648"), "{mode}: {err}");
        assert!(refs.is_empty(), "{mode}: a ref moved");
    }
    // An endless commit object (chunked: no length announced).
    let commit_rel = format!("objects/{}/{}.commit", &c[..2], &c[2..]);
    let s = serve_altered(&src, move |p| {
        (p == commit_rel).then(|| {
            let mut b = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            for _ in 0..180 {
                b.extend_from_slice(b"10000\r\n");
                b.extend_from_slice(&[b'x'; 0x10000]);
                b.extend_from_slice(b"\r\n");
            }
            test_support::Reply::raw(b)
        })
    });
    let (out, refs) = pull(&s, "archive", "main");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("exceeds the maximum of 10485760 bytes"),
        "{err}"
    );
    assert!(refs.is_empty());
    // A 100 kB ref name is quoted short, not echoed whole.
    let long = "r".repeat(100_000);
    let (out, _) = pull(&s, "archive", &long);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.len() < 2000,
        "{} bytes of error: {}",
        err.len(),
        &err[..300]
    );
    assert!(err.contains("… (1000"), "cut short, with its length: {err}");
}
