//! The store through its API: commits in every mode, lookups and diffs,
//! checkouts, copies between repositories, fsck, remotes, and pulling over
//! HTTP from a test server. The CLI tests compare with `ostree`; these pin
//! the library the agent and the sysroot use.

use std::path::Path;

use ostree_store::checkout::{CheckoutOptions, checkout};
use ostree_store::commit::{CommitInfo, CommitOptions, TreeBuilder, write_commit};
use ostree_store::gvariant::Value;
use ostree_store::pull::{PullStats, pull_local};
use ostree_store::remote::{KeySource, NewRemote, PullRequest, Remote};
use ostree_store::tree::{self, Change, Node};
use ostree_store::{Checksum, Repo, RepoMode, fsck};

fn write(root: &Path, rel: &str, data: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

fn commit(repo: &Repo, tree: &Path, branch: &str, version: &str) -> Checksum {
    let tx = repo.begin().unwrap();
    let mut b = TreeBuilder::new(&tx, CommitOptions::default());
    b.add_dir(tree).unwrap();
    let root = b.write().unwrap();
    let info = CommitInfo {
        subject: format!("v{version}"),
        body: String::new(),
        timestamp: Some(1_700_000_000),
        parent: repo.read_ref(None, branch).unwrap(),
        metadata: vec![("version".into(), Value::Str(version.into()))],
    };
    let c = write_commit(&tx, &info, root).unwrap();
    tx.set_ref(None, branch, Some(c));
    tx.commit().unwrap();
    c
}

#[test]
fn commits_lookups_diffs_and_checkouts_in_every_mode() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    write(&tree, "usr/bin/tool", "#!/bin/sh\n");
    write(&tree, "usr/share/a", "a");
    std::os::unix::fs::symlink("tool", tree.join("usr/bin/alias")).unwrap();
    let mut checksums = Vec::new();
    for mode in [
        RepoMode::Archive,
        RepoMode::BareUser,
        RepoMode::BareUserOnly,
    ] {
        let repo = Repo::init(&tmp.path().join(mode.config_name()), mode).unwrap();
        let c1 = commit(&repo, &tree, "main", "1");
        checksums.push(c1);
        let commit1 = repo.load_commit(&c1).unwrap();
        assert_eq!(commit1.version(), Some("1"));
        match tree::lookup(&repo, &commit1, "/usr/share/a").unwrap() {
            Node::File(_) => {}
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            tree::lookup(&repo, &commit1, "/usr").unwrap(),
            Node::Dir(..)
        ));
        assert!(tree::lookup(&repo, &commit1, "/nope").is_err());
        // A second commit: one file changed, one added, one removed.
        let tree2 = tmp.path().join(format!("tree2-{}", mode.config_name()));
        write(&tree2, "usr/bin/tool", "#!/bin/sh\necho 2\n");
        write(&tree2, "usr/share/b", "b");
        std::os::unix::fs::symlink("tool", tree2.join("usr/bin/alias")).unwrap();
        let c2 = commit(&repo, &tree2, "main", "2");
        let commit2 = repo.load_commit(&c2).unwrap();
        assert_eq!(commit2.parent, Some(c1));
        let d = tree::diff(&repo, &commit1, &commit2).unwrap();
        assert_eq!(
            d,
            vec![
                (Change::Modified, "/usr/bin/tool".to_string()),
                (Change::Deleted, "/usr/share/a".to_string()),
                (Change::Added, "/usr/share/b".to_string()),
            ]
        );
        let dest = tmp.path().join(format!("co-{}", mode.config_name()));
        let opts = CheckoutOptions {
            user_mode: true,
            ..Default::default()
        };
        checkout(&repo, &c2, &dest, &opts).unwrap();
        assert_eq!(
            std::fs::read_to_string(dest.join("usr/share/b")).unwrap(),
            "b"
        );
        assert_eq!(
            std::fs::read_link(dest.join("usr/bin/alias")).unwrap(),
            Path::new("tool")
        );
        let report = fsck::fsck(&repo, &mut |_, _| {}).unwrap();
        assert!(report.errors.is_empty(), "{:?}", report.errors);
    }
    // The same tree names the same commit whatever the mode.
    assert!(checksums.windows(2).all(|w| w[0] == w[1]), "{checksums:?}");
}

#[test]
fn copies_between_repositories_are_rehashed_and_complete() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    write(&tree, "etc/os-release", "ID=test\n");
    let src = Repo::init(&tmp.path().join("src"), RepoMode::Archive).unwrap();
    let c = commit(&src, &tree, "os/stable", "1");
    let dst = Repo::init(&tmp.path().join("dst"), RepoMode::BareUser).unwrap();
    let got = pull_local(&dst, &src, &["os/stable".to_string()], Some("origin")).unwrap();
    assert_eq!(got, vec![("os/stable".to_string(), c)]);
    assert_eq!(dst.resolve_rev("origin:os/stable").unwrap(), c);
    let report = fsck::fsck(&dst, &mut |_, _| {}).unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
}

#[test]
fn remotes_are_kept_in_the_config_and_pulled_from() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    write(&tree, "usr/lib/x", "x");
    let served = Repo::init(&tmp.path().join("served"), RepoMode::Archive).unwrap();
    let c = commit(&served, &tree, "fcos/stable", "41.1");
    let mut repo = Repo::init(&tmp.path().join("node"), RepoMode::BareUser).unwrap();
    let url = format!("file://{}", tmp.path().join("served").display());
    let new = NewRemote {
        name: "fedora".into(),
        url: url.clone(),
        branches: vec!["fcos/stable".into()],
        no_gpg_verify: true,
        sign_verify: None,
        set: vec![("tls-ca-path".into(), "/etc/pki/ca.pem".into())],
    };
    assert!(Remote::add(&mut repo, &new, false).unwrap());
    assert!(
        !Remote::add(&mut repo, &new, true).unwrap(),
        "if-not-exists"
    );
    assert!(Remote::add(&mut repo, &new, false).is_err(), "exists");
    let r = Remote::load(&repo, "fedora").unwrap();
    assert_eq!(r.url, url);
    assert_eq!(r.branches, ["fcos/stable"]);
    assert_eq!(r.tls_ca_path.as_deref(), Some(Path::new("/etc/pki/ca.pem")));
    assert_eq!(
        Remote::list(&repo),
        vec![("fedora".to_string(), url.clone())]
    );
    // The CA file does not exist: the fetcher names it.
    assert!(
        r.fetcher()
            .unwrap_err()
            .to_string()
            .contains("/etc/pki/ca.pem")
    );
    Remote::set(&mut repo, "fedora", &url, &[]).unwrap();
    let mut r = Remote::load(&repo, "fedora").unwrap();
    r.tls_ca_path = None;
    let stats = PullStats::default();
    let report = r.pull(&repo, &PullRequest::new(&[], &stats)).unwrap();
    assert_eq!(report.refs, vec![("fcos/stable".to_string(), c)]);
    assert_eq!(repo.resolve_rev("fedora:fcos/stable").unwrap(), c);
    // Signatures required, and no key: refused before anything is pulled.
    let signed = NewRemote {
        name: "signed".into(),
        url,
        sign_verify: Some(KeySource::Inline(String::new())),
        ..Default::default()
    };
    Remote::add(&mut repo, &signed, false).unwrap();
    let s = Remote::load(&repo, "signed").unwrap();
    assert!(s.sign_verify);
    let refs = ["fcos/stable".to_string()];
    let err = s.pull(&repo, &PullRequest::new(&refs, &stats)).unwrap_err();
    assert!(err.to_string().contains("requires signatures"), "{err}");
    assert!(Remote::delete(&mut repo, "signed", false).unwrap());
    assert!(!Remote::delete(&mut repo, "signed", true).unwrap());
    assert!(Remote::load(&repo, "signed").is_err());
}
