//! The device helpers the disks stage shares: a partition's device path,
//! whether a disk or its partitions are in use (held by another device or
//! mounted), the kernel's view of the partitions in sysfs, and letting
//! udev catch up after a change.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::command::{Ctx, DiskError};

/// The `/dev/...` path of partition `number` of the (resolved) disk.
pub(super) fn partition_path(disk: &Path, number: i64) -> PathBuf {
    let s = disk.to_string_lossy();
    let p = if s.ends_with(|c: char| c.is_ascii_digit()) {
        "p"
    } else {
        ""
    };
    PathBuf::from(format!("{s}{p}{number}"))
}

fn base_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Whether `dev` is mounted (per `/proc/mounts`).
fn is_mounted(dev: &Path) -> io::Result<bool> {
    let mounts = fs::read_to_string("/proc/mounts")?;
    Ok(mounts
        .lines()
        .filter_map(|l| l.split(' ').next())
        .filter(|src| src.starts_with('/'))
        .any(|src| fs::canonicalize(src).is_ok_and(|p| p == dev)))
}

/// Whether the disk is in use, and which of its partitions are (held by
/// another device or mounted); swap and LVM are not noticed, as upstream.
pub(super) fn disk_in_use(disk: &Path) -> io::Result<(bool, Vec<PathBuf>)> {
    let name = base_name(disk);
    let sys = Path::new("/sys/class/block").join(&name);
    let held = fs::read_dir(sys.join("holders"))?.next().is_some();
    let mut in_use = held || is_mounted(disk)?;
    let mut active = Vec::new();
    for entry in fs::read_dir(&sys)? {
        let child = entry?.file_name().to_string_lossy().into_owned();
        if !child.starts_with(&name) {
            continue;
        }
        let part = Path::new("/dev").join(&child);
        let held = fs::read_dir(sys.join(&child).join("holders"))?
            .next()
            .is_some();
        if held || is_mounted(&part)? {
            active.push(part);
            in_use = true;
        }
    }
    Ok((in_use, active))
}

/// The partitions the kernel knows of `disk`: number → (start, size) in
/// 512-byte sectors.
pub(super) fn kernel_partitions(disk: &Path) -> io::Result<BTreeMap<i64, (i64, i64)>> {
    let name = base_name(disk);
    let sys = Path::new("/sys/class/block").join(&name);
    let mut parts = BTreeMap::new();
    for entry in fs::read_dir(&sys)? {
        let dir = entry?.path();
        let read =
            |f: &str| -> Option<i64> { fs::read_to_string(dir.join(f)).ok()?.trim().parse().ok() };
        if let (Some(n), Some(start), Some(size)) = (read("partition"), read("start"), read("size"))
        {
            parts.insert(n, (start, size));
        }
    }
    Ok(parts)
}

/// Lets udev catch up with changes to `dev`, the way upstream does
/// (`udevadm trigger --settle`), when a udev daemon runs at all.
pub(super) fn settle(ctx: Ctx<'_>, dev: &Path, after: &str) -> Result<(), DiskError> {
    if !crate::devices::udev_running() {
        return Ok(());
    }
    let args = vec![
        "udevadm".to_string(),
        "trigger".to_string(),
        "--settle".to_string(),
        dev.to_string_lossy().into_owned(),
    ];
    ctx.run(&format!("failed to wait for udev after {after}"), &args)
        .map(drop)
}

/// Waits (up to ten seconds) until each path exists or not as wanted.
pub(super) fn wait_for_nodes(want: &[(PathBuf, bool)]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while want.iter().any(|(p, exists)| p.exists() != *exists) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
}
