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
//! One module per seam: `gpt` reads partition tables, `partition`
//! partitions with `sgdisk`, `filesystem`, `luks` and `raid` make what
//! their names say, and `device` holds the helpers they share (partition
//! device paths, whether a disk is in use, the kernel's view in sysfs,
//! letting udev settle); `command` has the errors they all report and the
//! runner of tools whose failures those carry.
//!
//! Not here: device aliases under `/run/ignition/dev_aliases`, device-mapper
//! (multipath) disks, opening LUKS volumes and Clevis binding (the command
//! lines are built, see [`luks_commands`]), IBM CEX keys, and waiting on
//! systemd device units.

mod command;
mod device;
mod filesystem;
mod gpt;
mod luks;
mod partition;
mod raid;

pub use command::{CommandFailure, DiskError, DiskErrorKind};
pub use filesystem::{
    FilesystemInfo, ProbeError, UnsupportedFormat, filesystem_info, make_filesystem, mkfs_command,
};
pub use gpt::{DiskInfo, PartitionInfo, read_partition_table};
pub use luks::{
    ClevisError, LuksCommands, LuksOutcome, clevis_config, clevis_present, format_luks,
    generate_key_file, luks_commands, luks_format_command, luks_open_command,
};
pub use partition::partition;
pub use raid::{create_raid, raid_create_command, raid_device};
