//! Pruning: delete objects no root reaches.
//!
//! Roots are every ref (history kept to `depth` parents) and, unless
//! `refs_only`, every commit object in the repository, as `ostree prune`.
//! Runs under the exclusive repository lock so no writer is mid-way.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;

use crate::fsck::reachable;
use crate::object::{Checksum, ObjectType};
use crate::repo::{Error, IoContext, Repo, Result};

/// What to keep.
#[derive(Debug, Clone, Default)]
pub struct PruneOptions {
    /// Only refs are roots (commits nothing points to are deleted).
    pub refs_only: bool,
    /// Parents to keep behind each ref (`None`: all).
    pub depth: Option<usize>,
    /// Commits younger than this (seconds since the epoch) are kept as roots.
    pub keep_younger_than: Option<u64>,
    /// Count, delete nothing.
    pub dry_run: bool,
}

/// What was (or would be) deleted.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Objects in the repository before.
    pub total: usize,
    /// Objects deleted.
    pub deleted: usize,
    /// Bytes freed.
    pub freed: u64,
}

/// Prunes the repository.
pub fn prune(repo: &Repo, opts: &PruneOptions) -> Result<PruneReport> {
    let _lock = repo.lock(true)?;
    let objects = repo.list_objects()?;
    let mut keep: HashSet<(Checksum, ObjectType)> = HashSet::new();
    for c in repo.list_refs()?.values() {
        match reachable(repo, c, opts.depth, &mut keep) {
            Ok(()) | Err(Error::MissingObject { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    for (c, k) in &objects {
        if *k != ObjectType::Commit || keep.contains(&(*c, *k)) {
            continue;
        }
        let young = opts.keep_younger_than.is_some_and(|limit| {
            repo.load_commit(c)
                .map(|commit| commit.timestamp >= limit)
                .unwrap_or(true)
        });
        if !opts.refs_only || young {
            match reachable(repo, c, Some(0), &mut keep) {
                Ok(()) | Err(Error::MissingObject { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    let mut report = PruneReport {
        total: objects.len(),
        ..PruneReport::default()
    };
    // Commits go first: a prune killed mid-way must not leave a commit
    // whose trees or files are gone.
    let mut objects = objects;
    objects.sort_by_key(|(_, k)| match k {
        ObjectType::Commit | ObjectType::TombstoneCommit => 0,
        ObjectType::CommitMeta => 1,
        ObjectType::DirTree => 2,
        ObjectType::DirMeta => 3,
        ObjectType::File => 4,
    });
    for (c, k) in &objects {
        // Detached metadata lives and dies with its commit.
        let owner = if *k == ObjectType::CommitMeta {
            (*c, ObjectType::Commit)
        } else {
            (*c, *k)
        };
        if keep.contains(&owner) {
            continue;
        }
        let path = repo.object_path(c, *k);
        let size = std::fs::symlink_metadata(&path)
            .map(|m| m.size())
            .unwrap_or(0);
        if !opts.dry_run {
            std::fs::remove_file(&path).at(&path)?;
            crate::failpoint("prune-deleted")?;
        }
        report.deleted += 1;
        report.freed += size;
    }
    Ok(report)
}
