//! Filesystems: what is on a device, probed with `blkid -p` (reading the
//! device itself, not a udev database that may not exist yet), and making
//! one with the `mkfs` family after `wipefs`, reusing a matching one as
//! upstream does.

use std::fs::File;
use std::path::Path;

use ignition_config::types::Filesystem;

use super::command::{CommandFailure, Ctx, DiskError, argv, run_command};
use super::device::settle;
use crate::cmd::{RunError, command_line};

/// Why [`filesystem_info`] could not tell what is on a device.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The device cannot be opened.
    #[error("failed to open {}: {error}", ignition_config::go_quote(.device))]
    Open {
        /// The device.
        device: String,
        /// Why.
        error: std::io::Error,
    },
    /// `blkid` could not be run or did not finish.
    #[error(transparent)]
    Run(RunError),
    /// `blkid` or `wipefs` failed.
    #[error("`{}` {}: {}", .0.command, .0.status, .0.stderr)]
    Command(CommandFailure),
    /// `wipefs --json` printed what is not JSON.
    #[error("`{command}` printed bad JSON: {error}")]
    BadJson {
        /// The command line.
        command: String,
        /// The parser's error.
        error: serde_json::Error,
    },
}

/// A filesystem format that is not one of upstream's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported filesystem format: {}", ignition_config::go_quote(.0))]
pub struct UnsupportedFormat(pub String);

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
pub fn filesystem_info(device: &str) -> Result<FilesystemInfo, ProbeError> {
    File::open(device).map_err(|error| ProbeError::Open {
        device: device.to_string(),
        error,
    })?;
    let args = argv(["blkid", "-p", "-o", "export", device]);
    let out = crate::cmd::run(&args, None).map_err(ProbeError::Run)?;
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
        _ => Err(ProbeError::Command(CommandFailure {
            what: String::new(),
            command: command_line(&args),
            status: format!("failed ({})", out.status),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })),
    }
}

/// The first non-partition-table signature `wipefs` lists.
fn ambivalent_info(device: &str) -> Result<FilesystemInfo, ProbeError> {
    let args = argv([
        "wipefs",
        "--no-act",
        "--json",
        "--output",
        "TYPE,UUID,LABEL,USAGE",
        device,
    ]);
    let out = run_command(&args).map_err(ProbeError::Command)?;
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|error| ProbeError::BadJson {
            command: command_line(&args),
            error,
        })?;
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
pub fn mkfs_command(fs: &Filesystem) -> Result<Option<Vec<String>>, UnsupportedFormat> {
    let format = fs.format.as_deref().unwrap_or_default();
    let (tool, force, uuid_flag, label_flag) = match format {
        "btrfs" => ("mkfs.btrfs", Some("--force"), "-U", "-L"),
        "ext4" => ("mkfs.ext4", Some("-F"), "-U", "-L"),
        "xfs" => ("mkfs.xfs", Some("-f"), "-m", "-L"),
        "swap" => ("mkswap", Some("-f"), "-U", "-L"),
        // mkfs.fat has no force flag: it always overwrites.
        "vfat" => ("mkfs.fat", None, "-i", "-n"),
        "none" => return Ok(None),
        other => return Err(UnsupportedFormat(other.to_string())),
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
    let Some(args) = mkfs_command(fs).map_err(|e| ctx.refused(e.to_string()))? else {
        return Ok(());
    };
    ctx.run("mkfs failed", &args)?;
    settle(ctx, Path::new(&fs.device), "formatting")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_values_and_uuids() {
        assert_eq!(unescape_export(r#"my\ lbl\"x"#), "my lbl\"x");
        assert_eq!(canonical_uuid("vfat", "ABCD-1234"), "abcd1234");
        assert_eq!(canonical_uuid("ext4", "ABCD-1234"), "abcd-1234");
    }
}
