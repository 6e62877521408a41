//! The disks stage: GPT partitions, filesystems, LUKS volumes and RAID
//! arrays, decided the way upstream Ignition's `disks` stage decides
//! (`internal/exec/stages/disks/` and `internal/sgdisk/` upstream).
//!
//! Everything that changes a disk goes through the real tools: `sgdisk`
//! for partition tables, `partx` to tell the kernel, `wipefs` and the
//! `mkfs` family for filesystems, `cryptsetup` for LUKS and `mdadm` for
//! RAID. Reading is done without them where that is simpler and exact:
//! the GPT is parsed here (what upstream reads through libblkid), and
//! filesystems are probed with `blkid -p`, which reads the device itself
//! rather than a udev database that may not exist yet.
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
//!
//! Not here: device aliases under `/run/ignition/dev_aliases`, device-mapper
//! (multipath) disks, opening LUKS volumes and Clevis binding (the command
//! lines are built, see [`luks_commands`]), IBM CEX keys, and waiting on
//! systemd device units.

use crate::cmd::Output;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, Read as _, Seek as _, SeekFrom};
use std::os::unix::fs::{FileExt as _, FileTypeExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ignition_config::types::{Disk, Filesystem, Luks, Raid};

/// A disks-stage failure: the config path and device it concerns, and what
/// went wrong (for a command, the whole command line and its stderr).
#[derive(Debug, thiserror::Error)]
#[error("{at}: {device}: {kind}")]
pub struct DiskError {
    /// JSON path of the config entry, e.g. `$.storage.disks.0`.
    pub at: String,
    /// The device as the config names it.
    pub device: String,
    /// What went wrong.
    pub kind: DiskErrorKind,
}

/// What went wrong, without the where of [`DiskError`].
#[derive(Debug, thiserror::Error)]
pub enum DiskErrorKind {
    /// The device does not allow what the config asks, in upstream's words
    /// (e.g. `partition 1 didn't match: label did not match (specified
    /// "x", got "y")` or `filesystem is not of the correct type ...`).
    #[error("{0}")]
    Refused(String),
    /// A tool failed or could not be started.
    #[error("{0}")]
    Command(Box<CommandFailure>),
    /// Reading the device or sysfs failed.
    #[error("{what}: {error}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        error: io::Error,
    },
}

/// A command that failed: what it was for, its line, exit status and
/// stderr.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: `{command}` {status}: {stderr}")]
pub struct CommandFailure {
    /// What was being done.
    pub what: String,
    /// The whole command line, shell-quoted.
    pub command: String,
    /// Exit status (`failed (exit status: 4)`), or why the tool could not
    /// be run.
    pub status: String,
    /// The tool's stderr, trimmed.
    pub stderr: String,
}

impl DiskError {
    /// JSON path of the config entry the error concerns.
    pub fn at(&self) -> &str {
        &self.at
    }

    /// The device, as the config names it.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// Upstream's message, when the error is a refusal.
    pub fn refusal(&self) -> Option<&str> {
        match &self.kind {
            DiskErrorKind::Refused(m) => Some(m),
            _ => None,
        }
    }

    /// The failed command, when a tool failed.
    pub fn command(&self) -> Option<&CommandFailure> {
        match &self.kind {
            DiskErrorKind::Command(c) => Some(c),
            _ => None,
        }
    }
}

/// Where errors are reported: config path and device.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    at: &'a str,
    device: &'a str,
}

impl Ctx<'_> {
    fn error(&self, kind: DiskErrorKind) -> DiskError {
        DiskError {
            at: self.at.to_string(),
            device: self.device.to_string(),
            kind,
        }
    }

    fn refused(&self, message: impl Into<String>) -> DiskError {
        self.error(DiskErrorKind::Refused(message.into()))
    }

    fn io(&self, what: impl Into<String>) -> impl FnOnce(io::Error) -> DiskError + '_ {
        let what = what.into();
        move |error| self.error(DiskErrorKind::Io { what, error })
    }

    fn command(&self, what: &str, mut failure: CommandFailure) -> DiskError {
        failure.what = what.to_string();
        self.error(DiskErrorKind::Command(Box::new(failure)))
    }

    /// Runs `argv`; a failure names the command line and its stderr.
    fn run(&self, what: &str, argv: &[String]) -> Result<Output, DiskError> {
        run_command(argv).map_err(|f| self.command(what, f))
    }
}

use crate::cmd::command_line;

/// Runs `argv[0]` with the rest as arguments, no stdin (so that tools
/// never wait for a confirmation) and the tools' deadline
/// ([`crate::cmd::timeout`]), and fails unless it exits with 0.
fn run_command(argv: &[String]) -> Result<Output, CommandFailure> {
    let failure = |status: String, stderr: String| CommandFailure {
        what: String::new(),
        command: command_line(argv),
        status,
        stderr,
    };
    let out = crate::cmd::run(argv, None).map_err(|e| failure(e.status(), String::new()))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(failure(
            format!("failed ({})", out.status),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

fn argv<const N: usize>(parts: [&str; N]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------------------
// Reading the partition table.

/// One partition as the GPT records it; sectors are logical sectors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// Partition number (entry index + 1).
    pub number: i64,
    /// First sector.
    pub start: i64,
    /// Size in sectors.
    pub size: i64,
    /// Partition name, decoded from UTF-16.
    pub label: String,
    /// Unique partition GUID, upper case.
    pub guid: String,
    /// Partition type GUID, upper case.
    pub type_guid: String,
}

/// A disk's logical sector size and GPT partitions (what upstream's
/// `DumpDisk` reads through libblkid).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DiskInfo {
    /// Logical sector size in bytes (512 or 4096).
    pub logical_sector_size: i64,
    /// The partitions in table order.
    pub partitions: Vec<PartitionInfo>,
}

impl DiskInfo {
    /// The partition numbered `number`, if any.
    pub fn partition(&self, number: i64) -> Option<&PartitionInfo> {
        self.partitions.iter().find(|p| p.number == number)
    }
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Formats a GPT's mixed-endian GUID, upper case.
fn guid_string(b: &[u8]) -> String {
    let mut s = String::with_capacity(36);
    for i in [3, 2, 1, 0] {
        let _ = write!(s, "{:02X}", b[i]);
    }
    s.push('-');
    for i in [5, 4] {
        let _ = write!(s, "{:02X}", b[i]);
    }
    s.push('-');
    for i in [7, 6] {
        let _ = write!(s, "{:02X}", b[i]);
    }
    s.push('-');
    for x in &b[8..10] {
        let _ = write!(s, "{x:02X}");
    }
    s.push('-');
    for x in &b[10..16] {
        let _ = write!(s, "{x:02X}");
    }
    s
}

/// Reads and checks the GPT header at `lba` and its entry array; `None`
/// when either is missing or fails its CRC.
fn read_gpt_at(f: &File, sector: u64, lba: u64) -> Option<Vec<PartitionInfo>> {
    let mut header = vec![0u8; sector as usize];
    f.read_exact_at(&mut header, lba.checked_mul(sector)?)
        .ok()?;
    if &header[..8] != b"EFI PART" {
        return None;
    }
    let size = le_u32(&header, 12) as usize;
    if !(92..=sector as usize).contains(&size) {
        return None;
    }
    let mut h = header[..size].to_vec();
    h[16..20].fill(0);
    if util::crc32(&h) != le_u32(&header, 16) || le_u64(&header, 24) != lba {
        return None;
    }
    let entries_lba = le_u64(&header, 72);
    let count = le_u32(&header, 80) as usize;
    let entry_size = le_u32(&header, 84) as usize;
    if entry_size < 128 || !entry_size.is_multiple_of(8) || count.checked_mul(entry_size)? > 4 << 20
    {
        return None;
    }
    let mut entries = vec![0u8; count * entry_size];
    f.read_exact_at(&mut entries, entries_lba.checked_mul(sector)?)
        .ok()?;
    if util::crc32(&entries) != le_u32(&header, 88) {
        return None;
    }
    let mut parts = Vec::new();
    for (i, e) in entries.chunks_exact(entry_size).enumerate() {
        if e[..16].iter().all(|&b| b == 0) {
            continue;
        }
        let first = le_u64(e, 32);
        let last = le_u64(e, 40);
        let name: Vec<u16> = e[56..128]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&c| c != 0)
            .collect();
        parts.push(PartitionInfo {
            number: i as i64 + 1,
            start: first as i64,
            size: (last as i64) - (first as i64) + 1,
            label: String::from_utf16_lossy(&name),
            guid: guid_string(&e[16..32]),
            type_guid: guid_string(&e[..16]),
        });
    }
    Some(parts)
}

/// Whether sector 0 holds a DOS partition table (with real partitions, not
/// only a GPT's protective entry, and not a FAT/NTFS boot sector).
fn is_dos_table(mbr: &[u8]) -> bool {
    if mbr.len() < 512 || mbr[510] != 0x55 || mbr[511] != 0xAA {
        return false;
    }
    if &mbr[0x36..0x39] == b"FAT" || &mbr[0x52..0x57] == b"FAT32" || &mbr[3..7] == b"NTFS" {
        return false;
    }
    let entries: Vec<&[u8]> = (0..4).map(|i| &mbr[446 + 16 * i..462 + 16 * i]).collect();
    entries.iter().all(|e| e[0] == 0 || e[0] == 0x80)
        && entries.iter().any(|e| e[4] != 0 && e[4] != 0xEE)
}

/// Reads the logical sector size and the GPT of `device`: the primary
/// table, or the backup one at the end of the disk when the primary is
/// damaged. A disk with no partition table has no partitions; one with a
/// DOS table is refused, like upstream.
pub fn read_partition_table(device: &Path) -> io::Result<DiskInfo> {
    let mut f = File::open(device)?;
    let sector = match rustix::fs::ioctl_blksszget(&f) {
        Ok(s) if s >= 512 && s % 512 == 0 => u64::from(s),
        Ok(s) => {
            return Err(io::Error::other(format!(
                "logical sector size {s} is not a multiple of 512"
            )));
        }
        // Not a block device (an image file): 512-byte sectors.
        Err(_) => 512,
    };
    let len = f.seek(SeekFrom::End(0))?;
    let last_lba = (len / sector).saturating_sub(1);
    let parts = match read_gpt_at(&f, sector, 1) {
        Some(p) => p,
        None => match read_gpt_at(&f, sector, last_lba) {
            Some(p) => p,
            None => {
                let mut mbr = vec![0u8; 512];
                f.seek(SeekFrom::Start(0))?;
                if f.read_exact(&mut mbr).is_ok() && is_dos_table(&mbr) {
                    return Err(io::Error::other("disk does not have a GPT"));
                }
                Vec::new()
            }
        },
    };
    Ok(DiskInfo {
        logical_sector_size: sector as i64,
        partitions: parts,
    })
}

// ---------------------------------------------------------------------------
// sgdisk operations.

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

fn not_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
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

/// The `/dev/...` path of partition `number` of the (resolved) disk.
fn partition_path(disk: &Path, number: i64) -> PathBuf {
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
fn disk_in_use(disk: &Path) -> io::Result<(bool, Vec<PathBuf>)> {
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
fn kernel_partitions(disk: &Path) -> io::Result<BTreeMap<i64, (i64, i64)>> {
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

/// Whether a udev daemon is running and answering, to be waited for.
fn udev_running() -> bool {
    crate::devices::udev_running()
}

/// Lets udev catch up with changes to `dev`, the way upstream does
/// (`udevadm trigger --settle`), when a udev daemon runs at all.
fn settle(ctx: Ctx<'_>, dev: &Path, after: &str) -> Result<(), DiskError> {
    if !udev_running() {
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
fn wait_for_nodes(want: &[(PathBuf, bool)]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while want.iter().any(|(p, exists)| p.exists() != *exists) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Brings the kernel's view of `disk`'s partitions in line with its GPT,
/// one `partx` call per partition that differs, as upstream does (partx
/// failures are not fatal: the check after it is). Returns the partx
/// errors, to name them if that check fails.
fn tell_kernel(ctx: Ctx<'_>, disk: &Path) -> Result<Vec<String>, DiskError> {
    let table = read_partition_table(disk).map_err(ctx.io("re-reading the partition table"))?;
    let kernel = kernel_partitions(disk).map_err(ctx.io("reading partitions from sysfs"))?;
    let per = table.logical_sector_size / 512;
    let wanted: BTreeMap<i64, (i64, i64)> = table
        .partitions
        .iter()
        .map(|p| (p.number, (p.start * per, p.size * per)))
        .collect();
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
    // Deletions first, so that a partition moving into another's old
    // place is not refused as overlapping.
    ops.sort_by_key(|(op, _)| *op != "--delete");
    let mut errors = Vec::new();
    let dev = disk.to_string_lossy().into_owned();
    for (op, n) in &ops {
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
    settle(ctx, disk, "partitioning")?;
    let nodes: Vec<(PathBuf, bool)> = ops
        .iter()
        .map(|(_, n)| (partition_path(disk, *n), wanted.contains_key(n)))
        .collect();
    wait_for_nodes(&nodes);
    Ok(errors)
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

// ---------------------------------------------------------------------------
// Filesystems.

/// What `blkid -p` finds on a device (empty strings when nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilesystemInfo {
    /// `TYPE`, e.g. `ext4`, `swap`, `crypto_LUKS`.
    pub fs_type: String,
    /// `UUID`.
    pub uuid: String,
    /// `LABEL`.
    pub label: String,
}

/// Undoes `blkid -o export`'s backslash escaping.
fn unescape_export(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Probes `device` for a filesystem, LUKS header, swap or RAID member with
/// `blkid -p` (reading the device itself, not udev's database). When
/// several signatures are found, the first that `wipefs` lists is taken,
/// as upstream falls back to a probe that allows that.
pub fn filesystem_info(device: &str) -> Result<FilesystemInfo, String> {
    File::open(device)
        .map_err(|e| format!("failed to open {}: {e}", ignition_config::go_quote(device)))?;
    let args = argv(["blkid", "-p", "-o", "export", device]);
    let out = crate::cmd::run(&args, None).map_err(|e| e.to_string())?;
    let mut info = FilesystemInfo::default();
    match out.status.code() {
        Some(0) => {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let Some((k, v)) = line.split_once('=') else {
                    continue;
                };
                let v = unescape_export(v);
                match k {
                    "TYPE" => info.fs_type = v,
                    "UUID" => info.uuid = v,
                    "LABEL" => info.label = v,
                    _ => {}
                }
            }
            Ok(info)
        }
        // Nothing found.
        Some(2) => Ok(info),
        // Ambivalent: more than one signature.
        Some(8) => ambivalent_info(device),
        _ => Err(format!(
            "`{}` failed ({}): {}",
            command_line(&args),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

/// The first non-partition-table signature `wipefs` lists.
fn ambivalent_info(device: &str) -> Result<FilesystemInfo, String> {
    let args = argv([
        "wipefs",
        "--no-act",
        "--json",
        "--output",
        "TYPE,UUID,LABEL,USAGE",
        device,
    ]);
    let out =
        run_command(&args).map_err(|f| format!("`{}` {}: {}", f.command, f.status, f.stderr))?;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("`{}` printed bad JSON: {e}", command_line(&args)))?;
    let field = |s: &serde_json::Value, k: &str| s[k].as_str().unwrap_or_default().to_string();
    let first = json["signatures"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["usage"].as_str() != Some("partition table"));
    Ok(first
        .map(|s| FilesystemInfo {
            fs_type: field(s, "type"),
            uuid: field(s, "uuid"),
            label: field(s, "label"),
        })
        .unwrap_or_default())
}

/// Lower-cases a UUID and, for FAT's volume ID, drops the dash
/// (upstream's `canonicalizeFilesystemUUID`).
fn canonical_uuid(format: &str, uuid: &str) -> String {
    let mut uuid = uuid.to_lowercase();
    if format == "vfat" && uuid.len() >= 5 && uuid.as_bytes()[4] == b'-' {
        uuid.remove(4);
    }
    uuid
}

/// The `mkfs` command line upstream runs for `fs` on its device (after
/// `wipefs -a`); `None` for `format: none`, an error for an unknown format.
pub fn mkfs_command(fs: &Filesystem) -> Result<Option<Vec<String>>, String> {
    let format = fs.format.as_deref().unwrap_or_default();
    let (tool, force, uuid_flag, label_flag) = match format {
        "btrfs" => ("mkfs.btrfs", Some("--force"), "-U", "-L"),
        "ext4" => ("mkfs.ext4", Some("-F"), "-U", "-L"),
        "xfs" => ("mkfs.xfs", Some("-f"), "-m", "-L"),
        "swap" => ("mkswap", Some("-f"), "-U", "-L"),
        // mkfs.fat has no force flag: it always overwrites.
        "vfat" => ("mkfs.fat", None, "-i", "-n"),
        "none" => return Ok(None),
        other => {
            return Err(format!(
                "unsupported filesystem format: {}",
                ignition_config::go_quote(other)
            ));
        }
    };
    let mut args = vec![tool.to_string()];
    args.extend(fs.options.iter().cloned());
    args.extend(force.map(String::from));
    if let Some(uuid) = &fs.uuid {
        let uuid = canonical_uuid(format, uuid);
        args.push(uuid_flag.to_string());
        args.push(if format == "xfs" {
            format!("uuid={uuid}")
        } else {
            uuid
        });
    }
    if let Some(label) = &fs.label {
        args.push(label_flag.to_string());
        args.push(label.clone());
    }
    args.push(fs.device.clone());
    Ok(Some(args))
}

/// Creates the filesystem `fs` as upstream does; `at` is its config path
/// (e.g. `$.storage.filesystems.0`) for errors.
///
/// Without `wipeFilesystem`, an existing filesystem of the same type whose
/// label and UUID match (where the config sets them) is kept, its
/// `options` ignored; any other existing filesystem is refused (`filesystem
/// is not of the correct type`). Otherwise the device's signatures are
/// wiped (`wipefs -a`) and the filesystem is made with the tool's force
/// flag. `format: none` (3.3.0) only checks or wipes; no `format` at all
/// (or `virtiofs`, which is no block device) does nothing.
pub fn make_filesystem(fs: &Filesystem, at: &str) -> Result<(), DiskError> {
    let ctx = Ctx {
        at,
        device: &fs.device,
    };
    let Some(format) = fs.format.as_deref() else {
        return Ok(());
    };
    if format == "virtiofs" {
        return Ok(());
    }
    let info = filesystem_info(&fs.device)
        .map_err(|e| ctx.refused(format!("determining filesystem type: {e}")))?;

    if fs.wipe_filesystem != Some(true) {
        let want = if format == "none" { "" } else { format };
        let label_ok = fs.label.as_ref().is_none_or(|l| *l == info.label);
        let uuid_ok = fs
            .uuid
            .as_ref()
            .is_none_or(|u| canonical_uuid(&info.fs_type, &info.uuid) == canonical_uuid(want, u));
        if info.fs_type == want && label_ok && uuid_ok {
            return Ok(());
        }
        if !info.fs_type.is_empty() {
            return Err(ctx.refused(format!(
                "filesystem is not of the correct type, label, or UUID (found {}, {}, {}) and a filesystem wipe was not requested",
                info.fs_type,
                ignition_config::go_quote(&info.label),
                info.uuid
            )));
        }
    }

    ctx.run("wipefs failed", &argv(["wipefs", "-a", &fs.device]))?;
    let Some(args) = mkfs_command(fs).map_err(|e| ctx.refused(e))? else {
        return Ok(());
    };
    ctx.run("mkfs failed", &args)?;
    settle(ctx, Path::new(&fs.device), "formatting")
}

// ---------------------------------------------------------------------------
// LUKS.

/// The `cryptsetup luksFormat` command line upstream runs for `luks` with
/// the key in `key_file` (CEX secure-key arguments are not included).
pub fn luks_format_command(luks: &Luks, key_file: &str) -> Vec<String> {
    let mut args = argv([
        "cryptsetup",
        "luksFormat",
        "--type",
        "luks2",
        "--key-file",
        key_file,
    ]);
    if let Some(label) = not_empty(&luks.label) {
        args.extend(["--label".to_string(), label.to_string()]);
    }
    if let Some(uuid) = not_empty(&luks.uuid) {
        args.extend(["--uuid".to_string(), uuid.to_string()]);
    }
    args.extend(luks.options.iter().cloned());
    args.push(luks.device.clone().unwrap_or_default());
    args
}

/// The `cryptsetup luksOpen` command line upstream runs (it persists
/// `--allow-discards` and the open options into the header).
pub fn luks_open_command(luks: &Luks, key_file: &str) -> Vec<String> {
    let mut args = vec![
        "cryptsetup".to_string(),
        "luksOpen".to_string(),
        luks.device.clone().unwrap_or_default(),
        luks.name.clone(),
        "--key-file".to_string(),
        key_file.to_string(),
        "--persistent".to_string(),
    ];
    if luks.discard == Some(true) {
        args.push("--allow-discards".to_string());
    }
    args.extend(luks.open_options.iter().cloned());
    args
}

/// Whether the config binds the volume with Clevis (upstream's
/// `Clevis.IsPresent`).
pub fn clevis_present(luks: &Luks) -> bool {
    let c = &luks.clevis;
    not_empty(&c.custom.pin).is_some()
        || !c.tang.is_empty()
        || c.tpm2 == Some(true)
        || c.threshold.is_some_and(|t| t != 0)
}

/// Go's `encoding/json` escapes `<`, `>`, `&`, U+2028 and U+2029 in
/// strings; in JSON text they can only occur inside strings.
fn go_html_escape(json: &str) -> String {
    json.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

/// Sorts object keys, as Go does when it marshals a map.
fn sort_keys(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(String, Value)> = m.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, sort_keys(v)))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.into_iter().map(sort_keys).collect()),
        other => other,
    }
}

/// The Clevis pin and its JSON config for `luks`: the custom pin as given,
/// or `sss` over the Tang servers and the TPM2, as upstream builds it
/// (`{"pins":{"tang":[{"url":…,"thp":…,"adv":…}],"tpm2":{}},"t":N}`, Go's
/// field order, empty `thp`/`adv` left out, the advertisement's keys
/// sorted).
pub fn clevis_config(luks: &Luks) -> Result<(String, String), String> {
    use serde_json::{Map, Value};
    let c = &luks.clevis;
    if let Some(pin) = not_empty(&c.custom.pin) {
        return Ok((pin.to_string(), c.custom.config.clone().unwrap_or_default()));
    }
    let mut tangs = Vec::new();
    for t in &c.tang {
        let mut m = Map::new();
        m.insert("url".into(), Value::String(t.url.clone()));
        if let Some(thp) = not_empty(&t.thumbprint) {
            m.insert("thp".into(), Value::String(thp.to_string()));
        }
        if let Some(adv) = &t.advertisement {
            let adv: Value = serde_json::from_str(adv)
                .map_err(|e| format!("unmarshalling advertisement: {e}"))?;
            if !adv.is_null() {
                m.insert("adv".into(), sort_keys(adv));
            }
        }
        tangs.push(Value::Object(m));
    }
    let mut pins = Map::new();
    if c.tpm2 == Some(true) {
        if !tangs.is_empty() {
            pins.insert("tang".into(), Value::Array(tangs));
        }
        pins.insert("tpm2".into(), Value::Object(Map::new()));
    } else if tangs.is_empty() {
        pins.insert("tang".into(), Value::Null);
    } else {
        pins.insert("tang".into(), Value::Array(tangs));
    }
    let mut config = Map::new();
    config.insert("pins".into(), Value::Object(pins));
    config.insert("t".into(), Value::from(c.threshold.unwrap_or(1)));
    let text = serde_json::to_string(&Value::Object(config))
        .map_err(|e| format!("creating clevis json: {e}"))?;
    Ok(("sss".to_string(), go_html_escape(&text)))
}

/// The commands upstream runs for one LUKS volume, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LuksCommands {
    /// `cryptsetup luksFormat ...`.
    pub format: Vec<String>,
    /// `cryptsetup luksOpen ... --persistent`.
    pub open: Vec<String>,
    /// `clevis luks bind -f -k KEYFILE -d DEVICE PIN CONFIG`, when Clevis
    /// is configured.
    pub clevis_bind: Option<Vec<String>>,
    /// `cryptsetup luksClose NAME` then `clevis luks unlock -d DEVICE -n
    /// NAME`, when enough pins work without the network to test the
    /// binding (Tang servers without an advertisement, plus the TPM2, reach
    /// the threshold).
    pub reopen: Option<[Vec<String>; 2]>,
    /// `cryptsetup luksRemoveKey DEVICE KEYFILE`, when the key file was
    /// generated and Clevis holds the volume.
    pub remove_key: Option<Vec<String>>,
}

/// Builds the command lines of [`LuksCommands`]; `key_generated` says that
/// the key file is Ignition's own (no `keyFile` in the config).
pub fn luks_commands(
    luks: &Luks,
    key_file: &str,
    key_generated: bool,
) -> Result<LuksCommands, String> {
    let device = luks.device.clone().unwrap_or_default();
    let mut cmds = LuksCommands {
        format: luks_format_command(luks, key_file),
        open: luks_open_command(luks, key_file),
        clevis_bind: None,
        reopen: None,
        remove_key: None,
    };
    if !clevis_present(luks) {
        return Ok(cmds);
    }
    let (pin, config) = clevis_config(luks)?;
    cmds.clevis_bind = Some(vec![
        "clevis".into(),
        "luks".into(),
        "bind".into(),
        "-f".into(),
        "-k".into(),
        key_file.into(),
        "-d".into(),
        device.clone(),
        pin,
        config,
    ]);
    let c = &luks.clevis;
    let without_adv = c
        .tang
        .iter()
        .filter(|t| not_empty(&t.advertisement).is_none())
        .count() as i64;
    let tpm = i64::from(c.tpm2 == Some(true));
    if without_adv + tpm >= c.threshold.unwrap_or(1) {
        cmds.reopen = Some([
            argv(["cryptsetup", "luksClose", &luks.name]),
            argv(["clevis", "luks", "unlock", "-d", &device, "-n", &luks.name]),
        ]);
    }
    if key_generated {
        cmds.remove_key = Some(argv(["cryptsetup", "luksRemoveKey", &device, key_file]));
    }
    Ok(cmds)
}

/// Writes a new random key file the way upstream generates one when the
/// config has no `keyFile`: 4096 random bytes as 8192 hex digits, mode 0400.
pub fn generate_key_file(path: &Path) -> io::Result<()> {
    let mut bytes = vec![0u8; 4096];
    File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    let hex = util::hex(&bytes);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o400)
        .open(path)?;
    io::Write::write_all(&mut f, hex.as_bytes())
}

/// What [`format_luks`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LuksOutcome {
    /// A new LUKS2 header was written.
    Formatted,
    /// An existing LUKS2 volume matched the config and the key opens it.
    Reused,
}

/// Whether `cryptsetup isLuks` accepts the device (as LUKS2 when `luks2`).
fn is_luks(ctx: Ctx<'_>, device: &str, luks2: bool) -> Result<bool, DiskError> {
    let mut args = argv(["cryptsetup", "isLuks", device]);
    if luks2 {
        args.extend(argv(["--type", "luks2"]));
    }
    match crate::cmd::run(&args, None) {
        Ok(out) => Ok(out.status.success()),
        Err(e) => Err(ctx.command(
            "checking for a LUKS header",
            CommandFailure {
                what: String::new(),
                command: command_line(&args),
                status: e.status(),
                stderr: String::new(),
            },
        )),
    }
}

/// Checks an existing LUKS2 volume against the config the way upstream's
/// `reuseLuksDevice` does; the key is tested with `--test-passphrase`
/// instead of opening the volume.
fn reuse_luks(luks: &Luks, device: &str, key_file: &Path) -> Result<(), String> {
    if clevis_present(luks) {
        return Err("config must not specify clevis binding".into());
    }
    if not_empty(&luks.key_file.source).is_none() {
        return Err("config must specify keyfile".into());
    }
    if let Some(label) = &luks.label {
        let info =
            filesystem_info(device).map_err(|e| format!("retrieving filesystem info: {e}"))?;
        if info.label != *label {
            return Err(format!(
                "volume label {} doesn't match expected label {}",
                ignition_config::go_quote(&info.label),
                ignition_config::go_quote(label)
            ));
        }
    }
    let fail = |f: CommandFailure| format!("`{}` {}: {}", f.command, f.status, f.stderr);
    if let Some(uuid) = &luks.uuid {
        let out = run_command(&argv(["cryptsetup", "luksUUID", device])).map_err(fail)?;
        let got = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if got != *uuid {
            return Err(format!(
                "volume UUID {} doesn't match expected UUID {}",
                ignition_config::go_quote(&got),
                ignition_config::go_quote(uuid)
            ));
        }
    }
    let out = run_command(&argv([
        "cryptsetup",
        "luksDump",
        "--dump-json-metadata",
        device,
    ]))
    .map_err(fail)?;
    let dump: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("parsing luks metadata: {e}"))?;
    let discards = dump["config"]["flags"]
        .as_array()
        .is_some_and(|f| f.iter().any(|f| f == "allow-discards"));
    let want = luks.discard == Some(true);
    if discards != want {
        return Err(format!(
            "volume allow-discards flag {discards} doesn't match expected value {want}"
        ));
    }
    let key = key_file.to_string_lossy();
    run_command(&argv([
        "cryptsetup",
        "luksOpen",
        "--test-passphrase",
        "--key-file",
        &key,
        device,
    ]))
    .map_err(|_| "failed to open device using specified keyfile".to_string())?;
    Ok(())
}

/// Formats the LUKS2 volume `luks` with the key in `key_file`, deciding
/// like upstream: without `wipeVolume`, an existing LUKS2 volume that
/// matches (label, UUID, discard flag, and the key opens it) is reused, a
/// LUKS1 volume or any other signature is refused; with it, signatures are
/// wiped first. `at` is the config path (e.g. `$.storage.luks.0`).
///
/// Opening the volume and Clevis binding are not done here (see
/// [`luks_commands`]); CEX volumes are refused.
pub fn format_luks(luks: &Luks, key_file: &Path, at: &str) -> Result<LuksOutcome, DiskError> {
    let device = luks.device.as_deref().unwrap_or_default();
    let ctx = Ctx { at, device };
    if luks.cex.enabled == Some(true) {
        return Err(ctx.refused("IBM CEX secure keys are not supported"));
    }
    if luks.wipe_volume != Some(true) {
        if is_luks(ctx, device, true)? {
            return match reuse_luks(luks, device, key_file) {
                Ok(()) => Ok(LuksOutcome::Reused),
                Err(why) => Err(ctx.refused(format!(
                    "volume is not of the correct type: volume wipe was not requested and luks device {} could not be reused: {why}",
                    ignition_config::go_quote(device)
                ))),
            };
        }
        if is_luks(ctx, device, false)? {
            return Err(ctx.refused(format!(
                "{device} is a luks device but not luks2; Ignition cannot reuse it"
            )));
        }
        let info = filesystem_info(device)
            .map_err(|e| ctx.refused(format!("determining volume type: {e}")))?;
        if !info.fs_type.is_empty() {
            return Err(ctx.refused(format!(
                "volume is not of the correct type (found {}) and a volume wipe was not requested",
                info.fs_type
            )));
        }
    } else {
        ctx.run("wipefs failed", &argv(["wipefs", "-a", device]))?;
    }
    let args = luks_format_command(luks, &key_file.to_string_lossy());
    ctx.run("cryptsetup failed", &args)?;
    settle(ctx, Path::new(device), "LUKS")?;
    Ok(LuksOutcome::Formatted)
}

// ---------------------------------------------------------------------------
// RAID.

/// The `mdadm --create` command line upstream runs for `raid`.
pub fn raid_create_command(raid: &Raid) -> Vec<String> {
    let spares = raid.spares.unwrap_or(0);
    let mut args = vec![
        "mdadm".to_string(),
        "--create".to_string(),
        raid.name.clone(),
        "--force".to_string(),
        "--run".to_string(),
        "--homehost".to_string(),
        "any".to_string(),
        "--level".to_string(),
        raid.level.clone().unwrap_or_default(),
        "--raid-devices".to_string(),
        (raid.devices.len() as i64 - spares).to_string(),
    ];
    if spares > 0 {
        args.extend(["--spare-devices".to_string(), spares.to_string()]);
    }
    args.extend(raid.options.iter().cloned());
    args.extend(raid.devices.iter().cloned());
    args
}

/// The device node of the array: the name itself when it is under `/dev`,
/// else `/dev/md/NAME`.
pub fn raid_device(raid: &Raid) -> String {
    if raid.name.starts_with("/dev") {
        raid.name.clone()
    } else {
        format!("/dev/md/{}", raid.name)
    }
}

/// Creates the array with `mdadm` and waits (up to 90 seconds, systemd's
/// default device timeout) for its device node. `at` is the config path.
pub fn create_raid(raid: &Raid, at: &str) -> Result<(), DiskError> {
    let device = raid_device(raid);
    let ctx = Ctx {
        at,
        device: &device,
    };
    ctx.run("mdadm failed", &raid_create_command(raid))?;
    let deadline = Instant::now() + Duration::from_secs(90);
    while !Path::new(&device).exists() {
        if Instant::now() >= deadline {
            return Err(ctx.refused(format!(
                "failed to wait on raids devs: {} did not appear",
                ignition_config::go_quote(&device)
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
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

    #[test]
    fn guids() {
        let raw = [
            0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e,
            0xc9, 0x3b,
        ];
        assert_eq!(guid_string(&raw), "C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
    }

    #[test]
    fn quoting() {
        assert_eq!(
            command_line(&argv(["sgdisk", "--change-name=1:my disk", "/dev/vda"])),
            "sgdisk '--change-name=1:my disk' /dev/vda"
        );
        assert_eq!(ignition_config::go_quote("a\"b\n"), r#""a\"b\n""#);
        assert_eq!(unescape_export(r#"my\ lbl\"x"#), "my lbl\"x");
        assert_eq!(canonical_uuid("vfat", "ABCD-1234"), "abcd1234");
        assert_eq!(canonical_uuid("ext4", "ABCD-1234"), "abcd-1234");
    }
}
