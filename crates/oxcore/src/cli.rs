//! What several commands of the binary share: `KEY=VALUE` arguments,
//! sizes as `ostree` prints them, the progress line of a pull, and the
//! libraries' log messages on stderr.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Result, anyhow};
use ostree_store::pull::{PullReport, PullStats};

/// Splits a `KEY=VALUE` argument.
pub(crate) fn parse_kv(s: &str) -> Result<(String, String)> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| anyhow!("Missing '=' in KEY=VALUE pair '{s}'"))?;
    Ok((k.to_string(), v.to_string()))
}

/// Prints the libraries' `tracing` messages (info and above) on stderr,
/// bare, one per line, as the tools print their notes (Ignition's engine:
/// "udev: ... going on without udev", a provider's "not found (404): no
/// user config"). A second call keeps the first's.
pub(crate) fn log_messages_to_stderr() {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing_subscriber::filter::LevelFilter::INFO)
        .without_time()
        .with_level(false)
        .with_target(false)
        .with_ansi(false)
        .try_init();
}

/// Logs to stderr at `-v` counts as the upstream services take them
/// (none: warnings, `-v` info, `-vv` debug, more: trace); without
/// timestamps when stderr is the journal (`JOURNAL_STREAM`), which adds
/// its own.
pub(crate) fn log_at_verbosity(verbose: u8) {
    let level = match verbose {
        0 => tracing_subscriber::filter::LevelFilter::WARN,
        1 => tracing_subscriber::filter::LevelFilter::INFO,
        2 => tracing_subscriber::filter::LevelFilter::DEBUG,
        _ => tracing_subscriber::filter::LevelFilter::TRACE,
    };
    let b = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_target(false)
        .with_ansi(false);
    let _ = if std::env::var_os("JOURNAL_STREAM").is_some() {
        b.without_time().try_init()
    } else {
        b.try_init()
    };
}

/// A byte count as `ostree` prints it (`12.3 kB`).
pub(crate) fn format_size(n: u64) -> String {
    match n {
        0..1000 => format!("{n} bytes"),
        1000..1_000_000 => format!("{:.1} kB", n as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} MB", n as f64 / 1e6),
        _ => format!("{:.1} GB", n as f64 / 1e9),
    }
}

/// The `Receiving objects: N% (done/known) size` line of a pull on a
/// terminal (nothing otherwise), and its summary at the end.
pub(crate) struct PullProgress {
    tty: bool,
    last: Mutex<Instant>,
}

impl PullProgress {
    /// Shows progress on stderr if it is a terminal.
    pub(crate) fn new() -> PullProgress {
        PullProgress {
            tty: std::io::stderr().is_terminal(),
            last: Mutex::new(Instant::now()),
        }
    }

    /// Redraws the line, at most ten times a second.
    pub(crate) fn show(&self, s: &PullStats) {
        use std::sync::atomic::Ordering::Relaxed;
        if !self.tty {
            return;
        }
        let mut l = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if l.elapsed().as_millis() < 100 {
            return;
        }
        *l = Instant::now();
        let (f, r, p) = (
            s.fetched.load(Relaxed),
            s.requested.load(Relaxed),
            s.present.load(Relaxed),
        );
        let done = f + p;
        eprint!(
            "\rReceiving objects: {}% ({done}/{r}) {}   ",
            done * 100 / r.max(1),
            format_size(s.bytes.load(Relaxed))
        );
    }

    /// Clears the line and prints what was fetched, as `ostree pull`.
    pub(crate) fn finish(&self, report: &PullReport) {
        if self.tty {
            eprint!("\r\x1b[K");
        }
        eprintln!(
            "{} metadata and content objects fetched; {} transferred ({} bytes)",
            report.fetched,
            format_size(report.bytes),
            report.bytes
        );
    }
}
