//! Deployments against the real `ostree admin` (Debian's 2022.7): the same
//! steps on two sysroots, one made by each tool, must give the same boot
//! entries and `/etc`, and each tool must read the other's sysroot the same
//! way. Crash safety is checked by killing the deployer at every step and
//! "booting" what is left.

mod common;

use common::serve;
use common::{have_ostree, ok, oxcore};
use std::collections::BTreeMap;
use std::io::BufReader;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs `ostree ARGS` (real) or `oxcore ostree ARGS`.
fn tool(real: bool, args: &[&str]) -> Output {
    if real {
        Command::new("ostree").args(args).output().unwrap()
    } else {
        oxcore().arg("ostree").args(args).output().unwrap()
    }
}

/// A release tree: kernel, initramfs, os-release, a default /etc.
fn release(dir: &Path, version: &str, motd: &str, kernel: &str) {
    let _ = std::fs::remove_dir_all(dir);
    let w = |p: &str, data: &str| {
        let path = dir.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    };
    w("usr/lib/modules/6.1.0/vmlinuz", kernel);
    w("usr/lib/modules/6.1.0/initramfs.img", "initramfs");
    let os_release =
        format!("NAME=Fedora\nID=fedora\nVERSION_ID=41\nPRETTY_NAME=\"Fedora CoreOS {version}\"\n");
    w("usr/lib/os-release", &os_release);
    w("usr/etc/os-release", &os_release);
    w("usr/etc/motd", motd);
    w("usr/etc/ssh/sshd_config", "PermitRootLogin no\n");
    w("usr/bin/tool", "#!/bin/sh\n");
    std::fs::set_permissions(
        dir.join("usr/bin/tool"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    // Mount points a booted deployment needs.
    for d in ["sysroot", "var"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
}

fn commit(real: bool, sysroot: &Path, tree: &Path, version: &str, ts: &str) -> String {
    let repo = format!("--repo={}/ostree/repo", sysroot.display());
    ok(tool(
        real,
        &[
            &repo,
            "commit",
            "-b",
            "fcos/stable",
            &format!("--tree=dir={}", tree.display()),
            &format!("--add-metadata-string=version={version}"),
            &format!("--timestamp={ts}"),
        ],
    ))
    .trim()
    .to_string()
}

fn admin(real: bool, sysroot: &Path, args: &[&str]) -> String {
    let s = format!("--sysroot={}", sysroot.display());
    let mut full = vec!["admin", args[0], &s];
    full.extend(&args[1..]);
    ok(tool(real, &full))
}

/// A fresh sysroot at `root` (`init-fs`, `os-init fcos`), made by oxcore.
fn init_sysroot(root: &Path) {
    std::fs::create_dir_all(root).unwrap();
    admin(false, root, &["init-fs", root.to_str().unwrap()]);
    admin(false, root, &["os-init", "fcos"]);
}

/// A sysroot under `dir` with release 41.1 (kernel text `kernel`)
/// committed and deployed with `deploy_args`; returns (tree, sysroot).
fn deployed_sysroot(dir: &Path, kernel: &str, deploy_args: &[&str]) -> (PathBuf, PathBuf) {
    let (tree, root) = (dir.join("tree"), dir.join("root"));
    init_sysroot(&root);
    release(&tree, "41.1", "v1", kernel);
    commit(false, &root, &tree, "41.1", "2026-01-01T00:00:00Z");
    admin(
        false,
        &root,
        &[&["deploy"][..], deploy_args, &["fcos/stable"]].concat(),
    );
    (tree, root)
}

/// Boot entries, each file's text by name.
fn entries(sysroot: &Path) -> BTreeMap<String, String> {
    let dir = sysroot.join("boot/loader/entries");
    std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read_to_string(e.path()).unwrap(),
            )
        })
        .collect()
}

fn deployment_dirs(sysroot: &Path) -> Vec<PathBuf> {
    let dir = sysroot.join("ostree/deploy/fcos/deploy");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    v
}

/// Both tools print the same status for `sysroot`.
#[track_caller]
fn same_status(sysroot: &Path) -> String {
    let ours = admin(false, sysroot, &["status"]);
    let theirs = admin(true, sysroot, &["status"]);
    assert_eq!(ours, theirs, "status of {}", sysroot.display());
    ours
}

fn etc_of_default(sysroot: &Path) -> BTreeMap<String, String> {
    let entries = entries(sysroot);
    let top = entries
        .keys()
        .max_by_key(|k| k.split('-').nth(1).and_then(|n| n.parse::<u32>().ok()))
        .unwrap();
    let arg = entries[top]
        .split_whitespace()
        .find_map(|a| a.strip_prefix("ostree="))
        .unwrap()
        .to_string();
    let dep = std::fs::canonicalize(sysroot.join(arg.trim_start_matches('/'))).unwrap();
    let mut out = BTreeMap::new();
    for e in walk(&dep.join("etc")) {
        let rel = e
            .strip_prefix(dep.join("etc"))
            .unwrap()
            .display()
            .to_string();
        let m = std::fs::symlink_metadata(&e).unwrap();
        let v = if m.is_dir() {
            "dir".to_string()
        } else {
            std::fs::read_to_string(&e).unwrap()
        };
        out.insert(rel, format!("{:o} {v}", m.permissions().mode() & 0o7777));
    }
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        out.push(p.clone());
        if p.is_dir() && !p.is_symlink() {
            out.extend(walk(&p));
        }
    }
    out.sort();
    out
}

#[test]
fn both_tools_make_and_read_the_same_sysroots() {
    if !have_ostree() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    let mut roots = Vec::new();
    for real in [false, true] {
        let root = tmp.path().join(if real { "theirs" } else { "ours" });
        std::fs::create_dir_all(&root).unwrap();
        admin(real, &root, &["init-fs", root.to_str().unwrap()]);
        // init-fs takes the path as its argument; --sysroot is ignored there.
        admin(real, &root, &["os-init", "fcos"]);
        release(&tree, "41.1", "welcome v1\n", "kernel 1");
        commit(real, &root, &tree, "41.1", "2026-01-01T00:00:00Z");
        admin(
            real,
            &root,
            &[
                "deploy",
                "--os=fcos",
                "--karg=root=LABEL=root",
                "--karg=rw",
                "fcos/stable",
            ],
        );
        let first = deployment_dirs(&root).pop().unwrap();
        // Local changes to /etc: one added, one modified, one removed.
        std::fs::write(first.join("etc/hostname"), "node1\n").unwrap();
        std::fs::write(first.join("etc/motd"), "my motd\n").unwrap();
        std::fs::remove_file(first.join("etc/ssh/sshd_config")).unwrap();
        release(&tree, "41.2", "welcome v2\n", "kernel 2");
        commit(real, &root, &tree, "41.2", "2026-01-02T00:00:00Z");
        admin(
            real,
            &root,
            &["deploy", "--os=fcos", "--karg-append=quiet", "fcos/stable"],
        );
        admin(real, &root, &["pin", "1"]);
        admin(
            real,
            &root,
            &["kargs", "edit-in-place", "--append-if-missing=nosmt"],
        );
        release(&tree, "41.3", "welcome v3\n", "kernel 2");
        commit(real, &root, &tree, "41.3", "2026-01-03T00:00:00Z");
        admin(real, &root, &["deploy", "--os=fcos", "fcos/stable"]);
        roots.push(root);
    }
    let (ours, theirs) = (&roots[0], &roots[1]);
    // Each tool reads both sysroots the same way.
    let status = same_status(ours);
    assert_eq!(status, same_status(theirs));
    assert_eq!(status.matches("fcos ").count(), 3, "{status}");
    assert!(status.contains("Pinned: yes"), "{status}");
    // Same entries, byte for byte but for the boot version: `ostree admin
    // kargs edit-in-place` rewrites the current loader.N in place, while
    // oxcore switches to the other one atomically, so the N differ.
    let norm = |m: BTreeMap<String, String>| -> BTreeMap<String, String> {
        m.into_iter()
            .map(|(k, v)| {
                (
                    k,
                    v.replace("/ostree/boot.0/", "/ostree/boot.N/")
                        .replace("/ostree/boot.1/", "/ostree/boot.N/"),
                )
            })
            .collect()
    };
    assert_eq!(norm(entries(ours)), norm(entries(theirs)));
    let etc = etc_of_default(ours);
    assert_eq!(etc, etc_of_default(theirs));
    assert_eq!(etc["hostname"], "644 node1\n");
    assert_eq!(etc["motd"], "644 my motd\n");
    assert!(!etc.contains_key("ssh/sshd_config"), "{etc:?}");
    // Kernel arguments carried over and appended.
    let text = entries(ours).into_values().collect::<String>();
    // (`ostree=` keeps its place; the appended argument follows it.)
    let appended = text.lines().filter(|l| {
        l.starts_with("options root=LABEL=root rw ostree=") && l.ends_with(" quiet nosmt")
    });
    assert_eq!(appended.count(), 2, "{text}");
    // The real tool accepts our repository and GC refs.
    ok(Command::new("ostree")
        .arg(format!("--repo={}/ostree/repo", ours.display()))
        .arg("fsck")
        .output()
        .unwrap());
    let refs = ok(tool(
        true,
        &[&format!("--repo={}/ostree/repo", ours.display()), "refs"],
    ));
    assert_eq!(
        refs.lines().filter(|l| l.starts_with("ostree/")).count(),
        3,
        "{refs}"
    );

    // Our rollback, undeploy and cleanup, read by the real tool.
    admin(false, ours, &["rollback"]);
    let after = same_status(ours);
    assert!(
        after.find("41.2").unwrap() < after.find("41.3").unwrap(),
        "{after}"
    );
    admin(false, ours, &["rollback"]);
    assert_eq!(same_status(ours), status, "two rollbacks restore the order");
    admin(false, ours, &["pin", "--unpin", "2"]);
    admin(false, ours, &["undeploy", "2"]);
    let two = same_status(ours);
    assert_eq!(two.matches("fcos ").count(), 2, "{two}");
    admin(false, ours, &["cleanup"]);
    assert_eq!(deployment_dirs(ours).len(), 2);
    assert_eq!(
        std::fs::read_dir(ours.join("boot/ostree")).unwrap().count(),
        1,
        "old kernel removed"
    );
    ok(Command::new("ostree")
        .arg(format!("--repo={}/ostree/repo", ours.display()))
        .arg("fsck")
        .output()
        .unwrap());
}

#[test]
fn upgrade_refuses_downgrades_and_kargs_make_a_new_deployment() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    let root = tmp.path().join("root");
    init_sysroot(&root);
    release(&tree, "41.2", "v2", "kernel");
    let newer = commit(false, &root, &tree, "41.2", "2026-02-01T00:00:00Z");
    admin(false, &root, &["deploy", "--karg=rw", "fcos/stable"]);
    assert_eq!(
        admin(false, &root, &["upgrade"]).trim(),
        "No update available."
    );
    release(&tree, "41.1", "v1", "kernel");
    commit(false, &root, &tree, "41.1", "2026-01-01T00:00:00Z");
    let out = tool(
        false,
        &["admin", "upgrade", &format!("--sysroot={}", root.display())],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("chronologically older"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    admin(false, &root, &["upgrade", "--allow-downgrade"]);
    let json: serde_json::Value =
        serde_json::from_str(&admin(false, &root, &["status", "--json"])).unwrap();
    assert_eq!(json["deployments"][0]["version"], "41.1");
    assert_eq!(json["deployments"][1]["checksum"], newer.as_str());
    admin(
        false,
        &root,
        &["kargs", "--append=console=ttyS0", "--delete=rw"],
    );
    let json: serde_json::Value =
        serde_json::from_str(&admin(false, &root, &["status", "--json"])).unwrap();
    assert_eq!(json["deployments"][0]["version"], "41.1");
    // The kernel arguments, from what boots (rpm-ostree's JSON has none).
    let options = |n: usize| {
        let e = entries(&root);
        let text = &e[&format!("ostree-{}-fcos.conf", e.len() - n)];
        text.lines()
            .find_map(|l| l.strip_prefix("options "))
            .unwrap()
            .split_whitespace()
            .filter(|a| !a.starts_with("ostree="))
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(options(0), "console=ttyS0");
    assert_eq!(options(1), "rw");
}

#[test]
fn a_bad_tree_or_conflict_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let (tree, root) = deployed_sysroot(tmp.path(), "kernel", &[]);
    let before = admin(false, &root, &["status"]);
    // A release without a kernel.
    std::fs::remove_dir_all(tree.join("usr/lib/modules")).unwrap();
    commit(false, &root, &tree, "41.2", "2026-01-02T00:00:00Z");
    let out = tool(
        false,
        &[
            "admin",
            "deploy",
            &format!("--sysroot={}", root.display()),
            "fcos/stable",
        ],
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Failed to find kernel"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A release where /etc/motd became a directory while the user edited it.
    release(&tree, "41.3", "v3", "kernel");
    std::fs::remove_file(tree.join("usr/etc/motd")).unwrap();
    std::fs::create_dir_all(tree.join("usr/etc/motd")).unwrap();
    std::fs::write(tree.join("usr/etc/motd/10-default"), "x").unwrap();
    commit(false, &root, &tree, "41.3", "2026-01-03T00:00:00Z");
    let first = deployment_dirs(&root).pop().unwrap();
    std::fs::write(first.join("etc/motd"), "edited").unwrap();
    let out = tool(
        false,
        &[
            "admin",
            "deploy",
            &format!("--sysroot={}", root.display()),
            "fcos/stable",
        ],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/etc merge conflict at /etc/motd"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(admin(false, &root, &["status"]), before);
    assert_eq!(
        deployment_dirs(&root).len(),
        1,
        "no deployment directory left behind"
    );
    let names: Vec<String> = std::fs::read_dir(root.join("ostree/deploy/fcos/deploy"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with(".tmp")), "{names:?}");
}

/// "Boots" a sysroot: the loader link, every entry's kernel and initramfs,
/// and every `ostree=` path must resolve to a complete deployment. Returns
/// the deployments' versions in boot order.
fn boot_check(root: &Path) -> Vec<String> {
    let loader = std::fs::read_link(root.join("boot/loader")).unwrap();
    let dir = root.join("boot").join(&loader).join("entries");
    let mut found = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
        let get = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{k} ")))
                .unwrap()
                .to_string()
        };
        for k in ["linux", "initrd"] {
            let p = root.join("boot").join(get(k).trim_start_matches('/'));
            assert!(p.is_file(), "{} missing", p.display());
        }
        let arg = get("options")
            .split_whitespace()
            .find_map(|a| a.strip_prefix("ostree="))
            .unwrap()
            .to_string();
        let dep = root.join(arg.trim_start_matches('/'));
        assert!(
            dep.join("usr/bin/tool").is_file(),
            "{} does not resolve to a deployment",
            dep.display()
        );
        assert!(dep.join("etc/os-release").is_file());
        let version: u32 = get("version").parse().unwrap();
        let title = get("title");
        found.push((version, title));
    }
    found.sort();
    found.reverse();
    found.into_iter().map(|(_, t)| t).collect()
}

#[test]
fn a_deploy_killed_at_any_step_leaves_the_old_or_the_new_configuration() {
    if !common::failpoints_built() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (tree, root) = deployed_sysroot(tmp.path(), "kernel 1", &[]);
    let old = boot_check(&root);
    release(&tree, "41.2", "v2", "kernel 2");
    commit(false, &root, &tree, "41.2", "2026-01-02T00:00:00Z");
    for point in [
        "deployment-checked-out",
        "deployment-built",
        "farm-written",
        "entries-written",
        "before-swap",
        "after-swap",
    ] {
        let out = oxcore()
            .args([
                "ostree",
                "admin",
                "deploy",
                &format!("--sysroot={}", root.display()),
                "--retain",
                "fcos/stable",
            ])
            .env("OSTREE_STORE_FAILPOINT", point)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(137),
            "{point} not reached: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let now = boot_check(&root);
        if point == "after-swap" {
            assert_eq!(
                now.len(),
                old.len() + 1,
                "after the swap the new configuration boots"
            );
            assert!(now[0].contains("41.2"), "{now:?}");
        } else {
            assert_eq!(
                now, old,
                "killed at {point}: the old configuration must boot unchanged"
            );
        }
        // The next operation clears what the dead one left.
        admin(false, &root, &["cleanup"]);
        let listed = admin(false, &root, &["status"]).matches("fcos ").count();
        assert_eq!(
            deployment_dirs(&root).len(),
            listed,
            "after cleanup at {point}"
        );
        if point == "after-swap" {
            break;
        }
    }
    admin(false, &root, &["deploy", "fcos/stable"]);
    boot_check(&root);
}

fn top(args: &[&str]) -> String {
    ok(oxcore().args(args).output().unwrap())
}

#[test]
fn rpm_ostree_verbs_upgrade_over_http_deploy_a_version_and_roll_back() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    // The build side: an archive repository served over HTTP.
    let build = tmp.path().join("build");
    ok(tool(
        false,
        &[
            &format!("--repo={}", build.display()),
            "init",
            "--mode=archive",
        ],
    ));
    let commit_build = |version: &str, ts: &str| {
        release(&tree, version, &format!("motd {version}\n"), "kernel");
        let out = ok(tool(
            false,
            &[
                &format!("--repo={}", build.display()),
                "commit",
                "-b",
                "fcos/stable",
                &format!("--tree=dir={}", tree.display()),
                &format!("--add-metadata-string=version={version}"),
                &format!("--timestamp={ts}"),
            ],
        ));
        ok(tool(
            false,
            &[&format!("--repo={}", build.display()), "summary", "-u"],
        ));
        out.trim().to_string()
    };
    let v1 = commit_build("41.1", "2026-01-01T00:00:00Z");
    let server = serve(&build);
    // The node.
    let root = tmp.path().join("node");
    init_sysroot(&root);
    let repo = format!("--repo={}/ostree/repo", root.display());
    ok(tool(
        false,
        &[
            &repo,
            "remote",
            "add",
            "origin",
            &format!("http://127.0.0.1:{}", server.1),
        ],
    ));
    ok(tool(false, &[&repo, "pull", "origin", "fcos/stable"]));
    admin(false, &root, &["deploy", "--karg=rw", "origin:fcos/stable"]);
    let sysroot = format!("--sysroot={}", root.display());
    assert_eq!(top(&["upgrade", &sysroot]).trim(), "No update available.");
    let v2 = commit_build("41.2", "2026-01-02T00:00:00Z");
    let up = top(&["upgrade", &sysroot]);
    assert!(up.contains("Upgraded to"), "{up}");
    let status: serde_json::Value =
        serde_json::from_str(&top(&["status", &sysroot, "--json"])).unwrap();
    assert_eq!(status["deployments"][0]["checksum"], v2.as_str());
    assert_eq!(status["deployments"][0]["origin"], "origin:fcos/stable");
    assert_eq!(
        status["deployments"][1]["checksum"],
        v1.as_str(),
        "{status}"
    );
    // Deploy an older version by name, then roll back to the newest.
    top(&["deploy", &sysroot, "41.1"]);
    let status: serde_json::Value =
        serde_json::from_str(&top(&["status", &sysroot, "--json"])).unwrap();
    assert_eq!(status["deployments"][0]["version"], "41.1");
    top(&["rollback", &sysroot]);
    let status: serde_json::Value =
        serde_json::from_str(&top(&["status", &sysroot, "--json"])).unwrap();
    assert_eq!(status["deployments"][0]["version"], "41.2");
    // Rebase onto a local ref.
    ok(tool(false, &[&repo, "refs", "--create=local/test", &v1]));
    top(&["rebase", &sysroot, "local/test"]);
    let status: serde_json::Value =
        serde_json::from_str(&top(&["status", &sysroot, "--json"])).unwrap();
    assert_eq!(status["deployments"][0]["origin"], "local/test");
    top(&["cleanup", &sysroot]);
    ok(tool(false, &[&repo, "fsck"]));
}

#[test]
fn staged_deployments_wait_for_finalization_and_merge_late_etc_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let (tree, root) = deployed_sysroot(tmp.path(), "kernel 1", &[]);
    let first = deployment_dirs(&root).pop().unwrap();
    std::fs::write(first.join("etc/hostname"), "early\n").unwrap();
    release(&tree, "41.2", "v2", "kernel 2");
    commit(false, &root, &tree, "41.2", "2026-01-02T00:00:00Z");
    let before = boot_check(&root);
    admin(
        false,
        &root,
        &["deploy", "--stage", "--lock-finalization", "fcos/stable"],
    );
    // Staged: written, listed first, not in the boot configuration.
    let status = admin(false, &root, &["status"]);
    assert!(
        status.lines().next().unwrap().ends_with(" (staged)"),
        "{status}"
    );
    assert!(status.contains("finalization locked"), "{status}");
    assert_eq!(boot_check(&root), before);
    admin(false, &root, &["cleanup"]);
    assert_eq!(
        deployment_dirs(&root).len(),
        2,
        "cleanup keeps the staged deployment"
    );
    // A change made after staging must reach the new deployment.
    std::fs::write(first.join("etc/late"), "after staging\n").unwrap();
    let out = tool(
        false,
        &[
            "admin",
            "finalize-staged",
            &format!("--sysroot={}", root.display()),
        ],
    );
    assert!(!out.status.success(), "a locked stage must not finalize");
    assert!(String::from_utf8_lossy(&out.stderr).contains("locked"));
    admin(false, &root, &["unlock-finalization"]);
    assert!(admin(false, &root, &["finalize-staged"]).starts_with("Finalized"));
    let now = boot_check(&root);
    assert_eq!(now.len(), 2);
    assert!(now[0].contains("41.2"), "{now:?}");
    let etc = etc_of_default(&root);
    assert_eq!(etc["hostname"], "644 early\n");
    assert_eq!(etc["late"], "644 after staging\n");
    assert_eq!(etc["motd"], "644 v2");
    assert!(!admin(false, &root, &["status"]).contains("staged"));
    assert_eq!(
        admin(false, &root, &["finalize-staged"]).trim(),
        "No staged deployment"
    );
}

#[test]
fn a_finalization_killed_at_any_step_boots_old_or_new_and_deployments_are_immutable() {
    if !common::failpoints_built() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (tree, root) = deployed_sysroot(tmp.path(), "kernel 1", &[]);
    let first = deployment_dirs(&root).pop().unwrap();
    // Where the filesystem has the attribute, a deployment root refuses
    // new entries (its /etc and /var stay writable).
    let attrs = Command::new("lsattr").arg("-d").arg(&first).output();
    if attrs.as_ref().is_ok_and(|o| {
        o.status.success()
            && String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .next()
                .unwrap_or("")
                .contains('i')
    }) {
        assert!(std::fs::write(first.join("new-top-level-file"), "x").is_err());
        std::fs::write(first.join("etc/writable"), "yes").unwrap();
    } else {
        eprintln!(
            "note: {} has no immutable attribute support; not checked",
            first.display()
        );
    }
    release(&tree, "41.2", "v2", "kernel 2");
    commit(false, &root, &tree, "41.2", "2026-01-02T00:00:00Z");
    let old = boot_check(&root);
    for point in [
        "staged-etc-merged",
        "farm-written",
        "before-swap",
        "after-swap",
    ] {
        admin(false, &root, &["deploy", "--stage", "fcos/stable"]);
        let out = oxcore()
            .args([
                "ostree",
                "admin",
                "finalize-staged",
                &format!("--sysroot={}", root.display()),
            ])
            .env("OSTREE_STORE_FAILPOINT", point)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(137),
            "{point} not reached: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let now = boot_check(&root);
        if point == "after-swap" {
            assert!(now[0].contains("41.2"), "{now:?}");
            // The switch happened: the record no longer counts as staged.
            assert!(!admin(false, &root, &["status"]).contains("(staged)"));
        } else {
            assert_eq!(now, old, "killed at {point}");
            assert!(admin(false, &root, &["status"]).contains("(staged)"));
        }
    }
    admin(false, &root, &["finalize-staged"]);
    admin(false, &root, &["cleanup"]);
    let listed = admin(false, &root, &["status"]).matches("fcos ").count();
    assert_eq!(deployment_dirs(&root).len(), listed);
}

#[test]
fn prepare_root_mounts_the_deployment_as_the_root() {
    let root_user = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    let unshare = Command::new("unshare")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !root_user || !unshare {
        test_support::skip("prepare-root needs root and unshare(1) for a private mount namespace");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (_, root) = deployed_sysroot(tmp.path(), "kernel 1", &["--karg=rw"]);
    std::fs::write(root.join("ostree/deploy/fcos/var/lib/marker"), "shared var").unwrap();
    let entry = entries(&root).into_values().next().unwrap();
    let options = entry
        .lines()
        .find_map(|l| l.strip_prefix("options "))
        .unwrap()
        .to_string();
    let cmdline = tmp.path().join("cmdline");
    std::fs::write(&cmdline, format!("BOOT_IMAGE=/vmlinuz {options} quiet\n")).unwrap();
    let staging = tmp.path().join("staging");
    let script = format!(
        "set -e; mount --bind {r} {r}; {ox} prepare-root --sysroot {r} --cmdline {c} --staging {s}; \
         head -1 {r}/etc/os-release; cat {r}/var/lib/marker; echo; ls {r}/sysroot/ostree; \
         if touch {r}/usr/new 2>/dev/null; then echo usr-writable; else echo usr-readonly; fi; \
         touch {r}/etc/writable && echo etc-writable",
        r = root.display(),
        c = cmdline.display(),
        s = staging.display(),
        ox = env!("CARGO_BIN_EXE_oxcore"),
    );
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    let text = ok(out);
    assert!(text.starts_with("Prepared "), "{text}");
    assert!(text.contains("NAME=Fedora"), "{text}");
    assert!(text.contains("shared var"), "{text}");
    // The physical root's ostree/: deploy, the sysroot lock, repo.
    assert!(
        text.contains("deploy\nlock\nrepo"),
        "the physical root at /sysroot: {text}"
    );
    assert!(text.contains("usr-readonly"), "{text}");
    assert!(text.contains("etc-writable"), "{text}");
    // Outside the namespace nothing changed.
    assert!(root.join("ostree/repo").is_dir());
    // A command line naming nothing, or naming a path out of the farm, is
    // a clear error.
    for (line, want) in [
        ("root=LABEL=root rw", "No ostree= kernel argument"),
        (
            "ostree=/ostree/boot.1/fcos/../../../../etc/0",
            "Invalid ostree= argument",
        ),
    ] {
        std::fs::write(&cmdline, line).unwrap();
        let out = oxcore()
            .args([
                "prepare-root",
                "--sysroot",
                root.to_str().unwrap(),
                "--cmdline",
                cmdline.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(want),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Runs `oxcore ostree admin VERB --sysroot=ROOT ARGS` and returns its output
/// whatever the outcome.
fn admin_raw(root: &Path, args: &[&str]) -> Output {
    let s = format!("--sysroot={}", root.display());
    let mut full = vec!["ostree", "admin", args[0], &s];
    full.extend(&args[1..]);
    oxcore().args(&full).output().unwrap()
}

/// Every file under `root` (deployments, kernels, entries), for "nothing
/// was deleted" checks.
fn inventory(root: &Path) -> Vec<PathBuf> {
    walk(root)
        .into_iter()
        .filter(|p| !p.starts_with(root.join("ostree/repo/tmp")) && !p.ends_with("ostree/lock"))
        .collect()
}

/// A missing `boot/loader` link reads as boot version 0, as OSTree reads
/// it; where that leaves deployments without a readable configuration,
/// every verb refuses and nothing is deleted.
#[test]
fn a_missing_loader_link_or_unmounted_boot_never_deletes_deployments() {
    let tmp = tempfile::tempdir().unwrap();
    // Two deployments: the second switch wrote loader.0.
    let (tree, root) = deployed_sysroot(tmp.path(), "kernel 1", &[]);
    release(&tree, "41.2", "v2", "kernel 2");
    commit(false, &root, &tree, "41.2", "2026-01-02T00:00:00Z");
    admin(false, &root, &["deploy", "fcos/stable"]);
    assert_eq!(
        std::fs::read_link(root.join("boot/loader")).unwrap(),
        Path::new("loader.0")
    );
    std::fs::remove_file(root.join("boot/loader")).unwrap();
    // Read as ostree reads it: both deployments, from loader.0.
    let status = admin(false, &root, &["status"]);
    assert_eq!(status.matches("fcos ").count(), 2, "{status}");
    if have_ostree() {
        assert_eq!(status, admin(true, &root, &["status"]));
    }
    admin(false, &root, &["cleanup"]);
    assert_eq!(deployment_dirs(&root).len(), 2, "cleanup kept both");
    let entries = std::fs::read_dir(root.join("boot/loader.0/entries")).unwrap();
    assert_eq!(entries.count(), 2, "cleanup kept loader.0");

    // A third switch writes loader.1; without the link, loader.0 is gone
    // and the configuration cannot be read: every verb refuses.
    release(&tree, "41.3", "v3", "kernel 3");
    commit(false, &root, &tree, "41.3", "2026-01-03T00:00:00Z");
    admin(false, &root, &["deploy", "--retain", "fcos/stable"]);
    assert_eq!(
        std::fs::read_link(root.join("boot/loader")).unwrap(),
        Path::new("loader.1")
    );
    std::fs::remove_file(root.join("boot/loader")).unwrap();
    let before = inventory(&root);
    for verb in [
        &["cleanup"][..],
        &["status"],
        &["deploy", "fcos/stable"],
        &["undeploy", "1"],
        &["rollback"],
        &["pin", "0"],
    ] {
        let out = admin_raw(&root, verb);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{verb:?} succeeded: {err}");
        assert!(
            err.contains("the boot configuration cannot be read"),
            "{verb:?}: {err}"
        );
        assert_eq!(inventory(&root), before, "{verb:?} changed the sysroot");
    }
    // Restoring the link restores everything.
    std::os::unix::fs::symlink("loader.1", root.join("boot/loader")).unwrap();
    assert_eq!(boot_check(&root).len(), 3);

    // /boot not mounted: an empty boot directory.
    let away = tmp.path().join("boot-away");
    std::fs::rename(root.join("boot"), &away).unwrap();
    std::fs::create_dir(root.join("boot")).unwrap();
    let before = inventory(&root);
    for verb in [&["cleanup"][..], &["status"], &["deploy", "fcos/stable"]] {
        let out = admin_raw(&root, verb);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{verb:?} succeeded with /boot away");
        assert!(err.contains("3 deployment(s) exist"), "{verb:?}: {err}");
        assert_eq!(inventory(&root), before, "{verb:?} changed the sysroot");
    }
    std::fs::remove_dir(root.join("boot")).unwrap();
    std::fs::rename(&away, root.join("boot")).unwrap();
    assert_eq!(boot_check(&root).len(), 3);
}

/// A switch onto a deployment whose directory is gone (or has lost its
/// `/usr`) is refused before anything is written.
#[test]
fn rollback_onto_a_missing_deployment_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (tree, root) = deployed_sysroot(tmp.path(), "kernel 1", &[]);
    release(&tree, "41.2", "v2", "kernel 2");
    commit(false, &root, &tree, "41.2", "2026-01-02T00:00:00Z");
    admin(false, &root, &["deploy", "fcos/stable"]);
    let old = boot_check(&root);
    let dirs = deployment_dirs(&root);
    // The rollback target (41.1) is the older deployment directory.
    let target = dirs
        .iter()
        .find(|d| std::fs::read_to_string(d.join("etc/motd")).unwrap() == "v1")
        .unwrap()
        .clone();
    let _ = Command::new("chattr").arg("-i").arg(&target).status();
    std::fs::remove_dir_all(&target).unwrap();
    let loader = std::fs::read_link(root.join("boot/loader")).unwrap();
    let out = oxcore()
        .args(["rollback", &format!("--sysroot={}", root.display())])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "rollback succeeded: {err}");
    assert!(err.contains("is missing or incomplete"), "{err}");
    assert_eq!(
        std::fs::read_link(root.join("boot/loader")).unwrap(),
        loader
    );
    // The first entry still boots; the broken one stays listed second.
    assert_eq!(boot_check_first(&root), old[0]);
}

/// The default entry's title, checked to boot.
fn boot_check_first(root: &Path) -> String {
    let loader = std::fs::read_link(root.join("boot/loader")).unwrap();
    let dir = root.join("boot").join(&loader).join("entries");
    let n = std::fs::read_dir(&dir).unwrap().count();
    let text = std::fs::read_to_string(dir.join(format!("ostree-{n}-fcos.conf"))).unwrap();
    let arg = text
        .split_whitespace()
        .find_map(|a| a.strip_prefix("ostree="))
        .unwrap();
    assert!(
        root.join(arg.trim_start_matches('/'))
            .join("usr/bin/tool")
            .is_file()
    );
    text.lines()
        .find_map(|l| l.strip_prefix("title "))
        .unwrap()
        .to_string()
}

/// Two deploys at once, and a deploy racing a rollback: the sysroot lock
/// serializes them, so no deployment is lost and every entry boots.
#[test]
fn concurrent_deploys_and_rollbacks_lose_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (tree, root) = deployed_sysroot(tmp.path(), "kernel 1", &[]);
    let spawn = |args: &[&str]| {
        let s = format!("--sysroot={}", root.display());
        let mut full = vec!["ostree", "admin", args[0], &s];
        full.extend(&args[1..]);
        oxcore()
            .args(&full)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut expected = 1;
    for round in 0..3 {
        release(
            &tree,
            &format!("41.{}", round + 2),
            "v",
            &format!("kernel {round}"),
        );
        commit(
            false,
            &root,
            &tree,
            "41.x",
            &format!("2026-01-0{}T00:00:00Z", round + 2),
        );
        let a = spawn(&["deploy", "--retain", "fcos/stable"]);
        let b = spawn(&["deploy", "--retain", "fcos/stable"]);
        for c in [a, b] {
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        expected += 2;
        assert_eq!(boot_check(&root).len(), expected, "round {round}");
        assert_eq!(deployment_dirs(&root).len(), expected, "round {round}");
    }
    // A deploy racing a rollback: whatever the order, both happen.
    let a = spawn(&["deploy", "--retain", "fcos/stable"]);
    let b = spawn(&["rollback"]);
    for c in [a, b] {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(boot_check(&root).len(), expected + 1);
    assert_eq!(deployment_dirs(&root).len(), expected + 1);
}

/// `ostree admin` waits while oxcore holds the sysroot lock (and so the
/// agent and a person typing `ostree admin` never interleave).
#[test]
fn ostree_waits_for_our_sysroot_lock() {
    if !have_ostree() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    init_sysroot(&root);
    let sr = sysroot::Sysroot::open(&root).unwrap();
    let lock = sr.lock().unwrap();
    let mut child = Command::new("ostree")
        .args(["admin", "cleanup", &format!("--sysroot={}", root.display())])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // It says it waits (on stdout), and has not finished while the lock
    // is held.
    let mut err = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut err, &mut line).unwrap();
    assert_eq!(line.trim(), "Waiting for sysroot lock...");
    assert!(
        child.try_wait().unwrap().is_none(),
        "ostree ran under our lock"
    );
    drop(lock);
    assert!(child.wait().unwrap().success());
}

/// Boot counters (the agent's trial boots): carried through rewrites of
/// the configuration, renamed in place, never written for `ostree admin`'s
/// deployments; a sysroot with a counted entry is still one the real
/// `ostree admin status` reads as we do.
#[test]
fn boot_counters_are_carried_renamed_and_read_by_ostree() {
    use sysroot::bls::BootCounter;
    let tmp = tempfile::tempdir().unwrap();
    let (tree, root) = deployed_sysroot(tmp.path(), "k1", &["--karg=root=LABEL=root"]);
    release(&tree, "41.2", "v2", "k2");
    let c2 = commit(false, &root, &tree, "41.2", "2026-02-01T00:00:00Z");
    let sr = sysroot::Sysroot::open(&root).unwrap();
    let origin = sr.deployments().unwrap()[0].origin.clone();
    let c2 = ostree_store::Checksum::from_hex(&c2).unwrap();
    sr.stage_with_trial("fcos", &c2, origin, None, false, Some(3))
        .unwrap();
    sr.finalize_staged(false).unwrap();
    let names: Vec<String> = entries(&root).into_keys().collect();
    assert_eq!(names, ["ostree-1-fcos.conf", "ostree-2-fcos+3.conf"]);
    let d = sr.deployments().unwrap();
    assert_eq!(d[0].boot_counter, Some(BootCounter::new(3)));
    assert_eq!(d[1].boot_counter, None);
    // The bootloader's rename, then a rewrite of the whole configuration
    // (a kernel argument changed in place): the counter goes along.
    sr.set_boot_counter(0, Some(BootCounter { left: 2, done: 1 }))
        .unwrap();
    sr.edit_kargs_in_place(|k| format!("{k} quiet")).unwrap();
    let e = entries(&root);
    assert!(e.contains_key("ostree-2-fcos+2-1.conf"), "{e:?}");
    assert!(e["ostree-2-fcos+2-1.conf"].contains(" quiet"));
    if common::have_ostree() {
        same_status(&root);
    }
    // Marked good: the plain name, the text unchanged.
    let text = e["ostree-2-fcos+2-1.conf"].clone();
    sr.set_boot_counter(0, None).unwrap();
    let e = entries(&root);
    assert_eq!(e.get("ostree-2-fcos.conf"), Some(&text));
    // `ostree admin deploy` (ours) writes no counter.
    admin(false, &root, &["deploy", "fcos/stable"]);
    assert!(entries(&root).keys().all(|n| !n.contains('+')));
}
