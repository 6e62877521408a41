//! Fleet statistics: distinct nodes per week by version, stream,
//! architecture and platform, as the Fedora CoreOS graph server's reports
//! show them.
//!
//! A node is counted by a salted SHA-256 of its `node_uuid` (the salt is
//! made once and kept in the store), so the UUID itself is never stored and
//! the stored value cannot be checked against a list of known UUIDs without
//! the database. Reports are buffered in memory and written to the `redb`
//! store every few seconds and on shutdown, so a restart loses at most that
//! interval, and the request path never waits for a disk write.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Mutex;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

const NODES: TableDefinition<&[u8], &str> = TableDefinition::new("nodes");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// What a node reported.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Report {
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
pub fn week_of(epoch_secs: i64) -> i64 {
    (epoch_secs.div_euclid(86_400) - 4).div_euclid(7)
}

/// The Monday starting week `w`, as `YYYY-MM-DD`.
pub fn week_start(w: i64) -> String {
    let (y, m, d) = civil_time::civil_from_days(w * 7 + 4);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The store and the reports not yet written.
pub struct Stats {
    db: Option<Database>,
    salt: Vec<u8>,
    pending: Mutex<HashMap<Vec<u8>, Report>>,
    /// Everything known, for reading without the disk.
    counted: Mutex<BTreeMap<Vec<u8>, Report>>,
}

fn encode(r: &Report) -> String {
    format!("{}\t{}\t{}\t{}", r.version, r.stream, r.arch, r.platform)
}

fn decode(s: &str) -> Report {
    let mut p = s.split('\t');
    let mut next = || p.next().unwrap_or("").to_string();
    Report {
        version: next(),
        stream: next(),
        arch: next(),
        platform: next(),
    }
}

impl Stats {
    /// Opens (or creates) the store; `None` keeps statistics in memory only.
    pub fn open(path: Option<&Path>) -> Result<Stats, String> {
        let Some(path) = path else {
            return Ok(Stats {
                db: None,
                salt: random_salt()?,
                pending: Mutex::new(HashMap::new()),
                counted: Mutex::new(BTreeMap::new()),
            });
        };
        let db = Database::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
        // The salt, made once.
        let txn = db.begin_write().map_err(|e| err(&e))?;
        let salt = {
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
        txn.open_table(NODES).map_err(|e| err(&e))?;
        txn.commit().map_err(|e| err(&e))?;
        let mut counted = BTreeMap::new();
        {
            let read = db.begin_read().map_err(|e| err(&e))?;
            let t = read.open_table(NODES).map_err(|e| err(&e))?;
            for item in t.iter().map_err(|e| err(&e))? {
                let (k, v) = item.map_err(|e| err(&e))?;
                counted.insert(k.value().to_vec(), decode(v.value()));
            }
        }
        Ok(Stats {
            db: Some(db),
            salt,
            pending: Mutex::new(HashMap::new()),
            counted: Mutex::new(counted),
        })
    }

    /// Records a node's report for the week of `now`.
    pub fn record(&self, node_uuid: &str, report: Report, now: i64) {
        if node_uuid.is_empty() {
            return;
        }
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(&self.salt);
        ctx.update(node_uuid.as_bytes());
        let digest = ctx.finish();
        let mut key = week_of(now).to_be_bytes().to_vec();
        key.extend_from_slice(&digest.as_ref()[..16]);
        self.counted
            .lock()
            .expect("lock")
            .insert(key.clone(), report.clone());
        if self.db.is_some() {
            self.pending.lock().expect("lock").insert(key, report);
        }
    }

    /// Writes pending reports to the store.
    pub fn flush(&self) -> Result<usize, String> {
        let Some(db) = &self.db else { return Ok(0) };
        let pending: Vec<(Vec<u8>, Report)> = self.pending.lock().expect("lock").drain().collect();
        if pending.is_empty() {
            return Ok(0);
        }
        let txn = db.begin_write().map_err(|e| e.to_string())?;
        {
            let mut t = txn.open_table(NODES).map_err(|e| e.to_string())?;
            for (k, r) in &pending {
                t.insert(k.as_slice(), encode(r).as_str())
                    .map_err(|e| e.to_string())?;
            }
        }
        txn.commit().map_err(|e| e.to_string())?;
        Ok(pending.len())
    }

    /// Forgets (in memory only; the store keeps them) the weeks older
    /// than the last `keep` before the week of `now`, so memory stays
    /// bounded by the fleet's size.
    pub fn forget_old_weeks(&self, now: i64, keep: i64) {
        let oldest = week_of(now) - keep + 1;
        self.counted
            .lock()
            .expect("lock")
            .retain(|k, _| i64::from_be_bytes(k[..8].try_into().expect("8 bytes")) >= oldest);
    }

    /// Distinct nodes per week, by (version, stream, arch, platform).
    pub fn weekly(&self) -> BTreeMap<i64, BTreeMap<Report, u64>> {
        let mut out: BTreeMap<i64, BTreeMap<Report, u64>> = BTreeMap::new();
        for (k, r) in self.counted.lock().expect("lock").iter() {
            let week = i64::from_be_bytes(k[..8].try_into().expect("8 bytes"));
            *out.entry(week).or_default().entry(r.clone()).or_default() += 1;
        }
        out
    }
}

fn random_salt() -> Result<Vec<u8>, String> {
    let mut s = vec![0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut s)
        .map_err(|_| "no randomness".to_string())?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weeks_start_on_monday() {
        // 2026-11-23 (1795392000) is a Monday; Sunday the 29th ends its week.
        assert_eq!(week_start(week_of(1_795_392_000)), "2026-11-23");
        assert_eq!(week_of(1_795_392_000), week_of(1_795_910_400 + 86_399));
        assert_eq!(week_of(1_795_392_000) + 1, week_of(1_795_910_400 + 86_400));
        assert_eq!(week_start(0), "1970-01-05");
    }

    #[test]
    fn counts_distinct_nodes_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stats.redb");
        let r = |v: &str| Report {
            version: v.into(),
            stream: "stable".into(),
            arch: "x86_64".into(),
            platform: "qemu".into(),
        };
        let now = 1_795_910_400;
        {
            let s = Stats::open(Some(&path)).unwrap();
            s.record("aaaa", r("41.1"), now);
            s.record("aaaa", r("41.2"), now); // the same node, updated
            s.record("bbbb", r("41.2"), now);
            s.record("cccc", r("41.1"), now + 7 * 86_400);
            assert_eq!(s.flush().unwrap(), 3);
        }
        let s = Stats::open(Some(&path)).unwrap();
        let weekly = s.weekly();
        let this = &weekly[&week_of(now)];
        assert_eq!(this[&r("41.2")], 2);
        assert!(!this.contains_key(&r("41.1")));
        assert_eq!(weekly[&week_of(now + 7 * 86_400)][&r("41.1")], 1);
        // Memory keeps the recent weeks only.
        s.forget_old_weeks(now + 7 * 86_400, 1);
        assert_eq!(s.weekly().len(), 1);
        // No UUID is stored in clear.
        let raw = std::fs::read(&path).unwrap();
        assert!(!raw.windows(4).any(|w| w == b"aaaa" || w == b"bbbb"));
    }
}
