//! Partitioning with `sgdisk` (upstream's `internal/sgdisk/` and the
//! partition logic of its disks stage).
//!
//! Partitioning follows upstream's matrix: a partition that exists and
//! matches the config is kept ("found with correct specifications"), a
//! mismatch fails unless `wipePartitionEntry` (or `resize` for a size
//! change) allows recreating it, `shouldExist: false` deletes. Where the
//! config leaves start or size open, `sgdisk --pretend` is asked where it
//! would put the partition, so alignment and "fill the free space" are
//! exactly sgdisk's. After writing, the kernel is told with `partx` per
//! partition (this kernel does not re-read a loop device's GPT by itself)
//! and the result is checked against sysfs, as upstream does.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::FileTypeExt as _;
use std::path::{Path, PathBuf};

use ignition_config::types::Disk;

use super::command::{Ctx, DiskError, argv, not_empty, run_command};
use super::device::{disk_in_use, kernel_partitions, partition_path, settle, wait_for_nodes};
use super::gpt::{DiskInfo, PartitionInfo, read_partition_table};
use crate::cmd::command_line;

/// A partition as sgdisk is to see it: the config's partition with start
/// and size in sectors (upstream's `sgdisk.Partition`).
#[derive(Debug, Clone, Default)]
struct Spec {
    number: i64,
    start: Option<i64>,
    size: Option<i64>,
    label: Option<String>,
    guid: Option<String>,
    type_guid: Option<String>,
    should_exist: bool,
    wipe_entry: bool,
    resize: bool,
}

/// One sgdisk invocation: wipe, then deletions, then creations, then
/// `--info` queries (upstream's `sgdisk.Operation`).
#[derive(Debug, Default)]
struct SgdiskOp {
    wipe: bool,
    deletions: Vec<i64>,
    parts: Vec<Spec>,
    infos: Vec<i64>,
}

impl SgdiskOp {
    /// sgdisk's options for this operation, ending with the device; empty
    /// when there is nothing to do.
    fn options(&self, device: &str) -> Vec<String> {
        let mut opts = Vec::new();
        if self.wipe {
            opts.push("--zap-all".to_string());
        }
        for n in &self.deletions {
            opts.push(format!("--delete={n}"));
        }
        for p in &self.parts {
            opts.push(format!(
                "--new={}:{}:+{}",
                p.number,
                p.start.unwrap_or(0),
                p.size.unwrap_or(0)
            ));
            if let Some(label) = &p.label {
                opts.push(format!("--change-name={}:{label}", p.number));
            }
            if let Some(t) = not_empty(&p.type_guid) {
                opts.push(format!("--typecode={}:{t}", p.number));
            }
            if let Some(g) = not_empty(&p.guid) {
                opts.push(format!("--partition-guid={}:{g}", p.number));
            }
        }
        for n in &self.infos {
            opts.push(format!("--info={n}"));
        }
        if !opts.is_empty() {
            opts.push(device.to_string());
        }
        opts
    }
}

/// Parses one `First sector: N (...)` style line: `Ok(None)` when the line
/// is something else, an error when the number does not parse.
fn parse_sector_line(prefix: &str, line: &str) -> Result<Option<i64>, ()> {
    let Some(rest) = line.strip_prefix(prefix) else {
        return Ok(None);
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let tail = &rest[digits..];
    if !(tail.starts_with(" (") && tail.ends_with(')')) {
        return Ok(None);
    }
    rest[..digits].parse().map(Some).map_err(|_| ())
}

/// Parses `sgdisk --pretend ... --info=N...` output into start and size
/// for each of `numbers`, in order (upstream's `parseSgdiskPretend`).
fn parse_sgdisk_pretend(out: &str, numbers: &[i64]) -> Result<BTreeMap<i64, (i64, i64)>, String> {
    const BAD: &str = "sgdisk had unexpected output";
    let mut dims = BTreeMap::new();
    if numbers.is_empty() {
        return Ok(dims);
    }
    let mut start: Option<i64> = None;
    let mut done = false;
    for line in out.split('\n') {
        let first = parse_sector_line("First sector: ", line).map_err(|_| BAD)?;
        let last = parse_sector_line("Last sector: ", line).map_err(|_| BAD)?;
        if done {
            if first.is_some() || last.is_some() {
                return Err(BAD.into());
            }
            continue;
        }
        match start {
            None => start = first,
            Some(s) => {
                if let Some(end) = last {
                    dims.insert(numbers[dims.len()], (s, 1 + end - s));
                    start = None;
                    done = dims.len() == numbers.len();
                }
            }
        }
    }
    if !done {
        return Err(BAD.into());
    }
    Ok(dims)
}

/// Upstream's `partitionMatchesCommon`: everything but the size.
fn matches_common(existing: &PartitionInfo, spec: &Spec) -> Result<(), String> {
    if spec.number != existing.number {
        return Err(format!(
            "partition numbers did not match (specified {}, got {}). This should not happen, please file a bug",
            spec.number, existing.number
        ));
    }
    if let Some(start) = spec.start
        && start != existing.start
    {
        return Err(format!(
            "starting sector did not match (specified {start}, got {})",
            existing.start
        ));
    }
    if let Some(g) = not_empty(&spec.guid)
        && !g.eq_ignore_ascii_case(&existing.guid)
    {
        return Err(format!(
            "GUID did not match (specified {}, got {})",
            ignition_config::go_quote(g),
            ignition_config::go_quote(&existing.guid)
        ));
    }
    if let Some(t) = not_empty(&spec.type_guid)
        && !t.eq_ignore_ascii_case(&existing.type_guid)
    {
        return Err(format!(
            "type GUID did not match (specified {}, got {})",
            ignition_config::go_quote(t),
            ignition_config::go_quote(&existing.type_guid)
        ));
    }
    if let Some(label) = &spec.label
        && *label != existing.label
    {
        return Err(format!(
            "label did not match (specified {}, got {})",
            ignition_config::go_quote(label),
            ignition_config::go_quote(&existing.label)
        ));
    }
    Ok(())
}

/// Upstream's `partitionMatches`.
fn matches(existing: &PartitionInfo, spec: &Spec) -> Result<(), String> {
    matches_common(existing, spec)?;
    if let Some(size) = spec.size
        && size != existing.size
    {
        return Err(format!(
            "size did not match (specified {size}, got {})",
            existing.size
        ));
    }
    Ok(())
}

/// Fills in partition numbers, and start and size wherever the config
/// leaves them open (or 0), by asking `sgdisk --pretend` where it would
/// put the partitions if all were (re)created (upstream's
/// `getRealStartAndSize`).
fn real_start_and_size(ctx: Ctx<'_>, disk: &Disk, info: &DiskInfo) -> Result<Vec<Spec>, DiskError> {
    let per_mib = (1024 * 1024) / info.logical_sector_size;
    let mut specs: Vec<Spec> = disk
        .partitions
        .iter()
        .map(|p| Spec {
            number: p.number,
            start: p.start_mib.map(|m| m * per_mib),
            size: p.size_mib.map(|m| m * per_mib),
            label: p.label.clone(),
            guid: p.guid.clone(),
            type_guid: p.type_guid.clone(),
            should_exist: p.should_exist != Some(false),
            wipe_entry: p.wipe_partition_entry == Some(true),
            resize: p.resize == Some(true),
        })
        .collect();

    let mut used: BTreeMap<i64, bool> = info.partitions.iter().map(|p| (p.number, true)).collect();
    let mut op = SgdiskOp::default();
    for spec in &specs {
        let mut part = spec.clone();
        if let Some(existing) = info.partition(part.number) {
            op.deletions.push(part.number);
            // Not specified means keep what is there, unless the entry may
            // be wiped: then it goes wherever sgdisk puts a new one.
            if part.start.is_none() && !part.wipe_entry {
                part.start = Some(existing.start);
            }
            if part.size.is_none() && !part.wipe_entry {
                part.size = Some(existing.size);
            }
        }
        if part.number > 0 {
            used.insert(part.number, part.should_exist);
        }
        if part.should_exist {
            // sgdisk does not escape labels in its output.
            part.label = None;
            op.parts.push(part);
        }
    }

    let mut free = 1;
    let mut inspect = Vec::new();
    for part in specs.iter_mut().filter(|p| p.should_exist) {
        if part.number == 0 {
            while used.get(&free) == Some(&true) {
                free += 1;
            }
            part.number = free;
            free += 1;
        }
        if part.start.unwrap_or(0) == 0 || part.size.unwrap_or(0) == 0 {
            op.infos.push(part.number);
            inspect.push(part.number);
        }
    }

    // Upstream pretends even when nothing needs inspecting, so a layout
    // sgdisk refuses fails here, before anything is written. With no
    // options at all, `sgdisk --pretend` alone would do nothing.
    let opts = op.options(ctx.device);
    if opts.is_empty() {
        return Ok(specs);
    }
    let mut args = vec!["sgdisk".to_string(), "--pretend".to_string()];
    args.extend(opts);
    let out = ctx.run("failed to pretend to create partitions", &args)?;
    let dims = parse_sgdisk_pretend(&String::from_utf8_lossy(&out.stdout), &inspect)
        .map_err(|e| ctx.refused(format!("{e}: `{}`", command_line(&args))))?;
    for part in &mut specs {
        if let Some(&(start, size)) = dims.get(&part.number) {
            part.start = Some(start);
            part.size = Some(size);
        }
    }
    Ok(specs)
}

/// Brings the kernel's view of `disk`'s partitions in line with its GPT,
/// one `partx` call per partition that differs, as upstream does (partx
/// failures are not fatal: the check after it is). Returns the partx
/// errors of the last round, to name them if that check fails.
///
/// A live udev daemon probes the disk's partitions when `sgdisk` closes
/// it, and the kernel refuses to delete or move a partition that is open
/// (EBUSY): udev is let settle first, and what failed is tried again
/// after it settled once more, from a fresh read of both views.
fn tell_kernel(ctx: Ctx<'_>, disk: &Path) -> Result<Vec<String>, DiskError> {
    const ROUNDS: usize = 3;
    settle(ctx, disk, "writing the partition table")?;
    let mut touched: BTreeMap<i64, bool> = BTreeMap::new();
    let mut errors = Vec::new();
    for round in 0..ROUNDS {
        if round > 0 {
            settle(ctx, disk, "partitioning")?;
        }
        let table = read_partition_table(disk).map_err(ctx.io("re-reading the partition table"))?;
        let kernel = kernel_partitions(disk).map_err(ctx.io("reading partitions from sysfs"))?;
        let per = table.logical_sector_size / 512;
        let wanted: BTreeMap<i64, (i64, i64)> = table
            .partitions
            .iter()
            .map(|p| (p.number, (p.start * per, p.size * per)))
            .collect();
        let ops = kernel_updates(&kernel, &wanted);
        errors.clear();
        if ops.is_empty() {
            break;
        }
        let dev = disk.to_string_lossy().into_owned();
        for (op, n) in &ops {
            touched.insert(*n, wanted.contains_key(n));
            let args = vec![
                "partx".to_string(),
                op.to_string(),
                "--nr".to_string(),
                n.to_string(),
                dev.clone(),
            ];
            if let Err(f) = run_command(&args) {
                errors.push(format!("`{}` {}: {}", f.command, f.status, f.stderr));
            }
        }
        if errors.is_empty() {
            break;
        }
    }
    settle(ctx, disk, "partitioning")?;
    let nodes: Vec<(PathBuf, bool)> = touched
        .into_iter()
        .map(|(n, exists)| (partition_path(disk, n), exists))
        .collect();
    wait_for_nodes(&nodes);
    Ok(errors)
}

/// The `partx` operations that make the kernel's partitions (`kernel`)
/// those of the table (`wanted`), both number to (start, size) in 512-byte
/// sectors: deletions first, so that a partition moving into another's old
/// place is not refused as overlapping.
fn kernel_updates(
    kernel: &BTreeMap<i64, (i64, i64)>,
    wanted: &BTreeMap<i64, (i64, i64)>,
) -> Vec<(&'static str, i64)> {
    let numbers: BTreeSet<i64> = wanted.keys().chain(kernel.keys()).copied().collect();
    let mut ops = Vec::new();
    for n in numbers {
        match (kernel.get(&n), wanted.get(&n)) {
            (Some(_), None) => ops.push(("--delete", n)),
            (None, Some(_)) => ops.push(("--add", n)),
            (Some(k), Some(w)) if k != w => ops.push(("--update", n)),
            _ => {}
        }
    }
    ops.sort_by_key(|(op, _)| *op != "--delete");
    ops
}

/// Partitions `disk` as upstream Ignition does; `at` is the disk's config
/// path (e.g. `$.storage.disks.0`) for errors.
///
/// With `wipeTable`, the table is zapped first (`sgdisk --zap-all`, tried
/// twice). Partitions with number 0 are handled after numbered ones and
/// take the lowest free numbers. Each configured partition is then kept
/// (it exists and matches), created, deleted (`shouldExist: false` with
/// `wipePartitionEntry`), resized (`resize`, only the size differs) or
/// recreated (`wipePartitionEntry`); anything else is refused with
/// upstream's message before the disk is touched. All changes are made by
/// one `sgdisk` call, then the kernel is told with `partx` and its view is
/// checked.
///
/// `disk.device` may also be a regular image file; the kernel is then not
/// involved.
pub fn partition(disk: &Disk, at: &str) -> Result<(), DiskError> {
    let ctx = Ctx {
        at,
        device: &disk.device,
    };
    let device = disk.device.as_str();
    let resolved = fs::canonicalize(device).map_err(ctx.io("failed to resolve"))?;
    let is_block = fs::metadata(&resolved)
        .map_err(ctx.io("failed to stat"))?
        .file_type()
        .is_block_device();
    let (in_use, active) = if is_block {
        disk_in_use(&resolved).map_err(ctx.io("failed usage check"))?
    } else {
        (false, Vec::new())
    };
    if in_use && active.is_empty() {
        return Err(ctx.refused(format!(
            "refusing to operate on directly active disk {}",
            ignition_config::go_quote(device)
        )));
    }

    if disk.wipe_table == Some(true) {
        if !active.is_empty() {
            return Err(ctx.refused(format!(
                "refusing to wipe active disk {}",
                ignition_config::go_quote(device)
            )));
        }
        let args = argv(["sgdisk", "--zap-all", device]);
        // sgdisk exits with 2 when the table it zaps was corrupt; upstream
        // retries once (fedora-coreos-tracker#1596).
        if run_command(&args).is_err() {
            ctx.run("create partitions failed", &args)?;
        }
    }

    let mut sorted = disk.clone();
    sorted.partitions.sort_by_key(|p| p.number == 0);
    let info =
        read_partition_table(Path::new(device)).map_err(ctx.io("reading partition table"))?;
    let resolved_parts = real_start_and_size(ctx, &sorted, &info)?;

    let mut op = SgdiskOp::default();
    let mut deleted = Vec::new();
    let mut changed = Vec::new();
    for spec in &resolved_parts {
        let number = spec.number;
        if !spec.should_exist
            && resolved_parts
                .iter()
                .any(|p| p.number == number && p.should_exist)
        {
            continue;
        }
        let existing = info.partition(number);
        let mismatch = existing.map(|e| matches(e, spec));
        let part_in_use = {
            let path = partition_path(&resolved, number);
            let path = fs::canonicalize(&path).unwrap_or(path);
            active.contains(&path)
        };
        let modification = match (existing, spec.should_exist) {
            (None, false) => false,
            (None, true) => {
                op.parts.push(spec.clone());
                changed.push(number);
                true
            }
            (Some(_), false) if !spec.wipe_entry => {
                return Err(ctx.refused(format!(
                    "partition {number} exists but is specified as nonexistant and wipePartitionEntry is false"
                )));
            }
            (Some(_), false) => {
                op.deletions.push(number);
                deleted.push(number);
                true
            }
            (Some(_), true) if mismatch == Some(Ok(())) => false,
            (Some(e), true) if !spec.wipe_entry => {
                if spec.resize && matches_common(e, spec).is_ok() {
                    op.deletions.push(number);
                    op.parts.push(Spec {
                        number: e.number,
                        guid: Some(e.guid.clone()),
                        type_guid: Some(e.type_guid.clone()),
                        label: Some(e.label.clone()),
                        start: Some(e.start),
                        ..spec.clone()
                    });
                    changed.push(number);
                    true
                } else {
                    let why = mismatch.and_then(Result::err).unwrap_or_default();
                    return Err(ctx.refused(format!("partition {number} didn't match: {why}")));
                }
            }
            (Some(_), true) => {
                op.deletions.push(number);
                op.parts.push(spec.clone());
                changed.push(number);
                true
            }
        };
        if part_in_use && modification {
            return Err(ctx.refused(format!(
                "refusing to modify active partition {number} on {}",
                ignition_config::go_quote(device)
            )));
        }
    }

    let opts = op.options(device);
    if !opts.is_empty() {
        let mut args = vec!["sgdisk".to_string()];
        args.extend(opts);
        ctx.run("commit failure: create partitions failed", &args)?;
    }
    if !is_block {
        return Ok(());
    }

    let partx_errors = tell_kernel(ctx, &resolved)?;
    let with_partx = |msg: String| {
        if partx_errors.is_empty() {
            msg
        } else {
            format!("{msg} (partx: {})", partx_errors.join("; "))
        }
    };
    let per = info.logical_sector_size / 512;
    for spec in &resolved_parts {
        let path = partition_path(&resolved, spec.number);
        let shown = path.display().to_string();
        if deleted.contains(&spec.number) {
            if path.exists() {
                return Err(ctx.refused(with_partx(format!(
                    "{} unexpectedly exists after partitioning",
                    ignition_config::go_quote(&shown)
                ))));
            }
        } else if changed.contains(&spec.number) {
            let kernel = kernel_partitions(&resolved).map_err(ctx.io("reading sysfs"))?;
            let Some(&(start, size)) = kernel.get(&spec.number) else {
                return Err(ctx.refused(with_partx(format!(
                    "failed to read start of {} from sysfs: the kernel does not know the partition",
                    ignition_config::go_quote(&shown)
                ))));
            };
            if let Some(want) = spec.start.map(|s| s * per)
                && start != want
            {
                return Err(ctx.refused(with_partx(format!(
                    "kernel partition start for {} does not match expected ({start} != {want} 512-byte sectors)",
                    ignition_config::go_quote(&shown)
                ))));
            }
            if let Some(want) = spec.size.map(|s| s * per)
                && size != want
            {
                return Err(ctx.refused(with_partx(format!(
                    "kernel partition size for {} does not match expected ({size} != {want} 512-byte sectors)",
                    ignition_config::go_quote(&shown)
                ))));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sgdisk_options_in_upstream_order() {
        let op = SgdiskOp {
            wipe: true,
            deletions: vec![2],
            parts: vec![Spec {
                number: 1,
                start: Some(2048),
                size: None,
                label: Some("boot".into()),
                type_guid: Some("C12A7328-F81F-11D2-BA4B-00A0C93EC93B".into()),
                guid: Some(String::new()),
                ..Spec::default()
            }],
            infos: vec![1],
        };
        assert_eq!(
            op.options("/dev/vda"),
            [
                "--zap-all",
                "--delete=2",
                "--new=1:2048:+0",
                "--change-name=1:boot",
                "--typecode=1:C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
                "--info=1",
                "/dev/vda"
            ]
        );
        assert!(SgdiskOp::default().options("/dev/vda").is_empty());
    }

    #[test]
    fn parses_sgdisk_pretend() {
        let out = "Partition GUID code: 0FC63DAF-8483-4772-8E79-3D69D8477DE4 (Linux filesystem)\n\
                   First sector: 2048 (at 1024.0 KiB)\nLast sector: 206847 (at 101.0 MiB)\n\
                   Partition name: ''\n\
                   First sector: 206848 (at 101.0 MiB)\nLast sector: 2097118 (at 1024.0 MiB)\n";
        let dims = parse_sgdisk_pretend(out, &[1, 4]).unwrap();
        assert_eq!(dims[&1], (2048, 204800));
        assert_eq!(dims[&4], (206848, 1890271));
        assert!(parse_sgdisk_pretend(out, &[1]).is_err());
        assert!(parse_sgdisk_pretend(out, &[1, 2, 3]).is_err());
        assert!(parse_sgdisk_pretend("First sector:  (x)\n", &[1]).is_err());
        assert!(parse_sgdisk_pretend("", &[]).unwrap().is_empty());
    }

    #[test]
    fn mismatch_messages_are_upstreams() {
        let existing = PartitionInfo {
            number: 1,
            start: 2048,
            size: 2048,
            label: "y".into(),
            guid: "AAAA".into(),
            type_guid: "BBBB".into(),
        };
        let spec = Spec {
            number: 1,
            label: Some("x".into()),
            guid: Some("aaaa".into()),
            ..Spec::default()
        };
        assert_eq!(
            matches(&existing, &spec).unwrap_err(),
            r#"label did not match (specified "x", got "y")"#
        );
        let spec = Spec {
            number: 1,
            size: Some(4096),
            ..Spec::default()
        };
        assert_eq!(
            matches(&existing, &spec).unwrap_err(),
            "size did not match (specified 4096, got 2048)"
        );
        assert!(matches_common(&existing, &spec).is_ok());
    }
}
