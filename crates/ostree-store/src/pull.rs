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
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

use crate::fsck::reachable;
use crate::keyfile::KeyFile;
use crate::object::{Checksum, Commit, DirTree, ObjectType};
use crate::repo::{Repo, RepoMode, Result, msg};
use crate::sign;
use crate::summary::Summary;
use crate::transaction::{MAX_METADATA_SIZE, Transaction};

/// Fetches paths of a remote repository.
pub trait Fetcher: Sync {
    /// Opens `relpath` (`config`, `objects/ab/cd….dirtree`, …) for
    /// reading; `Ok(None)` when the server says it does not exist (404).
    /// `limit` is the most the caller will read (`None` for content
    /// streamed to disk): a body announced longer is refused at once.
    fn open(
        &self,
        relpath: &str,
        limit: Option<u64>,
    ) -> std::result::Result<Option<Box<dyn Read + Send + '_>>, FetchError>;

    /// How to name `relpath` in messages (the full URL).
    fn describe(&self, relpath: &str) -> String;
}

/// Why a fetch failed.
#[derive(Debug, Clone)]
pub struct FetchError {
    /// What happened, in words.
    pub msg: String,
    /// Whether trying again may help (a timeout, a broken connection);
    /// a refused certificate or a bad URL is final.
    pub transient: bool,
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for FetchError {}

/// How often an object is fetched again after a network failure (OSTree's
/// default `n-network-retries`).
pub(crate) const NETWORK_RETRIES: usize = 5;

/// Fetches a remote's paths over HTTP(S), on one pooled client built for
/// the remote (its `tls-ca-path` trusted besides the system's CAs), or
/// from a `file://` directory.
#[derive(Debug)]
pub struct HttpFetcher {
    base: String,
    client: Option<http_client::Client>,
}

impl HttpFetcher {
    /// For a remote `url`, trusting the PEM authorities `cas` too.
    pub fn new(url: &str, cas: &[Vec<u8>]) -> Result<HttpFetcher> {
        let base = url.trim_end_matches('/').to_string();
        let client = if base.starts_with("file://") {
            None
        } else {
            let mut b = http_client::Client::builder()
                .user_agent(format!("libostree/oxcore-{}", env!("CARGO_PKG_VERSION")))
                // As libcurl under OSTree: a transfer stalled this long fails.
                .timeout(std::time::Duration::from_secs(30));
            for pem in cas {
                b = b.trust_pem(pem.clone());
            }
            Some(b.build().map_err(|e| msg(format!("{url}: {e}")))?)
        };
        Ok(HttpFetcher { base, client })
    }
}

impl Fetcher for HttpFetcher {
    fn open(
        &self,
        rel: &str,
        limit: Option<u64>,
    ) -> std::result::Result<Option<Box<dyn Read + Send + '_>>, FetchError> {
        let url = format!("{}/{rel}", self.base);
        let Some(client) = &self.client else {
            let dir = self.base.trim_start_matches("file://");
            return match std::fs::File::open(std::path::Path::new(dir).join(rel)) {
                Ok(f) => Ok(Some(Box::new(f))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(FetchError {
                    msg: e.to_string(),
                    transient: false,
                }),
            };
        };
        match client.get(&url) {
            Ok(r) if r.status() == 404 => Ok(None),
            Ok(r) if (200..300).contains(&r.status()) => match (limit, r.content_length()) {
                (Some(max), Some(n)) if n > max => Err(FetchError {
                    msg: format!("the server announces {n} bytes, more than the maximum of {max}"),
                    transient: false,
                }),
                _ => Ok(Some(Box::new(r))),
            },
            Ok(r) => Err(FetchError {
                msg: format!("Server returned status {}", r.status()),
                transient: r.status() >= 500,
            }),
            Err(e) => Err(FetchError {
                transient: e.is_transient(),
                msg: e.reason(),
            }),
        }
    }

    fn describe(&self, rel: &str) -> String {
        http_client::shorten(&format!("{}/{rel}", self.base))
    }
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

/// A reader that notes whether reading failed, so that a failure of the
/// network can be told from one of the disk.
struct Net<'a> {
    inner: Box<dyn Read + Send + 'a>,
    failed: &'a AtomicBool,
    stats: &'a PullStats,
}

impl Read for Net<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.stats.bytes.fetch_add(n as u64, Ordering::Relaxed);
                Ok(n)
            }
            Err(e) => {
                self.failed.store(true, Ordering::Relaxed);
                Err(e)
            }
        }
    }
}

/// Runs `attempt` with `rel` opened, again (up to [`NETWORK_RETRIES`]
/// times) when the network failed; `Ok(None)` on a 404.
fn with_retries<T>(
    fetcher: &dyn Fetcher,
    stats: &PullStats,
    rel: &str,
    limit: Option<u64>,
    mut attempt: impl FnMut(&mut dyn Read) -> Result<T>,
) -> Result<Option<T>> {
    let mut tries = 0;
    loop {
        tries += 1;
        let failed = AtomicBool::new(false);
        let last = match fetcher.open(rel, limit) {
            Ok(None) => return Ok(None),
            Ok(Some(r)) => {
                let mut net = Net {
                    inner: r,
                    failed: &failed,
                    stats,
                };
                match attempt(&mut net) {
                    Ok(v) => return Ok(Some(v)),
                    Err(e) if failed.load(Ordering::Relaxed) => e.to_string(),
                    Err(e) => return Err(e),
                }
            }
            Err(e) if e.transient => format!("{}: {e}", fetcher.describe(rel)),
            Err(e) => return Err(msg(format!("{}: {e}", fetcher.describe(rel)))),
        };
        if tries > NETWORK_RETRIES {
            return Err(msg(format!("{last} (after {tries} attempts)")));
        }
        std::thread::sleep(std::time::Duration::from_millis(100 << tries.min(5)));
    }
}

/// A small file or metadata object, whole (at most `limit` bytes).
fn get(fetcher: &dyn Fetcher, stats: &PullStats, rel: &str, limit: u64) -> Result<Option<Vec<u8>>> {
    with_retries(fetcher, stats, rel, Some(limit), |r| {
        let mut out = Vec::new();
        r.take(limit + 1).read_to_end(&mut out).map_err(|e| {
            msg(format!(
                "{}: {}",
                fetcher.describe(rel),
                http_client::error_chain(&e)
            ))
        })?;
        if out.len() as u64 > limit {
            return Err(msg(format!(
                "{}: exceeds the maximum of {limit} bytes",
                fetcher.describe(rel)
            )));
        }
        Ok(out)
    })
}

fn get_required(
    fetcher: &dyn Fetcher,
    stats: &PullStats,
    rel: &str,
    limit: u64,
) -> Result<Vec<u8>> {
    get(fetcher, stats, rel, limit)?
        .ok_or_else(|| msg(format!("Server returned 404 for {}", fetcher.describe(rel))))
}

/// The most a `summary` may hold (Fedora's, with every ref and its
/// history, is a few megabytes).
const MAX_SUMMARY: u64 = 100 << 20;

/// The most a repository's `config` or a ref file may hold.
const MAX_SMALL: u64 = 1 << 20;

/// The remote's `summary`, if it has one.
pub fn fetch_summary(fetcher: &dyn Fetcher) -> Result<Option<Summary>> {
    let stats = PullStats::default();
    get(fetcher, &stats, "summary", MAX_SUMMARY)?
        .map(|b| Summary::parse(&b))
        .transpose()
}

/// Pulls `opts.refs` into `repo`.
pub fn pull(
    repo: &Repo,
    fetcher: &dyn Fetcher,
    opts: &PullOptions,
    stats: &PullStats,
    progress: &(dyn Fn(&PullStats) + Sync),
) -> Result<PullReport> {
    let config = get_required(fetcher, stats, "config", MAX_SMALL)?;
    let config = KeyFile::parse(&String::from_utf8_lossy(&config))
        .map_err(|e| msg(format!("{}: {e}", fetcher.describe("config"))))?;
    let remote_mode = config.get("core", "mode").unwrap_or("bare");
    if RepoMode::parse(remote_mode) != Some(RepoMode::Archive) {
        return Err(msg(format!(
            "Can't pull from archives with mode \"{remote_mode}\" ({})",
            fetcher.describe("config")
        )));
    }
    let summary = match get(fetcher, stats, "summary", MAX_SUMMARY)? {
        Some(bytes) => {
            if let Some(keys) = &opts.verify_keys
                && let Some(sig) = get(fetcher, stats, "summary.sig", MAX_METADATA_SIZE)?
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
            s.lookup(r).map(|e| e.checksum).ok_or_else(|| {
                msg(format!(
                    "No such branch '{}' in repository summary",
                    http_client::shorten(r)
                ))
            })?
        } else {
            if !crate::repo::valid_ref(r) {
                return Err(msg(format!(
                    "Invalid ref name '{}'",
                    http_client::shorten(r)
                )));
            }
            let rel = format!("refs/heads/{r}");
            let body = get(fetcher, stats, &rel, MAX_SMALL)?.ok_or_else(|| {
                msg(format!(
                    "No such branch '{}' ({})",
                    http_client::shorten(r),
                    fetcher.describe(&rel)
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
        let b = get_required(fetcher, stats, &rel, MAX_METADATA_SIZE)?;
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
    let detached = get(fetcher, stats, &meta_rel, MAX_METADATA_SIZE)?;
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
        let missing = || {
            msg(format!(
                "Remote object {rel} is missing (404 from {})",
                fetcher.describe(&rel)
            ))
        };
        let from = |e: crate::repo::Error| msg(format!("{e} (from {})", fetcher.describe(&rel)));
        if kind == ObjectType::File {
            // Streamed to disk while hashed: never whole in memory.
            with_retries(fetcher, stats, &rel, None, |r| {
                tx.write_filez(&c, r).map_err(from)
            })?
            .ok_or_else(missing)?;
        } else {
            let body = get(fetcher, stats, &rel, MAX_METADATA_SIZE)?.ok_or_else(missing)?;
            tx.write_meta_expect(kind, &c, &body).map_err(from)?;
        }
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
