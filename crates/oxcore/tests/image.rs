//! `oxcore image build` on loop devices: a release of a small tree is
//! built into a raw image, which is then read from the outside — the GPT
//! (labels, type GUIDs, disk GUID, offsets) with `sgdisk`, the boot
//! partition with `debugfs` (BLS entry, GRUB's generated and static
//! configurations, grubenv, the first-boot stamp), the MBR and the BIOS
//! boot partition (GRUB's boot sector and core image, patched to find each
//! other), the ESP with `mdir` — and the artifact is in the signed
//! metadata. A 4K-sector image has the same layout in 4096-byte sectors
//! and GRUB for UEFI only. A build that fails halfway leaves no image,
//! temporary file, loop device or mount behind. (Booting it is
//! tests/vm/os-boot.sh.)

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{ok, run};

fn oxcore(args: &[&str]) -> Output {
    common::oxcore().args(args).output().unwrap()
}

fn usable() -> bool {
    test_support::root("image build tests need loop devices and mounts")
        && test_support::have("sgdisk", &["--version"], "image tests need sgdisk (gdisk)")
        && test_support::have("debugfs", &["-V"], "image tests need debugfs (e2fsprogs)")
        && test_support::have("mkfs.xfs", &["-V"], "image tests need mkfs.xfs (xfsprogs)")
        && test_support::have("mdir", &["--version"], "image tests need mtools")
        && test_support::have(
            "grub-mkimage",
            &["--version"],
            "image tests need grub-mkimage (grub-common)",
        )
        && (Path::new("/usr/lib/grub/i386-pc/boot.img").exists() || {
            test_support::skip("image tests need GRUB's modules (grub-pc-bin)");
            false
        })
}

/// A tree with what a deployment needs: a kernel and an initramfs under
/// usr/lib/modules, /usr/etc.
fn tree(dir: &Path) -> std::path::PathBuf {
    let t = dir.join("tree");
    let k = t.join("usr/lib/modules/6.1.0-test");
    std::fs::create_dir_all(&k).unwrap();
    std::fs::write(k.join("vmlinuz"), b"not really a kernel").unwrap();
    std::fs::write(k.join("initramfs.img"), b"not really an initramfs").unwrap();
    std::fs::create_dir_all(t.join("usr/etc")).unwrap();
    std::fs::write(
        t.join("usr/etc/os-release"),
        "PRETTY_NAME=\"oxcore test\"\n",
    )
    .unwrap();
    std::fs::create_dir_all(t.join("usr/bin")).unwrap();
    std::fs::write(t.join("usr/bin/true"), b"").unwrap();
    t
}

/// A signed stream with one release of `tree`; returns the secret key's
/// line and the public key.
fn release(dir: &Path) -> (String, String) {
    let repo = dir.join("repo");
    ok(oxcore(&[
        "ostree",
        &format!("--repo={}", repo.display()),
        "init",
        "--mode=archive",
    ]));
    let keys = String::from_utf8(oxcore(&["ostree", "generate-key"]).stdout).unwrap();
    let get = |p: &str| {
        keys.lines()
            .find_map(|l| l.strip_prefix(p))
            .unwrap()
            .to_string()
    };
    let (secret, public) = (get("secret: "), get("public: "));
    let t = tree(dir);
    ok(oxcore(&[
        "release",
        "compose",
        "--repo",
        repo.to_str().unwrap(),
        "--metadata",
        dir.join("meta").to_str().unwrap(),
        "--sign-key",
        &secret,
        "--stream",
        "stable",
        "--tree",
        t.to_str().unwrap(),
        "--version",
        "41.20261201.3.0",
    ]));
    (secret, public)
}

fn build(dir: &Path, secret: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "image".to_string(),
        "build".into(),
        "--repo".into(),
        dir.join("repo").display().to_string(),
        "--metadata".into(),
        dir.join("meta").display().to_string(),
        "--sign-key".into(),
        secret.into(),
        "--stream".into(),
        "stable".into(),
        "--output-dir".into(),
        dir.join("images").display().to_string(),
        "--size-mib".into(),
        "1100".into(),
        "--remote".into(),
        "fedora=http://updates.example.test/repo".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    oxcore(&a)
}

fn loops_on(dir: &Path) -> String {
    let all = run(&["losetup", "-a"]);
    all.lines()
        .filter(|l| l.contains(&dir.display().to_string()))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_raw_image_has_fedora_coreos_layout_and_a_bootloader() {
    if !usable() {
        return;
    }
    let d = tempfile::tempdir_in("/var/tmp").unwrap();
    let (secret, public) = release(d.path());
    let o = build(d.path(), &secret, &["--format", "raw", "--karg", "quiet"]);
    ok(o);
    let img = d
        .path()
        .join("images/oxcore-41.20261201.3.0-metal.x86_64.raw");
    assert!(img.is_file());
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 1100 << 20);

    // The partition table.
    let p = run(&["sgdisk", "--print", img.to_str().unwrap()]);
    assert!(
        p.contains("Disk identifier (GUID): 00000000-0000-4000-A000-000000000001"),
        "{p}"
    );
    assert_partitions(&p, ["2048", "4096", "264192", "1050624"]);
    for (n, guid) in [
        ("1", "21686148-6449-6E6F-744E-656564454649"),
        ("3", "BC13C2FF-59E6-4262-A352-B275FD6F7172"),
        ("4", "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"),
    ] {
        let info = run(&["sgdisk", &format!("--info={n}"), img.to_str().unwrap()]);
        assert!(info.contains(guid), "{info}");
    }

    // GRUB for BIOS: boot.img in the MBR pointing at the core image in
    // partition 1, whose blocklist points at its second sector; the
    // protective MBR's partition table is intact.
    let bytes = std::fs::read(&img).unwrap();
    let boot_img = std::fs::read("/usr/lib/grub/i386-pc/boot.img").unwrap();
    assert_eq!(&bytes[0x66..0x68], &[0x90, 0x90]);
    assert_eq!(
        u64::from_le_bytes(bytes[0x5c..0x64].try_into().unwrap()),
        2048
    );
    assert_eq!(&bytes[0x68..0x1b8], &boot_img[0x68..0x1b8]);
    assert_eq!(bytes[0x1c2], 0xee, "protective MBR partition type");
    assert_eq!(&bytes[0x1fe..0x200], &[0x55, 0xaa]);
    let core = &bytes[2048 * 512..2049 * 512];
    let diskboot = std::fs::read("/usr/lib/grub/i386-pc/diskboot.img").unwrap();
    assert_eq!(
        &core[..0x100],
        &diskboot[..0x100],
        "the core starts with diskboot.img"
    );
    assert_eq!(
        u64::from_le_bytes(core[0x1f4..0x1fc].try_into().unwrap()),
        2049
    );

    // The boot partition, read with debugfs from a loop device.
    let dev = run(&[
        "losetup",
        "-f",
        "--show",
        "--read-only",
        img.to_str().unwrap(),
    ])
    .trim()
    .to_string();
    let detach = scopeguard(dev.clone());
    run(&["partx", "--update", &dev]);
    let cat = |part: u32, path: &str| {
        run(&[
            "debugfs",
            "-R",
            &format!("cat {path}"),
            &format!("{dev}p{part}"),
        ])
    };
    let ls = |part: u32, path: &str| {
        run(&[
            "debugfs",
            "-R",
            &format!("ls -l {path}"),
            &format!("{dev}p{part}"),
        ])
    };
    let entries = ls(3, "/loader.1/entries");
    let entry_name = entries
        .split_whitespace()
        .find(|w| w.ends_with(".conf"))
        .unwrap_or_else(|| panic!("no entry: {entries}"))
        .to_string();
    assert_eq!(entry_name, "ostree-1-fedora-coreos.conf");
    let entry = cat(3, &format!("/loader.1/entries/{entry_name}"));
    assert!(
        entry.contains("options rw $ignition_firstboot ignition.platform.id=metal quiet ostree=/ostree/boot.1/fedora-coreos/"),
        "{entry}"
    );
    let generated = cat(3, "/loader.1/grub.cfg");
    assert!(
        generated.contains("menuentry 'oxcore test 41.20261201.3.0 (ostree:0)'"),
        "{generated}"
    );
    assert!(
        generated.contains("'rw' $ignition_firstboot 'ignition.platform.id=metal' 'quiet'"),
        "{generated}"
    );
    let static_cfg = cat(3, "/grub/grub.cfg");
    assert!(
        static_cfg.starts_with(sysroot::grub::STATIC_MARKER),
        "{static_cfg}"
    );
    assert!(static_cfg.contains("source ($boot)/loader/grub.cfg"));
    let env = cat(3, "/grub/grubenv");
    assert_eq!(env.len(), 1024);
    assert!(env.starts_with("# GRUB Environment Block\n"));
    assert_eq!(cat(3, "/ignition.firstboot"), "");
    assert!(ls(3, "/grub/i386-pc").contains("normal.mod"));
    assert!(ls(3, "/grub/x86_64-efi").contains("normal.mod"));
    let link = run(&["debugfs", "-R", "stat /loader", &format!("{dev}p3")]);
    assert!(link.contains("Fast link dest: \"loader.1\""), "{link}");
    // The ESP holds GRUB for UEFI at the removable-media path.
    let esp = run(&["mdir", "-i", &format!("{dev}p2"), "::/EFI/BOOT"]);
    assert!(esp.contains("BOOTX64  EFI"), "{esp}");
    drop(detach);

    // Recorded in the signed metadata: sha256 and a signature that
    // verifies against the published copy.
    let rel = d
        .path()
        .join("meta/prod/streams/stable/builds/41.20261201.3.0/release.json");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&rel).unwrap()).unwrap();
    let a = &doc["architectures"]["x86_64"]["media"]["metal"]["artifacts"]["raw"]["disk"];
    let published = rel.with_file_name("x86_64/oxcore-41.20261201.3.0-metal.x86_64.raw");
    let digest = {
        use std::io::Read;
        let mut f = std::fs::File::open(&published).unwrap();
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let mut buf = vec![0; 1 << 20];
        loop {
            let n = f.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            ctx.update(&buf[..n]);
        }
        util::hex(ctx.finish().as_ref())
    };
    assert_eq!(a["sha256"], digest.as_str());
    ok(oxcore(&[
        "release",
        "verify",
        "--key",
        &public,
        "--artifacts",
        published.to_str().unwrap(),
    ]));
    let stream: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(d.path().join("meta/streams/stable.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        stream["architectures"]["x86_64"]["artifacts"]["metal"]["release"],
        "41.20261201.3.0"
    );
    assert!(loops_on(d.path()).is_empty());
}

/// `sgdisk --print` shows FCOS's four partitions, named, starting at
/// `starts` (in the disk's sectors).
#[track_caller]
fn assert_partitions(p: &str, starts: [&str; 4]) {
    for ((n, name), start) in [
        ("1", "BIOS-BOOT"),
        ("2", "EFI-SYSTEM"),
        ("3", "boot"),
        ("4", "root"),
    ]
    .into_iter()
    .zip(starts)
    {
        let line = p
            .lines()
            .find(|l| l.split_whitespace().next() == Some(n))
            .unwrap_or_else(|| panic!("no partition {n}: {p}"));
        assert!(line.ends_with(name), "{line}");
        assert_eq!(line.split_whitespace().nth(1), Some(start), "{line}");
    }
}

/// Detaches a loop device when dropped.
struct Detach(String);
impl Drop for Detach {
    fn drop(&mut self) {
        let _ = Command::new("partx").args(["--delete", &self.0]).output();
        let _ = Command::new("losetup").args(["--detach", &self.0]).output();
    }
}
fn scopeguard(dev: String) -> Detach {
    Detach(dev)
}

#[test]
fn a_failed_build_leaves_nothing_behind() {
    if !usable() {
        return;
    }
    let d = tempfile::tempdir_in("/var/tmp").unwrap();
    let (secret, _) = release(d.path());
    let before = std::fs::read_to_string(
        d.path()
            .join("meta/prod/streams/stable/builds/41.20261201.3.0/release.json"),
    )
    .unwrap();
    // GRUB's modules missing: found only after partitioning, mounting and
    // deploying.
    let o = build(
        d.path(),
        &secret,
        &["--format", "raw", "--grub-dir", "/nonexistent/grub"],
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("/nonexistent/grub/i386-pc"), "{err}");
    let left: Vec<_> = std::fs::read_dir(d.path().join("images"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(loops_on(d.path()).is_empty(), "{}", loops_on(d.path()));
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(
        !mounts.contains(&d.path().display().to_string()),
        "{mounts}"
    );
    // The metadata is untouched.
    let after = std::fs::read_to_string(
        d.path()
            .join("meta/prod/streams/stable/builds/41.20261201.3.0/release.json"),
    )
    .unwrap();
    assert_eq!(before, after);

    // Bad arguments are refused before anything is made.
    let o = build(d.path(), &secret, &["--format", "vmdk"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--format vmdk"));
    let o = build(d.path(), &secret, &["--version", "41.20990101.3.0"]);
    assert!(!o.status.success());
    assert!(
        std::fs::read_dir(d.path().join("images"))
            .unwrap()
            .next()
            .is_none()
    );
}

#[test]
fn a_4k_image_has_the_same_layout_in_4096_byte_sectors_and_boots_by_uefi() {
    if !usable() {
        return;
    }
    let d = tempfile::tempdir_in("/var/tmp").unwrap();
    let (secret, _) = release(d.path());
    ok(build(
        d.path(),
        &secret,
        &["--format", "4k.raw", "--no-record"],
    ));
    let img = d
        .path()
        .join("images/oxcore-41.20261201.3.0-metal4k.x86_64.raw");
    // Read as a disk of 4096-byte sectors, as the image is meant for.
    let dev = run(&[
        "losetup",
        "-f",
        "--show",
        "--read-only",
        "--sector-size",
        "4096",
        img.to_str().unwrap(),
    ])
    .trim()
    .to_string();
    let _detach = scopeguard(dev.clone());
    let p = run(&["sgdisk", "--print", &dev]);
    assert!(
        p.lines()
            .any(|l| l.starts_with("Sector size (logical") && l.contains(": 4096")),
        "{p}"
    );
    assert_partitions(&p, ["256", "512", "33024", "131328"]);
    run(&["partx", "--update", &dev]);
    let esp = run(&["mdir", "-i", &format!("{dev}p2"), "::/EFI/BOOT"]);
    assert!(esp.contains("BOOTX64  EFI"), "{esp}");
    // No BIOS reads 4K disks: no boot code in the MBR, no BIOS modules.
    let bytes = std::fs::read(&img).unwrap();
    assert!(bytes[..0x1b8].iter().all(|&b| b == 0));
    let ls = run(&["debugfs", "-R", "ls /grub", &format!("{dev}p3")]);
    assert!(ls.contains("x86_64-efi") && !ls.contains("i386-pc"), "{ls}");
    // Not recorded (--no-record): the release has no metal media.
    let rel = d
        .path()
        .join("meta/prod/streams/stable/builds/41.20261201.3.0/release.json");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(rel).unwrap()).unwrap();
    assert!(doc["architectures"]["x86_64"]["media"]["metal"].is_null());
}
