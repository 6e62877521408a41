//! An OSTree-format repository in pure Rust.
//!
//! Byte-compatible with OSTree's on-disk format: the same objects under the
//! same names, so `ostree fsck` accepts repositories written here and this
//! crate reads repositories `ostree` wrote. See `docs/ostree.md` for the
//! format notes and what differs.
//!
//! Layers, bottom up: [`gvariant`] (the serialization), [`object`] (what
//! each object holds and how it is named), [`repo`] (layout, modes,
//! transactions, refs), then the operations: [`commit`], [`checkout`],
//! [`fsck`], [`prune`], [`summary`] and signatures in [`sign`], [`pull`].

pub mod checkout;
pub mod commit;
pub mod fsck;
pub mod gvariant;
pub mod keyfile;
pub mod object;
pub mod prune;
pub mod pull;
pub mod remote;
pub mod repo;
pub mod sign;
pub mod summary;
pub mod time;
mod transaction;
pub mod tree;

pub use object::{Checksum, ObjectType};
pub use repo::{Error, Repo, RepoMode, Result};
pub use transaction::Transaction;

/// Stops the process at a named point when the `failpoints` feature is on
/// and `OSTREE_STORE_FAILPOINT` names it, as a crash there would: no
/// destructor, no cleanup. `name:N` stops at the N-th time the point is
/// reached.
#[cfg(feature = "failpoints")]
pub fn failpoint(name: &str) -> Result<()> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static HITS: std::sync::Mutex<Vec<(String, AtomicUsize)>> = std::sync::Mutex::new(Vec::new());
    let Ok(spec) = std::env::var("OSTREE_STORE_FAILPOINT") else {
        return Ok(());
    };
    let (point, nth) = match spec.split_once(':') {
        Some((p, n)) => (p.to_string(), n.parse::<usize>().unwrap_or(1)),
        None => (spec.clone(), 1),
    };
    if point != name {
        return Ok(());
    }
    let mut hits = HITS.lock().expect("lock");
    let count = match hits.iter().position(|(n, _)| n == name) {
        Some(i) => hits[i].1.fetch_add(1, Ordering::SeqCst) + 1,
        None => {
            hits.push((name.to_string(), AtomicUsize::new(1)));
            1
        }
    };
    if count == nth {
        eprintln!("failpoint {name} reached: exiting as if killed");
        std::process::exit(137);
    }
    Ok(())
}

/// Without the `failpoints` feature, failpoints cost nothing.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn failpoint(_name: &str) -> Result<()> {
    Ok(())
}
