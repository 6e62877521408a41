//! The update agent (`oxcore agent`): a drop-in for Zincati, Fedora
//! CoreOS's update agent, with health checks and automatic rollback.
//!
//! It reads Zincati's configuration fragments, computes Zincati's node
//! identity, asks the update graph server exactly what Zincati asks, picks
//! the release Zincati would pick, stages it with finalization locked,
//! finalizes it when its strategy allows (immediately, in a maintenance
//! window, or holding a FleetLock reboot slot) and reboots. Beyond Zincati,
//! a release it finalized boots on trial (a Boot Loader Specification boot
//! counter on its entry): health checks decide whether it is kept (the
//! entry is blessed) or rolled back (the previous deployment is the
//! default again, the release is denylisted locally and the outcome is
//! reported to the graph server); a person's rollback is remembered.
//!
//! | module | job |
//! |---|---|
//! | [`config`] | the TOML fragments, merged and validated as Zincati does |
//! | [`identity`] | node UUID, platform, architecture |
//! | [`graph`] | the Cincinnati request, the update chosen, dead-ends |
//! | [`strategy`] | immediate, periodic (maintenance windows), fleet_lock |
//! | [`sessions`] | interactive sessions that postpone a reboot |
//! | [`health`] | health checks of a release on trial |
//! | [`state`] | what the agent remembers across restarts, and its status |
//! | [`metrics`] | Prometheus metrics with Zincati's names |
//! | [`agent`] | the state machine: one check-and-act cycle at a time |
//! | [`control`] | the control socket (`status`, `update-now`) |

pub mod agent;
pub mod config;
pub mod control;
pub mod graph;
pub mod health;
pub mod identity;
pub mod metrics;
pub mod sessions;
pub mod state;
pub mod strategy;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use agent::{Agent, Cycle, Hooks};
pub use config::Settings;

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error on a path.
    #[error("{}: {cause}", path.display())]
    Io {
        /// Where.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// A configuration fragment or setting is wrong.
    #[error("{0}")]
    Config(String),
    /// Something the agent read is not what it must be.
    #[error("{0}")]
    Invalid(String),
    /// The agent's remembered state cannot be read: it refuses to act as
    /// if it remembered nothing.
    #[error(
        "{}: the agent's state cannot be read ({why}); refusing to run without it (inspect the file; remove it to start afresh, forgetting the local denylist and any trial in progress)",
        path.display()
    )]
    State {
        /// The state file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// From the sysroot.
    #[error(transparent)]
    Sysroot(#[from] sysroot::Error),
    /// From the repository.
    #[error(transparent)]
    Repo(#[from] ostree_store::Error),
    /// An HTTP exchange failed.
    #[error("{0}")]
    Http(String),
    /// Another agent holds the agent lock.
    #[error("{0}")]
    Busy(String),
}

impl Error {
    pub(crate) fn io(path: &Path, cause: std::io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            cause,
        }
    }
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The file system the agent works on: `/` on a node, any directory for
/// tests and image builds (`--root`). Every path the agent reads or writes
/// (configuration, machine ID, kernel command line, sysroot, state,
/// sockets, the MOTD) is resolved under it.
#[derive(Debug, Clone)]
pub struct Root {
    dir: PathBuf,
}

impl Root {
    /// The root at `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Root {
        Root { dir: dir.into() }
    }

    /// The root directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// An absolute node path (`/etc/machine-id`) under the root.
    pub fn path(&self, abs: &str) -> PathBuf {
        self.dir.join(abs.trim_start_matches('/'))
    }
}

/// The agent's clock: real time on a node, a hand-driven one in tests (no
/// test sleeps).
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> jiff::Timestamp;
    /// Waits `d` (a test clock just moves forward).
    fn sleep(&self, d: Duration);
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> jiff::Timestamp {
        jiff::Timestamp::now()
    }
    fn sleep(&self, d: Duration) {
        std::thread::sleep(d)
    }
}

/// A clock that reads a set time and moves only when told or slept on.
#[derive(Debug)]
pub struct ManualClock {
    now: std::sync::Mutex<jiff::Timestamp>,
}

impl ManualClock {
    /// A clock at `now`.
    pub fn new(now: jiff::Timestamp) -> ManualClock {
        ManualClock {
            now: std::sync::Mutex::new(now),
        }
    }

    /// Sets the time.
    pub fn set(&self, t: jiff::Timestamp) {
        *self.now.lock().unwrap_or_else(|e| e.into_inner()) = t;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> jiff::Timestamp {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn sleep(&self, d: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        let span = jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::MAX);
        *now = now.saturating_add(span).unwrap_or(*now);
    }
}
