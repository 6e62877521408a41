//! Zincati's configuration: TOML fragments in `/usr/lib/zincati/config.d`,
//! `/run/zincati/config.d` and `/etc/zincati/config.d`, merged and
//! validated as Zincati does it.
//!
//! Only `*.toml` files count (dotfiles are skipped); a file in a later
//! directory replaces the same-named one of an earlier directory (`/etc`
//! over `/run` over `/usr/lib`, as Zincati's code does it); a symbolic
//! link to `/dev/null` masks the name; other symbolic links are ignored,
//! as Zincati ignores them. The surviving fragments are read in file-name
//! order, later keys overriding earlier ones, except maintenance windows,
//! which add up. Keys Zincati does not know are ignored, so oxcore's own
//! settings (the `[oxcore]` table) can live in the same fragments without
//! upsetting Zincati. Errors name the fragment and the key.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::{Error, Result, Root};

/// The fragment directories, lowest precedence first.
pub const DIRS: [&str; 3] = [
    "/usr/lib/zincati/config.d",
    "/run/zincati/config.d",
    "/etc/zincati/config.d",
];

/// Zincati's defaults when no fragment says otherwise.
pub const DEFAULT_STEADY_INTERVAL_SECS: u64 = 300;

#[derive(Debug, Default, Deserialize)]
struct Fragment {
    agent: Option<AgentFragment>,
    cincinnati: Option<CincinnatiFragment>,
    identity: Option<IdentityFragment>,
    updates: Option<UpdatesFragment>,
    oxcore: Option<OxcoreFragment>,
}

#[derive(Debug, Default, Deserialize)]
struct AgentFragment {
    timing: Option<TimingFragment>,
}

#[derive(Debug, Default, Deserialize)]
struct TimingFragment {
    steady_interval_secs: Option<NonZeroU64>,
}

#[derive(Debug, Default, Deserialize)]
struct CincinnatiFragment {
    base_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct IdentityFragment {
    group: Option<String>,
    node_uuid: Option<String>,
    rollout_wariness: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
struct UpdatesFragment {
    enabled: Option<bool>,
    allow_downgrade: Option<bool>,
    strategy: Option<String>,
    fleet_lock: Option<FleetLockFragment>,
    periodic: Option<PeriodicFragment>,
}

#[derive(Debug, Default, Deserialize)]
struct FleetLockFragment {
    base_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct PeriodicFragment {
    time_zone: Option<String>,
    window: Option<Vec<WindowFragment>>,
}

#[derive(Debug, Deserialize)]
struct WindowFragment {
    days: Vec<String>,
    start_time: String,
    length_minutes: u32,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OxcoreFragment {
    reboot_command: Option<Vec<String>>,
    max_deploy_attempts: Option<u32>,
    report: Option<bool>,
    health: Option<HealthFragment>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HealthFragment {
    enabled: Option<bool>,
    boot_tries: Option<u32>,
    deadline_secs: Option<u64>,
    retry_secs: Option<u64>,
    required_units: Option<Vec<String>>,
    check_graph: Option<bool>,
}

/// One maintenance window as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowSpec {
    /// Week days, Monday = 0.
    pub days: Vec<u8>,
    /// Start, minutes after local midnight.
    pub start_minute: u32,
    /// Length in minutes (1 to a week).
    pub length_minutes: u32,
}

/// How updates are finalized.
#[derive(Debug, Clone, PartialEq)]
pub enum StrategyConfig {
    /// As soon as an update is staged.
    Immediate,
    /// With a reboot slot from a FleetLock server at `base_url`.
    FleetLock {
        /// The server's base URL, template variables substituted.
        base_url: String,
    },
    /// Inside weekly maintenance windows.
    Periodic {
        /// `UTC`, `localtime` or an IANA name, as configured.
        time_zone: String,
        /// The windows, from every fragment.
        windows: Vec<WindowSpec>,
    },
}

impl StrategyConfig {
    /// The name Zincati's configuration and metrics use.
    pub fn name(&self) -> &'static str {
        match self {
            StrategyConfig::Immediate => "immediate",
            StrategyConfig::FleetLock { .. } => "fleet_lock",
            StrategyConfig::Periodic { .. } => "periodic",
        }
    }
}

/// Health checks of a release on trial (oxcore's `[oxcore.health]`).
#[derive(Debug, Clone, PartialEq)]
pub struct HealthSettings {
    /// Boot finalized updates on trial and check them (default yes).
    pub enabled: bool,
    /// Tries the bootloader gives the new deployment (default 3).
    pub boot_tries: u32,
    /// How long the checks may take to pass after the trial boot.
    pub deadline: Duration,
    /// Pause between rounds of checks while some fail.
    pub retry: Duration,
    /// systemd units that must be active.
    pub required_units: Vec<String>,
    /// The graph server must answer (default yes).
    pub check_graph: bool,
}

/// oxcore's own settings (`[oxcore]`; Zincati ignores the table).
#[derive(Debug, Clone, PartialEq)]
pub struct OxcoreSettings {
    /// How to reboot (default `systemctl reboot`).
    pub reboot_command: Vec<String>,
    /// Failed deploys of one release before it is denylisted (default 12,
    /// Zincati's attempts before it abandons a target).
    pub max_deploy_attempts: u32,
    /// Report trial outcomes to the graph server (`POST /v1/report`).
    pub report: bool,
    /// Health checks.
    pub health: HealthSettings,
}

/// The merged, validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Pause between checks in steady state.
    pub steady_interval: Duration,
    /// The graph server's base URL, template variables not yet
    /// substituted (they need the booted stream).
    pub cincinnati_base_url: String,
    /// The update group (`default`).
    pub group: String,
    /// A configured node UUID, as 32 lower-case hexadecimal digits.
    pub node_uuid: Option<String>,
    /// A configured rollout wariness (0.0 to 1.0).
    pub rollout_wariness: Option<f64>,
    /// Updates enabled.
    pub enabled: bool,
    /// Downgrades allowed.
    pub allow_downgrade: bool,
    /// The finalization strategy.
    pub strategy: StrategyConfig,
    /// oxcore's settings.
    pub oxcore: OxcoreSettings,
    /// The fragments read, in order.
    pub fragments: Vec<PathBuf>,
}

/// Where each key was last set, for error messages.
#[derive(Debug, Default)]
struct Sources(BTreeMap<&'static str, PathBuf>);

impl Sources {
    fn set(&mut self, key: &'static str, file: &Path) {
        self.0.insert(key, file.to_path_buf());
    }

    fn err(&self, key: &'static str, msg: impl std::fmt::Display) -> Error {
        match self.0.get(key) {
            Some(f) => Error::Config(format!("{}: {key}: {msg}", f.display())),
            None => Error::Config(format!("{key}: {msg}")),
        }
    }
}

/// The fragments that count, in the order they are merged.
pub fn fragment_files(root: &Root) -> Result<Vec<PathBuf>> {
    let mut chosen: BTreeMap<Vec<u8>, Option<PathBuf>> = BTreeMap::new();
    for dir in DIRS {
        let dir = root.path(dir);
        let entries = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(&dir, e)),
        };
        for e in entries {
            let e = e.map_err(|e| Error::io(&dir, e))?;
            let name = e.file_name();
            let bytes = name.as_encoded_bytes().to_vec();
            let path = e.path();
            if bytes.starts_with(b".") || path.extension().is_none_or(|x| x != "toml") {
                continue;
            }
            let meta = fs::symlink_metadata(&path).map_err(|e| Error::io(&path, e))?;
            if meta.file_type().is_symlink() {
                let target = fs::read_link(&path).map_err(|e| Error::io(&path, e))?;
                if target == Path::new("/dev/null") {
                    chosen.insert(bytes, None);
                } else {
                    tracing::warn!(
                        "{}: ignored: a symbolic link (only links to /dev/null, which mask a fragment, are honoured, as in Zincati)",
                        path.display()
                    );
                }
                continue;
            }
            if meta.is_file() {
                chosen.insert(bytes, Some(path));
            }
        }
    }
    Ok(chosen.into_values().flatten().collect())
}

/// Reads, merges and validates the configuration under `root`.
pub fn load(root: &Root) -> Result<Settings> {
    let files = fragment_files(root)?;
    let mut texts = Vec::with_capacity(files.len());
    for f in &files {
        // Fragments are small; a huge one is a mistake, not a config.
        let meta = fs::metadata(f).map_err(|e| Error::io(f, e))?;
        if meta.len() > 1 << 20 {
            return Err(Error::Config(format!(
                "{}: failed to read file: larger than 1 MiB",
                f.display()
            )));
        }
        texts.push((
            f.clone(),
            fs::read_to_string(f).map_err(|e| Error::io(f, e))?,
        ));
    }
    parse(&texts)
}

/// Merges and validates fragments given as `(file, text)` in merge order.
pub fn parse(fragments: &[(PathBuf, String)]) -> Result<Settings> {
    let mut src = Sources::default();
    let mut steady = None;
    let mut base_url = None;
    let (mut group, mut node_uuid, mut wariness) = (None, None, None);
    let (mut enabled, mut allow_downgrade, mut strategy) = (None, None, None);
    let (mut fleet_lock_url, mut time_zone) = (None, None);
    let mut windows: Vec<(PathBuf, WindowFragment)> = Vec::new();
    let mut ox = OxcoreFragment::default();
    let mut health = HealthFragment::default();
    for (file, text) in fragments {
        let frag: Fragment = toml::from_str(text).map_err(|e| {
            Error::Config(format!(
                "{}: failed to parse TOML: {}",
                file.display(),
                e.to_string().trim_end()
            ))
        })?;
        macro_rules! take {
            ($slot:ident, $value:expr, $key:literal) => {
                if let Some(v) = $value {
                    $slot = Some(v);
                    src.set($key, file);
                }
            };
        }
        if let Some(t) = frag.agent.and_then(|a| a.timing) {
            take!(
                steady,
                t.steady_interval_secs,
                "agent.timing.steady_interval_secs"
            );
        }
        if let Some(c) = frag.cincinnati {
            take!(base_url, c.base_url, "cincinnati.base_url");
        }
        if let Some(i) = frag.identity {
            take!(group, i.group, "identity.group");
            take!(node_uuid, i.node_uuid, "identity.node_uuid");
            take!(wariness, i.rollout_wariness, "identity.rollout_wariness");
        }
        if let Some(u) = frag.updates {
            take!(enabled, u.enabled, "updates.enabled");
            take!(
                allow_downgrade,
                u.allow_downgrade,
                "updates.allow_downgrade"
            );
            take!(strategy, u.strategy, "updates.strategy");
            if let Some(f) = u.fleet_lock {
                take!(fleet_lock_url, f.base_url, "updates.fleet_lock.base_url");
            }
            if let Some(p) = u.periodic {
                take!(time_zone, p.time_zone, "updates.periodic.time_zone");
                for w in p.window.unwrap_or_default() {
                    windows.push((file.clone(), w));
                }
            }
        }
        if let Some(o) = frag.oxcore {
            macro_rules! over {
                ($to:ident . $field:ident, $from:expr, $key:literal) => {
                    if $from.$field.is_some() {
                        $to.$field = $from.$field;
                        src.set($key, file);
                    }
                };
            }
            over!(ox.reboot_command, o, "oxcore.reboot_command");
            over!(ox.max_deploy_attempts, o, "oxcore.max_deploy_attempts");
            over!(ox.report, o, "oxcore.report");
            if let Some(h) = o.health {
                over!(health.enabled, h, "oxcore.health.enabled");
                over!(health.boot_tries, h, "oxcore.health.boot_tries");
                over!(health.deadline_secs, h, "oxcore.health.deadline_secs");
                over!(health.retry_secs, h, "oxcore.health.retry_secs");
                over!(health.required_units, h, "oxcore.health.required_units");
                over!(health.check_graph, h, "oxcore.health.check_graph");
            }
        }
    }

    let group = match group.filter(|g: &String| !g.is_empty()) {
        None => "default".to_string(),
        Some(g) => {
            if !g
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
            {
                return Err(src.err(
                    "identity.group",
                    format!(
                        "invalid group label '{g}': not conforming to expression '^[a-zA-Z0-9.-]+$'"
                    ),
                ));
            }
            g
        }
    };
    let node_uuid = match node_uuid.filter(|u: &String| !u.is_empty()) {
        None => None,
        Some(u) => Some(parse_uuid(&u).ok_or_else(|| {
            src.err(
                "identity.node_uuid",
                format!("failed to parse node UUID: invalid UUID '{u}'"),
            )
        })?),
    };
    if let Some(w) = wariness {
        if w.is_nan() {
            return Err(src.err("identity.rollout_wariness", "not a number"));
        }
        if w < 0.0 {
            return Err(src.err(
                "identity.rollout_wariness",
                format!("unexpected negative rollout wariness: {w}"),
            ));
        }
        if w > 1.0 {
            return Err(src.err(
                "identity.rollout_wariness",
                format!("unexpected overlarge rollout wariness: {w}"),
            ));
        }
    }
    let strategy = match strategy.as_deref().unwrap_or("") {
        "" | "immediate" => StrategyConfig::Immediate,
        "fleet_lock" => {
            let url = fleet_lock_url.unwrap_or_default();
            if url.is_empty() {
                return Err(src.err("updates.fleet_lock.base_url", "empty fleet_lock base URL"));
            }
            check_url(&url).map_err(|why| {
                src.err(
                    "updates.fleet_lock.base_url",
                    format!("failed to parse '{url}': {why}"),
                )
            })?;
            StrategyConfig::FleetLock { base_url: url }
        }
        "periodic" => {
            let time_zone = time_zone.unwrap_or_else(|| "UTC".to_string());
            let mut specs = Vec::new();
            for (file, w) in windows {
                let here = |msg: String| {
                    Error::Config(format!(
                        "{}: updates.periodic.window: {msg}",
                        file.display()
                    ))
                };
                specs.push(window(&w).map_err(here)?);
            }
            if specs.iter().all(|w| w.days.is_empty()) {
                return Err(src.err(
                    "updates.strategy",
                    "invalid or missing periodic updates configuration: weekly calendar length is zero",
                ));
            }
            StrategyConfig::Periodic {
                time_zone,
                windows: specs,
            }
        }
        other => {
            return Err(src.err(
                "updates.strategy",
                format!("unsupported strategy '{other}'"),
            ));
        }
    };
    let base_url = base_url.unwrap_or_default();
    if base_url.is_empty() {
        return Err(src.err("cincinnati.base_url", "empty Cincinnati base URL"));
    }
    let reboot_command = ox
        .reboot_command
        .unwrap_or_else(|| vec!["systemctl".into(), "reboot".into()]);
    if reboot_command.first().is_none_or(|c| c.is_empty()) {
        return Err(src.err("oxcore.reboot_command", "empty command"));
    }
    let max_deploy_attempts = ox.max_deploy_attempts.unwrap_or(12);
    if max_deploy_attempts == 0 {
        return Err(src.err("oxcore.max_deploy_attempts", "must be at least 1"));
    }
    let boot_tries = health.boot_tries.unwrap_or(3);
    if !(1..=99).contains(&boot_tries) {
        return Err(src.err("oxcore.health.boot_tries", "must be 1 to 99"));
    }
    let required_units = health.required_units.unwrap_or_default();
    if let Some(u) = required_units
        .iter()
        .find(|u| u.is_empty() || u.starts_with('-') || u.contains(['/', ' ']))
    {
        return Err(src.err(
            "oxcore.health.required_units",
            format!("'{u}' is not a unit name"),
        ));
    }
    Ok(Settings {
        steady_interval: Duration::from_secs(
            steady.map_or(DEFAULT_STEADY_INTERVAL_SECS, NonZeroU64::get),
        ),
        cincinnati_base_url: base_url,
        group,
        node_uuid,
        rollout_wariness: wariness,
        enabled: enabled.unwrap_or(true),
        allow_downgrade: allow_downgrade.unwrap_or(false),
        strategy,
        oxcore: OxcoreSettings {
            reboot_command,
            max_deploy_attempts,
            report: ox.report.unwrap_or(true),
            health: HealthSettings {
                enabled: health.enabled.unwrap_or(true),
                boot_tries,
                deadline: Duration::from_secs(health.deadline_secs.unwrap_or(300)),
                retry: Duration::from_secs(health.retry_secs.unwrap_or(10).max(1)),
                required_units,
                check_graph: health.check_graph.unwrap_or(true),
            },
        },
        fragments: fragments.iter().map(|(f, _)| f.clone()).collect(),
    })
}

/// A UUID in any of the forms Zincati accepts (simple, hyphenated, braced,
/// `urn:uuid:`; either case), as 32 lower-case hexadecimal digits.
pub fn parse_uuid(s: &str) -> Option<String> {
    let t = s.strip_prefix("urn:uuid:").unwrap_or(s);
    let t = t
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .unwrap_or(t);
    let hex: String = if t.len() == 36 {
        let b = t.as_bytes();
        if [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
            return None;
        }
        t.chars().filter(|&c| c != '-').collect()
    } else {
        t.to_string()
    };
    (hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| hex.to_ascii_lowercase())
}

/// Checks that a base URL is an absolute `http` or `https` URL with a host.
pub fn check_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or("not an http or https URL")?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() {
        return Err("empty host".into());
    }
    Ok(())
}

/// Joins a relative `path` to `base` as a URL parser does (and as Zincati
/// does): the base's query is dropped, and a base path that does not end
/// in `/` loses its last segment (`https://h/p` + `v1/graph` is
/// `https://h/v1/graph`; `https://h/p/` gives `https://h/p/v1/graph`).
pub fn join_url(base: &str, path: &str) -> String {
    let base = base.split(['?', '#']).next().unwrap_or(base);
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let (origin, base_path) = base.split_at(path_start);
    let dir = match base_path.rfind('/') {
        Some(i) => &base_path[..=i],
        None => "/",
    };
    format!("{origin}{dir}{path}")
}

/// Substitutes `${basearch}`, `${group}`, `${platform}` and `${stream}`
/// in a base URL, refusing a value with `$`, `{` or `}` in it (as Zincati's
/// `envsubst` does); other `${…}` stay as they are.
pub fn substitute(template: &str, vars: &[(&str, &str)]) -> Result<String> {
    if !template.contains("${") {
        return Ok(template.to_string());
    }
    let mut out = template.to_string();
    for (name, value) in vars {
        if let Some(c) = value.chars().find(|c| matches!(c, '$' | '{' | '}')) {
            return Err(Error::Config(format!(
                "envsubst error: variable value '{value}' contains forbidden character '{c}'"
            )));
        }
        out = out.replace(&format!("${{{name}}}"), value);
    }
    Ok(out)
}

/// Parses a week day as Zincati does (three letters or the full name,
/// either case; unlike Zincati, `tuesday` is accepted too).
pub fn weekday(s: &str) -> Option<u8> {
    let l = s.to_ascii_lowercase();
    let days = [
        ("mon", "monday"),
        ("tue", "tuesday"),
        ("wed", "wednesday"),
        ("thu", "thursday"),
        ("fri", "friday"),
        ("sat", "saturday"),
        ("sun", "sunday"),
    ];
    days.iter()
        .position(|(short, long)| l == *short || l == *long)
        .map(|i| i as u8)
}

fn window(w: &WindowFragment) -> Result<WindowSpec, String> {
    let mut days = Vec::new();
    for d in &w.days {
        let n = weekday(d).ok_or_else(|| format!("unrecognized week day: {d}"))?;
        if !days.contains(&n) {
            days.push(n);
        }
    }
    days.sort_unstable();
    let s = &w.start_time;
    let (h, m) = s
        .split_once(':')
        .filter(|(_, m)| !m.contains(':'))
        .ok_or_else(|| format!("unrecognized time value: {s}"))?;
    let h: u8 = h
        .parse()
        .map_err(|_| format!("unrecognized time (hour) value: {s}"))?;
    let m: u8 = m
        .parse()
        .map_err(|_| format!("unrecognized time (minute) value: {s}"))?;
    if h > 23 || m > 59 {
        return Err(format!("failed to parse time string: invalid time: {s}"));
    }
    if w.length_minutes == 0 {
        return Err("failed to parse timespan into weekly windows: zero-length duration".into());
    }
    if w.length_minutes > 7 * 24 * 60 {
        return Err(
            "failed to parse timespan into weekly windows: length longer than a week".into(),
        );
    }
    Ok(WindowSpec {
        days,
        start_minute: u32::from(h) * 60 + u32::from(m),
        length_minutes: w.length_minutes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frag(name: &str, text: &str) -> (PathBuf, String) {
        (
            PathBuf::from(format!("/etc/zincati/config.d/{name}")),
            text.to_string(),
        )
    }

    const BASE: &str = "[cincinnati]\nbase_url = \"https://updates.example\"\n";

    #[test]
    fn defaults_are_zincatis() {
        let s = parse(&[frag("50-c.toml", BASE)]).unwrap();
        assert_eq!(s.steady_interval, Duration::from_secs(300));
        assert_eq!(s.group, "default");
        assert!(s.enabled && !s.allow_downgrade);
        assert_eq!(s.strategy, StrategyConfig::Immediate);
        assert_eq!(s.rollout_wariness, None);
        assert_eq!(s.oxcore.reboot_command, ["systemctl", "reboot"]);
        assert_eq!(s.oxcore.max_deploy_attempts, 12);
    }

    #[test]
    fn later_fragments_override_and_windows_add_up() {
        let s = parse(&[
            frag("10.toml", BASE),
            frag(
                "20.toml",
                "[updates]\nstrategy = \"periodic\"\n[[updates.periodic.window]]\ndays = [\"Sat\"]\nstart_time = \"23:30\"\nlength_minutes = 60\n",
            ),
            frag(
                "30.toml",
                "unknown_key = 1\n[identity]\ngroup = \"workers\"\n[updates.periodic]\ntime_zone = \"Europe/Berlin\"\n[[updates.periodic.window]]\ndays = [\"sun\", \"Sunday\", \"tuesday\"]\nstart_time = \"7:5\"\nlength_minutes = 10\n",
            ),
        ])
        .unwrap();
        assert_eq!(s.group, "workers");
        let StrategyConfig::Periodic { time_zone, windows } = s.strategy else {
            panic!("periodic expected");
        };
        assert_eq!(time_zone, "Europe/Berlin");
        assert_eq!(windows.len(), 2);
        assert_eq!(windows[1].days, [1, 6]);
        assert_eq!(windows[1].start_minute, 7 * 60 + 5);
    }

    #[test]
    fn errors_name_the_file_and_key() {
        let e = parse(&[
            frag("10.toml", BASE),
            frag("20.toml", "[identity]\nrollout_wariness = 1.5\n"),
        ])
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "/etc/zincati/config.d/20.toml: identity.rollout_wariness: unexpected overlarge rollout wariness: 1.5"
        );
        let e = parse(&[frag(
            "10.toml",
            "[agent.timing]\nsteady_interval_secs = 0\n",
        )])
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("/etc/zincati/config.d/10.toml: failed to parse TOML:")
                && e.contains("line 2"),
            "{e}"
        );
        let e = parse(&[frag("10.toml", "[updates]\nstrategy = \"weekly\"\n")])
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "/etc/zincati/config.d/10.toml: updates.strategy: unsupported strategy 'weekly'"
        );
        let e = parse(&[frag("10.toml", "[identity]\ngroup = \"a b\"\n")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("identity.group: invalid group label 'a b'"),
            "{e}"
        );
        let e = parse(&[frag("10.toml", "")]).unwrap_err().to_string();
        assert_eq!(e, "cincinnati.base_url: empty Cincinnati base URL");
        let e = parse(&[
            frag("10.toml", BASE),
            frag(
                "20.toml",
                "[updates]\nstrategy = \"periodic\"\n[[updates.periodic.window]]\ndays = [\"Mon\"]\nstart_time = \"24:00\"\nlength_minutes = 5\n",
            ),
        ])
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "/etc/zincati/config.d/20.toml: updates.periodic.window: failed to parse time string: invalid time: 24:00"
        );
        let e = parse(&[
            frag("10.toml", BASE),
            frag("20.toml", "[updates]\nstrategy = \"fleet_lock\"\n"),
        ])
        .unwrap_err()
        .to_string();
        assert_eq!(e, "updates.fleet_lock.base_url: empty fleet_lock base URL");
        let e = parse(&[frag("10.toml", "[oxcore]\nreboot = 1\n")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `reboot`"), "{e}");
    }

    #[test]
    fn uuids_in_every_form_zincati_takes() {
        let want = Some("0123456789abcdef0123456789abcdef".to_string());
        assert_eq!(parse_uuid("0123456789ABCDEF0123456789abcdef"), want);
        assert_eq!(parse_uuid("01234567-89ab-cdef-0123-456789abcdef"), want);
        assert_eq!(parse_uuid("{01234567-89ab-cdef-0123-456789abcdef}"), want);
        assert_eq!(
            parse_uuid("urn:uuid:01234567-89ab-cdef-0123-456789abcdef"),
            want
        );
        assert_eq!(parse_uuid("0123456789abcdef0123456789abcdeg"), None);
        assert_eq!(parse_uuid("01234567-89ab-cdef-0123_456789abcdef"), None);
    }

    #[test]
    fn urls_join_as_a_url_parser_joins() {
        assert_eq!(join_url("https://h", "v1/graph"), "https://h/v1/graph");
        assert_eq!(join_url("https://h/", "v1/graph"), "https://h/v1/graph");
        assert_eq!(join_url("https://h/p", "v1/graph"), "https://h/v1/graph");
        assert_eq!(join_url("https://h/p/", "v1/graph"), "https://h/p/v1/graph");
        assert_eq!(
            join_url("http://127.0.0.1:8080/a/?x=1", "v1/pre-reboot"),
            "http://127.0.0.1:8080/a/v1/pre-reboot"
        );
    }

    #[test]
    fn templates_substitute_known_variables_only() {
        let v = [("basearch", "x86_64"), ("stream", "stable")];
        assert_eq!(
            substitute("https://u/${stream}/${basearch}/${other}", &v).unwrap(),
            "https://u/stable/x86_64/${other}"
        );
        assert!(substitute("https://u/${stream}", &[("stream", "a}b")]).is_err());
        assert_eq!(
            substitute("https://u/", &[("stream", "a}b")]).unwrap(),
            "https://u/"
        );
    }
}
