//! Disk images: [`build`] makes them from a release (`oxcore image
//! build`); the rest is `oxcore install`, coreos-installer's `install` on
//! oxcore's release metadata.
//!
//! The order is coreos-installer's, with one change: the image is fetched
//! and checked completely (its SHA-256 against the signed stream
//! metadata, its signature) **before** a byte of the disk is written
//! (coreos-installer checks its GPG signature while writing and wipes the
//! disk when it fails). Then: the disk must be a block device nobody uses
//! and of the image's sector size; the first MiB of the disk is zeroed,
//! the image from 1 MiB on is written, the first MiB last (a disk
//! half-written never holds a valid partition table); the kernel rereads
//! the table; the `boot` partition is mounted to place the Ignition
//! config (`/boot/ignition/config.ign`) and edit the kernel arguments of
//! the boot entry (platform, `--append-karg`, `--delete-karg`). Any
//! failure after the disk was first written resets its partition table
//! to an empty one ("Resetting partition table", as coreos-installer),
//! unless `preserve_on_error`.
//!
//! Image formats: `raw` and `raw.gz` (and their `4k.` variants for disks
//! of 4096-byte sectors). Artifact signatures are oxcore's: the ed25519
//! signature of the file's SHA-256 digest (`oxcore release compose
//! --sign-key`), checked while the file streams.

mod boot;
pub mod build;
mod device;
pub mod image;

use std::io::Write;
use std::path::{Path, PathBuf};

pub use boot::{BootEdit, edit_entry};
pub use device::Device;
pub use image::{Fetched, ImageSource};

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Anything, in words (coreos-installer's where it has them).
    #[error("{0}")]
    Msg(String),
}

pub(crate) fn msg(s: impl Into<String>) -> Error {
    Error::Msg(s.into())
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One installation.
#[derive(Debug, Clone, Default)]
pub struct Install {
    /// The block device to write.
    pub device: PathBuf,
    /// Where the image comes from.
    pub source: ImageSource,
    /// Trusted public keys (ed25519, raw) for signatures.
    pub keys: Vec<Vec<u8>>,
    /// Go on without a signature to check.
    pub insecure: bool,
    /// The Ignition config to place, its bytes.
    pub ignition: Option<Vec<u8>>,
    /// Kernel argument edits.
    pub edit: BootEdit,
    /// Keep what was written when a later step fails.
    pub preserve_on_error: bool,
    /// Where to download to (default: the system's temporary directory).
    pub tmpdir: Option<PathBuf>,
}

/// Runs an installation, saying what it does on `out` (progress goes to
/// stderr when it is a terminal).
pub fn install(i: &Install, out: &mut dyn Write) -> Result<()> {
    let dev = Device::open(&i.device)?;
    let sector = dev.sector_size()?;
    if sector != 512 && sector != 4096 {
        let _ = writeln!(
            out,
            "Found non-standard sector size {sector} for {}, assuming 512b-compatible",
            i.device.display()
        );
    }
    // Fetch and check everything before touching the disk.
    let tmpdir = i.tmpdir.clone().unwrap_or_else(std::env::temp_dir);
    // A download is never larger than the disk it is for.
    let cap = dev.size()?;
    let fetched = image::fetch(&i.source, sector, &i.keys, i.insecure, &tmpdir, cap, out)?;
    if let Some(n) = fetched.size_hint()
        && n > cap
    {
        return Err(msg(format!(
            "the image ({n} bytes) is larger than {} ({cap} bytes)",
            i.device.display()
        )));
    }
    let mut reader = fetched.open()?;
    let first = image::read_first_mib(&mut *reader)?;
    if let Some(image_sector) = image::gpt_sector_size(&first)
        && image_sector != sector.max(512)
        && (sector == 512 || sector == 4096)
    {
        return Err(msg(format!(
            "source has sector size {image_sector} but destination has sector size {sector}"
        )));
    }
    let busy = dev.busy_partitions()?;
    if !busy.is_empty() {
        let mut text = format!("Partitions in use on {}:\n", i.device.display());
        for b in busy {
            text.push_str(&format!("    {b}\n"));
        }
        let _ = write!(out, "{text}");
        return Err(msg(format!(
            "checking for exclusive access to {}: found busy partitions",
            i.device.display()
        )));
    }
    let mut exclusive = dev.exclusive()?;
    let result = (|| -> Result<()> {
        device::write_image(&mut exclusive, &first, &mut *reader, fetched.size_hint())?;
        drop(exclusive);
        dev.reread_partitions()?;
        boot::post_process(&dev, i.ignition.as_deref(), &i.edit, out)
    })();
    match result {
        Ok(()) => {
            let _ = writeln!(out, "Install complete.");
            Ok(())
        }
        Err(e) => {
            let _ = writeln!(out, "\nError: {e}\n");
            if i.preserve_on_error {
                let _ = writeln!(out, "Preserving partition table as requested");
            } else {
                let _ = writeln!(out, "Resetting partition table");
                if let Err(r) = dev.reset_partition_table() {
                    let _ = writeln!(out, "Error: resetting the partition table: {r}");
                }
            }
            Err(msg(format!("install failed: {e}")))
        }
    }
}

/// Reads trusted keys: base64 keys, one per line, or `public: KEY` lines
/// (`oxcore ostree generate-key` output), from text.
pub fn parse_keys(text: &str) -> Result<Vec<Vec<u8>>> {
    let lines: String = text
        .lines()
        .map(|l| l.strip_prefix("public: ").unwrap_or(l))
        .filter(|l| !l.starts_with("secret: "))
        .collect::<Vec<_>>()
        .join("\n");
    ostree_store::sign::public_keys(&lines).map_err(|e| msg(e.to_string()))
}

/// A file's path, for messages.
pub(crate) fn shown(p: &Path) -> String {
    p.display().to_string()
}
