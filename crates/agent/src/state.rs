//! What the agent remembers across restarts and reboots
//! (`/var/lib/oxcore-agent/state.json`): releases it will not apply again
//! (failed on trial, failed to deploy, or left by a person's rollback), the
//! trial in progress, deploy failures; and what it is doing now
//! (`/run/oxcore-agent/status.json`, for `oxcore agent status`).
//!
//! Both are written to a temporary name and renamed. A state file that
//! exists but cannot be read or parsed stops the agent: acting as if it
//! remembered nothing could re-apply a release that broke the node.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Error, Result, Root};

/// The persistent state file.
pub const STATE_FILE: &str = "/var/lib/oxcore-agent/state.json";
/// The runtime status file.
pub const STATUS_FILE: &str = "/run/oxcore-agent/status.json";
/// The most of a state file read.
const MAX_STATE_BYTES: u64 = 4 << 20;
/// Entries kept per list (oldest dropped first).
const MAX_ENTRIES: usize = 256;

/// A release, as the agent records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRef {
    /// Version.
    pub version: String,
    /// Commit checksum (or image pullspec).
    pub payload: String,
}

/// A release the agent will not apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Denied {
    /// The release.
    pub release: ReleaseRef,
    /// Why (`failed health check "…"`, `boot failed`, `left by a person's
    /// rollback`, `failed to deploy N times`).
    pub reason: String,
    /// When (RFC 3339).
    pub at: String,
    /// Until when (RFC 3339), for a denial that expires (a release that
    /// failed to deploy is tried again a day later); none: for good.
    #[serde(default)]
    pub until: Option<String>,
}

/// An update booted on trial.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trial {
    /// The release it replaced.
    pub from: ReleaseRef,
    /// The release on trial.
    pub to: ReleaseRef,
    /// When it was finalized (RFC 3339).
    pub finalized_at: String,
    /// The boot it was finalized in (`/proc/sys/kernel/random/boot_id`),
    /// to tell "not rebooted yet" from "rebooted and back on the old
    /// release".
    #[serde(default)]
    pub boot_id: Option<String>,
}

/// The persistent state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Persistent {
    /// Format version (1).
    #[serde(default = "one")]
    pub format: u32,
    /// Releases never to apply again.
    #[serde(default)]
    pub denylist: Vec<Denied>,
    /// The trial in progress.
    #[serde(default)]
    pub trial: Option<Trial>,
    /// Failed deploys per payload.
    #[serde(default)]
    pub deploy_failures: BTreeMap<String, u32>,
    /// Postponements left for the staged payload (interactive sessions).
    #[serde(default)]
    pub postponements: Option<(String, u32)>,
    /// The release the agent last finalized.
    #[serde(default)]
    pub last_finalized: Option<ReleaseRef>,
}

fn one() -> u32 {
    1
}

impl Persistent {
    /// Reads the state under `root`; a missing file is a fresh state, an
    /// unreadable one an error.
    pub fn load(root: &Root) -> Result<Persistent> {
        let path = root.path(STATE_FILE);
        let bad = |why: String| Error::State {
            path: path.clone(),
            why,
        };
        let f = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Persistent {
                    format: 1,
                    ..Default::default()
                });
            }
            // Not allowed to read it (not root): not a damaged file.
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                return Err(Error::io(&path, e));
            }
            Err(e) => return Err(bad(e.to_string())),
        };
        let mut text = Vec::new();
        use std::io::Read;
        f.take(MAX_STATE_BYTES + 1)
            .read_to_end(&mut text)
            .map_err(|e| bad(e.to_string()))?;
        if text.len() as u64 > MAX_STATE_BYTES {
            return Err(bad("larger than 4 MiB".into()));
        }
        let s: Persistent = serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
        if s.format != 1 {
            return Err(bad(format!("unknown format {}", s.format)));
        }
        Ok(s)
    }

    /// Writes the state (temporary file, fsync, rename).
    pub fn save(&self, root: &Root) -> Result<()> {
        write_json(&root.path(STATE_FILE), self, true)
    }

    /// Drops denials that expired before `now`; whether any did.
    pub fn expire(&mut self, now: jiff::Timestamp) -> bool {
        let before = self.denylist.len();
        self.denylist.retain(|d| {
            d.until
                .as_deref()
                .and_then(|u| u.parse::<jiff::Timestamp>().ok())
                .is_none_or(|u| u > now)
        });
        self.denylist.len() != before
    }

    /// Whether `payload` is denylisted.
    pub fn denied(&self, payload: &str) -> Option<&Denied> {
        self.denylist.iter().find(|d| d.release.payload == payload)
    }

    /// Denylists a release (once), for good.
    pub fn deny(&mut self, release: ReleaseRef, reason: String, at: String) {
        self.deny_until(release, reason, at, None);
    }

    /// Denylists a release (once), until `until` if given.
    pub fn deny_until(
        &mut self,
        release: ReleaseRef,
        reason: String,
        at: String,
        until: Option<String>,
    ) {
        if self.denied(&release.payload).is_some() {
            return;
        }
        self.denylist.push(Denied {
            release,
            reason,
            at,
            until,
        });
        if self.denylist.len() > MAX_ENTRIES {
            self.denylist.remove(0);
        }
    }
}

/// What the running agent reports about itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The agent's process.
    pub pid: u32,
    /// Zincati's state name (`reported_steady`, `update_staged`, …).
    pub state: String,
    /// What it last decided, in one line.
    pub decision: String,
    /// The strategy, described.
    pub strategy: String,
    /// The booted release.
    pub booted: Option<ReleaseRef>,
    /// The update being applied.
    pub target: Option<ReleaseRef>,
    /// The last graph check (RFC 3339).
    pub last_check: Option<String>,
    /// The next check (RFC 3339).
    pub next_check: Option<String>,
    /// FleetLock: `held`, `not held`; other strategies: none.
    pub lock: Option<String>,
    /// The health of the booted release: `on trial`, `healthy`, `rolled
    /// back from …`, or none.
    pub health: Option<String>,
}

impl Status {
    /// Writes the status (temporary file, rename).
    pub fn save(&self, root: &Root) -> Result<()> {
        write_json(&root.path(STATUS_FILE), self, false)
    }

    /// Reads the status, `None` when no agent wrote one.
    pub fn load(root: &Root) -> Result<Option<Status>> {
        let path = root.path(STATUS_FILE);
        match fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| Error::Invalid(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&path, e)),
        }
    }
}

fn write_json(path: &Path, v: &impl Serialize, sync: bool) -> Result<()> {
    let dir = path.parent().expect("has a parent");
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut text = serde_json::to_vec_pretty(v).map_err(|e| Error::Invalid(e.to_string()))?;
    text.push(b'\n');
    util::write_atomic(path, &text, 0o644, sync).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_is_fresh_and_damaged_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        let fresh = Persistent::load(&root).unwrap();
        assert!(fresh.denylist.is_empty() && fresh.trial.is_none());
        let mut s = fresh.clone();
        s.deny(
            ReleaseRef {
                version: "2".into(),
                payload: "c2".into(),
            },
            "boot failed".into(),
            "2026-12-02T10:00:00Z".into(),
        );
        s.save(&root).unwrap();
        assert_eq!(Persistent::load(&root).unwrap(), s);
        let path = root.path(STATE_FILE);
        let text = fs::read(&path).unwrap();
        fs::write(&path, &text[..text.len() / 2]).unwrap();
        let e = Persistent::load(&root).unwrap_err().to_string();
        assert!(e.contains("the agent's state cannot be read"), "{e}");
        fs::write(&path, b"{\"format\": 2}").unwrap();
        assert!(Persistent::load(&root).is_err());
    }
}
