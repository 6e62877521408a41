//! Committing a directory: walk it, store every file, directory listing and
//! directory metadata, then the commit object.
//!
//! Files are hashed and stored by a pool of threads (one per core); the
//! walk and the dirtree construction are sequential, so the result does not
//! depend on scheduling. Only regular files, symlinks and directories can be
//! committed, as in OSTree; anything else is an error naming the path.

use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::gvariant::Value;
use crate::object::{self, Checksum, Commit, DirMeta, DirTree, FileMeta, ObjectType, mode};
use crate::repo::{IoContext, Repo, Result, msg, read_xattrs};
use crate::transaction::Transaction;

/// How files are read into a commit.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// Owner of every file and directory (`--owner-uid`).
    pub owner_uid: Option<u32>,
    /// Group of every file and directory (`--owner-gid`).
    pub owner_gid: Option<u32>,
    /// Ignore extended attributes (`--no-xattrs`).
    pub no_xattrs: bool,
    /// Owner 0:0 and modes reduced to 0755/0644 patterns
    /// (`--canonical-permissions`).
    pub canonical_permissions: bool,
    /// Make executable files read-only (`--mode-ro-executables`).
    pub mode_ro_executables: bool,
    /// Paths to leave out, absolute within the tree (`--skip-list`).
    pub skip: std::collections::HashSet<String>,
    /// Worker threads; 0 means one per core.
    pub threads: usize,
}

/// What goes into one commit, besides its tree.
#[derive(Debug, Clone, Default)]
pub struct CommitInfo {
    /// Subject line.
    pub subject: String,
    /// Body text.
    pub body: String,
    /// Seconds since the epoch; `None` means now.
    pub timestamp: Option<u64>,
    /// Parent commit.
    pub parent: Option<Checksum>,
    /// Metadata entries, in order.
    pub metadata: Vec<(String, Value)>,
}

/// A directory being built: from disk, from an existing tree, or both
/// (later sources override earlier ones entry by entry).
#[derive(Debug, Default)]
pub struct MutableTree {
    meta: Option<Checksum>,
    files: Vec<(String, FileSlot)>,
    dirs: Vec<(String, MutableTree)>,
}

#[derive(Debug, Clone)]
enum FileSlot {
    Stored(Checksum),
    Job(usize),
}

#[derive(Debug)]
struct Job {
    path: PathBuf,
    meta: FileMeta,
    size: u64,
}

/// Files up to this size are read whole and hashed before writing, so
/// existing objects cost no write at all.
const SMALL: u64 = 4 << 20;

/// Builds trees and writes them into a transaction.
pub struct TreeBuilder<'t, 'r> {
    tx: &'t Transaction<'r>,
    opts: CommitOptions,
    jobs: Vec<Job>,
    root: MutableTree,
}

impl<'t, 'r> TreeBuilder<'t, 'r> {
    /// Starts an empty tree.
    pub fn new(tx: &'t Transaction<'r>, opts: CommitOptions) -> TreeBuilder<'t, 'r> {
        TreeBuilder {
            tx,
            opts,
            jobs: Vec::new(),
            root: MutableTree::default(),
        }
    }

    /// Adds the contents of directory `dir` (its own metadata becomes the
    /// root's).
    pub fn add_dir(&mut self, dir: &Path) -> Result<()> {
        let st = fs::symlink_metadata(dir).at(dir)?;
        if !st.is_dir() {
            return Err(msg(format!("{}: not a directory", dir.display())));
        }
        let mut root = std::mem::take(&mut self.root);
        let r = self.scan(dir, "", &st, &mut root);
        self.root = root;
        r
    }

    fn dir_meta(&self, path: &Path, st: &fs::Metadata) -> Result<DirMeta> {
        let mut m = DirMeta {
            uid: st.uid(),
            gid: st.gid(),
            mode: st.mode(),
            xattrs: if self.opts.no_xattrs {
                Vec::new()
            } else {
                read_xattrs(path)?
            },
        };
        if self.opts.canonical_permissions {
            m.uid = 0;
            m.gid = 0;
            m.mode = mode::IFDIR | 0o755;
        }
        m.uid = self.opts.owner_uid.unwrap_or(m.uid);
        m.gid = self.opts.owner_gid.unwrap_or(m.gid);
        Ok(m)
    }

    fn scan(
        &mut self,
        dir: &Path,
        rel: &str,
        st: &fs::Metadata,
        into: &mut MutableTree,
    ) -> Result<()> {
        let dm = self.dir_meta(dir, st)?;
        into.meta = Some(self.tx.write_meta(ObjectType::DirMeta, &dm.to_bytes())?);
        let mut entries: Vec<_> = fs::read_dir(dir)
            .at(dir)?
            .map(|e| e.at(dir))
            .collect::<Result<_>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            let Some(name) = e.file_name().to_str().map(str::to_string) else {
                return Err(msg(format!("{}: file name is not UTF-8", path.display())));
            };
            let child_rel = format!("{rel}/{name}");
            if self.opts.skip.contains(&child_rel) {
                continue;
            }
            let st = fs::symlink_metadata(&path).at(&path)?;
            let ft = st.file_type();
            if ft.is_dir() {
                into.files.retain(|(n, _)| *n != name);
                let pos = match into.dirs.iter().position(|(n, _)| *n == name) {
                    Some(p) => p,
                    None => {
                        into.dirs.push((name, MutableTree::default()));
                        into.dirs.len() - 1
                    }
                };
                let mut sub = std::mem::take(&mut into.dirs[pos].1);
                self.scan(&path, &child_rel, &st, &mut sub)?;
                into.dirs[pos].1 = sub;
                continue;
            }
            let mut meta = FileMeta {
                uid: st.uid(),
                gid: st.gid(),
                mode: st.mode(),
                rdev: 0,
                symlink_target: String::new(),
                xattrs: if self.opts.no_xattrs {
                    Vec::new()
                } else {
                    read_xattrs(&path)?
                },
            };
            if ft.is_symlink() {
                let target = fs::read_link(&path).at(&path)?;
                meta.symlink_target = target
                    .to_str()
                    .ok_or_else(|| msg(format!("{}: symlink target is not UTF-8", path.display())))?
                    .to_string();
                if meta.symlink_target.is_empty() {
                    return Err(msg(format!("{}: empty symlink target", path.display())));
                }
            } else if !ft.is_file() {
                return Err(msg(format!(
                    "Unsupported file type for file: '{}'",
                    path.display()
                )));
            }
            if self.opts.canonical_permissions {
                meta.uid = 0;
                meta.gid = 0;
                if !meta.is_symlink() {
                    let exec = meta.mode & 0o100 != 0;
                    meta.mode = mode::IFREG | if exec { 0o755 } else { 0o644 };
                }
            }
            if self.opts.mode_ro_executables && !meta.is_symlink() && meta.mode & 0o111 != 0 {
                meta.mode &= !0o222;
            }
            meta.uid = self.opts.owner_uid.unwrap_or(meta.uid);
            meta.gid = self.opts.owner_gid.unwrap_or(meta.gid);
            into.dirs.retain(|(n, _)| *n != name);
            into.files.retain(|(n, _)| *n != name);
            let size = if meta.is_symlink() { 0 } else { st.len() };
            self.jobs.push(Job { path, meta, size });
            into.files.push((name, FileSlot::Job(self.jobs.len() - 1)));
        }
        Ok(())
    }

    /// Adds the tree of an existing commit.
    pub fn add_commit_tree(&mut self, repo: &Repo, commit: &Checksum) -> Result<()> {
        let c = repo.load_commit(commit)?;
        let mut root = std::mem::take(&mut self.root);
        let r = load_tree(repo, &c.root_tree, &c.root_meta, &mut root);
        self.root = root;
        r
    }

    /// Stores every file and directory; returns (root dirtree, root dirmeta).
    pub fn write(self) -> Result<(Checksum, Checksum)> {
        let sums = store_files(self.tx, &self.jobs, self.opts.threads)?;
        let Some(_) = self.root.meta else {
            return Err(msg("nothing to commit: no tree given"));
        };
        write_tree(self.tx, &self.root, &sums)
    }
}

fn load_tree(repo: &Repo, tree: &Checksum, meta: &Checksum, into: &mut MutableTree) -> Result<()> {
    into.meta = Some(*meta);
    let t = repo.load_dirtree(tree)?;
    for (name, c) in t.files {
        into.dirs.retain(|(n, _)| *n != name);
        into.files.retain(|(n, _)| *n != name);
        into.files.push((name, FileSlot::Stored(c)));
    }
    for (name, tc, mc) in t.dirs {
        into.files.retain(|(n, _)| *n != name);
        let pos = match into.dirs.iter().position(|(n, _)| *n == name) {
            Some(p) => p,
            None => {
                into.dirs.push((name, MutableTree::default()));
                into.dirs.len() - 1
            }
        };
        load_tree(repo, &tc, &mc, &mut into.dirs[pos].1)?;
    }
    Ok(())
}

fn write_tree(
    tx: &Transaction<'_>,
    t: &MutableTree,
    sums: &[Checksum],
) -> Result<(Checksum, Checksum)> {
    let mut tree = DirTree::default();
    for (name, slot) in &t.files {
        let c = match slot {
            FileSlot::Stored(c) => *c,
            FileSlot::Job(i) => sums[*i],
        };
        tree.files.push((name.clone(), c));
    }
    for (name, sub) in &t.dirs {
        let (tc, mc) = write_tree(tx, sub, sums)?;
        tree.dirs.push((name.clone(), tc, mc));
    }
    let meta = t.meta.ok_or_else(|| msg("directory without metadata"))?;
    let tc = tx.write_meta(ObjectType::DirTree, &tree.to_bytes())?;
    Ok((tc, meta))
}

fn store_one(tx: &Transaction<'_>, job: &Job) -> Result<Checksum> {
    if job.meta.is_symlink() {
        return tx.write_file(&job.meta, &[]);
    }
    let mut f = File::open(&job.path).at(&job.path)?;
    if job.size <= SMALL {
        let mut buf = Vec::with_capacity(job.size as usize);
        f.read_to_end(&mut buf).at(&job.path)?;
        if buf.len() as u64 != job.size {
            return Err(msg(format!(
                "{}: file changed while committing",
                job.path.display()
            )));
        }
        tx.write_file(&job.meta, &buf)
    } else {
        tx.write_file_stream(&job.meta, &mut f, job.size)
            .map_err(|e| msg(format!("{}: {e}", job.path.display())))
    }
}

fn store_files(tx: &Transaction<'_>, jobs: &[Job], threads: usize) -> Result<Vec<Checksum>> {
    let threads = if threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        threads
    }
    .min(jobs.len().max(1));
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Checksum>>> = Mutex::new(vec![None; jobs.len()]);
    let first_error: Mutex<Option<crate::repo::Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    if first_error.lock().expect("lock").is_some() {
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { return };
                    match store_one(tx, job) {
                        Ok(c) => results.lock().expect("lock")[i] = Some(c),
                        Err(e) => {
                            first_error.lock().expect("lock").get_or_insert(e);
                            return;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().expect("lock") {
        return Err(e);
    }
    Ok(results
        .into_inner()
        .expect("lock")
        .into_iter()
        .map(|c| c.expect("every job ran"))
        .collect())
}

/// Writes the commit object for a tree; returns its checksum.
pub fn write_commit(
    tx: &Transaction<'_>,
    info: &CommitInfo,
    root: (Checksum, Checksum),
) -> Result<Checksum> {
    let timestamp = info.timestamp.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    });
    let commit = Commit {
        metadata: info.metadata.clone(),
        parent: info.parent,
        related: Vec::new(),
        subject: info.subject.clone(),
        body: info.body.clone(),
        timestamp,
        root_tree: root.0,
        root_meta: root.1,
    };
    crate::failpoint("before-commit-object")?;
    tx.write_meta(ObjectType::Commit, &commit.to_bytes())
}

/// `ostree.ref-binding` metadata for the given refs (sorted, as OSTree).
pub fn ref_binding(refs: &[String]) -> (String, Value) {
    let mut refs = refs.to_vec();
    refs.sort();
    refs.dedup();
    (
        "ostree.ref-binding".to_string(),
        Value::Array(
            crate::gvariant::Type::Str,
            refs.into_iter().map(Value::Str).collect(),
        ),
    )
}

/// The checksum of a single file on disk as OSTree names it
/// (`ostree checksum`).
pub fn checksum_path(path: &Path, no_xattrs: bool) -> Result<Checksum> {
    let st = fs::symlink_metadata(path).at(path)?;
    let xattrs = if no_xattrs {
        Vec::new()
    } else {
        read_xattrs(path)?
    };
    if st.is_dir() {
        return Ok(Checksum::of(
            &DirMeta {
                uid: st.uid(),
                gid: st.gid(),
                mode: st.mode(),
                xattrs,
            }
            .to_bytes(),
        ));
    }
    let mut meta = FileMeta {
        uid: st.uid(),
        gid: st.gid(),
        mode: st.mode(),
        rdev: 0,
        symlink_target: String::new(),
        xattrs,
    };
    if st.file_type().is_symlink() {
        meta.symlink_target = fs::read_link(path).at(path)?.to_string_lossy().into_owned();
        return Ok(object::file_checksum(&meta, &[]));
    }
    let mut h = object::FileHasher::new(&meta);
    let mut f = File::open(path).at(path)?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf).at(path)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finish())
}
