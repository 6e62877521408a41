//! Running the external tools the engine needs, each with a deadline.
//!
//! Every tool the stages run (`sgdisk`, `mkfs.*`, `wipefs`, `blkid`,
//! `partx`, `udevadm`, `cryptsetup`, `mdadm`, the shadow tools,
//! `systemctl`, `mount`, ...) goes through [`run`]: no standard input (a
//! tool never waits for a confirmation), its output collected, and a
//! deadline after which the tool and everything it started are killed
//! (the child leads its own process group) and the run fails naming the
//! command. A tool that hangs, such as `udevadm trigger --settle` talking
//! to a dead udev daemon, then fails the stage instead of hanging it.
//!
//! The deadline is [`DEFAULT_TIMEOUT`] unless the environment variable
//! [`TIMEOUT_ENV`] gives another number of seconds (for slow disks, or
//! for tests).

use std::io::Read;
use std::os::unix::process::CommandExt as _;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a tool may run when [`TIMEOUT_ENV`] does not say otherwise:
/// long enough for `mkfs` with discard on a large disk, short enough that
/// a hung tool fails the boot visibly.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// Environment variable with the deadline of every tool, in seconds.
pub const TIMEOUT_ENV: &str = "OXCORE_IGNITION_COMMAND_TIMEOUT";

/// Output kept from a tool's stdout and stderr each; the rest is read and
/// dropped, so a chatty tool cannot exhaust memory.
const MAX_OUTPUT: usize = 16 << 20;

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

/// Why a tool gave no exit status.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// It could not be started.
    #[error("`{command}` could not be run: {error}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why.
        error: std::io::Error,
    },
    /// It did not finish in time and was killed.
    #[error("`{command}` did not finish within {}s and was killed", after.as_secs_f64())]
    TimedOut {
        /// The command line.
        command: String,
        /// The deadline it overran.
        after: Duration,
    },
}

impl RunError {
    /// Why, without the command line (`could not be run (...)`, `did not
    /// finish within Ns and was killed`).
    pub fn status(&self) -> String {
        match self {
            RunError::Spawn { error, .. } => format!("could not be run ({error})"),
            RunError::TimedOut { after, .. } => format!(
                "did not finish within {}s and was killed",
                after.as_secs_f64()
            ),
        }
    }
}

/// What a tool did.
#[derive(Debug)]
pub struct Output {
    /// Its exit status.
    pub status: ExitStatus,
    /// Its standard output (at most 16 MiB).
    pub stdout: Vec<u8>,
    /// Its standard error (at most 16 MiB).
    pub stderr: Vec<u8>,
}

/// Quotes `argv` for a shell, for messages.
pub fn command_line<S: AsRef<str>>(argv: &[S]) -> String {
    let mut out = String::new();
    for (i, arg) in argv.iter().enumerate() {
        let arg = arg.as_ref();
        if i > 0 {
            out.push(' ');
        }
        let plain = !arg.is_empty()
            && arg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-./=:,+@%".contains(&b));
        if plain {
            out.push_str(arg);
        } else {
            out.push('\'');
            out.push_str(&arg.replace('\'', r"'\''"));
            out.push('\'');
        }
    }
    out
}

fn reader(mut from: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let room = MAX_OUTPUT.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        }
        kept
    })
}

/// Runs `argv` with the deadline of [`timeout`]. `shown` is the command
/// line for messages (with secrets redacted); `None` shows `argv`.
pub fn run(argv: &[String], shown: Option<&str>) -> Result<Output, RunError> {
    run_with(argv, shown, timeout())
}

/// Runs `argv`, killing it (and its process group) after `limit`.
pub fn run_with(argv: &[String], shown: Option<&str>, limit: Duration) -> Result<Output, RunError> {
    let command = || shown.map_or_else(|| command_line(argv), str::to_string);
    let Some((tool, args)) = argv.split_first() else {
        return Err(RunError::Spawn {
            command: String::new(),
            error: std::io::Error::new(std::io::ErrorKind::InvalidInput, "empty command"),
        });
    };
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|error| RunError::Spawn {
            command: command(),
            error,
        })?;
    let out = child.stdout.take().map(reader);
    let err = child.stderr.take().map(reader);
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(error) => {
                return Err(RunError::Spawn {
                    command: command(),
                    error,
                });
            }
        }
        let now = Instant::now();
        if now >= deadline {
            // The whole group: a tool's own children hold the pipes too.
            if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            }
            let _ = child.kill();
            let _ = child.wait();
            // The readers are left to finish on their own: a process that
            // left the group could keep a pipe open.
            return Err(RunError::TimedOut {
                command: command(),
                after: limit,
            });
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(50));
    };
    let stdout = out.and_then(|h| h.join().ok()).unwrap_or_default();
    let stderr = err.and_then(|h| h.join().ok()).unwrap_or_default();
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn output_and_status() {
        let o = run(&argv(&["sh", "-c", "echo out; echo err >&2; exit 3"]), None).unwrap();
        assert_eq!(o.stdout, b"out\n");
        assert_eq!(o.stderr, b"err\n");
        assert_eq!(o.status.code(), Some(3));
    }

    #[test]
    fn a_tool_that_never_returns_is_killed_with_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let flag = dir.path().join("survived");
        // The shell's child would write the flag after 3 s if it survived.
        let script = format!("(sleep 3; touch {}) & sleep 1000", flag.display());
        let e = run_with(
            &argv(&["sh", "-c", &script]),
            None,
            Duration::from_millis(300),
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("sleep 1000"), "{msg}");
        assert!(msg.contains("did not finish within 0.3s"), "{msg}");
        std::thread::sleep(Duration::from_secs(4));
        assert!(!flag.exists(), "a child of the tool outlived the deadline");
    }

    #[test]
    fn a_missing_tool_is_named() {
        let e = run(&argv(&["/nonexistent/tool", "x"]), Some("tool <redacted>")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("`tool <redacted>` could not be run")
        );
    }
}
