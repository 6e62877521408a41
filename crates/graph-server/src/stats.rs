//! Fleet statistics: distinct nodes per week, in all and by stream,
//! architecture, platform and version, as the Fedora CoreOS graph server's
//! reports show them.
//!
//! Distinct nodes are counted with HyperLogLog sketches (Apache
//! DataSketches' HLL, `lg_k` 12, 8 bits per register): a sketch is at most
//! about 4 KiB whatever the fleet's size, its count has a relative standard
//! error of 1.04/√4096 ≈ 1.6 % (exact for a few hundred nodes), and
//! sketches merge, so the counts of several servers behind a load
//! balancer add up to the fleet's without counting a node twice
//! ([`merge`]). A sketch is only made for a validated value (the caller
//! turns an unknown version, architecture or platform into [`OTHER`]), so
//! memory is bounded by the metadata and the settings, never by what
//! clients send.
//!
//! A node enters the sketches as the first 16 bytes of SHA-256(salt ‖
//! `node_uuid`): the UUID is never stored, and without the salt a sketch
//! cannot be checked against a list of known UUIDs. The salt is
//! `stats_salt` from the settings (replicas that merge must share it) or,
//! without one, made once and kept in the store.
//!
//! The store (`redb`) keeps one record per (week, dimension, stream, name)
//! with a typed key and the sketch's DataSketches image as the value.
//! Sketches are updated in memory on the request path and the changed ones
//! written every few seconds and at shutdown, so a restart loses at most
//! that interval and the request path never waits for a disk write.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use datasketches::hash::value::raw_bytes;
use datasketches::hll::{Coupon, HllSketch, HllType, HllUnion};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableHandle};

use crate::locks::lock;

/// log2 of the number of registers of a sketch.
pub(crate) const LG_K: u8 = 12;

/// The relative standard error of a count: 1.04/√(2^[`LG_K`]).
pub(crate) const RELATIVE_STANDARD_ERROR: f64 = 1.04 / 64.0;

/// What an unknown or invalid value is counted as.
pub const OTHER: &str = "other";

/// Longest name a sketch is made for (versions, platforms, streams).
const MAX_NAME: usize = 64;

/// (week, dimension, stream, name) → DataSketches HLL image.
const SKETCHES: TableDefinition<(i64, u8, &str, &str), &[u8]> = TableDefinition::new("sketches");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// The store of earlier versions: (week, salted hash) → tab-separated
/// text; migrated into sketches, then deleted.
const LEGACY_NODES: TableDefinition<&[u8], &str> = TableDefinition::new("nodes");

/// What a sketch counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Dim {
    /// Every node.
    All,
    /// Nodes of a stream.
    Stream,
    /// Nodes of an architecture.
    Arch,
    /// Nodes on a platform.
    Platform,
    /// Nodes on a version of a stream.
    Version,
}

const DIMS: [Dim; 5] = [
    Dim::All,
    Dim::Stream,
    Dim::Arch,
    Dim::Platform,
    Dim::Version,
];

impl Dim {
    fn code(self) -> u8 {
        self as u8
    }

    fn from_code(c: u8) -> Option<Dim> {
        DIMS.get(usize::from(c)).copied()
    }

    /// Its name in `/v1/stats`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Dim::All => "all",
            Dim::Stream => "stream",
            Dim::Arch => "basearch",
            Dim::Platform => "platform",
            Dim::Version => "version",
        }
    }

    fn from_name(s: &str) -> Option<Dim> {
        DIMS.into_iter().find(|d| d.name() == s)
    }
}

/// What a node reported, validated by the caller (unknown values are
/// [`OTHER`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Report {
    /// `os_version`.
    pub version: String,
    /// `stream`.
    pub stream: String,
    /// `basearch`.
    pub arch: String,
    /// `platform`.
    pub platform: String,
}

/// Weeks since the Monday 1970-01-05 (ISO weeks).
pub(crate) fn week_of(epoch_secs: i64) -> i64 {
    (epoch_secs.div_euclid(86_400) - 4).div_euclid(7)
}

/// The Monday starting week `w`, as `YYYY-MM-DD`.
pub(crate) fn week_start(w: i64) -> String {
    let (y, m, d) = civil_time::civil_from_days(w * 7 + 4);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The week starting on `YYYY-MM-DD` (a Monday).
fn week_from_start(s: &str) -> Option<i64> {
    let mut p = s.splitn(3, '-');
    let y: i64 = p.next()?.parse().ok()?;
    let m: u32 = p.next()?.parse().ok()?;
    let d: u32 = p.next()?.parse().ok()?;
    let days = civil_time::days_from_civil(y, m, d);
    ((days - 4).rem_euclid(7) == 0).then(|| (days - 4).div_euclid(7))
}

/// Why statistics cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// The store failed.
    #[error("{path}: {message}")]
    Store {
        /// The store.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// A stored or exported sketch is not a sketch.
    #[error("{place}: week {week}, {dim} {name:?}: not a sketch: {message}")]
    Sketch {
        /// The store or document.
        place: String,
        /// The week (`YYYY-MM-DD`).
        week: String,
        /// The dimension.
        dim: &'static str,
        /// The stream and name.
        name: String,
        /// Why.
        message: String,
    },
    /// An exported document is not what `/v1/stats?sketches=true` writes.
    #[error("{place}: {message}")]
    Document {
        /// The document.
        place: String,
        /// What is wrong.
        message: String,
    },
    /// No randomness for the salt.
    #[error("no randomness for the statistics salt")]
    Random,
}

struct Entry {
    sketch: HllSketch,
    dirty: bool,
}

impl Entry {
    fn new() -> Entry {
        Entry {
            sketch: HllSketch::new(LG_K, HllType::Hll8).expect("LG_K is in range"),
            dirty: false,
        }
    }
}

/// One week's sketches: per dimension, stream (or "") → name (or "").
#[derive(Default)]
struct Week {
    dims: [BTreeMap<String, BTreeMap<String, Entry>>; 5],
}

impl Week {
    fn entry(&mut self, dim: Dim, group: &str, name: &str) -> &mut Entry {
        let groups = &mut self.dims[usize::from(dim.code())];
        if !groups.contains_key(group) {
            groups.insert(group.to_string(), BTreeMap::new());
        }
        let names = groups.get_mut(group).expect("inserted");
        if !names.contains_key(name) {
            names.insert(name.to_string(), Entry::new());
        }
        names.get_mut(name).expect("inserted")
    }

    fn dirty(&self) -> bool {
        self.dims
            .iter()
            .flat_map(|g| g.values())
            .flat_map(|n| n.values())
            .any(|e| e.dirty)
    }
}

/// One week's counts (estimates, rounded).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct WeekSummary {
    /// Weeks since 1970-01-05 ([`week_of`]).
    #[serde(skip)]
    pub week: i64,
    /// Distinct nodes.
    pub nodes: u64,
    /// By stream.
    pub by_stream: BTreeMap<String, u64>,
    /// By architecture.
    pub by_basearch: BTreeMap<String, u64>,
    /// By platform.
    pub by_platform: BTreeMap<String, u64>,
    /// By stream, then version.
    pub by_version: BTreeMap<String, BTreeMap<String, u64>>,
}

impl WeekSummary {
    fn add(&mut self, dim: Dim, group: &str, name: &str, n: u64) {
        match dim {
            Dim::All => self.nodes = n,
            Dim::Stream => {
                self.by_stream.insert(group.to_string(), n);
            }
            Dim::Arch => {
                self.by_basearch.insert(name.to_string(), n);
            }
            Dim::Platform => {
                self.by_platform.insert(name.to_string(), n);
            }
            Dim::Version => {
                self.by_version
                    .entry(group.to_string())
                    .or_default()
                    .insert(name.to_string(), n);
            }
        }
    }
}

fn count(s: &HllSketch) -> u64 {
    let e = s.estimate();
    if e.is_finite() && e > 0.0 {
        e.round() as u64
    } else {
        0
    }
}

/// A name as kept: [`OTHER`] unless short and printable.
fn bounded(s: &str) -> &str {
    if !s.is_empty() && s.len() <= MAX_NAME && s.bytes().all(|c| c.is_ascii_graphic()) {
        s
    } else {
        OTHER
    }
}

/// The store and the sketches.
pub struct Stats {
    db: Option<(Database, PathBuf)>,
    salt: Vec<u8>,
    weeks: Mutex<BTreeMap<i64, Week>>,
    /// One flush at a time (the periodic one and the one at shutdown).
    flushing: Mutex<()>,
}

impl Stats {
    /// Opens (or creates) the store; `None` keeps statistics in memory
    /// only. `salt` replaces the store's own (replicas that merge share
    /// one). A store that cannot be read is an error, never taken as
    /// empty.
    pub fn open(path: Option<&Path>, salt: Option<&str>) -> Result<Stats, StatsError> {
        Stats::open_since(path, salt, i64::MIN)
    }

    /// [`Stats::open`], reading only the weeks from `oldest_week` on into
    /// memory (the store keeps the others).
    pub(crate) fn open_since(
        path: Option<&Path>,
        salt: Option<&str>,
        oldest_week: i64,
    ) -> Result<Stats, StatsError> {
        let Some(path) = path else {
            return Ok(Stats {
                db: None,
                salt: match salt {
                    Some(s) => s.as_bytes().to_vec(),
                    None => random_salt()?,
                },
                weeks: Mutex::new(BTreeMap::new()),
                flushing: Mutex::new(()),
            });
        };
        let err = |e: &dyn std::fmt::Display| StatsError::Store {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        let db = Database::create(path).map_err(|e| err(&e))?;
        let txn = db.begin_write().map_err(|e| err(&e))?;
        let stored_salt = {
            let mut meta = txn.open_table(META).map_err(|e| err(&e))?;
            let existing = meta
                .get("salt")
                .map_err(|e| err(&e))?
                .map(|v| v.value().to_vec());
            match existing {
                Some(s) => s,
                None => {
                    let s = random_salt()?;
                    meta.insert("salt", s.as_slice()).map_err(|e| err(&e))?;
                    s
                }
            }
        };
        txn.open_table(SKETCHES).map_err(|e| err(&e))?;
        txn.commit().map_err(|e| err(&e))?;
        let stats = Stats {
            db: None,
            salt: salt.map_or(stored_salt.clone(), |s| s.as_bytes().to_vec()),
            weeks: Mutex::new(BTreeMap::new()),
            flushing: Mutex::new(()),
        };
        {
            let read = db.begin_read().map_err(|e| err(&e))?;
            let t = read.open_table(SKETCHES).map_err(|e| err(&e))?;
            let mut weeks = lock(&stats.weeks);
            for item in t.range((oldest_week, 0u8, "", "")..).map_err(|e| err(&e))? {
                let (k, v) = item.map_err(|e| err(&e))?;
                let (week, code, group, name) = k.value();
                let bad = |message: String| StatsError::Sketch {
                    place: path.display().to_string(),
                    week: week_start(week),
                    dim: Dim::from_code(code).map_or("?", Dim::name),
                    name: format!("{group}/{name}"),
                    message,
                };
                let dim = Dim::from_code(code).ok_or_else(|| bad(format!("dimension {code}")))?;
                let sketch = HllSketch::deserialize(v.value()).map_err(|e| bad(e.to_string()))?;
                weeks
                    .entry(week)
                    .or_default()
                    .entry(dim, group, name)
                    .sketch = sketch;
            }
        }
        let stats = Stats {
            db: Some((db, path.to_path_buf())),
            ..stats
        };
        stats.migrate_legacy(&stored_salt)?;
        Ok(stats)
    }

    /// Moves the records of earlier versions (one per node and week,
    /// tab-separated text) into sketches and deletes them, in one
    /// transaction. Their versions cannot be checked against metadata
    /// here; malformed fields count as [`OTHER`].
    fn migrate_legacy(&self, stored_salt: &[u8]) -> Result<(), StatsError> {
        let Some((db, path)) = &self.db else {
            return Ok(());
        };
        let err = |e: &dyn std::fmt::Display| StatsError::Store {
            path: path.clone(),
            message: e.to_string(),
        };
        let read = db.begin_read().map_err(|e| err(&e))?;
        let exists = read
            .list_tables()
            .map_err(|e| err(&e))?
            .any(|t| t.name() == LEGACY_NODES.name());
        drop(read);
        if !exists {
            return Ok(());
        }
        let txn = db.begin_write().map_err(|e| err(&e))?;
        let mut migrated = 0usize;
        {
            let t = txn.open_table(LEGACY_NODES).map_err(|e| err(&e))?;
            let mut weeks = lock(&self.weeks);
            for item in t.iter().map_err(|e| err(&e))? {
                let (k, v) = item.map_err(|e| err(&e))?;
                let key = k.value();
                let Some(week) = key.get(..8).and_then(|b| b.try_into().ok()) else {
                    continue;
                };
                let week = i64::from_be_bytes(week);
                let fields: Vec<&str> = v.value().split('\t').collect();
                let report = if fields.len() == 4 {
                    Report {
                        version: bounded(fields[0]).to_string(),
                        stream: bounded(fields[1]).to_string(),
                        arch: bounded(fields[2]).to_string(),
                        platform: bounded(fields[3]).to_string(),
                    }
                } else {
                    Report {
                        version: OTHER.into(),
                        stream: OTHER.into(),
                        arch: OTHER.into(),
                        platform: OTHER.into(),
                    }
                };
                // The same item a node gets now when the salt is the
                // store's: SHA-256(salt ‖ uuid), first 16 bytes.
                let coupon = Coupon::from_value(raw_bytes::from_slice(&key[8..]));
                update(weeks.entry(week).or_default(), coupon, &report);
                migrated += 1;
            }
        }
        txn.delete_table(LEGACY_NODES).map_err(|e| err(&e))?;
        txn.commit().map_err(|e| err(&e))?;
        tracing::info!(
            records = migrated,
            salt_len = stored_salt.len(),
            "fleet statistics of an earlier version moved into sketches"
        );
        self.flush()?;
        Ok(())
    }

    fn coupon(&self, node_uuid: &str) -> Coupon {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(&self.salt);
        ctx.update(node_uuid.as_bytes());
        let digest = ctx.finish();
        Coupon::from_value(raw_bytes::from_slice(&digest.as_ref()[..16]))
    }

    /// Counts a node's report for the week of `now`. The report's values
    /// should be validated; any that is long or unprintable counts as
    /// [`OTHER`] all the same.
    pub(crate) fn record(&self, node_uuid: &str, report: &Report, now: i64) {
        if node_uuid.is_empty() {
            return;
        }
        let coupon = self.coupon(node_uuid);
        let mut weeks = lock(&self.weeks);
        update(weeks.entry(week_of(now)).or_default(), coupon, report);
    }

    /// Writes the sketches changed since the last flush; returns how many.
    pub(crate) fn flush(&self) -> Result<usize, StatsError> {
        let Some((db, path)) = &self.db else {
            return Ok(0);
        };
        let _one = lock(&self.flushing);
        let mut changed: Vec<(i64, Dim, String, String, Vec<u8>)> = Vec::new();
        {
            let mut weeks = lock(&self.weeks);
            for (week, w) in weeks.iter_mut() {
                for dim in DIMS {
                    for (group, names) in w.dims[usize::from(dim.code())].iter_mut() {
                        for (name, e) in names.iter_mut().filter(|(_, e)| e.dirty) {
                            changed.push((
                                *week,
                                dim,
                                group.clone(),
                                name.clone(),
                                e.sketch.serialize(),
                            ));
                            e.dirty = false;
                        }
                    }
                }
            }
        }
        if changed.is_empty() {
            return Ok(0);
        }
        let write = || -> Result<(), redb::Error> {
            let txn = db.begin_write()?;
            {
                let mut t = txn.open_table(SKETCHES)?;
                for (week, dim, group, name, bytes) in &changed {
                    t.insert(
                        (*week, dim.code(), group.as_str(), name.as_str()),
                        bytes.as_slice(),
                    )?;
                }
            }
            txn.commit()?;
            Ok(())
        };
        if let Err(e) = write() {
            // Written next time.
            let mut weeks = lock(&self.weeks);
            for (week, dim, group, name, _) in &changed {
                weeks
                    .entry(*week)
                    .or_default()
                    .entry(*dim, group, name)
                    .dirty = true;
            }
            return Err(StatsError::Store {
                path: path.clone(),
                message: e.to_string(),
            });
        }
        Ok(changed.len())
    }

    /// Forgets (in memory only; the store keeps them) the weeks older
    /// than the last `keep` before the week of `now` once written, so
    /// memory holds a bounded number of weeks.
    pub(crate) fn forget_old_weeks(&self, now: i64, keep: i64) {
        let oldest = week_of(now) - keep + 1;
        let persistent = self.db.is_some();
        lock(&self.weeks).retain(|w, week| *w >= oldest || (persistent && week.dirty()));
    }

    /// The counts of every week in memory, oldest first.
    pub fn summary(&self) -> Vec<WeekSummary> {
        let weeks = lock(&self.weeks);
        weeks
            .iter()
            .map(|(week, w)| {
                let mut s = WeekSummary {
                    week: *week,
                    ..Default::default()
                };
                for dim in DIMS {
                    for (group, names) in &w.dims[usize::from(dim.code())] {
                        for (name, e) in names {
                            s.add(dim, group, name, count(&e.sketch));
                        }
                    }
                }
                s
            })
            .collect()
    }

    /// `/v1/stats`: the counts per week, with each sketch's DataSketches
    /// image in hex when `sketches` (what [`merge`] reads).
    pub(crate) fn to_json(&self, sketches: bool) -> serde_json::Value {
        let summary = self.summary();
        let images: BTreeMap<i64, Vec<serde_json::Value>> = if sketches {
            let weeks = lock(&self.weeks);
            weeks
                .iter()
                .map(|(week, w)| (*week, export_week(w)))
                .collect()
        } else {
            BTreeMap::new()
        };
        document(summary, images)
    }
}

fn update(week: &mut Week, coupon: Coupon, r: &Report) {
    let (stream, arch, platform, version) = (
        bounded(&r.stream),
        bounded(&r.arch),
        bounded(&r.platform),
        bounded(&r.version),
    );
    for (dim, group, name) in [
        (Dim::All, "", ""),
        (Dim::Stream, stream, ""),
        (Dim::Arch, "", arch),
        (Dim::Platform, "", platform),
        (Dim::Version, stream, version),
    ] {
        let e = week.entry(dim, group, name);
        e.sketch.update_with_coupon(coupon);
        e.dirty = true;
    }
}

fn export_week(w: &Week) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for dim in DIMS {
        for (group, names) in &w.dims[usize::from(dim.code())] {
            for (name, e) in names {
                out.push(serde_json::json!({
                    "dimension": dim.name(), "stream": group, "name": name,
                    "hll": util::hex(&e.sketch.serialize()),
                }));
            }
        }
    }
    out
}

fn document(
    summary: Vec<WeekSummary>,
    mut images: BTreeMap<i64, Vec<serde_json::Value>>,
) -> serde_json::Value {
    let weeks: Vec<serde_json::Value> = summary
        .into_iter()
        .map(|s| {
            let mut v = serde_json::to_value(&s).expect("serializes");
            v["week"] = week_start(s.week).into();
            if let Some(sk) = images.remove(&s.week) {
                v["sketches"] = sk.into();
            }
            v
        })
        .collect();
    serde_json::json!({
        "weeks": weeks,
        "estimator": {
            "sketch": "Apache DataSketches HLL_8",
            "lg_k": LG_K,
            "relative_standard_error": RELATIVE_STANDARD_ERROR,
        },
    })
}

/// Merges documents of `/v1/stats?sketches=true` from several servers
/// (named by `places` in errors) into one: each week's sketches are
/// unioned, so a node that asked several servers counts once (when they
/// share `stats_salt`).
pub fn merge(docs: &[(String, serde_json::Value)]) -> Result<serde_json::Value, StatsError> {
    let mut unions: BTreeMap<i64, BTreeMap<(Dim, String, String), HllUnion>> = BTreeMap::new();
    for (place, doc) in docs {
        let bad = |message: String| StatsError::Document {
            place: place.clone(),
            message,
        };
        let weeks = doc["weeks"]
            .as_array()
            .ok_or_else(|| bad("no \"weeks\" array".into()))?;
        for (i, w) in weeks.iter().enumerate() {
            let start = w["week"].as_str().unwrap_or("");
            let week = week_from_start(start).ok_or_else(|| {
                bad(format!(
                    "weeks[{i}].week {start:?} is not a Monday (YYYY-MM-DD)"
                ))
            })?;
            let sketches = w["sketches"].as_array().ok_or_else(|| {
                bad(format!(
                    "weeks[{i}] has no sketches (fetch /v1/stats?sketches=true)"
                ))
            })?;
            for (j, s) in sketches.iter().enumerate() {
                let field = |k: &str| {
                    s[k].as_str()
                        .ok_or_else(|| bad(format!("weeks[{i}].sketches[{j}].{k} is not a string")))
                };
                let dim_name = field("dimension")?;
                let dim = Dim::from_name(dim_name).ok_or_else(|| {
                    bad(format!("weeks[{i}].sketches[{j}].dimension {dim_name:?}"))
                })?;
                let (group, name) = (field("stream")?, field("name")?);
                let sketch_err = |message: String| StatsError::Sketch {
                    place: place.clone(),
                    week: start.to_string(),
                    dim: dim.name(),
                    name: format!("{group}/{name}"),
                    message,
                };
                let bytes =
                    util::unhex(field("hll")?).ok_or_else(|| sketch_err("not hex".into()))?;
                let sketch =
                    HllSketch::deserialize(&bytes).map_err(|e| sketch_err(e.to_string()))?;
                unions
                    .entry(week)
                    .or_default()
                    .entry((dim, group.to_string(), name.to_string()))
                    .or_insert_with(|| HllUnion::new(LG_K).expect("LG_K is in range"))
                    .update(&sketch);
            }
        }
    }
    let mut summary = Vec::new();
    let mut images = BTreeMap::new();
    for (week, keys) in unions {
        let mut s = WeekSummary {
            week,
            ..Default::default()
        };
        let mut out = Vec::new();
        for ((dim, group, name), u) in keys {
            let sketch = u.to_sketch(HllType::Hll8);
            s.add(dim, &group, &name, count(&sketch));
            out.push(serde_json::json!({
                "dimension": dim.name(), "stream": group, "name": name,
                "hll": util::hex(&sketch.serialize()),
            }));
        }
        summary.push(s);
        images.insert(week, out);
    }
    Ok(document(summary, images))
}

fn random_salt() -> Result<Vec<u8>, StatsError> {
    let mut s = vec![0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut s)
        .map_err(|_| StatsError::Random)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(v: &str) -> Report {
        Report {
            version: v.into(),
            stream: "stable".into(),
            arch: "x86_64".into(),
            platform: "qemu".into(),
        }
    }

    #[test]
    fn weeks_start_on_monday() {
        // 2026-11-23 (1795392000) is a Monday; Sunday the 29th ends its week.
        assert_eq!(week_start(week_of(1_795_392_000)), "2026-11-23");
        assert_eq!(week_of(1_795_392_000), week_of(1_795_910_400 + 86_399));
        assert_eq!(week_of(1_795_392_000) + 1, week_of(1_795_910_400 + 86_400));
        assert_eq!(week_start(0), "1970-01-05");
        assert_eq!(week_from_start("2026-11-23"), Some(week_of(1_795_392_000)));
        assert_eq!(week_from_start("2026-11-24"), None);
    }

    #[test]
    fn counts_distinct_nodes_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stats.redb");
        let now = 1_795_910_400;
        {
            let s = Stats::open(Some(&path), None).unwrap();
            s.record("aaaa", &r("41.1"), now);
            s.record("aaaa", &r("41.2"), now); // the same node, updated
            s.record("bbbb", &r("41.2"), now);
            s.record("cccc", &r("41.1"), now + 7 * 86_400);
            assert!(s.flush().unwrap() > 0);
            assert_eq!(s.flush().unwrap(), 0, "nothing changed since");
        }
        // Only the weeks asked for are read.
        let later = Stats::open_since(Some(&path), None, week_of(now) + 1).unwrap();
        assert_eq!(later.summary().len(), 1);
        drop(later);
        let s = Stats::open(Some(&path), None).unwrap();
        let sum = s.summary();
        assert_eq!(sum.len(), 2);
        assert_eq!(sum[0].nodes, 2);
        assert_eq!(sum[0].by_version["stable"]["41.2"], 2);
        // A node that moved during the week counts in both versions.
        assert_eq!(sum[0].by_version["stable"]["41.1"], 1);
        assert_eq!(sum[0].by_platform["qemu"], 2);
        assert_eq!(sum[1].by_version["stable"]["41.1"], 1);
        // The salt is kept: the same node is the same after a restart.
        s.record("aaaa", &r("41.2"), now);
        assert_eq!(s.summary()[0].nodes, 2);
        // Memory keeps the recent weeks only, once written.
        s.forget_old_weeks(now + 7 * 86_400, 1);
        assert_eq!(s.summary().len(), 2, "not written yet");
        s.flush().unwrap();
        s.forget_old_weeks(now + 7 * 86_400, 1);
        assert_eq!(s.summary().len(), 1);
        // No UUID is stored in clear.
        let raw = std::fs::read(&path).unwrap();
        assert!(!raw.windows(4).any(|w| w == b"aaaa" || w == b"bbbb"));
    }

    #[test]
    fn values_are_stored_typed_not_as_text() {
        // A tab (or anything unprintable, or a long value) was once stored
        // in tab-separated text and read back as extra fields.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stats.redb");
        let now = 1_795_910_400;
        {
            let s = Stats::open(Some(&path), None).unwrap();
            s.record("aaaa", &r("evil\tinjected\tstream"), now);
            let mut long = r(&"9".repeat(60_000));
            long.platform = "metal\tx".into();
            s.record("bbbb", &long, now);
            s.flush().unwrap();
        }
        let s = Stats::open(Some(&path), None).unwrap();
        let sum = &s.summary()[0];
        assert_eq!(sum.by_stream.keys().collect::<Vec<_>>(), vec!["stable"]);
        assert_eq!(
            sum.by_version["stable"].keys().collect::<Vec<_>>(),
            vec![OTHER]
        );
        assert_eq!(sum.by_version["stable"][OTHER], 2);
        assert_eq!(sum.by_platform[OTHER], 1);
        assert!(std::fs::metadata(&path).unwrap().len() < 2 << 20);
    }

    #[test]
    fn a_million_nodes_in_a_few_kilobytes() {
        let s = Stats::open(None, Some("salt")).unwrap();
        let now = 1_795_910_400;
        for i in 0..200_000u32 {
            s.record(
                &format!("{i:032x}"),
                &r(if i % 2 == 0 { "41.1" } else { "41.2" }),
                now,
            );
        }
        let sum = &s.summary()[0];
        let err = (sum.nodes as f64 - 200_000.0).abs() / 200_000.0;
        assert!(err < 4.0 * RELATIVE_STANDARD_ERROR, "{} nodes", sum.nodes);
        let doc = s.to_json(true);
        // 5 dimensions plus one more version: six sketches of ~4 KiB.
        let sketches = doc["weeks"][0]["sketches"].as_array().unwrap();
        assert_eq!(sketches.len(), 6);
        assert!(
            doc.to_string().len() < 6 * 2 * 4200 + 2000,
            "{}",
            doc.to_string().len()
        );
    }

    #[test]
    fn sketches_of_replicas_merge() {
        let now = 1_795_910_400;
        let (a, b) = (
            Stats::open(None, Some("fleet")).unwrap(),
            Stats::open(None, Some("fleet")).unwrap(),
        );
        for i in 0..3000u32 {
            // Nodes 1000..2000 ask both servers.
            if i < 2000 {
                a.record(&format!("{i:032x}"), &r("41.1"), now);
            }
            if i >= 1000 {
                b.record(&format!("{i:032x}"), &r("41.2"), now);
            }
        }
        let merged =
            merge(&[("a".into(), a.to_json(true)), ("b".into(), b.to_json(true))]).unwrap();
        let nodes = merged["weeks"][0]["nodes"].as_u64().unwrap();
        assert!((2900..=3100).contains(&nodes), "{nodes}");
        let v = &merged["weeks"][0]["by_version"]["stable"];
        assert!((1950..=2050).contains(&v["41.1"].as_u64().unwrap()), "{v}");
        // A merged document merges again.
        let again = merge(&[("m".into(), merged.clone())]).unwrap();
        assert_eq!(again["weeks"][0]["nodes"], merged["weeks"][0]["nodes"]);
        // Errors say where.
        let e = merge(&[("x.json".into(), a.to_json(false))]).unwrap_err();
        assert!(
            e.to_string().contains("x.json: weeks[0] has no sketches"),
            "{e}"
        );
    }

    #[test]
    fn the_legacy_store_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stats.redb");
        let now = 1_795_910_400;
        let week = week_of(now);
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut meta = txn.open_table(META).unwrap();
                meta.insert("salt", b"0123456789abcdef".as_slice()).unwrap();
                let mut t = txn.open_table(LEGACY_NODES).unwrap();
                for (i, v) in [
                    "41.1\tstable\tx86_64\tqemu",
                    "evil\tinjected\tstream\tx86_64\tqemu",
                ]
                .iter()
                .enumerate()
                {
                    let mut k = week.to_be_bytes().to_vec();
                    k.extend_from_slice(&[i as u8; 16]);
                    t.insert(k.as_slice(), *v).unwrap();
                }
            }
            txn.commit().unwrap();
        }
        let s = Stats::open(Some(&path), None).unwrap();
        let sum = &s.summary()[0];
        assert_eq!(sum.nodes, 2);
        assert_eq!(sum.by_version["stable"]["41.1"], 1);
        assert_eq!(sum.by_version[OTHER][OTHER], 1);
        drop(s);
        // Gone from the old table, kept in the new one.
        let s = Stats::open(Some(&path), None).unwrap();
        assert_eq!(s.summary()[0].nodes, 2);
    }

    #[test]
    fn a_poisoned_lock_does_not_stop_the_statistics() {
        let s = std::sync::Arc::new(Stats::open(None, Some("x")).unwrap());
        let s2 = s.clone();
        let _ = std::thread::spawn(move || {
            let _held = s2.weeks.lock();
            panic!("a handler panics holding the lock");
        })
        .join();
        assert!(s.weeks.is_poisoned());
        s.record("aaaa", &r("41.1"), 0);
        assert_eq!(s.summary()[0].nodes, 1);
    }
}
