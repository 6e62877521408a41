//! `oxcore install` on loop devices: a Fedora CoreOS-shaped disk image
//! (GPT with BIOS-BOOT, EFI-SYSTEM, boot, root; an ext4 `boot` with a BLS
//! entry) published with `oxcore release compose --artifact … --sign-key`
//! and served over HTTP, installed from the stream metadata; the Ignition
//! config and kernel arguments read back from the disk with `debugfs`.
//! Refusals (bad SHA-256, wrong key, a mounted disk) write nothing; a
//! failure after writing resets the partition table.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{ok, run};

fn oxcore(args: &[&str]) -> Output {
    common::oxcore().args(args).output().unwrap()
}

fn usable() -> bool {
    test_support::root("install tests need loop devices and mounts")
        && test_support::have("losetup", &["--version"], "install tests need losetup")
        && test_support::have(
            "sgdisk",
            &["--version"],
            "install tests need sgdisk (gdisk)",
        )
        && test_support::have("debugfs", &["-V"], "install tests need debugfs (e2fsprogs)")
}

/// A loop device over a file of `mib` MiB, detached when dropped.
struct Loop {
    dev: String,
    file: PathBuf,
}

impl Loop {
    fn new(dir: &Path, mib: u64) -> Loop {
        let file = dir.join("disk");
        // A pattern, so that "nothing was written" can be checked.
        std::fs::write(&file, vec![0x5a; (mib << 20) as usize]).unwrap();
        let dev = run(&["losetup", "-f", "--show", file.to_str().unwrap()])
            .trim()
            .to_string();
        Loop { dev, file }
    }

    fn content(&self) -> Vec<u8> {
        std::fs::read(&self.file).unwrap()
    }

    fn part(&self, n: u32) -> String {
        format!("{}p{n}", self.dev)
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("partx").args(["-d", &self.dev]).output();
        let _ = Command::new("losetup").args(["-d", &self.dev]).output();
    }
}

/// A 40 MiB image shaped as Fedora CoreOS's, its boot entry's options
/// `options`.
fn make_image(dir: &Path, options: &str) -> PathBuf {
    let img = dir.join("fedora-coreos-41.20261125.1.0-metal.x86_64.raw");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(40 << 20)
        .unwrap();
    let i = img.to_str().unwrap();
    run(&[
        "sgdisk",
        "-n",
        "1:2048:+1M",
        "-c",
        "1:BIOS-BOOT",
        "-t",
        "1:EF02",
        "-n",
        "2:0:+8M",
        "-c",
        "2:EFI-SYSTEM",
        "-t",
        "2:EF00",
        "-n",
        "3:0:+16M",
        "-c",
        "3:boot",
        "-n",
        "4:0:0",
        "-c",
        "4:root",
        i,
    ]);
    let info = run(&["sgdisk", "-i", "3", i]);
    let first: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("First sector: "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    let boot = dir.join("bootfs");
    let entries = boot.join("loader/entries");
    std::fs::create_dir_all(&entries).unwrap();
    std::fs::write(
        entries.join("ostree-1-fedora-coreos.conf"),
        format!("title Fedora CoreOS 41.20261125.1.0 (ostree:0)\nversion 1\noptions {options}\nlinux /ostree/fedora-coreos-abc/vmlinuz-6.1.0\n"),
    )
    .unwrap();
    run(&[
        "mkfs.ext4",
        "-q",
        "-F",
        "-L",
        "boot",
        "-d",
        boot.to_str().unwrap(),
        "-E",
        &format!("offset={}", first * 512),
        i,
        "16M",
    ]);
    img
}

fn debugfs_cat(dev: &str, path: &str) -> String {
    run(&["debugfs", "-R", &format!("cat {path}"), dev])
}

const OPTIONS: &str = "root=LABEL=root rw ignition.platform.id=metal console=tty0 ostree=/ostree/boot.1/fedora-coreos/abc/0";

/// Publishes `img` on stream `next` (signed with a new key) under a served
/// metadata tree: (server, public key file, published image path).
fn publish(dir: &Path, img: &Path) -> (common::Server, PathBuf, PathBuf) {
    let meta = dir.join("meta");
    std::fs::create_dir_all(&meta).unwrap();
    let server = common::serve(&meta);
    let keys = ok(oxcore(&["ostree", "generate-key"]));
    let secret = dir.join("key");
    std::fs::write(&secret, &keys).unwrap();
    let public = dir.join("key.pub");
    std::fs::write(
        &public,
        keys.lines().find(|l| l.starts_with("public: ")).unwrap(),
    )
    .unwrap();
    let repo = dir.join("repo");
    ok(oxcore(&[
        "ostree",
        &format!("--repo={}", repo.display()),
        "init",
        "--mode=archive",
    ]));
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("usr/etc")).unwrap();
    ok(oxcore(&[
        "release",
        "compose",
        "--repo",
        repo.to_str().unwrap(),
        "--metadata",
        meta.to_str().unwrap(),
        "--base-url",
        &format!("http://127.0.0.1:{}", server.1),
        "--sign-key",
        secret.to_str().unwrap(),
        "--stream",
        "next",
        "--tree",
        tree.to_str().unwrap(),
        "--version",
        "41.20261125.1.0",
        &format!("--artifact=metal:raw:disk={}", img.display()),
    ]));
    let published = meta
        .join("prod/streams/next/builds/41.20261125.1.0/x86_64")
        .join(img.file_name().unwrap());
    (server, public, published)
}

#[test]
fn installs_from_signed_stream_metadata_and_refuses_what_does_not_check() {
    if !usable() || std::env::consts::ARCH != "x86_64" {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let img = make_image(tmp.path(), OPTIONS);
    let (server, public, published) = publish(tmp.path(), &img);
    let disk = Loop::new(tmp.path(), 64);
    let config = tmp.path().join("config.ign");
    std::fs::write(&config, "{\"ignition\": {\"version\": \"3.4.0\"}}\n").unwrap();
    let base = format!("http://127.0.0.1:{}/streams/", server.1);
    let install = |extra: &[&str]| {
        let mut a = vec![
            "install",
            &disk.dev,
            "--stream",
            "next",
            "--stream-base-url",
            &base,
            "--ignition-file",
            config.to_str().unwrap(),
        ];
        a.extend_from_slice(extra);
        oxcore(&a)
    };

    // A key that did not sign it: refused, the disk untouched.
    let other = tmp.path().join("other.pub");
    let keys = ok(oxcore(&["ostree", "generate-key"]));
    std::fs::write(
        &other,
        keys.lines().find(|l| l.starts_with("public: ")).unwrap(),
    )
    .unwrap();
    let before = disk.content();
    let out = install(&["--signing-key", other.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("signature verification failure"), "{err}");
    assert!(disk.content() == before, "the disk was written");

    // The image changed after publication: its SHA-256 no longer matches.
    let good = std::fs::read(&published).unwrap();
    let mut bad = good.clone();
    bad[(2 << 20) + 7] ^= 1;
    std::fs::write(&published, &bad).unwrap();
    let out = install(&["--signing-key", public.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the stream metadata says"), "{err}");
    assert!(disk.content() == before, "the disk was written");
    std::fs::write(&published, &good).unwrap();

    // The real thing.
    let out = install(&[
        "--signing-key",
        public.to_str().unwrap(),
        "--platform",
        "qemu",
        "--append-karg",
        "foo=bar",
        "--delete-karg",
        "console=tty0",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("Downloading Fedora CoreOS next x86_64 metal raw image (raw) and signature"),
        "{err}"
    );
    assert!(err.contains("Writing Ignition config\nSetting platform to qemu\nModifying kernel arguments\nInstall complete."), "{err}");
    // The disk holds the image, with the config and the edited entry on
    // its boot partition.
    let written = disk.content();
    assert_eq!(
        &written[..good.len()][(3 << 20)..(4 << 20)],
        &good[(3 << 20)..(4 << 20)]
    );
    assert_eq!(&written[..512 * 2], &good[..512 * 2]);
    assert_eq!(
        debugfs_cat(&disk.part(3), "/ignition/config.ign"),
        "{\"ignition\": {\"version\": \"3.4.0\"}}\n"
    );
    let stat = run(&["debugfs", "-R", "stat /ignition/config.ign", &disk.part(3)]);
    assert!(stat.contains("Mode:  0600"), "{stat}");
    let entry = debugfs_cat(&disk.part(3), "/loader/entries/ostree-1-fedora-coreos.conf");
    assert!(
        entry.contains("options root=LABEL=root rw ignition.platform.id=qemu ostree=/ostree/boot.1/fedora-coreos/abc/0 foo=bar\n"),
        "{entry}"
    );

    // In use: one of its partitions mounted. Refused, nothing written.
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    run(&["mount", "-o", "ro", &disk.part(3), mnt.to_str().unwrap()]);
    let before = disk.content();
    let out = install(&["--signing-key", public.to_str().unwrap()]);
    let _ = Command::new("umount").arg(&mnt).output();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("Partitions in use on {}:", disk.dev))
            && err.contains(&format!("{} mounted on {}", disk.part(3), mnt.display()))
            && err.contains("found busy partitions"),
        "{err}"
    );
    assert!(disk.content() == before, "the disk was written");
}

#[test]
fn a_failure_after_writing_resets_the_partition_table() {
    if !usable() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // No `ignition.platform.id=metal` to replace.
    let img = make_image(tmp.path(), "root=LABEL=root rw");
    let disk = Loop::new(tmp.path(), 64);
    let out = oxcore(&[
        "install",
        &disk.dev,
        "--image-file",
        img.to_str().unwrap(),
        "--insecure",
        "--platform",
        "qemu",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Signature not found; skipping verification as requested"),
        "{err}"
    );
    assert!(
        err.contains("\nError: couldn't locate platform ID\n\nResetting partition table\n"),
        "{err}"
    );
    // An empty GPT: no partitions.
    let table = run(&["sgdisk", "-p", &disk.dev]);
    let parts = table
        .lines()
        .skip_while(|l| !l.starts_with("Number"))
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .count();
    assert_eq!(parts, 0, "{table}");
    // A disk of 4096-byte sectors and an image made for 512: refused
    // before writing.
    let file4k = tmp.path().join("disk4k");
    std::fs::write(&file4k, vec![0x5a; 64 << 20]).unwrap();
    let dev4k = run(&[
        "losetup",
        "-f",
        "--show",
        "--sector-size",
        "4096",
        file4k.to_str().unwrap(),
    ])
    .trim()
    .to_string();
    let out = oxcore(&[
        "install",
        &dev4k,
        "--image-file",
        img.to_str().unwrap(),
        "--insecure",
    ]);
    let _ = Command::new("losetup").args(["-d", &dev4k]).output();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("source has sector size 512 but destination has sector size 4096"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::read(&file4k).unwrap().iter().all(|&b| b == 0x5a));
    // Without a signature and without --insecure: refused before writing.
    let disk2 = Loop::new(&tmp.path().join("second").tap_mkdir(), 64);
    let before = disk2.content();
    let out = oxcore(&["install", &disk2.dev, "--image-file", img.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("--insecure not specified and signature not found")
    );
    assert!(disk2.content() == before);
}

trait TapMkdir {
    fn tap_mkdir(self) -> PathBuf;
}

impl TapMkdir for PathBuf {
    fn tap_mkdir(self) -> PathBuf {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}
