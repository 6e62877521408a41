//! The sysroot through its API: deploy, upgrade policy, and `status` in
//! the shape `rpm-ostree status --json` has, checked against the fields and
//! types upstream Zincati's status parser requires (a copy of its
//! `Deployment` struct, src/rpm_ostree/cli_status.rs).

use std::path::Path;

use ostree_store::commit::{CommitInfo, CommitOptions, TreeBuilder, write_commit};
use ostree_store::gvariant::Value;
use ostree_store::pull::PullStats;
use ostree_store::{Checksum, Repo};
use serde::Deserialize;
use sysroot::{Error, Puller, Sysroot, UpdateOptions, Upgrade, origin_for_refspec};

/// Zincati's view of a deployment: every field it reads, with its type.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[allow(dead_code)] // the fields are what Zincati deserializes
struct ZincatiDeployment {
    booted: bool,
    container_image_reference: Option<String>,
    container_image_reference_digest: Option<String>,
    base_checksum: Option<String>,
    base_commit_meta: ZincatiBaseCommitMeta,
    checksum: String,
    #[serde(default)]
    staged: bool,
    version: String,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct ZincatiBaseCommitMeta {
    #[serde(rename = "ostree.manifest")]
    oci_manifest: Option<String>,
    #[serde(rename = "ostree.container.image-config")]
    oci_image_configuration: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ZincatiStatus {
    deployments: Vec<ZincatiDeployment>,
}

/// A release tree: a kernel, an initramfs, os-release, /etc defaults.
fn release(dir: &Path, version: &str) {
    let _ = std::fs::remove_dir_all(dir);
    for (p, data) in [
        ("usr/lib/modules/6.1.0/vmlinuz", format!("kernel {version}")),
        (
            "usr/lib/modules/6.1.0/initramfs.img",
            "initramfs".to_string(),
        ),
        (
            "usr/lib/os-release",
            format!("NAME=Fedora\nID=fedora\nPRETTY_NAME=\"Fedora CoreOS {version}\"\n"),
        ),
        ("usr/etc/motd", format!("motd {version}\n")),
    ] {
        let path = dir.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    }
}

/// Commits `tree` on `fcos/stable` with FCOS's metadata.
fn commit(repo: &Repo, tree: &Path, version: &str, timestamp: u64) -> Checksum {
    let tx = repo.begin().unwrap();
    let mut b = TreeBuilder::new(&tx, CommitOptions::default());
    b.add_dir(tree).unwrap();
    let root = b.write().unwrap();
    let parent = repo.read_ref(None, "fcos/stable").unwrap();
    let info = CommitInfo {
        subject: String::new(),
        body: String::new(),
        timestamp: Some(timestamp),
        parent,
        metadata: vec![
            ("version".into(), Value::Str(version.into())),
            ("fedora-coreos.stream".into(), Value::Str("stable".into())),
            (
                "coreos-assembler.basearch".into(),
                Value::Str("x86_64".into()),
            ),
            ("ostree.bootable".into(), Value::Bool(true)),
        ],
    };
    let c = write_commit(&tx, &info, root).unwrap();
    tx.set_ref(None, "fcos/stable", Some(c));
    tx.commit().unwrap();
    c
}

/// Marks `d` (by its boot entry) as the booted deployment, as a booted
/// host's `/run/ostree-booted` and `/proc/cmdline` would.
fn boot(sr: &Sysroot) {
    let list = sr.deployments().unwrap();
    let arg = list[0]
        .kargs
        .split_whitespace()
        .find(|a| a.starts_with("ostree="))
        .unwrap()
        .to_string();
    std::fs::create_dir_all(sr.path().join("run")).unwrap();
    std::fs::write(sr.path().join("run/ostree-booted"), "").unwrap();
    std::fs::create_dir_all(sr.path().join("proc")).unwrap();
    std::fs::write(sr.path().join("proc/cmdline"), format!("rw {arg}\n")).unwrap();
}

fn quiet_puller(stats: &PullStats) -> Puller<'_> {
    Puller {
        connections: 1,
        stats,
        progress: &|_| {},
    }
}

#[test]
fn status_speaks_rpm_ostree_json_as_zincati_reads_it() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let sr = Sysroot::init_fs(&root).unwrap();
    sr.os_init("fedora-coreos").unwrap();
    let tree = tmp.path().join("tree");
    release(&tree, "41.20260101.3.0");
    let c1 = commit(sr.repo(), &tree, "41.20260101.3.0", 1_767_225_600);
    sr.deploy(
        "fedora-coreos",
        &c1,
        origin_for_refspec("fcos/stable"),
        Some("rw".into()),
        &Default::default(),
    )
    .unwrap();
    boot(&sr);
    // An update committed, not deployed yet: a pending base.
    release(&tree, "41.20260115.3.0");
    let c2 = commit(sr.repo(), &tree, "41.20260115.3.0", 1_768_435_200);
    sr.register_update_driver("oxcore agent", "oxcore-agent.service")
        .unwrap();

    let status = sr.status().unwrap();
    let json = status.to_rpm_ostree_json();
    let z: ZincatiStatus = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(z.deployments.len(), 1);
    let d = &z.deployments[0];
    assert!(d.booted && !d.staged);
    assert_eq!(d.checksum, c1.to_hex());
    assert_eq!(d.version, "41.20260101.3.0");
    assert_eq!(d.base_checksum, None, "not layered");
    let j = &json["deployments"][0];
    assert_eq!(j["id"], format!("fedora-coreos-{c1}.0"));
    assert_eq!(j["osname"], "fedora-coreos");
    assert_eq!(j["serial"], 0);
    assert_eq!(j["timestamp"], 1_767_225_600u64);
    assert_eq!(j["pinned"], false);
    assert_eq!(j["unlocked"], "none");
    assert_eq!(j["origin"], "fcos/stable");
    assert_eq!(j["base-commit-meta"]["fedora-coreos.stream"], "stable");
    assert_eq!(j["base-commit-meta"]["coreos-assembler.basearch"], "x86_64");
    assert_eq!(j["base-commit-meta"]["ostree.bootable"], true);
    assert_eq!(j["pending-base-checksum"], c2.to_hex());
    assert_eq!(j["pending-base-version"], "41.20260115.3.0");
    assert_eq!(j["requested-packages"], serde_json::json!([]));
    assert_eq!(j["base-remote-replacements"], serde_json::json!({}));
    assert_eq!(json["transaction"], serde_json::Value::Null);
    assert_eq!(json["cached-update"], serde_json::Value::Null);
    assert_eq!(
        json["update-driver"],
        serde_json::json!({"driver-name": "oxcore agent", "driver-sd-unit": "oxcore-agent.service"})
    );

    // Staged with finalization held: listed first, staged, locked.
    let stats = PullStats::default();
    let opts = UpdateOptions {
        lock_finalization: true,
        ..Default::default()
    };
    match sr.upgrade(&opts, &quiet_puller(&stats)).unwrap() {
        (None, Upgrade::Deployed(d)) => assert_eq!(d.checksum, c2),
        other => panic!("{other:?}"),
    }
    let json = sr.status().unwrap().to_rpm_ostree_json();
    let z: ZincatiStatus = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(z.deployments.len(), 2);
    assert!(z.deployments[0].staged && !z.deployments[0].booted);
    assert_eq!(z.deployments[0].version, "41.20260115.3.0");
    assert!(z.deployments[1].booted);
    assert_eq!(json["deployments"][0]["finalization-locked"], true);
}

#[test]
fn upgrades_refuse_downgrades_and_versions_deploy_as_overrides() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let sr = Sysroot::init_fs(&root).unwrap();
    sr.os_init("fcos").unwrap();
    let tree = tmp.path().join("tree");
    release(&tree, "41.1");
    let c1 = commit(sr.repo(), &tree, "41.1", 2_000);
    sr.deploy(
        "fcos",
        &c1,
        origin_for_refspec("fcos/stable"),
        None,
        &Default::default(),
    )
    .unwrap();
    let stats = PullStats::default();
    let puller = quiet_puller(&stats);
    assert!(matches!(
        sr.upgrade(&UpdateOptions::default(), &puller).unwrap(),
        (None, Upgrade::NoUpdate)
    ));
    // An older commit on the ref: refused, as a typed error.
    release(&tree, "41.0");
    let c0 = commit(sr.repo(), &tree, "41.0", 1_000);
    match sr.upgrade(&UpdateOptions::default(), &puller) {
        Err(Error::Downgrade { new, old, .. }) => assert_eq!((new, old), (c0, c1)),
        other => panic!("{other:?}"),
    }
    let allow = UpdateOptions {
        allow_downgrade: true,
        ..Default::default()
    };
    sr.upgrade(&allow, &puller).unwrap();
    assert_eq!(sr.deployments().unwrap()[0].checksum, c0);
    // A version of the ref's history, as an override commit.
    let d = sr
        .deploy_revision("41.1", &UpdateOptions::default())
        .unwrap();
    assert_eq!(d.checksum, c1);
    assert_eq!(d.override_commit(), Some(c1.to_hex().as_str()));
    assert!(matches!(
        sr.deploy_revision("40.9", &UpdateOptions::default()),
        Err(Error::VersionNotFound { .. })
    ));
}
