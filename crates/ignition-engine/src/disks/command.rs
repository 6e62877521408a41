//! The disks stage's errors and the runner of its tools: every failure
//! names the config path and the device it concerns, and a tool's failure
//! its whole command line, exit status and stderr.

use std::io;

use crate::cmd::{Output, command_line};

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
pub(super) struct Ctx<'a> {
    pub(super) at: &'a str,
    pub(super) device: &'a str,
}

impl Ctx<'_> {
    pub(super) fn error(&self, kind: DiskErrorKind) -> DiskError {
        DiskError {
            at: self.at.to_string(),
            device: self.device.to_string(),
            kind,
        }
    }

    pub(super) fn refused(&self, message: impl Into<String>) -> DiskError {
        self.error(DiskErrorKind::Refused(message.into()))
    }

    pub(super) fn io(&self, what: impl Into<String>) -> impl FnOnce(io::Error) -> DiskError + '_ {
        let what = what.into();
        move |error| self.error(DiskErrorKind::Io { what, error })
    }

    pub(super) fn command(&self, what: &str, mut failure: CommandFailure) -> DiskError {
        failure.what = what.to_string();
        self.error(DiskErrorKind::Command(Box::new(failure)))
    }

    /// Runs `argv`; a failure names the command line and its stderr.
    pub(super) fn run(&self, what: &str, argv: &[String]) -> Result<Output, DiskError> {
        run_command(argv).map_err(|f| self.command(what, f))
    }
}

/// Runs `argv[0]` with the rest as arguments, no stdin (so that tools
/// never wait for a confirmation) and the tools' deadline
/// ([`crate::cmd::timeout`]), and fails unless it exits with 0.
pub(super) fn run_command(argv: &[String]) -> Result<Output, CommandFailure> {
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

pub(super) fn argv<const N: usize>(parts: [&str; N]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

pub(super) fn not_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(
            command_line(&argv(["sgdisk", "--change-name=1:my disk", "/dev/vda"])),
            "sgdisk '--change-name=1:my disk' /dev/vda"
        );
        assert_eq!(ignition_config::go_quote("a\"b\n"), r#""a\"b\n""#);
    }
}
