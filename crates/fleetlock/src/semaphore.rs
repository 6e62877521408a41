//! A group's counting semaphore, stored as airlock stores it, and what one
//! request does to it. Both backends run the same [`apply`]: the etcd one
//! inside a compare-and-swap, the embedded one inside a redb transaction.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::Group;

/// The stored value: airlock's `{"total_slots":N,"holders":[...]}`
/// (holders sorted), plus oxcore's lease times under a key airlock ignores
/// (airlock drops it when it writes; the holders it keeps then start a new
/// lease when oxcore next sees them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Semaphore {
    /// Slots: holders beyond it are refused.
    #[serde(default)]
    pub total_slots: u64,
    /// Who holds a slot (ids), sorted.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub holders: Vec<String>,
    /// Per holder, when it took its slot and last renewed it.
    #[serde(
        default,
        rename = "oxcore_leases",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub leases: BTreeMap<String, Lease>,
}

/// When a holder took its slot and last renewed it (epoch seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Lease {
    /// Taken at.
    pub since: u64,
    /// Last renewed at (a repeated pre-reboot).
    pub renewed: u64,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

impl Semaphore {
    /// A new semaphore with `slots` and no holder.
    pub fn new(slots: u64) -> Semaphore {
        Semaphore {
            total_slots: slots,
            ..Semaphore::default()
        }
    }

    /// Reads a stored value.
    pub fn from_json(bytes: &[u8]) -> Result<Semaphore, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// The value to store (compact, as airlock writes it).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a semaphore serializes")
    }

    fn holds(&self, id: &str) -> bool {
        self.holders.iter().any(|h| h == id)
    }
}

/// What a request asks of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `pre-reboot`: take a slot (or keep, and renew, the one held).
    Lock(String),
    /// `steady-state` or a manual release: give the slot back (a no-op
    /// when not held).
    Unlock(String),
    /// Read only (status, the periodic sweep); expiries and a changed slot
    /// count are still written.
    Read,
}

/// Why a lock was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LockError {
    /// Every slot is held (airlock's words).
    #[error("all {0} semaphore slots currently locked")]
    Full(u64),
}

/// What [`apply`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The request's answer.
    pub result: Result<(), LockError>,
    /// Holders whose lease ran out, removed.
    pub expired: Vec<String>,
    /// The semaphore after the request.
    pub semaphore: Semaphore,
}

/// Applies `request` to `sem` (the group's stored semaphore) under the
/// group's configuration, at `now` (epoch seconds). Returns what happened
/// and whether `sem` changed (and must be written).
///
/// Before the request itself: holders whose lease ran out lose their slot,
/// a slot count changed in the configuration replaces the stored one (the
/// holders stay, even beyond the new count: no new holder is let in until
/// enough have left), and lease times are kept for exactly the holders.
pub fn apply(sem: &mut Semaphore, group: &Group, request: &Request, now: u64) -> (Applied, bool) {
    let before = sem.clone();
    let mut expired = Vec::new();
    if let Some(lease) = group.lease_seconds {
        for h in &sem.holders {
            let l = sem.leases.get(h).copied().unwrap_or(Lease {
                since: now,
                renewed: now,
            });
            if now.saturating_sub(l.renewed) > lease {
                expired.push(h.clone());
            }
        }
        sem.holders.retain(|h| !expired.contains(h));
        for h in &sem.holders {
            sem.leases.entry(h.clone()).or_insert(Lease {
                since: now,
                renewed: now,
            });
        }
    }
    let holders = &sem.holders;
    sem.leases.retain(|id, _| holders.contains(id));
    if group.lease_seconds.is_none() {
        sem.leases.clear();
    }
    sem.total_slots = group.slots;
    let result = match request {
        Request::Lock(id) if sem.holds(id) => {
            if let Some(l) = sem.leases.get_mut(id) {
                l.renewed = now;
            }
            Ok(())
        }
        Request::Lock(id) => {
            if sem.holders.len() as u64 >= sem.total_slots {
                Err(LockError::Full(sem.total_slots))
            } else {
                let at = sem.holders.binary_search(id).unwrap_or_else(|i| i);
                sem.holders.insert(at, id.clone());
                if group.lease_seconds.is_some() {
                    sem.leases.insert(
                        id.clone(),
                        Lease {
                            since: now,
                            renewed: now,
                        },
                    );
                }
                Ok(())
            }
        }
        Request::Unlock(id) => {
            sem.holders.retain(|h| h != id);
            sem.leases.remove(id);
            Ok(())
        }
        Request::Read => Ok(()),
    };
    // A holder list airlock or a person left unsorted is sorted on write.
    sem.holders.sort();
    sem.holders.dedup();
    let changed = *sem != before;
    (
        Applied {
            result,
            expired,
            semaphore: sem.clone(),
        },
        changed,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(slots: u64, lease: Option<u64>) -> Group {
        Group {
            slots,
            lease_seconds: lease,
        }
    }

    #[test]
    fn stored_as_airlock_stores_it() {
        let mut s = Semaphore::new(2);
        assert_eq!(s.to_json(), br#"{"total_slots":2,"holders":[]}"#);
        let g = group(2, None);
        apply(&mut s, &g, &Request::Lock("b".into()), 0);
        apply(&mut s, &g, &Request::Lock("a".into()), 0);
        assert_eq!(s.to_json(), br#"{"total_slots":2,"holders":["a","b"]}"#);
        // airlock's value read back, unknown fields ignored, null holders.
        let read = Semaphore::from_json(br#"{"total_slots":3,"holders":null,"x":1}"#).unwrap();
        assert_eq!(read, Semaphore::new(3));
    }

    #[test]
    fn locks_are_recursive_and_counted() {
        let g = group(2, None);
        let mut s = Semaphore::new(2);
        let lock = |s: &mut Semaphore, id: &str| apply(s, &g, &Request::Lock(id.into()), 0);
        assert_eq!(lock(&mut s, "a").0.result, Ok(()));
        let (again, changed) = lock(&mut s, "a");
        assert_eq!((again.result, changed), (Ok(()), false));
        assert_eq!(lock(&mut s, "b").0.result, Ok(()));
        assert_eq!(lock(&mut s, "c").0.result, Err(LockError::Full(2)));
        assert_eq!(
            LockError::Full(2).to_string(),
            "all 2 semaphore slots currently locked"
        );
        let (gone, changed) = apply(&mut s, &g, &Request::Unlock("c".into()), 0);
        assert_eq!((gone.result, changed), (Ok(()), false));
        apply(&mut s, &g, &Request::Unlock("a".into()), 0);
        assert_eq!(lock(&mut s, "c").0.result, Ok(()));
        assert_eq!(s.holders, ["b", "c"]);
    }

    #[test]
    fn a_changed_slot_count_keeps_the_holders() {
        let mut s = Semaphore::new(3);
        let three = group(3, None);
        for id in ["a", "b", "c"] {
            apply(&mut s, &three, &Request::Lock(id.into()), 0);
        }
        let one = group(1, None);
        let (a, changed) = apply(&mut s, &one, &Request::Lock("d".into()), 0);
        assert!(changed);
        assert_eq!(a.result, Err(LockError::Full(1)));
        assert_eq!((s.total_slots, s.holders.len()), (1, 3));
        apply(&mut s, &one, &Request::Unlock("a".into()), 0);
        apply(&mut s, &one, &Request::Unlock("b".into()), 0);
        assert_eq!(
            apply(&mut s, &one, &Request::Lock("d".into()), 0).0.result,
            Err(LockError::Full(1))
        );
        apply(&mut s, &one, &Request::Unlock("c".into()), 0);
        assert_eq!(
            apply(&mut s, &one, &Request::Lock("d".into()), 0).0.result,
            Ok(())
        );
    }

    #[test]
    fn leases_run_out_unless_renewed() {
        let g = group(1, Some(100));
        let mut s = Semaphore::new(1);
        apply(&mut s, &g, &Request::Lock("a".into()), 1000);
        assert_eq!(
            s.leases["a"],
            Lease {
                since: 1000,
                renewed: 1000
            }
        );
        // Renewed at 1090: still held at 1150.
        apply(&mut s, &g, &Request::Lock("a".into()), 1090);
        let (r, _) = apply(&mut s, &g, &Request::Lock("b".into()), 1150);
        assert_eq!(r.result, Err(LockError::Full(1)));
        assert!(r.expired.is_empty());
        // Not renewed for more than 100 s: b takes the slot.
        let (r, changed) = apply(&mut s, &g, &Request::Lock("b".into()), 1191);
        assert!(changed);
        assert_eq!((r.result, r.expired), (Ok(()), vec!["a".to_string()]));
        assert_eq!(s.holders, ["b"]);
        assert!(!s.leases.contains_key("a"));
    }

    #[test]
    fn holders_airlock_wrote_start_a_lease_when_seen() {
        let g = group(2, Some(100));
        let mut s = Semaphore::from_json(br#"{"total_slots":2,"holders":["x"]}"#).unwrap();
        let (r, changed) = apply(&mut s, &g, &Request::Read, 500);
        assert!(changed && r.expired.is_empty());
        assert_eq!(
            s.leases["x"],
            Lease {
                since: 500,
                renewed: 500
            }
        );
        let (r, _) = apply(&mut s, &g, &Request::Read, 601);
        assert_eq!(r.expired, ["x"]);
        // Without leases the lease times go.
        let mut s = Semaphore::from_json(
            br#"{"total_slots":2,"holders":["y"],"oxcore_leases":{"y":{"since":1,"renewed":1}}}"#,
        )
        .unwrap();
        apply(&mut s, &group(2, None), &Request::Read, 9);
        assert!(s.leases.is_empty());
        assert_eq!(s.to_json(), br#"{"total_slots":2,"holders":["y"]}"#);
    }
}
