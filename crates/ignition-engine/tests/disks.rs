//! The disks stage on real loop devices over sparse image files, judged
//! with `sgdisk`, `blkid -p`, `cryptsetup` and sysfs.
//!
//! Every test needs root, loop devices and the tools it names; without
//! them it prints `SKIP: ...` and passes. Host disks are never touched:
//! each test makes its own 1 GiB sparse image in a temporary directory and
//! attaches it with `losetup --find --show`; a guard detaches it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use test_support::skip;

use ignition_config::types::{Disk, Filesystem, Luks, Raid};
use ignition_engine::disks::{self, DiskError, LuksOutcome};

/// A loop device over a sparse image, detached on drop.
struct LoopDev {
    dev: String,
    _dir: tempfile::TempDir,
}

impl LoopDev {
    /// Attaches a new 1 GiB sparse image, or prints SKIP and returns None.
    fn new(test: &str) -> Option<Self> {
        let dir = tempfile::tempdir().ok()?;
        let img = dir.path().join("disk.img");
        let truncate = Command::new("truncate")
            .args(["-s", "1G"])
            .arg(&img)
            .status();
        if !truncate.is_ok_and(|s| s.success()) {
            skip(&format!(
                "{test}: cannot create a sparse image with truncate"
            ));
            return None;
        }
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&img)
            .output();
        match out {
            Ok(out) if out.status.success() => Some(Self {
                dev: String::from_utf8_lossy(&out.stdout).trim().to_string(),
                _dir: dir,
            }),
            Ok(out) => {
                skip(&format!(
                    "{test}: needs loop devices and root (losetup: {})",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
                None
            }
            Err(e) => {
                skip(&format!("{test}: needs losetup (util-linux / mount): {e}"));
                None
            }
        }
    }

    /// The device node of partition `n`.
    fn part(&self, n: u32) -> String {
        format!("{}p{n}", self.dev)
    }
}

impl Drop for LoopDev {
    fn drop(&mut self) {
        // Partitions added with partx outlive the loop device otherwise.
        let _ = Command::new("partx").args(["-d", &self.dev]).output();
        let _ = Command::new("losetup").args(["-d", &self.dev]).output();
    }
}

/// Whether every tool is on the PATH (or in an sbin); prints SKIP if not.
fn have(test: &str, tools: &[(&str, &str)]) -> bool {
    let path = std::env::var("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = path
        .split(':')
        .map(PathBuf::from)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .collect();
    let missing: Vec<String> = tools
        .iter()
        .filter(|(tool, _)| !dirs.iter().any(|d| d.join(tool).is_file()))
        .map(|(tool, package)| format!("{tool} (Debian package {package})"))
        .collect();
    if missing.is_empty() {
        true
    } else {
        skip(&format!("{test}: needs {}", missing.join(", ")));
        false
    }
}

const SGDISK: (&str, &str) = ("sgdisk", "gdisk");
const PARTX: (&str, &str) = ("partx", "util-linux");
const BLKID: (&str, &str) = ("blkid", "util-linux");
const WIPEFS: (&str, &str) = ("wipefs", "util-linux");
const LOSETUP: (&str, &str) = ("losetup", "mount");

/// Sets up a loop device when the tools are there.
macro_rules! setup {
    ($test:expr, $($tool:expr),* $(,)?) => {{
        if !have($test, &[LOSETUP, $($tool),*]) {
            return;
        }
        match LoopDev::new($test) {
            Some(l) => l,
            None => return,
        }
    }};
}

fn run(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The storage section of a config with `device` filled in for `DEV`.
fn storage(json: &str, dev: &str) -> ignition_config::types::Storage {
    let text = format!(
        r#"{{"ignition":{{"version":"3.4.0"}},"storage":{}}}"#,
        json.replace("DEV", dev)
    );
    match ignition_config::parse(text.as_bytes()) {
        Ok((c, _)) => c.storage,
        Err(f) => panic!("{f}"),
    }
}

fn disk(dev: &str, json: &str) -> Disk {
    storage(&format!(r#"{{"disks":[{json}]}}"#), dev).disks[0].clone()
}

fn filesystem(dev: &str, json: &str) -> Filesystem {
    storage(&format!(r#"{{"filesystems":[{json}]}}"#), dev).filesystems[0].clone()
}

/// `sgdisk -i N` as key → value (`First sector` → `2048`, names unquoted).
fn sgdisk_info(dev: &str, n: u32) -> BTreeMap<String, String> {
    let out = run(&["sgdisk", &format!("--info={n}"), dev]);
    out.lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| {
            let v = match k {
                "First sector" | "Last sector" | "Partition size" => {
                    v.split(' ').next().unwrap_or_default().to_string()
                }
                "Partition GUID code" => v.split(' ').next().unwrap_or_default().to_string(),
                "Partition name" => v.trim_matches('\'').to_string(),
                _ => v.to_string(),
            };
            (k.to_string(), v)
        })
        .collect()
}

/// The partition numbers `sgdisk -p` lists.
fn sgdisk_numbers(dev: &str) -> Vec<u32> {
    let out = run(&["sgdisk", "-p", dev]);
    out.lines()
        .skip_while(|l| !l.starts_with("Number"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

/// `blkid -p -o export` as key → value.
fn blkid(dev: &str) -> BTreeMap<String, String> {
    let out = Command::new("blkid")
        .args(["-p", "-o", "export", dev])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.replace('\\', "")))
        .collect()
}

/// The kernel's start and size (512-byte sectors) of partition `n`.
fn sysfs(l: &LoopDev, n: u32) -> Option<(u64, u64)> {
    let dir = Path::new("/sys/class/block").join(Path::new(&l.part(n)).file_name()?);
    let read = |f: &str| {
        std::fs::read_to_string(dir.join(f))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    Some((read("start")?, read("size")?))
}

fn refused(e: DiskError) -> String {
    match e.refusal() {
        Some(message) => message.to_string(),
        None => panic!("expected a refusal, got {e}"),
    }
}

const ESP: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
const LINUX: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";

#[test]
fn creates_partitions_from_a_config() {
    let l = setup!("creates_partitions_from_a_config", SGDISK, PARTX);
    let d = disk(
        &l.dev,
        &format!(
            r#"{{"device":"DEV","partitions":[
                {{"number":1,"label":"EFI-SYSTEM","sizeMiB":127,"typeGuid":"{ESP}",
                  "guid":"8d6e0f6a-3c40-4e2a-9d8f-2f1b9f5c2a11"}},
                {{"number":2,"label":"boot","startMiB":128,"sizeMiB":384}},
                {{"number":4,"label":"root","sizeMiB":0}}
            ]}}"#
        ),
    );
    disks::partition(&d, "$.storage.disks.0").unwrap();

    assert_eq!(sgdisk_numbers(&l.dev), [1, 2, 4]);
    let p1 = sgdisk_info(&l.dev, 1);
    assert_eq!(p1["First sector"], "2048");
    assert_eq!(p1["Partition size"], (127 * 2048).to_string());
    assert_eq!(p1["Partition name"], "EFI-SYSTEM");
    assert_eq!(p1["Partition GUID code"], ESP);
    assert_eq!(
        p1["Partition unique GUID"],
        "8D6E0F6A-3C40-4E2A-9D8F-2F1B9F5C2A11"
    );
    let p2 = sgdisk_info(&l.dev, 2);
    assert_eq!(p2["First sector"], (128 * 2048).to_string());
    assert_eq!(p2["Partition size"], (384 * 2048).to_string());
    assert_eq!(p2["Partition GUID code"], LINUX);
    // Size 0 fills from the first free aligned sector after partition 2 to
    // the last usable sector.
    let p4 = sgdisk_info(&l.dev, 4);
    assert_eq!(p4["First sector"], (512 * 2048).to_string());
    assert_eq!(p4["Last sector"], "2097118");
    assert_eq!(p4["Partition name"], "root");

    // The kernel knows them, at the same places.
    assert_eq!(sysfs(&l, 1), Some((2048, 127 * 2048)));
    assert_eq!(sysfs(&l, 2), Some((128 * 2048, 384 * 2048)));
    assert_eq!(sysfs(&l, 4), Some((512 * 2048, 2097118 - 512 * 2048 + 1)));
    assert!(Path::new(&l.part(4)).exists());
    // libblkid reads the same labels off the partitions.
    assert_eq!(blkid(&l.part(1))["PART_ENTRY_NAME"], "EFI-SYSTEM");

    // Our own reader agrees with sgdisk.
    let table = disks::read_partition_table(Path::new(&l.dev)).unwrap();
    assert_eq!(table.logical_sector_size, 512);
    let p = table.partition(4).unwrap();
    assert_eq!(
        (p.start, p.size, p.label.as_str()),
        (512 * 2048, 2097118 - 512 * 2048 + 1, "root")
    );
}

#[test]
fn rerunning_the_same_config_keeps_the_partitions() {
    let l = setup!(
        "rerunning_the_same_config_keeps_the_partitions",
        SGDISK,
        PARTX
    );
    let d = disk(
        &l.dev,
        r#"{"device":"DEV","partitions":[
            {"number":1,"label":"a","sizeMiB":100},
            {"number":2,"label":"b","startMiB":101,"sizeMiB":100},
            {"number":3,"label":"c","sizeMiB":0}
        ]}"#,
    );
    disks::partition(&d, "$.storage.disks.0").unwrap();
    let before: Vec<_> = (1..=3).map(|n| sgdisk_info(&l.dev, n)).collect();
    assert_eq!(before[2]["First sector"], (201 * 2048).to_string());
    assert_eq!(before[2]["Last sector"], "2097118");
    let table_before = run(&["sgdisk", "-p", &l.dev]);
    disks::partition(&d, "$.storage.disks.0").unwrap();
    disks::partition(&d, "$.storage.disks.0").unwrap();
    let after: Vec<_> = (1..=3).map(|n| sgdisk_info(&l.dev, n)).collect();
    // Random unique GUIDs would change if anything had been recreated.
    assert_eq!(before, after);
    assert_eq!(table_before, run(&["sgdisk", "-p", &l.dev]));

    // A partition given only by label never matches an existing one, as
    // upstream: each run adds another.
    let d = disk(
        &l.dev,
        r#"{"device":"DEV","wipeTable":true,"partitions":[{"label":"x","sizeMiB":16}]}"#,
    );
    disks::partition(&d, "$.storage.disks.0").unwrap();
    let d = Disk {
        wipe_table: None,
        ..d
    };
    disks::partition(&d, "$.storage.disks.0").unwrap();
    assert_eq!(sgdisk_numbers(&l.dev), [1, 2]);
    assert_eq!(sgdisk_info(&l.dev, 2)["Partition name"], "x");
}

#[test]
fn a_mismatching_label_fails_and_changes_nothing() {
    let l = setup!(
        "a_mismatching_label_fails_and_changes_nothing",
        SGDISK,
        PARTX
    );
    let d = disk(
        &l.dev,
        r#"{"device":"DEV","partitions":[{"number":1,"label":"y","sizeMiB":64}]}"#,
    );
    disks::partition(&d, "$.storage.disks.0").unwrap();
    let before = std::fs::read(&l.dev)
        .map(|b| b[..1 << 20].to_vec())
        .unwrap();

    let d = disk(
        &l.dev,
        r#"{"device":"DEV","partitions":[{"number":1,"label":"x","sizeMiB":64}]}"#,
    );
    let e = disks::partition(&d, "$.storage.disks.3").unwrap_err();
    assert_eq!(e.at(), "$.storage.disks.3");
    assert_eq!(e.device(), l.dev);
    let text = e.to_string();
    assert!(
        text.contains(&l.dev) && text.contains("$.storage.disks.3"),
        "{text}"
    );
    assert_eq!(
        refused(e),
        r#"partition 1 didn't match: label did not match (specified "x", got "y")"#
    );
    let after = std::fs::read(&l.dev)
        .map(|b| b[..1 << 20].to_vec())
        .unwrap();
    assert!(before == after, "the partition table changed");

    // A size mismatch without resize fails the same way.
    let d = disk(
        &l.dev,
        r#"{"device":"DEV","partitions":[{"number":1,"sizeMiB":65}]}"#,
    );
    assert_eq!(
        refused(disks::partition(&d, "$.storage.disks.0").unwrap_err()),
        "partition 1 didn't match: size did not match (specified 133120, got 131072)"
    );

    // wipePartitionEntry allows recreating it.
    let d = disk(
        &l.dev,
        r#"{"device":"DEV","partitions":[{"number":1,"label":"x","sizeMiB":64,"wipePartitionEntry":true}]}"#,
    );
    disks::partition(&d, "$.storage.disks.0").unwrap();
    assert_eq!(sgdisk_info(&l.dev, 1)["Partition name"], "x");
}

#[test]
fn should_exist_false_deletes() {
    let l = setup!("should_exist_false_deletes", SGDISK, PARTX);
    let d = disk(
        &l.dev,
        r#"{"device":"DEV","partitions":[
            {"number":1,"sizeMiB":64},{"number":2,"sizeMiB":64},{"number":3,"sizeMiB":64}
        ]}"#,
    );
    disks::partition(&d, "$.storage.disks.0").unwrap();
    assert!(Path::new(&l.part(2)).exists());

    let keep = disk(
        &l.dev,
        r#"{"device":"DEV","partitions":[{"number":2,"shouldExist":false}]}"#,
    );
    assert_eq!(
        refused(disks::partition(&keep, "$.storage.disks.0").unwrap_err()),
        "partition 2 exists but is specified as nonexistant and wipePartitionEntry is false"
    );
    let delete = disk(
        &l.dev,
        r#"{"device":"DEV","partitions":[
            {"number":2,"shouldExist":false,"wipePartitionEntry":true},
            {"number":7,"shouldExist":false}
        ]}"#,
    );
    disks::partition(&delete, "$.storage.disks.0").unwrap();
    assert_eq!(sgdisk_numbers(&l.dev), [1, 3]);
    assert!(!Path::new(&l.part(2)).exists());
    assert_eq!(sysfs(&l, 2), None);
    assert!(sysfs(&l, 3).is_some());
    // Deleting what is gone is a success.
    disks::partition(&delete, "$.storage.disks.0").unwrap();
}

#[test]
fn wipe_table_recreates() {
    let l = setup!("wipe_table_recreates", SGDISK, PARTX);
    let d = disk(
        &l.dev,
        r#"{"device":"DEV","partitions":[
            {"number":1,"label":"old","sizeMiB":64},{"number":2,"label":"two","sizeMiB":64}
        ]}"#,
    );
    disks::partition(&d, "$.storage.disks.0").unwrap();
    let old_guid = sgdisk_info(&l.dev, 1)["Partition unique GUID"].clone();

    let d = disk(
        &l.dev,
        r#"{"device":"DEV","wipeTable":true,"partitions":[
            {"number":1,"label":"new","startMiB":10,"sizeMiB":200}
        ]}"#,
    );
    disks::partition(&d, "$.storage.disks.0").unwrap();
    assert_eq!(sgdisk_numbers(&l.dev), [1]);
    let p1 = sgdisk_info(&l.dev, 1);
    assert_eq!(p1["Partition name"], "new");
    assert_eq!(p1["First sector"], (10 * 2048).to_string());
    assert_ne!(p1["Partition unique GUID"], old_guid);
    // The kernel forgot partition 2 and moved partition 1.
    assert_eq!(sysfs(&l, 1), Some((10 * 2048, 200 * 2048)));
    assert_eq!(sysfs(&l, 2), None);

    // wipeTable without partitions leaves an empty table.
    let d = disk(&l.dev, r#"{"device":"DEV","wipeTable":true}"#);
    disks::partition(&d, "$.storage.disks.0").unwrap();
    assert!(sgdisk_numbers(&l.dev).is_empty());
    assert_eq!(sysfs(&l, 1), None);
}

#[test]
fn label_only_partitions_take_the_lowest_free_numbers() {
    let l = setup!(
        "label_only_partitions_take_the_lowest_free_numbers",
        SGDISK,
        PARTX
    );
    let d = disk(
        &l.dev,
        r#"{"device":"DEV","partitions":[{"number":1,"sizeMiB":32},{"number":3,"sizeMiB":32}]}"#,
    );
    disks::partition(&d, "$.storage.disks.0").unwrap();

    // Listed first, but handled after the numbered ones.
    let d = disk(
        &l.dev,
        r#"{"device":"DEV","partitions":[
            {"label":"x","sizeMiB":16},
            {"number":3,"sizeMiB":32},
            {"label":"y","sizeMiB":16},
            {"number":5,"label":"five","sizeMiB":16}
        ]}"#,
    );
    disks::partition(&d, "$.storage.disks.0").unwrap();
    assert_eq!(sgdisk_numbers(&l.dev), [1, 2, 3, 4, 5]);
    assert_eq!(sgdisk_info(&l.dev, 2)["Partition name"], "x");
    assert_eq!(sgdisk_info(&l.dev, 4)["Partition name"], "y");
    // Each went into the first free aligned gap: after 1 and 3 (each 32
    // MiB from 1 MiB on), 5 first, then x and y.
    assert_eq!(
        sgdisk_info(&l.dev, 5)["First sector"],
        (65 * 2048).to_string()
    );
    assert_eq!(
        sgdisk_info(&l.dev, 2)["First sector"],
        (81 * 2048).to_string()
    );
    assert_eq!(
        sgdisk_info(&l.dev, 4)["First sector"],
        (97 * 2048).to_string()
    );
    for n in 1..=5 {
        assert!(sysfs(&l, n).is_some(), "kernel lacks partition {n}");
    }
}

#[test]
fn size_zero_fills_the_disk() {
    let l = setup!("size_zero_fills_the_disk", SGDISK, PARTX);
    let d = disk(
        &l.dev,
        r#"{"device":"DEV","partitions":[{"number":1,"label":"all","sizeMiB":0}]}"#,
    );
    disks::partition(&d, "$.storage.disks.0").unwrap();
    let p1 = sgdisk_info(&l.dev, 1);
    assert_eq!(p1["First sector"], "2048");
    assert_eq!(p1["Last sector"], "2097118");
    assert_eq!(sysfs(&l, 1), Some((2048, 2097118 - 2048 + 1)));
    // And it matches itself afterwards.
    disks::partition(&d, "$.storage.disks.0").unwrap();
}

#[test]
fn resize_grows_and_keeps_the_rest() {
    let l = setup!("resize_grows_and_keeps_the_rest", SGDISK, PARTX);
    let d = disk(
        &l.dev,
        &format!(
            r#"{{"device":"DEV","partitions":[{{"number":1,"label":"root","typeGuid":"{ESP}","sizeMiB":100}}]}}"#
        ),
    );
    disks::partition(&d, "$.storage.disks.0").unwrap();
    let before = sgdisk_info(&l.dev, 1);

    let d = disk(
        &l.dev,
        r#"{"device":"DEV","partitions":[{"number":1,"resize":true,"sizeMiB":300}]}"#,
    );
    disks::partition(&d, "$.storage.disks.0").unwrap();
    let after = sgdisk_info(&l.dev, 1);
    assert_eq!(after["Partition size"], (300 * 2048).to_string());
    for k in [
        "First sector",
        "Partition unique GUID",
        "Partition GUID code",
        "Partition name",
    ] {
        assert_eq!(before[k], after[k], "{k}");
    }
    assert_eq!(sysfs(&l, 1), Some((2048, 300 * 2048)));

    // resize does not allow another label.
    let d = disk(
        &l.dev,
        r#"{"device":"DEV","partitions":[{"number":1,"resize":true,"label":"x","sizeMiB":400}]}"#,
    );
    assert!(
        refused(disks::partition(&d, "$.storage.disks.0").unwrap_err())
            .starts_with("partition 1 didn't match: label did not match")
    );
}

#[test]
fn a_failing_sgdisk_is_named_with_its_stderr() {
    let l = setup!("a_failing_sgdisk_is_named_with_its_stderr", SGDISK, PARTX);
    // Starts beyond the end of the 1 GiB disk.
    let d = disk(
        &l.dev,
        r#"{"device":"DEV","partitions":[{"number":1,"startMiB":2000,"sizeMiB":10}]}"#,
    );
    let e = disks::partition(&d, "$.storage.disks.0").unwrap_err();
    let Some(c) = e.command() else {
        panic!("expected a command error, got {e}");
    };
    assert_eq!(e.at(), "$.storage.disks.0");
    // sgdisk --pretend refuses it before anything is written.
    assert_eq!(c.what, "failed to pretend to create partitions");
    assert!(
        c.command
            .starts_with("sgdisk --pretend --new=1:4096000:+20480"),
        "{e}"
    );
    assert!(c.command.ends_with(&l.dev), "{e}");
    assert!(c.status.contains("exit status"), "{e}");
    assert!(c.stderr.contains("Could not create partition 1"), "{e}");
    let text = e.to_string();
    assert!(
        text.contains(&c.command) && text.contains(&c.stderr),
        "{text}"
    );
    assert!(sgdisk_numbers(&l.dev).is_empty());
}

/// A mount, unmounted on drop.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).output();
    }
}

#[test]
fn active_partitions_are_not_modified() {
    let l = setup!(
        "active_partitions_are_not_modified",
        SGDISK,
        PARTX,
        MKFS[0],
        ("mount", "mount")
    );
    let d = disk(
        &l.dev,
        r#"{"device":"DEV","partitions":[{"number":1,"label":"a","sizeMiB":64}]}"#,
    );
    disks::partition(&d, "$.storage.disks.0").unwrap();
    run(&["mkfs.ext4", "-q", "-F", &l.part(1)]);
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new("mount")
        .arg(l.part(1))
        .arg(dir.path())
        .status()
        .unwrap();
    if !status.success() {
        skip("active_partitions_are_not_modified: cannot mount here");
        return;
    }
    let _mounted = Mounted(dir.path().to_path_buf());

    let relabel = disk(
        &l.dev,
        r#"{"device":"DEV","partitions":[{"number":1,"label":"b","sizeMiB":64,"wipePartitionEntry":true}]}"#,
    );
    assert_eq!(
        refused(disks::partition(&relabel, "$.storage.disks.0").unwrap_err()),
        format!("refusing to modify active partition 1 on \"{}\"", l.dev)
    );
    let wipe = disk(&l.dev, r#"{"device":"DEV","wipeTable":true}"#);
    assert_eq!(
        refused(disks::partition(&wipe, "$.storage.disks.0").unwrap_err()),
        format!("refusing to wipe active disk \"{}\"", l.dev)
    );
    assert_eq!(sgdisk_info(&l.dev, 1)["Partition name"], "a");

    // Other partitions can still be added while one is mounted.
    let add = disk(
        &l.dev,
        r#"{"device":"DEV","partitions":[{"number":1,"label":"a"},{"number":2,"label":"new","sizeMiB":64}]}"#,
    );
    disks::partition(&add, "$.storage.disks.0").unwrap();
    assert_eq!(sysfs(&l, 2), Some((65 * 2048, 64 * 2048)));
}

#[test]
fn partitions_an_image_file_without_the_kernel() {
    if !have("partitions_an_image_file_without_the_kernel", &[SGDISK]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let img = img.to_str().unwrap();
    let d = disk(
        img,
        r#"{"device":"DEV","partitions":[{"label":"rest"},{"number":1,"label":"first","sizeMiB":8}]}"#,
    );
    disks::partition(&d, "$.storage.disks.0").unwrap();
    assert_eq!(sgdisk_numbers(img), [1, 2]);
    assert_eq!(sgdisk_info(img, 2)["First sector"], (9 * 2048).to_string());
    // 64 MiB: the backup GPT takes the last 33 sectors.
    assert_eq!(
        sgdisk_info(img, 2)["Last sector"],
        (64 * 2048 - 34).to_string()
    );
    let table = disks::read_partition_table(Path::new(img)).unwrap();
    assert_eq!(table.partition(1).unwrap().label, "first");
    assert_eq!(table.partition(2).unwrap().label, "rest");
    assert_eq!(table.partition(2).unwrap().type_guid, LINUX);

    // A damaged primary GPT: the backup is read, as libblkid does.
    let f = std::fs::OpenOptions::new().write(true).open(img).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &[0u8; 512], 512).unwrap();
    let backup = disks::read_partition_table(Path::new(img)).unwrap();
    assert_eq!(backup, table);

    // A DOS partition table is refused, as upstream.
    let mut mbr = [0u8; 512];
    mbr[446 + 4] = 0x83;
    mbr[446 + 8] = 0x08;
    mbr[446 + 12] = 0x10;
    mbr[510] = 0x55;
    mbr[511] = 0xAA;
    // (A fresh 64 MiB image with only an MBR.)
    std::fs::write(img, mbr).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(img)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let e = disks::partition(&d, "$.storage.disks.0").unwrap_err();
    assert!(e.to_string().contains("disk does not have a GPT"), "{e}");
}

const MKFS: [(&str, &str); 4] = [
    ("mkfs.ext4", "e2fsprogs"),
    ("mkfs.xfs", "xfsprogs"),
    ("mkfs.fat", "dosfstools"),
    ("mkswap", "util-linux"),
];

#[test]
fn makes_filesystems_with_labels_and_uuids() {
    let l = setup!(
        "makes_filesystems_with_labels_and_uuids",
        SGDISK,
        PARTX,
        BLKID,
        WIPEFS,
        MKFS[0],
        MKFS[1],
        MKFS[2],
        MKFS[3],
    );
    let d = disk(
        &l.dev,
        r#"{"device":"DEV","partitions":[
            {"number":1,"sizeMiB":128},{"number":2,"sizeMiB":320},
            {"number":3,"sizeMiB":64},{"number":4,"sizeMiB":64}
        ]}"#,
    );
    disks::partition(&d, "$.storage.disks.0").unwrap();
    let cases = [
        (
            1,
            "ext4",
            "root",
            "0d4b4b4c-4a3b-4f6e-9a56-1b0c9d1e2f30",
            "0d4b4b4c-4a3b-4f6e-9a56-1b0c9d1e2f30",
        ),
        (
            2,
            "xfs",
            "var",
            "A1B2C3D4-0000-4000-8000-000000000001",
            "a1b2c3d4-0000-4000-8000-000000000001",
        ),
        (3, "vfat", "EFI", "abcd-1234", "ABCD-1234"),
        (
            4,
            "swap",
            "swap",
            "5e1c1b7e-8e0f-4e6b-b2a4-6f2f3c1d9a00",
            "5e1c1b7e-8e0f-4e6b-b2a4-6f2f3c1d9a00",
        ),
    ];
    for (i, (n, format, label, uuid, shown)) in cases.iter().enumerate() {
        let part = l.part(*n);
        let fs = filesystem(
            &part,
            &format!(r#"{{"device":"DEV","format":"{format}","label":"{label}","uuid":"{uuid}"}}"#),
        );
        disks::make_filesystem(&fs, &format!("$.storage.filesystems.{i}")).unwrap();
        let b = blkid(&part);
        assert_eq!(b["TYPE"], *format, "{part}");
        assert_eq!(b["LABEL"], *label, "{part}");
        assert_eq!(b["UUID"], *shown, "{part}");
        // The same config again finds it correct and leaves it alone.
        disks::make_filesystem(&fs, "$.storage.filesystems.0").unwrap();
        assert_eq!(blkid(&part)["UUID"], *shown);
    }
}

#[test]
fn makes_btrfs() {
    let l = setup!("makes_btrfs", BLKID, WIPEFS, ("mkfs.btrfs", "btrfs-progs"));
    let fs = filesystem(
        &l.dev,
        r#"{"device":"DEV","format":"btrfs","label":"data","uuid":"7c0a0c1e-2d3f-4a5b-8c9d-0e1f2a3b4c5d","options":["--nodesize","16384"]}"#,
    );
    disks::make_filesystem(&fs, "$.storage.filesystems.0").unwrap();
    let b = blkid(&l.dev);
    assert_eq!(b["TYPE"], "btrfs");
    assert_eq!(b["LABEL"], "data");
    assert_eq!(b["UUID"], "7c0a0c1e-2d3f-4a5b-8c9d-0e1f2a3b4c5d");
}

/// Writes a file into an ext4 filesystem with debugfs, or reads it back.
fn debugfs(dev: &str, request: &str, write: bool) -> String {
    let mut args = vec!["debugfs"];
    if write {
        args.push("-w");
    }
    args.extend(["-R", request, dev]);
    run(&args)
}

#[test]
fn a_matching_filesystem_is_reused_with_its_data() {
    let l = setup!(
        "a_matching_filesystem_is_reused_with_its_data",
        BLKID,
        WIPEFS,
        MKFS[0],
        ("debugfs", "e2fsprogs"),
    );
    let fs = filesystem(
        &l.dev,
        r#"{"device":"DEV","format":"ext4","label":"data","uuid":"11111111-2222-4333-8444-555555555555"}"#,
    );
    disks::make_filesystem(&fs, "$.storage.filesystems.0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("marker");
    std::fs::write(&src, "kept across runs\n").unwrap();
    debugfs(&l.dev, &format!("write {} marker", src.display()), true);

    // Same type, label and (differently spelled) UUID: reused, and the
    // options are ignored rather than applied.
    let again = filesystem(
        &l.dev,
        r#"{"device":"DEV","format":"ext4","label":"data","uuid":"11111111-2222-4333-8444-555555555555","options":["-b","1024"]}"#,
    );
    disks::make_filesystem(&again, "$.storage.filesystems.0").unwrap();
    let upper = Filesystem {
        uuid: Some("11111111-2222-4333-8444-555555555555".to_uppercase()),
        label: None,
        ..again.clone()
    };
    disks::make_filesystem(&upper, "$.storage.filesystems.0").unwrap();
    assert_eq!(debugfs(&l.dev, "cat marker", false), "kept across runs\n");

    // wipeFilesystem makes a new one.
    let wipe = Filesystem {
        wipe_filesystem: Some(true),
        uuid: None,
        ..fs
    };
    disks::make_filesystem(&wipe, "$.storage.filesystems.0").unwrap();
    assert_ne!(
        blkid(&l.dev)["UUID"],
        "11111111-2222-4333-8444-555555555555"
    );
    assert_eq!(blkid(&l.dev)["LABEL"], "data");
}

#[test]
fn a_mismatching_filesystem_without_wipe_fails() {
    let l = setup!(
        "a_mismatching_filesystem_without_wipe_fails",
        BLKID,
        WIPEFS,
        MKFS[0],
        MKFS[1],
    );
    let ext4 = filesystem(&l.dev, r#"{"device":"DEV","format":"ext4","label":"data"}"#);
    disks::make_filesystem(&ext4, "$.storage.filesystems.0").unwrap();
    let uuid = blkid(&l.dev)["UUID"].clone();

    for json in [
        r#"{"device":"DEV","format":"xfs","label":"data"}"#,
        r#"{"device":"DEV","format":"ext4","label":"other"}"#,
        r#"{"device":"DEV","format":"ext4","uuid":"11111111-2222-4333-8444-555555555555"}"#,
        r#"{"device":"DEV","format":"none"}"#,
    ] {
        let fs = filesystem(&l.dev, json);
        let e = disks::make_filesystem(&fs, "$.storage.filesystems.2").unwrap_err();
        assert_eq!(e.at(), "$.storage.filesystems.2");
        let message = refused(e);
        assert!(
            message.starts_with("filesystem is not of the correct type"),
            "{json}: {message}"
        );
        assert!(message.contains(&uuid), "{message}");
        assert_eq!(blkid(&l.dev)["UUID"], uuid, "{json} changed the filesystem");
    }

    // format none with wipeFilesystem only wipes.
    let none = filesystem(
        &l.dev,
        r#"{"device":"DEV","format":"none","wipeFilesystem":true}"#,
    );
    disks::make_filesystem(&none, "$.storage.filesystems.0").unwrap();
    assert!(!blkid(&l.dev).contains_key("TYPE"));
    // ... and then finds nothing to complain about.
    disks::make_filesystem(&none, "$.storage.filesystems.0").unwrap();
    let plain_none = filesystem(&l.dev, r#"{"device":"DEV","format":"none"}"#);
    disks::make_filesystem(&plain_none, "$.storage.filesystems.0").unwrap();

    // An unknown format is refused after the wipe, as upstream.
    let bad = Filesystem {
        format: Some("zfs".into()),
        ..plain_none
    };
    assert_eq!(
        refused(disks::make_filesystem(&bad, "$.storage.filesystems.0").unwrap_err()),
        r#"unsupported filesystem format: "zfs""#
    );
}

#[test]
fn an_ambivalent_device_is_judged_by_its_first_signature() {
    if !have(
        "an_ambivalent_device_is_judged_by_its_first_signature",
        &[BLKID, WIPEFS, MKFS[0], MKFS[1]],
    ) {
        return;
    }
    // An xfs image with a stray ext4 superblock: `blkid -p` calls it
    // ambivalent; upstream then takes libblkid's first find (xfs).
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.img");
    let b = dir.path().join("b.img");
    for (p, len) in [(&a, 400u64 << 20), (&b, 64 << 20)] {
        std::fs::File::create(p).unwrap().set_len(len).unwrap();
    }
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    run(&["mkfs.xfs", "-q", "-f", "-L", "x", a]);
    run(&["mkfs.ext4", "-q", "-F", b]);
    let sb = std::fs::read(b).unwrap()[1024..2048].to_vec();
    let f = std::fs::OpenOptions::new().write(true).open(a).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &sb, 1024).unwrap();
    let status = Command::new("blkid")
        .args(["-p", a])
        .output()
        .unwrap()
        .status;
    assert_eq!(status.code(), Some(8), "not ambivalent");

    let info = disks::filesystem_info(a).unwrap();
    assert_eq!((info.fs_type.as_str(), info.label.as_str()), ("xfs", "x"));
    let xfs = filesystem(a, r#"{"device":"DEV","format":"xfs","label":"x"}"#);
    disks::make_filesystem(&xfs, "$.storage.filesystems.0").unwrap();
    let ext4 = filesystem(a, r#"{"device":"DEV","format":"ext4"}"#);
    let message = refused(disks::make_filesystem(&ext4, "$.storage.filesystems.0").unwrap_err());
    assert!(message.contains("(found xfs, \"x\","), "{message}");
}

fn luks(dev: &str, json: &str) -> Luks {
    let s = storage(&format!(r#"{{"luks":[{json}]}}"#), dev);
    s.luks[0].clone()
}

#[test]
fn luks_format_writes_a_header() {
    let l = setup!(
        "luks_format_writes_a_header",
        BLKID,
        WIPEFS,
        MKFS[0],
        ("cryptsetup", "cryptsetup-bin"),
    );
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    disks::generate_key_file(&key).unwrap();
    assert_eq!(std::fs::read(&key).unwrap().len(), 8192);

    // Fast key derivation: the options reach luksFormat.
    let v = luks(
        &l.dev,
        r#"{"name":"crypt","device":"DEV","label":"secret","uuid":"0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
            "keyFile":{"source":"data:,x"},
            "options":["--pbkdf","pbkdf2","--pbkdf-force-iterations","1000"]}"#,
    );
    assert_eq!(
        disks::format_luks(&v, &key, "$.storage.luks.0").unwrap(),
        LuksOutcome::Formatted
    );
    let raw = std::fs::read(&l.dev).map(|b| b[..8].to_vec()).unwrap();
    assert_eq!(&raw[..6], b"LUKS\xba\xbe");
    assert_eq!(&raw[6..8], &[0, 2], "LUKS version 2");
    let b = blkid(&l.dev);
    assert_eq!(b["TYPE"], "crypto_LUKS");
    assert_eq!(b["LABEL"], "secret");
    assert_eq!(b["UUID"], "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d");
    let dump = run(&["cryptsetup", "luksDump", &l.dev]);
    assert!(dump.contains("Version:       \t2"), "{dump}");
    assert!(dump.contains("PBKDF:      pbkdf2"), "{dump}");
    run(&[
        "cryptsetup",
        "luksOpen",
        "--test-passphrase",
        "--key-file",
        key.to_str().unwrap(),
        &l.dev,
    ]);

    // The same config with the same key reuses it.
    assert_eq!(
        disks::format_luks(&v, &key, "$.storage.luks.0").unwrap(),
        LuksOutcome::Reused
    );
    // Another key cannot open it: refused, not reformatted.
    let other = dir.path().join("other");
    disks::generate_key_file(&other).unwrap();
    let message = refused(disks::format_luks(&v, &other, "$.storage.luks.0").unwrap_err());
    assert!(
        message.starts_with("volume is not of the correct type")
            && message.ends_with("failed to open device using specified keyfile"),
        "{message}"
    );
    // Another label too.
    let relabeled = Luks {
        label: Some("public".into()),
        ..v.clone()
    };
    let message = refused(disks::format_luks(&relabeled, &key, "$.storage.luks.0").unwrap_err());
    assert!(
        message.ends_with(r#"volume label "secret" doesn't match expected label "public""#),
        "{message}"
    );
    // wipeVolume formats anew.
    let wipe = Luks {
        wipe_volume: Some(true),
        uuid: None,
        ..relabeled
    };
    assert_eq!(
        disks::format_luks(&wipe, &other, "$.storage.luks.0").unwrap(),
        LuksOutcome::Formatted
    );
    assert_eq!(blkid(&l.dev)["LABEL"], "public");

    // A filesystem is not overwritten without wipeVolume.
    run(&["mkfs.ext4", "-q", "-F", &l.dev]);
    let message = refused(disks::format_luks(&v, &key, "$.storage.luks.0").unwrap_err());
    assert_eq!(
        message,
        "volume is not of the correct type (found ext4) and a volume wipe was not requested"
    );
}

#[test]
fn luks_command_lines_are_upstreams() {
    let v = luks(
        "/dev/vdb",
        r#"{"name":"data","device":"DEV","label":"l","uuid":"u","discard":true,
            "options":["--cipher","aes-xts-plain64"],"openOptions":["--perf-no_read_workqueue"],
            "clevis":{"tpm2":true,"tang":[{"url":"http://tang.example","thumbprint":"abc","advertisement":"{\"b\":1,\"a\":\"<&>\"}"}],"threshold":1}}"#,
    );
    let c = disks::luks_commands(&v, "/tmp/key", true).unwrap();
    assert_eq!(
        c.format,
        [
            "cryptsetup",
            "luksFormat",
            "--type",
            "luks2",
            "--key-file",
            "/tmp/key",
            "--label",
            "l",
            "--uuid",
            "u",
            "--cipher",
            "aes-xts-plain64",
            "/dev/vdb"
        ]
    );
    assert_eq!(
        c.open,
        [
            "cryptsetup",
            "luksOpen",
            "/dev/vdb",
            "data",
            "--key-file",
            "/tmp/key",
            "--persistent",
            "--allow-discards",
            "--perf-no_read_workqueue"
        ]
    );
    let bind = c.clevis_bind.unwrap();
    assert_eq!(
        bind[..9],
        [
            "clevis", "luks", "bind", "-f", "-k", "/tmp/key", "-d", "/dev/vdb", "sss"
        ]
    );
    assert_eq!(
        bind[9],
        r#"{"pins":{"tang":[{"url":"http://tang.example","thp":"abc","adv":{"a":"\u003c\u0026\u003e","b":1}}],"tpm2":{}},"t":1}"#
    );
    // The TPM2 alone reaches the threshold: close and unlock to test it.
    assert_eq!(
        c.reopen.unwrap(),
        [
            vec!["cryptsetup", "luksClose", "data"],
            vec!["clevis", "luks", "unlock", "-d", "/dev/vdb", "-n", "data"]
        ]
    );
    assert_eq!(
        c.remove_key.unwrap(),
        ["cryptsetup", "luksRemoveKey", "/dev/vdb", "/tmp/key"]
    );

    // Tang only: no tpm2 key, and an empty thumbprint is left out (the
    // config validator requires one; the Go struct omits it when empty).
    let mut v = luks(
        "/dev/vdb",
        r#"{"name":"d","device":"DEV","clevis":{"tang":[{"url":"http://t","thumbprint":"t"}],"threshold":2}}"#,
    );
    let (_, config) = disks::clevis_config(&v).unwrap();
    assert_eq!(
        config,
        r#"{"pins":{"tang":[{"url":"http://t","thp":"t"}]},"t":2}"#
    );
    v.clevis.tang[0].thumbprint = Some(String::new());
    let (pin, config) = disks::clevis_config(&v).unwrap();
    assert_eq!(
        (pin.as_str(), config.as_str()),
        ("sss", r#"{"pins":{"tang":[{"url":"http://t"}]},"t":2}"#)
    );
    let c = disks::luks_commands(&v, "/k", false).unwrap();
    assert!(c.reopen.is_none() && c.remove_key.is_none());
    let v = luks(
        "/dev/vdb",
        r#"{"name":"d","device":"DEV","clevis":{"custom":{"pin":"tpm2","config":"{}"}}}"#,
    );
    assert_eq!(
        disks::clevis_config(&v).unwrap(),
        ("tpm2".into(), "{}".into())
    );
    let v = luks("/dev/vdb", r#"{"name":"d","device":"DEV"}"#);
    let c = disks::luks_commands(&v, "/k", true).unwrap();
    assert!(c.clevis_bind.is_none() && c.remove_key.is_none());
}

#[test]
fn raid_command_lines_are_upstreams() {
    let s = storage(
        r#"{"raid":[
            {"name":"data","level":"raid1","devices":["/dev/vdb","/dev/vdc","/dev/vdd"],"spares":1,
             "options":["--metadata=1.2"]},
            {"name":"/dev/md/root","level":"raid0","devices":["/dev/vde","/dev/vdf"]}
        ]}"#,
        "",
    );
    let r: &Raid = &s.raid[0];
    assert_eq!(
        disks::raid_create_command(r),
        [
            "mdadm",
            "--create",
            "data",
            "--force",
            "--run",
            "--homehost",
            "any",
            "--level",
            "raid1",
            "--raid-devices",
            "2",
            "--spare-devices",
            "1",
            "--metadata=1.2",
            "/dev/vdb",
            "/dev/vdc",
            "/dev/vdd"
        ]
    );
    assert_eq!(disks::raid_device(r), "/dev/md/data");
    let r = &s.raid[1];
    assert_eq!(
        disks::raid_create_command(r),
        [
            "mdadm",
            "--create",
            "/dev/md/root",
            "--force",
            "--run",
            "--homehost",
            "any",
            "--level",
            "raid0",
            "--raid-devices",
            "2",
            "/dev/vde",
            "/dev/vdf"
        ]
    );
    assert_eq!(disks::raid_device(r), "/dev/md/root");
}

#[test]
fn mkfs_command_lines_are_upstreams() {
    let fs = filesystem(
        "/dev/vda4",
        r#"{"device":"DEV","format":"xfs","label":"root","uuid":"ABC","options":["-m","reflink=1"]}"#,
    );
    assert_eq!(
        disks::mkfs_command(&fs).unwrap().unwrap(),
        [
            "mkfs.xfs",
            "-m",
            "reflink=1",
            "-f",
            "-m",
            "uuid=abc",
            "-L",
            "root",
            "/dev/vda4"
        ]
    );
    let fs = filesystem(
        "/dev/vda1",
        r#"{"device":"DEV","format":"vfat","label":"EFI","uuid":"AB12-CD34"}"#,
    );
    assert_eq!(
        disks::mkfs_command(&fs).unwrap().unwrap(),
        ["mkfs.fat", "-i", "ab12cd34", "-n", "EFI", "/dev/vda1"]
    );
    let fs = filesystem("/dev/vda1", r#"{"device":"DEV","format":"none"}"#);
    assert_eq!(disks::mkfs_command(&fs).unwrap(), None);
}

/// The mount stage mounts the filesystems under the root, shallowest first,
/// making each mount point in the filesystem mounted above it; the umount
/// stage takes them down again, deepest first.
#[test]
fn mount_and_umount_stages_nest_filesystems() {
    use ignition_engine::stages::{self, Env, Stage};
    let test = "mount_and_umount_stages_nest_filesystems";
    let root_dev = setup!(test, BLKID, WIPEFS, MKFS[0]);
    let Some(var_dev) = LoopDev::new(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sysroot = dir.path().join("sysroot");
    std::fs::create_dir(&sysroot).unwrap();
    let mut env = Env::new(&sysroot, "file");
    env.config_cache = dir.path().join("ignition.json");
    env.state_file = dir.path().join("state");
    let config = format!(
        r#"{{"ignition":{{"version":"3.4.0"}},"storage":{{"filesystems":[
            {{"device":"{}","format":"ext4","path":"/var/lib/data"}},
            {{"device":"{}","format":"ext4","path":"/"}}]}}}}"#,
        var_dev.dev, root_dev.dev
    );
    std::fs::write(&env.config_cache, config).unwrap();
    for l in [&root_dev, &var_dev] {
        run(&["mkfs.ext4", "-q", "-F", &l.dev]);
    }
    let mounted = |path: &Path| {
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        let p = path.to_string_lossy().into_owned();
        mounts
            .lines()
            .any(|l| l.split(' ').nth(1) == Some(p.as_str()))
    };

    let result = stages::run(Stage::Mount, &env);
    let state = std::fs::read_to_string(&env.state_file).unwrap_or_default();
    let var = sysroot.join("var/lib/data");
    // Checked before asserting, so a failure still unmounts below.
    let nested = mounted(&sysroot) && mounted(&var);
    std::fs::write(var.join("probe"), "x").ok();
    let umount = stages::run(Stage::Umount, &env);
    if mounted(&var) {
        run(&["umount", &var.to_string_lossy()]);
    }
    if mounted(&sysroot) {
        run(&["umount", &sysroot.to_string_lossy()]);
    }
    result.unwrap();
    assert!(nested, "both filesystems mounted");
    umount.unwrap();
    // The directories made for mount points are in the state, for the
    // files stage (a home on its own filesystem is given to its user).
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    assert_eq!(
        state["notatedDirectories"],
        serde_json::json!(["/var", "/var/lib", "/var/lib/data"]),
        "{state}"
    );
    // The mount point was made in the root filesystem, not in the
    // directory it covers, and the probe landed in the var filesystem.
    assert!(
        !sysroot.join("var").exists(),
        "mount point made under the mount"
    );
    let var_files = run(&["debugfs", "-R", "ls -l /", &var_dev.dev]);
    assert!(var_files.contains("probe"), "{var_files}");
    let root_files = run(&["debugfs", "-R", "ls -l /var/lib", &root_dev.dev]);
    assert!(root_files.contains("data"), "{root_files}");
}

/// Stage paths in a scratch directory, with `config` as the cached config.
fn stage_env(dir: &Path, config: &str) -> ignition_engine::stages::Env {
    let sysroot = dir.join("sysroot");
    std::fs::create_dir_all(&sysroot).unwrap();
    let mut env = ignition_engine::stages::Env::new(&sysroot, "file");
    env.config_cache = dir.join("ignition.json");
    env.state_file = dir.join("state");
    env.neednet = dir.join("neednet");
    std::fs::write(&env.config_cache, config).unwrap();
    env
}

/// A partition that the kernel learns of 3 s after the disks stage
/// started (as a disk appears late at boot) is waited for, not a failure.
#[test]
fn disks_stage_waits_for_a_device_that_appears_later() {
    use ignition_engine::stages::{self, Stage};
    let test = "disks_stage_waits_for_a_device_that_appears_later";
    let l = setup!(test, SGDISK, PARTX, BLKID, WIPEFS, MKFS[0]);
    run(&[
        "sgdisk",
        "--new=1:2048:+65536",
        "--change-name=1:late",
        &l.dev,
    ]);
    // Whatever the kernel did with the new table, it forgets the partition.
    let _ = Command::new("partx").args(["-d", &l.dev]).output();
    let part = l.part(1);
    assert!(!Path::new(&part).exists(), "{part} is known already");
    let dir = tempfile::tempdir().unwrap();
    let env = stage_env(
        dir.path(),
        &format!(
            r#"{{"ignition":{{"version":"3.4.0"}},"storage":{{"filesystems":[
                {{"device":"{part}","format":"ext4","label":"late","wipeFilesystem":true}}]}}}}"#
        ),
    );
    let dev = l.dev.clone();
    let attach = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(3));
        run(&["partx", "-a", &dev]);
    });
    let result = stages::run(Stage::Disks, &env);
    attach.join().unwrap();
    result.unwrap();
    let info = disks::filesystem_info(&part).unwrap();
    assert_eq!(
        (info.fs_type.as_str(), info.label.as_str()),
        ("ext4", "late")
    );
}

/// Devices that never come fail the stage after the deadline, all named.
#[test]
fn disks_stage_names_every_device_that_never_comes() {
    use ignition_engine::stages::{self, Stage};
    let dir = tempfile::tempdir().unwrap();
    let mut env = stage_env(
        dir.path(),
        r#"{"ignition":{"version":"3.4.0"},"storage":{"disks":[
            {"device":"/dev/disk/by-id/oxcore-test-never-a","wipeTable":true},
            {"device":"/dev/disk/by-partlabel/oxcore-test-never-b","wipeTable":true}]}}"#,
    );
    env.device_timeout = std::time::Duration::from_secs(1);
    let e = stages::run(Stage::Disks, &env).unwrap_err().to_string();
    assert!(
        e.contains("waiting for disks devices")
            && e.contains("/dev/disk/by-id/oxcore-test-never-a")
            && e.contains("/dev/disk/by-partlabel/oxcore-test-never-b"),
        "{e}"
    );
}

/// The tests that start a udev daemon take turns.
static UDEV: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Makes `/run/udev` this test's own before it starts a udev daemon.
/// Where a daemon runs already (or one died and left its socket, as
/// installing Debian's `udev` package can), the test runs again in a
/// private mount namespace with a tmpfs over `/run/udev` (the host's
/// daemon and its socket untouched), and this copy stops: returns false.
fn own_run_udev(test: &str) -> bool {
    if !Path::new("/run/udev/control").exists() {
        return true;
    }
    if !test_support::in_private_mount_namespace() {
        test_support::rerun_in_private_mount_namespace(test);
        return false;
    }
    run(&["mount", "-t", "tmpfs", "oxcore-test-udev", "/run/udev"]);
    true
}

/// A udev daemon that died leaves /run/udev/control behind; the stage
/// must notice (by asking the daemon) instead of waiting forever in
/// `udevadm trigger --settle`.
#[test]
fn a_dead_udev_daemon_does_not_hang_the_disks_stage() {
    let test = "a_dead_udev_daemon_does_not_hang_the_disks_stage";
    let _turn = UDEV.lock().unwrap_or_else(|e| e.into_inner());
    let udevd = Path::new("/lib/systemd/systemd-udevd");
    if !udevd.exists() {
        skip(&format!(
            "{test}: needs systemd-udevd (Debian package udev)"
        ));
        return;
    }
    if !own_run_udev(test) {
        return;
    }
    let made_run_udev = !Path::new("/run/udev").exists();
    let l = setup!(test, SGDISK, PARTX, BLKID);
    let mut daemon = Command::new(udevd)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let control = Path::new("/run/udev/control");
    let start = std::time::Instant::now();
    while !control.exists() && start.elapsed() < std::time::Duration::from_secs(20) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let started = control.exists();
    // kill -9: the socket file stays.
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    if !started {
        if made_run_udev {
            let _ = std::fs::remove_dir("/run/udev");
        }
        skip(&format!("{test}: systemd-udevd did not start here"));
        return;
    }
    assert!(control.exists(), "the dead daemon's socket stays");
    let disk = disk(
        &l.dev,
        r#"{"device":"DEV","wipeTable":true,"partitions":[{"number":1,"label":"after-udev","sizeMiB":16}]}"#,
    );
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(disks::partition(&disk, "$.storage.disks.0").map_err(|e| e.to_string()));
    });
    let result = rx.recv_timeout(std::time::Duration::from_secs(120));
    let _ = std::fs::remove_file(control);
    if made_run_udev {
        let _ = std::fs::remove_dir_all("/run/udev");
    }
    remove_dangling_disk_links();
    let result = result.expect("the disks stage hung on the dead udev daemon");
    result.unwrap();
    assert!(Path::new(&l.part(1)).exists());
}

/// Removes the links a udev daemon made under /dev/disk that now lead
/// nowhere (the daemon died before it saw the devices go).
fn remove_dangling_disk_links() {
    let Ok(dirs) = std::fs::read_dir("/dev/disk") else {
        return;
    };
    for dir in dirs.filter_map(Result::ok) {
        let Ok(links) = std::fs::read_dir(dir.path()) else {
            continue;
        };
        for l in links.filter_map(Result::ok) {
            let p = l.path();
            if p.symlink_metadata().is_ok() && !p.exists() {
                let _ = std::fs::remove_file(&p);
            }
        }
    }
}

/// With a live udev daemon, a `/dev/disk/by-partlabel/` link that udev
/// makes for a partition appearing 3 s after the stage started is waited
/// for (the udev half of waiting for devices).
#[test]
fn disks_stage_waits_for_a_link_udev_makes_later() {
    use ignition_engine::stages::{self, Stage};
    let test = "disks_stage_waits_for_a_link_udev_makes_later";
    let _turn = UDEV.lock().unwrap_or_else(|e| e.into_inner());
    let udevd = Path::new("/lib/systemd/systemd-udevd");
    if !udevd.exists() {
        skip(&format!(
            "{test}: needs systemd-udevd (Debian package udev)"
        ));
        return;
    }
    if !own_run_udev(test) {
        return;
    }
    let l = setup!(test, SGDISK, PARTX, BLKID, WIPEFS, MKFS[0]);
    let label = format!("oxtest-late-{}", std::process::id());
    run(&[
        "sgdisk",
        "--new=1:2048:+65536",
        &format!("--change-name=1:{label}"),
        &l.dev,
    ]);
    let _ = Command::new("partx").args(["-d", &l.dev]).output();
    let Some(daemon) = Udevd::start(test) else {
        return;
    };
    let link = format!("/dev/disk/by-partlabel/{label}");
    let dir = tempfile::tempdir().unwrap();
    let env = stage_env(
        dir.path(),
        &format!(
            r#"{{"ignition":{{"version":"3.4.0"}},"storage":{{"filesystems":[
                {{"device":"{link}","format":"ext4","label":"bylabel","wipeFilesystem":true}}]}}}}"#
        ),
    );
    let dev = l.dev.clone();
    let attach = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(3));
        run(&["partx", "-a", &dev]);
    });
    let result = stages::run(Stage::Disks, &env);
    attach.join().unwrap();
    let made_by_udev = Path::new(&link).exists();
    let _ = Command::new("partx").args(["-d", &l.dev]).output();
    drop(daemon);
    result.unwrap();
    assert!(made_by_udev, "udev made {link}");
}

/// A udev daemon this test started (after [`own_run_udev`]); stopped,
/// with its socket and the links it left behind, when dropped.
struct Udevd {
    child: std::process::Child,
    made_run_udev: bool,
}

impl Udevd {
    /// Starts `systemd-udevd` and waits (20 s at most) for its socket;
    /// skips (see [`skip`]) and returns `None` when it cannot.
    fn start(test: &str) -> Option<Udevd> {
        let made_run_udev = !Path::new("/run/udev").exists();
        let child = Command::new("/lib/systemd/systemd-udevd")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let daemon = Udevd {
            child,
            made_run_udev,
        };
        let control = Path::new("/run/udev/control");
        let start = std::time::Instant::now();
        while !control.exists() && start.elapsed() < std::time::Duration::from_secs(20) {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        if !control.exists() {
            drop(daemon);
            skip(&format!("{test}: systemd-udevd did not start here"));
            return None;
        }
        Some(daemon)
    }
}

impl Drop for Udevd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file("/run/udev/control");
        if self.made_run_udev {
            let _ = std::fs::remove_dir_all("/run/udev");
        }
        remove_dangling_disk_links();
    }
}

/// With a live udev daemon probing each partition when `sgdisk` closes
/// the disk, the kernel still ends with the table's partitions: it
/// refuses (EBUSY) to drop or move a partition udev holds open, so the
/// stage lets udev settle and tries again. Before, a wiped table left
/// the old partition in the kernel about one run in three.
#[test]
fn partitioning_beside_a_live_udev_daemon_keeps_the_kernel_in_step() {
    let test = "partitioning_beside_a_live_udev_daemon_keeps_the_kernel_in_step";
    let _turn = UDEV.lock().unwrap_or_else(|e| e.into_inner());
    if !Path::new("/lib/systemd/systemd-udevd").exists() {
        skip(&format!(
            "{test}: needs systemd-udevd (Debian package udev)"
        ));
        return;
    }
    if !own_run_udev(test) {
        return;
    }
    let l = setup!(test, SGDISK, PARTX);
    let Some(daemon) = Udevd::start(test) else {
        return;
    };
    for round in 0..4 {
        let two = disk(
            &l.dev,
            r#"{"device":"DEV","wipeTable":true,"partitions":[
                {"number":1,"label":"one","sizeMiB":32},{"number":2,"label":"two","sizeMiB":32}]}"#,
        );
        disks::partition(&two, "$.storage.disks.0").unwrap();
        assert_eq!(sysfs(&l, 1), Some((2048, 32 * 2048)), "round {round}");
        assert_eq!(sysfs(&l, 2), Some((33 * 2048, 32 * 2048)), "round {round}");
        let moved = disk(
            &l.dev,
            r#"{"device":"DEV","wipeTable":true,"partitions":[
                {"number":1,"label":"moved","startMiB":10,"sizeMiB":64}]}"#,
        );
        disks::partition(&moved, "$.storage.disks.0").unwrap();
        assert_eq!(sysfs(&l, 1), Some((10 * 2048, 64 * 2048)), "round {round}");
        assert_eq!(sysfs(&l, 2), None, "round {round}");
        let empty = disk(&l.dev, r#"{"device":"DEV","wipeTable":true}"#);
        disks::partition(&empty, "$.storage.disks.0").unwrap();
        assert_eq!(sysfs(&l, 1), None, "round {round}");
    }
    drop(daemon);
}
