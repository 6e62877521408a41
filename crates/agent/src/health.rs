//! Health checks of a release booted on trial: executables in
//! `/etc/oxcore/health.d/` and `/usr/lib/oxcore/health.d/` (exit 0 is
//! healthy; a name in `/etc` replaces the same name in `/usr/lib`, a link
//! to `/dev/null` masks it), systemd units that must be active, and the
//! graph server answering. Checks that fail are tried again until the
//! deadline; the first check still failing then is the verdict.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::HealthSettings;
use crate::{Clock, Root, graph};

/// The check directories, lowest precedence first.
pub const DIRS: [&str; 2] = ["/usr/lib/oxcore/health.d", "/etc/oxcore/health.d"];
/// The most output kept of a check.
const MAX_OUTPUT: usize = 4096;

/// A check that did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The check: a script's path, `unit:NAME`, `graph`.
    pub check: String,
    /// What it said.
    pub detail: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.check, self.detail)
    }
}

/// The check scripts under `root`, in name order: executable regular
/// files (a link is followed inside the root, never out of it); anything
/// else in the directories is skipped, and said so in the log.
pub fn scripts(root: &Root) -> Vec<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let mut chosen: BTreeMap<String, Option<PathBuf>> = BTreeMap::new();
    for dir in DIRS {
        let dir = root.path(dir);
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let path = e.path();
            let target = match fs::read_link(&path) {
                Ok(t) if t == Path::new("/dev/null") => {
                    chosen.insert(name, None);
                    continue;
                }
                Ok(t) => match inside(root, &path, &t) {
                    Some(p) => p,
                    None => {
                        tracing::warn!(
                            "health check {}: its link leads out of {}; skipped",
                            path.display(),
                            root.dir().display()
                        );
                        chosen.remove(&name);
                        continue;
                    }
                },
                Err(_) => path.clone(),
            };
            match fs::metadata(&target) {
                Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => {
                    chosen.insert(name, Some(target));
                }
                _ => {
                    tracing::warn!(
                        "health check {}: not an executable file; skipped",
                        path.display()
                    );
                    chosen.remove(&name);
                }
            }
        }
    }
    chosen.into_values().flatten().collect()
}

/// Where link `link` (with target `target`) leads, resolved inside `root`
/// one level (an absolute target is taken under the root); `None` when a
/// relative target climbs out of the root.
fn inside(root: &Root, link: &Path, target: &Path) -> Option<PathBuf> {
    if target.is_absolute() {
        if target
            .components()
            .any(|c| c == std::path::Component::ParentDir)
        {
            return None;
        }
        return Some(root.path(&target.to_string_lossy()));
    }
    let joined = link.parent()?.join(target);
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            std::path::Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            other => out.push(other),
        }
    }
    out.starts_with(root.dir()).then_some(out)
}

/// Runs `program` with a time limit ([`util::cmd::run_with`]: its own
/// process group, killed whole at the limit, output bounded and not
/// waited for beyond a grace once it exited).
fn run(program: &Path, limit: Duration) -> Result<(), String> {
    let argv = [program.to_string_lossy().into_owned()];
    let o = util::cmd::run_with(&argv, None, limit).map_err(|e| e.status())?;
    if o.status.success() {
        return Ok(());
    }
    let mut out = o.stdout;
    out.extend_from_slice(&o.stderr);
    let out = graph::clean(String::from_utf8_lossy(&out).trim(), MAX_OUTPUT);
    Err(match (o.status.code(), out.is_empty()) {
        (Some(c), true) => format!("exit status {c}"),
        (Some(c), false) => format!("exit status {c}: {out}"),
        (None, _) => format!("killed by a signal: {}", o.status),
    })
}

/// Whether `unit` is active, asked of systemd.
fn unit_active(unit: &str) -> Result<(), String> {
    let out = Command::new("systemctl")
        .args(["show", "--property=ActiveState", "--value", "--", unit])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run systemctl: {e}"))?;
    let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() && state == "active" {
        Ok(())
    } else if state.is_empty() {
        Err(format!("systemctl failed ({})", out.status))
    } else {
        Err(format!("unit is {state}"))
    }
}

/// Runs every check once; the failures.
pub fn check_once(
    root: &Root,
    settings: &HealthSettings,
    graph: &dyn Fn() -> Result<(), String>,
    limit: Duration,
) -> Vec<Failure> {
    let mut failures = Vec::new();
    let end = Instant::now() + limit;
    for s in scripts(root) {
        let left = end
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(1));
        if let Err(detail) = run(&s, left) {
            failures.push(Failure {
                check: s.display().to_string(),
                detail,
            });
        }
    }
    for u in &settings.required_units {
        if let Err(detail) = unit_active(u) {
            failures.push(Failure {
                check: format!("unit:{u}"),
                detail,
            });
        }
    }
    if settings.check_graph
        && let Err(detail) = graph()
    {
        failures.push(Failure {
            check: "graph".into(),
            detail,
        });
    }
    failures
}

/// Runs the checks until they all pass or the deadline passes: `Ok`, or
/// the first failure of the last round.
pub fn check(
    root: &Root,
    settings: &HealthSettings,
    clock: &dyn Clock,
    graph: &dyn Fn() -> Result<(), String>,
) -> Result<(), Failure> {
    let start = clock.now();
    let deadline = start
        .checked_add(
            jiff::SignedDuration::try_from(settings.deadline).unwrap_or(jiff::SignedDuration::MAX),
        )
        .unwrap_or(jiff::Timestamp::MAX);
    loop {
        let left = deadline.duration_since(clock.now());
        let limit = Duration::try_from(left)
            .unwrap_or(Duration::ZERO)
            .max(Duration::from_secs(1));
        let failures = check_once(root, settings, graph, limit);
        let Some(first) = failures.into_iter().next() else {
            return Ok(());
        };
        if clock.now() >= deadline {
            return Err(first);
        }
        tracing::info!("health check failing, trying again: {first}");
        clock.sleep(settings.retry);
    }
}
