//! Running the external tools the engine needs, each with a deadline.
//!
//! Every tool the stages run (`sgdisk`, `mkfs.*`, `wipefs`, `blkid`,
//! `partx`, `udevadm`, `cryptsetup`, `mdadm`, the shadow tools,
//! `systemctl`, `mount`, ...) goes through [`run`] ([`util::cmd`]): no
//! standard input (a tool never waits for a confirmation), its output
//! collected, and a deadline after which the tool and everything it
//! started are killed (the child leads its own process group) and the run
//! fails naming the command. A tool that hangs, such as `udevadm trigger
//! --settle` talking to a dead udev daemon, then fails the stage instead
//! of hanging it.
//!
//! The deadline is [`DEFAULT_TIMEOUT`] unless the environment variable
//! [`TIMEOUT_ENV`] gives another number of seconds (for slow disks, or
//! for tests).

use std::time::Duration;

pub use util::cmd::{Output, RunError, command_line, run_with};

/// How long a tool may run when [`TIMEOUT_ENV`] does not say otherwise:
/// long enough for `mkfs` with discard on a large disk, short enough that
/// a hung tool fails the boot visibly.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// Environment variable with the deadline of every tool, in seconds.
pub const TIMEOUT_ENV: &str = "OXCORE_IGNITION_COMMAND_TIMEOUT";

/// The deadline for tools: [`TIMEOUT_ENV`] if it holds a number of
/// seconds, else [`DEFAULT_TIMEOUT`].
pub fn timeout() -> Duration {
    std::env::var(TIMEOUT_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(DEFAULT_TIMEOUT)
}

/// Runs `argv` with the deadline of [`timeout`]. `shown` is the command
/// line for messages (with secrets redacted); `None` shows `argv`.
pub fn run(argv: &[String], shown: Option<&str>) -> Result<Output, RunError> {
    run_with(argv, shown, timeout())
}
