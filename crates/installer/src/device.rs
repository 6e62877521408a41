//! The destination disk: that it is a block device nobody uses, its
//! sector size, writing the image (the first MiB last), telling the
//! kernel its partitions, and resetting its partition table.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::image::MIB;
use crate::{Result, msg, shown};

/// How long one partitioning tool may take.
const TOOL_TIMEOUT: Duration = Duration::from_secs(120);

/// A block device.
#[derive(Debug, Clone)]
pub struct Device {
    path: PathBuf,
    name: String,
}

fn tool(argv: &[&str]) -> Result<util::cmd::Output> {
    tool_within(argv, TOOL_TIMEOUT)
}

/// Runs a tool, killed after `limit`.
pub(crate) fn tool_within(argv: &[&str], limit: Duration) -> Result<util::cmd::Output> {
    let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
    util::cmd::run_with(&argv, None, limit).map_err(|e| msg(e.to_string()))
}

impl Device {
    /// The block device at `path`.
    pub fn open(path: &Path) -> Result<Device> {
        let m = std::fs::metadata(path).map_err(|e| msg(format!("{}: {e}", shown(path))))?;
        if !m.file_type().is_block_device() {
            return Err(msg(format!("{} is not a block device", shown(path))));
        }
        let real = std::fs::canonicalize(path).map_err(|e| msg(format!("{}: {e}", shown(path))))?;
        let name = real
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Device { path: real, name })
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its logical sector size.
    pub fn sector_size(&self) -> Result<u32> {
        let f = File::open(&self.path).map_err(|e| msg(format!("{}: {e}", shown(&self.path))))?;
        rustix::fs::ioctl_blksszget(&f).map_err(|e| {
            msg(format!(
                "{}: reading the sector size: {e}",
                shown(&self.path)
            ))
        })
    }

    /// Its size in bytes.
    pub fn size(&self) -> Result<u64> {
        let mut f =
            File::open(&self.path).map_err(|e| msg(format!("{}: {e}", shown(&self.path))))?;
        f.seek(SeekFrom::End(0))
            .map_err(|e| msg(format!("{}: reading its size: {e}", shown(&self.path))))
    }

    /// The path of partition `n` (`/dev/loop0p3`, `/dev/sda3`).
    pub fn partition(&self, n: u32) -> PathBuf {
        let p = shown(&self.path);
        if p.ends_with(|c: char| c.is_ascii_digit()) {
            PathBuf::from(format!("{p}p{n}"))
        } else {
            PathBuf::from(format!("{p}{n}"))
        }
    }

    /// `major:minor` of the device and of each of its partitions, with
    /// their names.
    fn nodes(&self) -> Vec<(String, String)> {
        let sys = Path::new("/sys/class/block").join(&self.name);
        let mut out = Vec::new();
        if let Ok(d) = std::fs::read_to_string(sys.join("dev")) {
            out.push((self.name.clone(), d.trim().to_string()));
        }
        if let Ok(entries) = std::fs::read_dir(&sys) {
            for e in entries.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with(&self.name)
                    && let Ok(d) = std::fs::read_to_string(e.path().join("dev"))
                {
                    out.push((n, d.trim().to_string()));
                }
            }
        }
        out
    }

    /// What uses the device or its partitions: mounts, swap, holders
    /// (coreos-installer's wording).
    pub fn busy_partitions(&self) -> Result<Vec<String>> {
        let nodes = self.nodes();
        let mut busy = Vec::new();
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| msg(format!("/proc/self/mountinfo: {e}")))?;
        for line in mountinfo.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            if f.len() > 4
                && let Some((name, _)) = nodes.iter().find(|(_, d)| d == f[2])
            {
                busy.push(format!("/dev/{name} mounted on {}", f[4]));
            }
        }
        let swaps = std::fs::read_to_string("/proc/swaps").unwrap_or_default();
        for line in swaps.lines().skip(1) {
            let dev = line.split_whitespace().next().unwrap_or("");
            if let Some((name, _)) = nodes.iter().find(|(n, _)| dev == format!("/dev/{n}")) {
                busy.push(format!("/dev/{name} is swap device"));
            }
        }
        for (name, _) in &nodes {
            let holders = if *name == self.name {
                Path::new("/sys/class/block").join(name).join("holders")
            } else {
                Path::new("/sys/class/block")
                    .join(&self.name)
                    .join(name)
                    .join("holders")
            };
            if let Ok(entries) = std::fs::read_dir(holders) {
                for e in entries.flatten() {
                    busy.push(format!(
                        "/dev/{name} in use by {}",
                        e.file_name().to_string_lossy()
                    ));
                }
            }
        }
        Ok(busy)
    }

    /// The device opened for writing, exclusively (the kernel refuses
    /// while something holds it).
    pub fn exclusive(&self) -> Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(rustix::fs::OFlags::EXCL.bits() as i32)
            .open(&self.path)
            .map_err(|e| {
                msg(format!(
                    "checking for exclusive access to {}: {e}",
                    shown(&self.path)
                ))
            })
    }

    /// Tells the kernel the partitions the disk now holds (dropping the
    /// ones it had), as `partx` does.
    pub fn reread_partitions(&self) -> Result<()> {
        let p = shown(&self.path);
        // Nothing to delete is not an error.
        let _ = tool(&["partx", "--delete", &p]);
        let o = tool(&["partx", "--add", &p])?;
        if !o.status.success() {
            return Err(msg(format!(
                "partx --add {p}: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            )));
        }
        Ok(())
    }

    /// Replaces the partition table with an empty GPT (and a protective
    /// MBR), and tells the kernel.
    pub fn reset_partition_table(&self) -> Result<()> {
        let p = shown(&self.path);
        let _ = tool(&["partx", "--delete", &p]);
        for args in [["sgdisk", "--zap-all", &p], ["sgdisk", "--clear", &p]] {
            let o = tool(&args)?;
            if !o.status.success() {
                return Err(msg(format!(
                    "{}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&o.stderr).trim()
                )));
            }
        }
        Ok(())
    }
}

/// Writes the image: the disk's first MiB zeroed and synced, the image
/// from 1 MiB on, then its first MiB; synced.
pub fn write_image(
    disk: &mut File,
    first: &[u8],
    rest: &mut dyn Read,
    size_hint: Option<u64>,
) -> Result<()> {
    let io = |e: std::io::Error| msg(format!("writing the disk: {e}"));
    disk.write_all(&vec![0u8; MIB]).map_err(io)?;
    disk.sync_all().map_err(io)?;
    disk.seek(SeekFrom::Start(MIB as u64)).map_err(io)?;
    let bar = progress(size_hint);
    bar.inc(first.len() as u64);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = rest
            .read(&mut buf)
            .map_err(|e| msg(format!("reading the image: {e}")))?;
        if n == 0 {
            break;
        }
        disk.write_all(&buf[..n]).map_err(io)?;
        bar.inc(n as u64);
    }
    disk.sync_all().map_err(io)?;
    disk.seek(SeekFrom::Start(0)).map_err(io)?;
    disk.write_all(first).map_err(io)?;
    disk.sync_all().map_err(io)?;
    bar.finish_and_clear();
    Ok(())
}

/// A progress bar on stderr when it is a terminal (hidden otherwise).
fn progress(total: Option<u64>) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = match total {
        Some(t) => indicatif::ProgressBar::new(t),
        None => indicatif::ProgressBar::no_length(),
    };
    let style = indicatif::ProgressStyle::with_template(
        "> Read disk {bytes}/{total_bytes} ({percent}%) {bytes_per_sec}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}
