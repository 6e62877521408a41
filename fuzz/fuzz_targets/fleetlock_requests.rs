//! The FleetLock server's inputs: any request body (with the protocol
//! header), any stored semaphore value (as another server or a person may
//! have written it), any configuration text, and any sequence of requests
//! applied to a semaphore under any group settings. Nothing may panic; a
//! decoded body names a group and an id; a lock granted to a new holder
//! never takes the holders past the slots; holders stay sorted and unique
//! and lease times are kept for holders only.
#![no_main]

use fleetlock::semaphore::{Request, apply};
use fleetlock::{Config, Group, Semaphore};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => {
            if let Ok(p) = fleetlock::protocol::client_params(Some(b"true"), rest) {
                assert!(!p.group.is_empty() && !p.id.is_empty());
            }
        }
        1 => {
            let _ = Config::parse(&String::from_utf8_lossy(rest), std::path::Path::new("fuzz.toml"));
        }
        _ => {
            // A stored value (maybe), then requests from the remaining bytes.
            let split = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            let (stored, script) = rest.split_at(split);
            let mut sem = Semaphore::from_json(stored).unwrap_or_default();
            let mut bytes = script.iter().copied();
            let mut next = || bytes.next();
            let Some(slots) = next() else { return };
            let lease = next().map(|b| u64::from(b % 8)).filter(|&l| l > 0);
            let group = Group {
                slots: u64::from(slots % 6),
                lease_seconds: lease,
            };
            let mut now = 1_000u64;
            while let Some(op) = next() {
                now += u64::from(op >> 4);
                let id = format!("n{}", op % 5);
                let request = match op % 3 {
                    0 => Request::Lock(id.clone()),
                    1 => Request::Unlock(id.clone()),
                    _ => Request::Read,
                };
                let held_before = sem.holders.contains(&id);
                let (applied, _) = apply(&mut sem, &group, &request, now);
                if matches!(request, Request::Lock(_)) && applied.result.is_ok() && !held_before {
                    assert!(sem.holders.len() as u64 <= group.slots, "{sem:?}");
                }
                assert!(sem.holders.windows(2).all(|w| w[0] < w[1]), "{sem:?}");
                assert!(sem.leases.keys().all(|k| sem.holders.contains(k)), "{sem:?}");
                assert_eq!(sem.total_slots, group.slots);
                // What is stored reads back the same.
                assert_eq!(Semaphore::from_json(&sem.to_json()).unwrap(), sem);
            }
        }
    }
});
