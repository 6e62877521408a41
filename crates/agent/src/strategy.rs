//! When a staged update may be finalized: `immediate`, `periodic`
//! (weekly maintenance windows in a time zone) or `fleet_lock` (a reboot
//! slot from a FleetLock server such as `oxcore fleetlock serve` or
//! airlock).
//!
//! Maintenance windows are computed in real time, not by wall-clock
//! minute as Zincati matches them: a window starts at its local start
//! time on each of its days (a start time a spring-forward skips moves
//! forward by the gap, 02:30 becoming 03:30, as RFC 5545 has it; a start
//! time a fall-back repeats is its first occurrence) and lasts `length_minutes` real minutes,
//! so a window is never lost or doubled by a DST change; windows that
//! cross midnight or the end of the week simply go on into the next day.
//! The end is exclusive (Zincati also allows the end minute itself).

use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

use crate::config::{StrategyConfig, WindowSpec, join_url};
use crate::{Error, Result, Root};

/// Zincati's bound on a FleetLock request.
pub const FLEET_LOCK_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The answer to "may the staged update be finalized now?".
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Yes.
    Allow,
    /// No, for this reason (in words, for the status and the log).
    Deny(String),
    /// The question could not be answered (counts as no).
    Error(String),
}

/// A strategy ready to answer.
#[derive(Debug, Clone)]
pub enum Strategy {
    /// Always.
    Immediate,
    /// Inside maintenance windows.
    Periodic(Periodic),
    /// Holding a reboot slot.
    FleetLock(FleetLockClient),
}

impl Strategy {
    /// The strategy `config` describes, for node `id` in `group`.
    pub fn new(
        config: &StrategyConfig,
        root: &Root,
        http: &http_client::Client,
        id: &str,
        group: &str,
    ) -> Result<Strategy> {
        Ok(match config {
            StrategyConfig::Immediate => Strategy::Immediate,
            StrategyConfig::Periodic { time_zone, windows } => Strategy::Periodic(Periodic {
                tz_name: resolve_tz_name(root, time_zone)?,
                tz: time_zone_named(root, time_zone)?,
                windows: windows.clone(),
            }),
            StrategyConfig::FleetLock { base_url } => Strategy::FleetLock(FleetLockClient {
                base_url: base_url.clone(),
                id: id.to_string(),
                group: group.to_string(),
                http: http.clone(),
            }),
        })
    }

    /// Zincati's name of it.
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::Immediate => "immediate",
            Strategy::Periodic(_) => "periodic",
            Strategy::FleetLock(_) => "fleet_lock",
        }
    }

    /// Reports the node steady (FleetLock: releases the slot it holds).
    pub fn report_steady(&self) -> Result<(), String> {
        match self {
            Strategy::FleetLock(c) => c.call("steady-state"),
            _ => Ok(()),
        }
    }

    /// May the staged update be finalized at `now`?
    pub fn can_finalize(&self, now: Timestamp) -> Verdict {
        match self {
            Strategy::Immediate => Verdict::Allow,
            Strategy::Periodic(p) => match p.window_at(now) {
                Some(_) => Verdict::Allow,
                None => Verdict::Deny(match p.next_start(now) {
                    Some(t) => format!(
                        "outside the maintenance windows; the next opens at {}",
                        p.local(t)
                    ),
                    None => "outside the maintenance windows".to_string(),
                }),
            },
            // As Zincati: a refusal is an error answer of the server.
            Strategy::FleetLock(c) => match c.call("pre-reboot") {
                Ok(()) => Verdict::Allow,
                Err(e) => Verdict::Error(e),
            },
        }
    }

    /// One line for the log and `status`.
    pub fn describe(&self, now: Timestamp) -> String {
        match self {
            Strategy::Immediate => "immediate".to_string(),
            Strategy::FleetLock(c) => {
                format!(
                    "fleet_lock, remote fleet_lock reboot manager: {}",
                    c.base_url
                )
            }
            Strategy::Periodic(p) => {
                let next = match p.window_at(now) {
                    Some(end) => format!("in a window now (until {})", p.local(end)),
                    None => match p.next_start(now) {
                        Some(t) => format!("next window at {}", p.local(t)),
                        None => "no window".into(),
                    },
                };
                format!(
                    "periodic, total schedule length {} minutes; {next}",
                    p.schedule_minutes()
                )
            }
        }
    }
}

/// Weekly maintenance windows in a time zone.
#[derive(Debug, Clone)]
pub struct Periodic {
    tz_name: String,
    tz: TimeZone,
    windows: Vec<WindowSpec>,
}

impl Periodic {
    /// Windows in `tz` (for tests and tools).
    pub fn new(tz: TimeZone, tz_name: &str, windows: Vec<WindowSpec>) -> Periodic {
        Periodic {
            tz_name: tz_name.to_string(),
            tz,
            windows,
        }
    }

    /// Every window's occurrences starting on the local days from
    /// `today - before` to `today + after`: (start, end).
    fn occurrences(&self, now: Timestamp, before: i64, after: i64) -> Vec<(Timestamp, Timestamp)> {
        let today = now.to_zoned(self.tz.clone()).date();
        let mut out = Vec::new();
        for offset in -before..=after {
            let Ok(day) = today.checked_add(offset.days()) else {
                continue;
            };
            let weekday = day.weekday().to_monday_zero_offset() as u8;
            for w in &self.windows {
                if !w.days.contains(&weekday) {
                    continue;
                }
                let (h, m) = ((w.start_minute / 60) as i8, (w.start_minute % 60) as i8);
                let Ok(start) = day.at(h, m, 0, 0).to_zoned(self.tz.clone()) else {
                    continue;
                };
                let start = start.timestamp();
                let Ok(end) = start.checked_add(i64::from(w.length_minutes).minutes()) else {
                    continue;
                };
                out.push((start, end));
            }
        }
        out
    }

    /// The end of the window `now` is in, if any.
    pub fn window_at(&self, now: Timestamp) -> Option<Timestamp> {
        self.occurrences(now, 8, 0)
            .into_iter()
            .filter(|(s, e)| *s <= now && now < *e)
            .map(|(_, e)| e)
            .max()
    }

    /// When the next window opens after `now`.
    pub fn next_start(&self, now: Timestamp) -> Option<Timestamp> {
        self.occurrences(now, 0, 8)
            .into_iter()
            .map(|(s, _)| s)
            .filter(|s| *s > now)
            .min()
    }

    /// The configured minutes per week.
    pub fn schedule_minutes(&self) -> u64 {
        self.windows
            .iter()
            .map(|w| w.days.len() as u64 * u64::from(w.length_minutes))
            .sum()
    }

    /// `t` in the windows' time zone, for people.
    pub fn local(&self, t: Timestamp) -> String {
        format!(
            "{} ({})",
            t.to_zoned(self.tz.clone()).strftime("%a %Y-%m-%d %H:%M %Z"),
            self.tz_name
        )
    }
}

/// The IANA name `time_zone` stands for (`localtime` is read from
/// `<root>/etc/localtime`, UTC when it is not a link).
pub fn resolve_tz_name(root: &Root, time_zone: &str) -> Result<String> {
    if time_zone != "localtime" {
        return Ok(time_zone.to_string());
    }
    let link = root.path("/etc/localtime");
    match std::fs::read_link(&link) {
        Err(_) => Ok("UTC".to_string()),
        Ok(target) => {
            let t = target.to_string_lossy();
            match t.find("/zoneinfo/") {
                Some(i) if t[..i].ends_with("/usr/share") || t[..i].ends_with("usr/share") => {
                    Ok(t[i + "/zoneinfo/".len()..].to_string())
                }
                _ => Err(Error::Config(
                    "updates.periodic.time_zone: `/etc/localtime` does not link to a location in `/usr/share/zoneinfo`"
                        .into(),
                )),
            }
        }
    }
}

/// The time zone `time_zone` names, from the system's tz database.
pub fn time_zone_named(root: &Root, time_zone: &str) -> Result<TimeZone> {
    let name = resolve_tz_name(root, time_zone)?;
    if name == "UTC" || name == "Etc/UTC" {
        return Ok(TimeZone::UTC);
    }
    jiff::tz::db().get(&name).map_err(|e| {
        Error::Config(format!(
            "updates.periodic.time_zone: failed to get time zone info from config: failed to parse time zone named: {name} ({e})"
        ))
    })
}

/// A FleetLock client, as Zincati talks to the server.
#[derive(Debug, Clone)]
pub struct FleetLockClient {
    base_url: String,
    id: String,
    group: String,
    http: http_client::Client,
}

impl FleetLockClient {
    /// The body Zincati sends: pretty-printed `client_params`.
    pub fn body(id: &str, group: &str) -> String {
        let v = serde_json::json!({"client_params": {"id": id, "group": group}});
        serde_json::to_string_pretty(&v).unwrap_or_default()
    }

    /// `POST <base>/v1/<api>`; Ok on a 2xx answer.
    pub fn call(&self, api: &str) -> Result<(), String> {
        let url = join_url(&self.base_url, &format!("v1/{api}"));
        let req = http_client::Request::new("POST", &url)
            .header("fleet-lock-protocol", "true")
            .body(Self::body(&self.id, &self.group).into_bytes())
            .timeout(FLEET_LOCK_TIMEOUT);
        let resp = self
            .http
            .send(&req)
            .map_err(|e| format!("client-side error: {e}"))?;
        let status = resp.status();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let body = resp.read_to_vec(64 << 10).unwrap_or_default();
        #[derive(serde::Deserialize)]
        struct Reply {
            kind: String,
            value: String,
        }
        Err(match serde_json::from_slice::<Reply>(&body) {
            Ok(r) => format!(
                "server-side error, code {status}: {} ({})",
                crate::graph::clean(&r.value, 512),
                crate::graph::label(&r.kind)
            ),
            Err(_) => format!("server-side error, code {status}: (unknown/generic server error)"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn periodic(tz: &str, days: &[u8], start: u32, len: u32) -> Periodic {
        Periodic::new(
            jiff::tz::db().get(tz).unwrap(),
            tz,
            vec![WindowSpec {
                days: days.to_vec(),
                start_minute: start,
                length_minutes: len,
            }],
        )
    }

    #[test]
    fn windows_cross_midnight_and_the_week_end() {
        // Sunday 23:30 for 60 minutes, UTC: into Monday.
        let p = periodic("UTC", &[6], 23 * 60 + 30, 60);
        assert!(p.window_at(at("2026-12-06T23:29:59Z")).is_none());
        assert!(p.window_at(at("2026-12-06T23:30:00Z")).is_some());
        assert!(p.window_at(at("2026-12-07T00:29:59Z")).is_some());
        assert!(p.window_at(at("2026-12-07T00:30:00Z")).is_none());
        assert_eq!(
            p.next_start(at("2026-12-07T00:30:00Z")),
            Some(at("2026-12-13T23:30:00Z"))
        );
    }

    #[test]
    fn windows_survive_dst_changes() {
        // New York springs forward on Sunday 2026-03-08 at 02:00 (to 03:00).
        // A window at 02:30 (a time that day skips) for 60 minutes starts
        // at 03:30 EDT, moved forward by the gap, and still lasts 60
        // minutes.
        let p = periodic("America/New_York", &[6], 2 * 60 + 30, 60);
        assert!(p.window_at(at("2026-03-08T07:29:59Z")).is_none()); // 03:29:59 EDT
        assert!(p.window_at(at("2026-03-08T07:30:00Z")).is_some()); // 03:30 EDT
        assert!(p.window_at(at("2026-03-08T08:29:59Z")).is_some());
        assert!(p.window_at(at("2026-03-08T08:30:00Z")).is_none());
        // The Sunday before, on standard time, 02:30 EST.
        assert!(p.window_at(at("2026-03-01T07:30:00Z")).is_some());
        assert!(p.window_at(at("2026-03-01T08:30:00Z")).is_none());
        // Falling back on 2026-11-01 at 02:00 EDT (to 01:00 EST): a window
        // at 01:00 for 60 minutes opens once, at the first 01:00 (EDT).
        let p = periodic("America/New_York", &[6], 60, 60);
        assert!(p.window_at(at("2026-11-01T05:00:00Z")).is_some()); // 01:00 EDT
        assert!(p.window_at(at("2026-11-01T05:59:59Z")).is_some());
        assert!(p.window_at(at("2026-11-01T06:00:00Z")).is_none()); // 01:00 EST
        // The week after, on standard time.
        assert_eq!(
            p.next_start(at("2026-11-01T06:00:00Z")),
            Some(at("2026-11-08T06:00:00Z"))
        );
    }

    #[test]
    fn fleet_lock_body_is_zincatis() {
        assert_eq!(
            FleetLockClient::body("abc", "default"),
            "{\n  \"client_params\": {\n    \"id\": \"abc\",\n    \"group\": \"default\"\n  }\n}"
        );
    }
}
