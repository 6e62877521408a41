//! Pulling from an archive repository served over HTTP (or anything that
//! can fetch a repository-relative path), and from a local repository.
//!
//! The order is OSTree's: the remote `config` (it must be an archive
//! repository), the `summary` (or `refs/heads/<ref>` when there is none),
//! then for each ref its commit and detached metadata — signatures are
//! checked here, before anything else is fetched — then the dirtrees,
//! dirmetas and files the repository lacks, by a bounded pool of workers.
//! Every object is checked against its name before it is staged; the
//! refs move only after all objects are in place. A pull that fails or is
//! killed leaves its staged objects for the next pull of the same boot to
//! reuse, so an interrupted pull resumes where it stopped.

use std::collections::HashSet;
use std::io::Read;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

use crate::fsck::reachable;
use crate::keyfile::KeyFile;
use crate::object::{Checksum, Commit, DirTree, ObjectType};
use crate::repo::{Repo, RepoMode, Result, Transaction, msg};
use crate::sign;
use crate::summary::Summary;

/// Fetches paths of a remote repository.
pub trait Fetcher: Sync {
    /// The body of `relpath` (`config`, `objects/ab/cd….dirtree`, …);
    /// `Ok(None)` when the server says it does not exist (404).
    fn fetch(&self, relpath: &str) -> std::result::Result<Option<Vec<u8>>, String>;

    /// How to name `relpath` in messages (the full URL).
    fn describe(&self, relpath: &str) -> String;
}

/// What to pull and how.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// The remote's name; refs land in `refs/remotes/<remote>/`.
    pub remote: String,
    /// Refs (or commit checksums) to pull.
    pub refs: Vec<String>,
    /// Trusted ed25519 public keys; when set, commits (and the summary, if
    /// signed) must carry a valid signature.
    pub verify_keys: Option<Vec<Vec<u8>>>,
    /// Concurrent fetches.
    pub connections: usize,
    /// Write the refs as local refs too (`--mirror`).
    pub mirror: bool,
}

/// Counters, for progress and the final report.
#[derive(Debug, Default)]
pub struct PullStats {
    /// Objects fetched.
    pub fetched: AtomicUsize,
    /// Objects known to be needed so far.
    pub requested: AtomicUsize,
    /// Bytes received.
    pub bytes: AtomicU64,
    /// Objects that were already present (from this repo or a resumed pull).
    pub present: AtomicUsize,
}

/// The commits a pull brought, per ref.
#[derive(Debug, Default)]
pub struct PullReport {
    /// (ref, commit) pairs.
    pub refs: Vec<(String, Checksum)>,
    /// Objects fetched.
    pub fetched: usize,
    /// Bytes received.
    pub bytes: u64,
}

fn get(fetcher: &dyn Fetcher, stats: &PullStats, rel: &str) -> Result<Option<Vec<u8>>> {
    let body = fetcher
        .fetch(rel)
        .map_err(|e| msg(format!("{}: {e}", fetcher.describe(rel))))?;
    if let Some(b) = &body {
        stats.bytes.fetch_add(b.len() as u64, Ordering::Relaxed);
    }
    Ok(body)
}

fn get_required(fetcher: &dyn Fetcher, stats: &PullStats, rel: &str) -> Result<Vec<u8>> {
    get(fetcher, stats, rel)?
        .ok_or_else(|| msg(format!("Server returned 404 for {}", fetcher.describe(rel))))
}

/// Pulls `opts.refs` into `repo`.
pub fn pull(
    repo: &Repo,
    fetcher: &dyn Fetcher,
    opts: &PullOptions,
    stats: &PullStats,
    progress: &(dyn Fn(&PullStats) + Sync),
) -> Result<PullReport> {
    let config = get_required(fetcher, stats, "config")?;
    let config = KeyFile::parse(&String::from_utf8_lossy(&config))
        .map_err(|e| msg(format!("{}: {e}", fetcher.describe("config"))))?;
    let remote_mode = config.get("core", "mode").unwrap_or("bare");
    if RepoMode::parse(remote_mode) != Some(RepoMode::Archive) {
        return Err(msg(format!(
            "Can't pull from archives with mode \"{remote_mode}\" ({})",
            fetcher.describe("config")
        )));
    }
    let summary = match get(fetcher, stats, "summary")? {
        Some(bytes) => {
            if let Some(keys) = &opts.verify_keys
                && let Some(sig) = get(fetcher, stats, "summary.sig")?
            {
                let meta = crate::object::parse_vardict(&sig)
                    .map_err(|e| msg(format!("summary.sig: {e}")))?;
                sign::verify(&bytes, &sign::signatures(&meta), keys)
                    .map_err(|e| msg(format!("summary of {}: {e}", fetcher.describe(""))))?;
            }
            Some(Summary::parse(&bytes)?)
        }
        None => None,
    };
    let mut targets = Vec::new();
    for r in &opts.refs {
        let c = if let Ok(c) = Checksum::from_hex(r) {
            c
        } else if let Some(s) = &summary {
            s.lookup(r)
                .map(|e| e.checksum)
                .ok_or_else(|| msg(format!("No such branch '{r}' in repository summary")))?
        } else {
            let body = get(fetcher, stats, &format!("refs/heads/{r}"))?.ok_or_else(|| {
                msg(format!(
                    "No such branch '{r}' ({})",
                    fetcher.describe(&format!("refs/heads/{r}"))
                ))
            })?;
            Checksum::from_hex(String::from_utf8_lossy(&body).trim()).map_err(|e| {
                msg(format!(
                    "{}: {e}",
                    fetcher.describe(&format!("refs/heads/{r}"))
                ))
            })?
        };
        targets.push((r.clone(), c));
    }

    let tx = repo.begin()?;
    for (name, c) in &targets {
        fetch_commit(&tx, fetcher, stats, opts, c)?;
        crate::failpoint("commit-fetched")?;
        let commit = Commit::parse(&tx.load_meta_bytes(c, ObjectType::Commit)?)
            .map_err(|e| msg(format!("commit {c}: {e}")))?;
        fetch_tree(
            &tx,
            fetcher,
            stats,
            opts.connections.max(1),
            &commit,
            progress,
        )?;
        if Checksum::from_hex(name).is_err() {
            tx.set_ref(Some(&opts.remote), name, Some(*c));
            if opts.mirror {
                tx.set_ref(None, name, Some(*c));
            }
        }
    }
    crate::failpoint("before-pull-commit")?;
    tx.commit()?;
    Ok(PullReport {
        refs: targets,
        fetched: stats.fetched.load(Ordering::Relaxed),
        bytes: stats.bytes.load(Ordering::Relaxed),
    })
}

fn fetch_commit(
    tx: &Transaction<'_>,
    fetcher: &dyn Fetcher,
    stats: &PullStats,
    opts: &PullOptions,
    c: &Checksum,
) -> Result<()> {
    let mode = RepoMode::Archive;
    let bytes = if tx.has_object(c, ObjectType::Commit) {
        tx.load_meta_bytes(c, ObjectType::Commit)?
    } else {
        let rel = Repo::object_relpath(c, ObjectType::Commit, mode);
        let b = get_required(fetcher, stats, &rel)?;
        if Checksum::of(&b) != *c {
            return Err(msg(format!(
                "Corrupted commit object; checksum expected='{c}' actual='{}' ({})",
                Checksum::of(&b),
                fetcher.describe(&rel)
            )));
        }
        stats.fetched.fetch_add(1, Ordering::Relaxed);
        b
    };
    let meta_rel = Repo::object_relpath(c, ObjectType::CommitMeta, mode);
    let detached = get(fetcher, stats, &meta_rel)?;
    if let Some(keys) = &opts.verify_keys {
        let meta = match &detached {
            Some(d) => crate::object::parse_vardict(d)
                .map_err(|e| msg(format!("{}: {e}", fetcher.describe(&meta_rel))))?,
            None => Vec::new(),
        };
        sign::verify(&bytes, &sign::signatures(&meta), keys)
            .map_err(|e| msg(format!("commit {c}: {e}")))?;
    }
    if let Some(d) = detached {
        let path = tx.repo().object_path(c, ObjectType::CommitMeta);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| msg(format!("{}: {e}", dir.display())))?;
        }
        crate::repo::write_atomic(&path, &d, false)?;
    }
    tx.write_meta_expect(ObjectType::Commit, c, &bytes)
}

enum Work {
    Tree(Checksum),
    Meta(Checksum),
    File(Checksum),
}

struct Queue {
    items: Vec<Work>,
    in_flight: usize,
    failed: Option<crate::repo::Error>,
}

fn fetch_tree(
    tx: &Transaction<'_>,
    fetcher: &dyn Fetcher,
    stats: &PullStats,
    connections: usize,
    commit: &Commit,
    progress: &(dyn Fn(&PullStats) + Sync),
) -> Result<()> {
    let seen: Mutex<HashSet<(Checksum, ObjectType)>> = Mutex::new(HashSet::new());
    let queue = Mutex::new(Queue {
        items: vec![Work::Meta(commit.root_meta), Work::Tree(commit.root_tree)],
        in_flight: 0,
        failed: None,
    });
    stats.requested.fetch_add(2, Ordering::Relaxed);
    let cv = Condvar::new();
    let worker = || {
        loop {
            let item = {
                let mut q = queue.lock().expect("lock");
                loop {
                    if q.failed.is_some() {
                        return;
                    }
                    if let Some(w) = q.items.pop() {
                        q.in_flight += 1;
                        break w;
                    }
                    if q.in_flight == 0 {
                        cv.notify_all();
                        return;
                    }
                    q = cv.wait(q).expect("lock");
                }
            };
            let result = process(tx, fetcher, stats, &seen, item);
            let mut q = queue.lock().expect("lock");
            q.in_flight -= 1;
            match result {
                Ok(more) => {
                    stats.requested.fetch_add(more.len(), Ordering::Relaxed);
                    q.items.extend(more);
                }
                Err(e) => {
                    q.failed.get_or_insert(e);
                }
            }
            cv.notify_all();
            drop(q);
            progress(stats);
        }
    };
    std::thread::scope(|s| {
        for _ in 0..connections {
            s.spawn(worker);
        }
    });
    match queue.into_inner().expect("lock").failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn process(
    tx: &Transaction<'_>,
    fetcher: &dyn Fetcher,
    stats: &PullStats,
    seen: &Mutex<HashSet<(Checksum, ObjectType)>>,
    item: Work,
) -> Result<Vec<Work>> {
    let (c, kind) = match item {
        Work::Tree(c) => (c, ObjectType::DirTree),
        Work::Meta(c) => (c, ObjectType::DirMeta),
        Work::File(c) => (c, ObjectType::File),
    };
    let rel = Repo::object_relpath(&c, kind, RepoMode::Archive);
    if tx.has_object(&c, kind) {
        stats.present.fetch_add(1, Ordering::Relaxed);
    } else {
        let body = get(fetcher, stats, &rel)?.ok_or_else(|| {
            msg(format!(
                "Remote object {rel} is missing (404 from {})",
                fetcher.describe(&rel)
            ))
        })?;
        let stored = if kind == ObjectType::File {
            tx.write_filez(&c, &body)
        } else {
            tx.write_meta_expect(kind, &c, &body)
        };
        stored.map_err(|e| msg(format!("{e} (from {})", fetcher.describe(&rel))))?;
        stats.fetched.fetch_add(1, Ordering::Relaxed);
        crate::failpoint("object-fetched")?;
    }
    if kind != ObjectType::DirTree {
        return Ok(Vec::new());
    }
    let tree = DirTree::parse(&tx.load_meta_bytes(&c, kind)?)
        .map_err(|e| msg(format!("dirtree {c}: {e}")))?;
    let mut more = Vec::new();
    let mut seen = seen.lock().expect("lock");
    for (_, f) in &tree.files {
        if seen.insert((*f, ObjectType::File)) {
            more.push(Work::File(*f));
        }
    }
    for (_, t, m) in &tree.dirs {
        if seen.insert((*m, ObjectType::DirMeta)) {
            more.push(Work::Meta(*m));
        }
        if seen.insert((*t, ObjectType::DirTree)) {
            more.push(Work::Tree(*t));
        }
    }
    Ok(more)
}

/// Copies what `refs` need from another local repository (`pull-local`).
/// Every object is re-hashed on the way in.
pub fn pull_local(
    repo: &Repo,
    src: &Repo,
    refs: &[String],
    remote: Option<&str>,
) -> Result<Vec<(String, Checksum)>> {
    let mut targets = Vec::new();
    let refs: Vec<String> = if refs.is_empty() {
        src.list_refs()?
            .into_keys()
            .filter(|r| !r.contains(':'))
            .collect()
    } else {
        refs.to_vec()
    };
    for r in &refs {
        targets.push((r.clone(), src.resolve_rev(r)?));
    }
    let tx = repo.begin()?;
    for (_, c) in &targets {
        let mut needed = HashSet::new();
        reachable(src, c, Some(0), &mut needed)?;
        for (oc, kind) in needed {
            if tx.has_object(&oc, kind) {
                continue;
            }
            match kind {
                ObjectType::File => {
                    let (meta, mut content) = src.open_file(&oc)?;
                    let size = content.size();
                    let got = tx.write_file_stream(&meta, &mut content as &mut dyn Read, size)?;
                    if got != oc {
                        return Err(msg(format!(
                            "Corrupted file object; checksum expected='{oc}' actual='{got}'"
                        )));
                    }
                }
                ObjectType::CommitMeta => {
                    let b = src.load_meta_bytes(&oc, kind)?;
                    let path = repo.object_path(&oc, kind);
                    if let Some(dir) = path.parent() {
                        std::fs::create_dir_all(dir)
                            .map_err(|e| msg(format!("{}: {e}", dir.display())))?;
                    }
                    crate::repo::write_atomic(&path, &b, false)?;
                }
                _ => {
                    let b = src.load_meta_bytes(&oc, kind)?;
                    tx.write_meta_expect(kind, &oc, &b)?;
                }
            }
        }
    }
    for (name, c) in &targets {
        if Checksum::from_hex(name).is_err() {
            let local = name.split_once(':').map(|(_, n)| n).unwrap_or(name);
            tx.set_ref(remote, local, Some(*c));
        }
    }
    tx.commit()?;
    Ok(targets)
}
