//! Interactive sessions, which postpone a reboot as Zincati postpones it:
//! up to ten times a minute apart, with a broadcast to each terminal,
//! then the reboot goes ahead anyway.
//!
//! Sessions are read from logind's records in `/run/systemd/sessions/`
//! (what `loginctl list-sessions` reports, readable under `--root` and
//! without D-Bus); a session with a terminal (`TTY=`) that is not closing
//! counts, as in Zincati.

use std::fs;
use std::io::Write;
use std::time::Duration;

use crate::Root;

/// Postponements before the reboot goes ahead (Zincati's).
pub const MAX_POSTPONEMENTS: u32 = 10;
/// Pause between postponements (Zincati's).
pub const POSTPONEMENT: Duration = Duration::from_secs(60);
/// With this file present, sessions do not postpone (`zincati-update-now`
/// creates it).
pub const OVERRIDE: &str = "/run/zincati/override-interactive-check";

/// An interactive session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Its user.
    pub user: String,
    /// Its terminal (`pts/0`).
    pub tty: String,
}

/// The interactive sessions logind records under `root`.
pub fn interactive(root: &Root) -> Vec<Session> {
    let dir = root.path("/run/systemd/sessions");
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name();
        if name.to_string_lossy().ends_with(".ref") {
            continue;
        }
        // Records are a few hundred bytes; read at most 64 KiB.
        let Ok(text) = read_capped(&e.path(), 64 << 10) else {
            continue;
        };
        let get = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
                .unwrap_or("")
                .to_string()
        };
        let tty = get("TTY");
        if tty.is_empty() || get("STATE") == "closing" {
            continue;
        }
        out.push(Session {
            user: get("USER"),
            tty,
        });
    }
    out.sort_by(|a, b| a.tty.cmp(&b.tty));
    out
}

fn read_capped(p: &std::path::Path, cap: u64) -> std::io::Result<String> {
    use std::io::Read;
    let mut s = String::new();
    fs::File::open(p)?.take(cap).read_to_string(&mut s)?;
    Ok(s)
}

/// "1 minute", "10 minutes", "1 minute and 5 seconds", as Zincati says it.
pub fn human(d: Duration) -> String {
    let (m, s) = (d.as_secs() / 60, d.as_secs() % 60);
    let unit = |n: u64, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    match (m, s) {
        (0, s) => unit(s, "second"),
        (m, 0) => unit(m, "minute"),
        (m, s) => format!("{} and {}", unit(m, "minute"), unit(s, "second")),
    }
}

/// Zincati's broadcast text for an update staged while users are logged in.
pub fn broadcast_text(version: &str, grace: Duration, now: jiff::Timestamp) -> String {
    format!(
        "\nBroadcast message from Zincati at {}:\nNew update {version} is available and has been deployed.\nIf permitted by the update strategy, Zincati will reboot into this update when\nall interactive users have logged out, or in {}, whichever comes\nearlier. Please log out of all active sessions in order to let the auto-update\nprocess continue.\n",
        now.strftime("%a %Y-%m-%d %H:%M:%S UTC"),
        human(grace)
    )
}

/// Writes `text` to each session's terminal (never creating a file, never
/// blocking on a terminal that does not read).
pub fn broadcast(root: &Root, sessions: &[Session], text: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    for s in sessions {
        if s.tty.contains("..") {
            continue;
        }
        let path = root.path(&format!("/dev/{}", s.tty));
        let f = fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc_flags())
            .open(&path);
        match f {
            Ok(mut f) => {
                if let Err(e) = f.write_all(text.as_bytes()) {
                    tracing::debug!("{}: broadcast failed: {e}", path.display());
                }
            }
            Err(e) => tracing::debug!("{}: broadcast failed: {e}", path.display()),
        }
    }
}

fn libc_flags() -> i32 {
    (rustix::fs::OFlags::NOCTTY | rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOFOLLOW)
        .bits() as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_zincati_writes_them() {
        assert_eq!(human(Duration::from_secs(1)), "1 second");
        assert_eq!(human(Duration::from_secs(2)), "2 seconds");
        assert_eq!(human(Duration::from_secs(60)), "1 minute");
        assert_eq!(human(Duration::from_secs(600)), "10 minutes");
        assert_eq!(human(Duration::from_secs(65)), "1 minute and 5 seconds");
    }

    #[test]
    fn sessions_with_a_terminal_count() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        let s = root.path("/run/systemd/sessions");
        fs::create_dir_all(&s).unwrap();
        fs::write(s.join("1"), "USER=core\nTTY=pts/0\nSTATE=active\n").unwrap();
        fs::write(s.join("2"), "USER=svc\nSTATE=online\n").unwrap();
        fs::write(s.join("3"), "USER=gone\nTTY=pts/1\nSTATE=closing\n").unwrap();
        fs::write(s.join("1.ref"), "").unwrap();
        assert_eq!(
            interactive(&root),
            [Session {
                user: "core".into(),
                tty: "pts/0".into()
            }]
        );
        fs::create_dir_all(root.path("/dev/pts")).unwrap();
        fs::write(root.path("/dev/pts/0"), "").unwrap();
        broadcast(&root, &interactive(&root), "hello\n");
        assert_eq!(
            fs::read_to_string(root.path("/dev/pts/0")).unwrap(),
            "hello\n"
        );
    }
}
