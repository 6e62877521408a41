//! Running an external program with a deadline: no standard input (it
//! never waits for a confirmation), its output collected (bounded), and
//! after the deadline the program and everything it started killed (the
//! child leads its own process group). A program that exits while
//! something it started still holds its output open is not waited for
//! beyond a short grace. Ignition's stages run their tools through this,
//! and the update agent its health checks.

use std::io::Read;
use std::os::unix::process::CommandExt as _;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Output kept from a program's stdout and stderr each; the rest is read
/// and dropped, so a chatty program cannot exhaust memory.
const MAX_OUTPUT: usize = 16 << 20;

/// How long output is still read after the program exited, when
/// something it left running holds the pipe.
pub const OUTPUT_GRACE: Duration = Duration::from_secs(2);

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

/// Output a reader thread has kept so far.
type Kept = std::sync::Arc<std::sync::Mutex<Vec<u8>>>;

fn reader(mut from: impl Read + Send + 'static) -> (Kept, std::sync::mpsc::Receiver<()>) {
    let kept: Kept = Default::default();
    let (done, rx) = std::sync::mpsc::channel();
    let k = kept.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let mut kept = k.lock().unwrap_or_else(|e| e.into_inner());
                    let room = MAX_OUTPUT.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        }
        let _ = done.send(());
    });
    (kept, rx)
}

/// What a reader kept, once its pipe closed or, when a process the tool
/// left behind holds the pipe open, after [`OUTPUT_GRACE`].
fn collect(r: Option<(Kept, std::sync::mpsc::Receiver<()>)>) -> Vec<u8> {
    let Some((kept, done)) = r else {
        return Vec::new();
    };
    let _ = done.recv_timeout(OUTPUT_GRACE);
    std::mem::take(&mut *kept.lock().unwrap_or_else(|e| e.into_inner()))
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
    let (stdout, stderr) = (collect(out), collect(err));
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
        let o = run_with(
            &argv(&["sh", "-c", "echo out; echo err >&2; exit 3"]),
            None,
            Duration::from_secs(60),
        )
        .unwrap();
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
    fn a_tool_that_exits_leaving_a_child_on_its_output_is_not_waited_for() {
        // The child keeps stdout open for 600 s; the run returns after
        // the grace, with what was written.
        let o = run_with(
            &argv(&["sh", "-c", "echo hi; sleep 600 & exit 0"]),
            None,
            Duration::from_secs(60),
        )
        .unwrap();
        assert!(o.status.success());
        assert_eq!(o.stdout, b"hi\n");
    }

    #[test]
    fn a_missing_tool_is_named() {
        let e = run_with(
            &argv(&["/nonexistent/tool", "x"]),
            Some("tool <redacted>"),
            Duration::from_secs(60),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("`tool <redacted>` could not be run")
        );
    }
}
