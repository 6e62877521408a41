//! Waiting for the devices a config names, and asking whether udev runs.
//!
//! Upstream's disks stage asks systemd for each device it will touch
//! (`/dev/disk/by-id/...`, `/dev/disk/by-partlabel/...`, `/dev/vdb`) and
//! waits for them all, up to the device unit timeout (90 s by default),
//! before touching any: at boot, disks and the links udev makes for them
//! appear while the initramfs is already running. [`wait_for`] does the
//! same without systemd: it watches `/dev`, `/dev/disk`, the
//! `/dev/disk/by-*` directories and the nearest existing parent of each
//! missing path with inotify, checks again on every change (and once a
//! second, for filesystems that send no events), and gives up at the
//! deadline naming every device still missing. It needs no udev daemon:
//! nodes that the kernel makes in devtmpfs are seen as well as the links
//! udev adds.
//!
//! The deadline is [`DEFAULT_TIMEOUT`] unless [`TIMEOUT_ENV`] gives another
//! number of seconds.
//!
//! [`udev_running`] decides whether there is a udev daemon to wait for:
//! not by `/run/udev/control` existing (the socket file outlives a daemon
//! that died, and `udevadm trigger --settle` then never returns) but by
//! asking the daemon (`udevadm control --ping`, bounded).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::inotify;

/// How long devices are waited for, as systemd's default device timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(90);

/// Environment variable with the device deadline, in seconds.
pub const TIMEOUT_ENV: &str = "OXCORE_IGNITION_DEVICE_TIMEOUT";

/// How long the udev daemon may take to answer a ping.
const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// The device deadline: [`TIMEOUT_ENV`] if it holds a number of seconds,
/// else [`DEFAULT_TIMEOUT`].
pub fn timeout() -> Duration {
    std::env::var(TIMEOUT_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(DEFAULT_TIMEOUT)
}

/// Devices that did not appear in time.
#[derive(Debug, thiserror::Error)]
#[error("timed out after {}s waiting for {what} devices: {} (missing)", after.as_secs_f64(), missing.join(", "))]
pub struct WaitError {
    /// What the devices are for (`disks`, `filesystems`, ...).
    pub what: String,
    /// Every device still missing.
    pub missing: Vec<String>,
    /// The deadline.
    pub after: Duration,
}

/// Whether a device path leads to something (links followed).
fn present(dev: &str) -> bool {
    Path::new(dev).exists()
}

/// The nearest existing ancestor directory of `path`.
fn existing_parent(path: &Path) -> Option<PathBuf> {
    let mut p = path.parent();
    while let Some(d) = p {
        if d.is_dir() {
            return Some(d.to_path_buf());
        }
        p = d.parent();
    }
    None
}

/// The directories worth watching for `missing`.
fn watch_dirs(missing: &[&str]) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = vec!["/dev".into(), "/dev/disk".into()];
    if let Ok(rd) = std::fs::read_dir("/dev/disk") {
        dirs.extend(rd.filter_map(Result::ok).map(|e| e.path()));
    }
    dirs.extend(missing.iter().filter_map(|m| existing_parent(Path::new(m))));
    // A link may point into a directory that is still missing.
    dirs.extend(missing.iter().filter_map(|m| {
        let target = std::fs::read_link(m).ok()?;
        let target = Path::new(m).parent()?.join(target);
        existing_parent(&target)
    }));
    dirs.sort();
    dirs.dedup();
    dirs
}

/// Waits until every path in `devs` exists, up to [`timeout`].
pub fn wait_for(devs: &[&str], what: &str) -> Result<(), WaitError> {
    wait_for_with(devs, what, timeout())
}

/// [`wait_for`] with an explicit deadline.
pub fn wait_for_with(devs: &[&str], what: &str, limit: Duration) -> Result<(), WaitError> {
    let missing = |devs: &[&str]| -> Vec<String> {
        let mut m: Vec<String> = devs
            .iter()
            .filter(|d| !present(d))
            .map(|d| d.to_string())
            .collect();
        m.sort();
        m.dedup();
        m
    };
    if missing(devs).is_empty() {
        return Ok(());
    }
    let deadline = Instant::now() + limit;
    // Without inotify (very old kernels, exhausted instances) the checks
    // simply happen once a second.
    let ino = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK).ok();
    loop {
        let still = missing(devs);
        if still.is_empty() {
            return Ok(());
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(WaitError {
                what: what.to_string(),
                missing: still,
                after: limit,
            });
        }
        let wait = (deadline - now).min(Duration::from_secs(1));
        match &ino {
            Some(fd) => {
                let refs: Vec<&str> = still.iter().map(String::as_str).collect();
                for dir in watch_dirs(&refs) {
                    // Watching the same directory again is a no-op.
                    let _ = inotify::add_watch(
                        fd,
                        &dir,
                        inotify::WatchFlags::CREATE
                            | inotify::WatchFlags::MOVED_TO
                            | inotify::WatchFlags::ATTRIB,
                    );
                }
                let mut pfd = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
                let ts = rustix::event::Timespec {
                    tv_sec: wait.as_secs() as i64,
                    tv_nsec: i64::from(wait.subsec_nanos()),
                };
                let _ = rustix::event::poll(&mut pfd, Some(&ts));
                // Drain the events: only "something changed" matters.
                let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
                let mut reader = inotify::Reader::new(fd, &mut buf);
                while reader.next().is_ok() {}
            }
            None => std::thread::sleep(wait),
        }
    }
}

/// Whether a udev daemon runs and answers: `/run/udev/control` exists
/// and `udevadm control --ping` succeeds within 10 s. A daemon that died
/// leaves the socket file behind; it is then treated as absent (and said
/// so on stderr) rather than waited for forever.
pub fn udev_running() -> bool {
    if !Path::new("/run/udev/control").exists() {
        return false;
    }
    let argv: Vec<String> = ["udevadm", "control", "--ping", "--timeout=5"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    match crate::cmd::run_with(&argv, None, PING_TIMEOUT) {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            tracing::warn!(
                "udev: /run/udev/control exists but the daemon does not answer (`udevadm control --ping` {}: {}); going on without udev",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
            false
        }
        Err(e) => {
            tracing::warn!("udev: not asked ({e}); going on without udev");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_that_appears_later_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let late = dir.path().join("sub/late");
        let late_s = late.display().to_string();
        let maker = {
            let late = late.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                std::fs::create_dir_all(late.parent().unwrap()).unwrap();
                std::fs::write(&late, "").unwrap();
            })
        };
        wait_for_with(&[&late_s], "test", Duration::from_secs(30)).unwrap();
        maker.join().unwrap();
    }

    #[test]
    fn every_missing_path_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let there = dir.path().join("there");
        std::fs::write(&there, "").unwrap();
        let a = dir.path().join("a").display().to_string();
        let b = dir.path().join("b/c").display().to_string();
        let there = there.display().to_string();
        let e = wait_for_with(&[&a, &there, &b], "disks", Duration::from_millis(200)).unwrap_err();
        assert_eq!(e.missing, [a.clone(), b.clone()]);
        let msg = e.to_string();
        assert!(
            msg.contains("waiting for disks devices") && msg.contains(&a) && msg.contains(&b),
            "{msg}"
        );
    }
}
