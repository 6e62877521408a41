//! Checking a commit out into a directory.
//!
//! Directories are created first (owner-only, so nothing half-made is
//! readable), files are then placed by a pool of threads one directory at a
//! time, and directory metadata is applied last, deepest first, so that a
//! read-only directory can still be filled. Every operation is relative to
//! an open directory and never follows a symlink, so a union checkout into a
//! tree that holds a symlink cannot be led outside the destination.
//!
//! Files are hard-linked from the repository when its objects carry the
//! right metadata on disk (bare as root; bare-user and bare-user-only in
//! user mode), and copied otherwise; copies get mtime 0 as OSTree's do.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use rustix::fs::{AtFlags, Gid, Mode, OFlags, Timestamps, Uid, XattrFlags};
use rustix::io::Errno;

use crate::object::{Checksum, DirMeta, DirTree, FileMeta, ObjectType, Xattrs};
use crate::repo::{IoContext, Repo, RepoMode, Result, msg};

/// Options of `checkout`.
#[derive(Debug, Clone, Default)]
pub struct CheckoutOptions {
    /// `-U`: do not set owners or xattrs; hard-link from bare-user repos.
    pub user_mode: bool,
    /// `--union`: replace files that exist in the destination.
    pub union: bool,
    /// `--union-identical`: like union, but only identical files may exist.
    pub union_identical: bool,
    /// `--subpath`: check out only this path of the tree.
    pub subpath: Option<String>,
    /// `-C`/`--force-copy`: never hard-link.
    pub force_copy: bool,
    /// Worker threads; 0 means one per core.
    pub threads: usize,
}

/// Files per unit of work.
const CHUNK: usize = 4;

struct DirJob {
    rel: PathBuf,
    tree: DirTree,
    meta: DirMeta,
}

fn errno(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e.raw_os_error())
}

/// Checks out `commit` into `dest`.
pub fn checkout(repo: &Repo, commit: &Checksum, dest: &Path, opts: &CheckoutOptions) -> Result<()> {
    let c = repo.load_commit(commit)?;
    let (mut tree, mut meta) = (c.root_tree, c.root_meta);
    if let Some(sub) = opts
        .subpath
        .as_deref()
        .map(|s| s.trim_matches('/'))
        .filter(|s| !s.is_empty())
    {
        let comps: Vec<&str> = sub.split('/').collect();
        for (i, comp) in comps.iter().enumerate() {
            let t = repo.load_dirtree(&tree)?;
            if let Some((_, tc, mc)) = t.dirs.iter().find(|d| d.0 == *comp) {
                tree = *tc;
                meta = *mc;
            } else if let Some((_, fc)) = t.files.iter().find(|f| f.0 == *comp)
                && i + 1 == comps.len()
            {
                return checkout_single_file(repo, fc, dest, opts);
            } else {
                return Err(msg(format!("No such file or directory: {sub}")));
            }
        }
    }
    let parent = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = dest
        .file_name()
        .ok_or_else(|| msg(format!("{}: invalid destination", dest.display())))?;
    let parent_fd = rustix::fs::open(
        parent,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .at(parent)?;
    let union = opts.union || opts.union_identical;
    match rustix::fs::mkdirat(&parent_fd, name, Mode::from_raw_mode(0o700)) {
        Ok(()) => {}
        Err(Errno::EXIST) if union => {}
        Err(e) => return Err(e).at(dest),
    }
    let root_fd = open_dir(&parent_fd, name).at(dest)?;

    // Phase 1: the directory skeleton.
    let mut jobs = Vec::new();
    let mut queue = vec![(PathBuf::new(), tree, meta)];
    while let Some((rel, t, m)) = queue.pop() {
        let tree = repo.load_dirtree(&t)?;
        let meta = repo.load_dirmeta(&m)?;
        let dir_fd = if rel.as_os_str().is_empty() {
            root_fd.try_clone().at(dest)?
        } else {
            open_dir(&root_fd, &rel).at(&dest.join(&rel))?
        };
        for (name, tc, mc) in &tree.dirs {
            match rustix::fs::mkdirat(&dir_fd, name.as_str(), Mode::from_raw_mode(0o700)) {
                Ok(()) => {}
                Err(Errno::EXIST) if union => {
                    let st = rustix::fs::statat(&dir_fd, name.as_str(), AtFlags::SYMLINK_NOFOLLOW)
                        .at(&dest.join(&rel).join(name))?;
                    if st.st_mode & 0o170000 != 0o040000 {
                        return Err(msg(format!(
                            "{}: exists and is not a directory",
                            dest.join(&rel).join(name).display()
                        )));
                    }
                }
                Err(e) => return Err(e).at(&dest.join(&rel).join(name)),
            }
            queue.push((rel.join(name), *tc, *mc));
        }
        jobs.push(DirJob { rel, tree, meta });
    }

    // Phase 2: files, a directory per job.
    let hardlink = !opts.force_copy
        && match repo.mode() {
            RepoMode::Bare => !opts.user_mode,
            RepoMode::BareUser | RepoMode::BareUserOnly => opts.user_mode,
            RepoMode::Archive => false,
        };
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        opts.threads
    }
    .min(jobs.len().max(1));
    // Work is split in runs of a few files of one directory, so a
    // directory of large files is spread over every thread too.
    let chunks: Vec<(usize, usize)> = jobs
        .iter()
        .enumerate()
        .flat_map(|(j, job)| {
            (0..job.tree.files.len())
                .step_by(CHUNK)
                .map(move |s| (j, s))
        })
        .collect();
    let threads = threads.min(chunks.len().max(1));
    let next = AtomicUsize::new(0);
    let failure: Mutex<Option<crate::repo::Error>> = Mutex::new(None);
    let objects = repo.path().join("objects");
    let objects_fd = rustix::fs::open(
        &objects,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .at(&objects)?;
    let ctx = Ctx {
        repo,
        dest,
        opts,
        union,
        hardlink,
        objects_fd: &objects_fd,
    };
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    if failure.lock().expect("lock").is_some() {
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&(j, start)) = chunks.get(i) else {
                        return;
                    };
                    let job = &jobs[j];
                    let end = (start + CHUNK).min(job.tree.files.len());
                    if let Err(e) = ctx.files(&root_fd, job, start..end) {
                        failure.lock().expect("lock").get_or_insert(e);
                        return;
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().expect("lock") {
        return Err(e);
    }

    // Phase 3: directory metadata, deepest first.
    jobs.sort_by_key(|j| std::cmp::Reverse(j.rel.components().count()));
    for job in &jobs {
        let path = dest.join(&job.rel);
        let fd = if job.rel.as_os_str().is_empty() {
            root_fd.try_clone().at(dest)?
        } else {
            open_dir(&root_fd, &job.rel).at(&path)?
        };
        if !opts.user_mode {
            rustix::fs::fchown(
                &fd,
                Some(Uid::from_raw(job.meta.uid)),
                Some(Gid::from_raw(job.meta.gid)),
            )
            .at(&path)?;
            set_fd_xattrs(&fd, &job.meta.xattrs).at(&path)?;
        }
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(job.meta.mode & 0o7777)).at(&path)?;
    }
    Ok(())
}

fn open_dir<P: rustix::path::Arg>(at: &impl AsFd, path: P) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        at,
        path,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

fn set_fd_xattrs(fd: &impl AsFd, xattrs: &Xattrs) -> rustix::io::Result<()> {
    for (k, v) in xattrs {
        rustix::fs::fsetxattr(fd, OsStr::from_bytes(k), v, XattrFlags::empty())?;
    }
    Ok(())
}

struct Ctx<'a> {
    repo: &'a Repo,
    dest: &'a Path,
    opts: &'a CheckoutOptions,
    union: bool,
    hardlink: bool,
    objects_fd: &'a OwnedFd,
}

static TMP_COUNTER: AtomicUsize = AtomicUsize::new(0);

impl Ctx<'_> {
    /// Whether the stored object is exactly what the checkout wants, as
    /// ostree decides: bare-user keeps symlinks as files and canonical
    /// modes, so those are copied; zero-sized files are always copied
    /// (they are often lock files and must not be shared).
    fn can_link(&self, meta: &FileMeta, content: &crate::repo::Content) -> bool {
        if content.size() == 0 {
            return false;
        }
        match self.repo.mode() {
            RepoMode::Bare => true,
            RepoMode::BareUser | RepoMode::BareUserOnly => {
                let stored = match self.repo.mode() {
                    RepoMode::BareUser => (meta.mode & 0o775) | 0o400,
                    _ => meta.mode & 0o775,
                };
                !meta.is_symlink() && stored == meta.mode & 0o1777
            }
            RepoMode::Archive => false,
        }
    }

    fn files(&self, root_fd: &OwnedFd, job: &DirJob, range: std::ops::Range<usize>) -> Result<()> {
        let dir_path = self.dest.join(&job.rel);
        let dir_fd = if job.rel.as_os_str().is_empty() {
            root_fd.try_clone().at(&dir_path)?
        } else {
            open_dir(root_fd, &job.rel).at(&dir_path)?
        };
        for (name, c) in &job.tree.files[range] {
            self.place(&dir_fd, &dir_path, name, c)?;
        }
        Ok(())
    }

    fn place(&self, dir_fd: &OwnedFd, dir_path: &Path, name: &str, c: &Checksum) -> Result<()> {
        let path = dir_path.join(name);
        if self.union {
            match rustix::fs::statat(dir_fd, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => {
                    if st.st_mode & 0o170000 == 0o040000 {
                        return Err(msg(format!(
                            "{}: exists and is a directory",
                            path.display()
                        )));
                    }
                    if self.opts.union_identical && !self.opts.union {
                        let existing = crate::commit::checksum_path(&path, self.opts.user_mode)?;
                        if existing == *c {
                            return Ok(());
                        }
                        return Err(msg(format!(
                            "{}: exists and differs (--union-identical)",
                            path.display()
                        )));
                    }
                }
                Err(Errno::NOENT) => {}
                Err(e) => return Err(e).at(&path),
            }
        }
        let (meta, mut content) = self.repo.open_file(c)?;
        if self.hardlink && self.can_link(&meta, &content) {
            let rel = Repo::object_relpath(c, ObjectType::File, self.repo.mode());
            let rel = rel.trim_start_matches("objects/");
            let r = if self.union {
                let tmp = tmp_name(name);
                rustix::fs::linkat(self.objects_fd, rel, dir_fd, tmp.as_str(), AtFlags::empty())
                    .and_then(|()| rustix::fs::renameat(dir_fd, tmp.as_str(), dir_fd, name))
            } else {
                rustix::fs::linkat(self.objects_fd, rel, dir_fd, name, AtFlags::empty())
            };
            match r {
                Ok(()) => return Ok(()),
                // Another filesystem, or too many links: copy instead.
                Err(Errno::XDEV) | Err(Errno::MLINK) => {}
                Err(e) => return Err(e).at(&path),
            }
        }
        let target_name = if self.union {
            tmp_name(name)
        } else {
            name.to_string()
        };
        let tpath = dir_path.join(&target_name);
        if meta.is_symlink() {
            rustix::fs::symlinkat(meta.symlink_target.as_str(), dir_fd, target_name.as_str())
                .at(&tpath)?;
            let zero = rustix::fs::Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            let _ = rustix::fs::utimensat(
                dir_fd,
                target_name.as_str(),
                &Timestamps {
                    last_access: zero,
                    last_modification: zero,
                },
                AtFlags::SYMLINK_NOFOLLOW,
            );
            if !self.opts.user_mode {
                rustix::fs::chownat(
                    dir_fd,
                    target_name.as_str(),
                    Some(Uid::from_raw(meta.uid)),
                    Some(Gid::from_raw(meta.gid)),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .at(&tpath)?;
                set_symlink_xattrs(dir_fd, &target_name, &meta).at(&tpath)?;
            }
        } else {
            let fd = rustix::fs::openat(
                dir_fd,
                target_name.as_str(),
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
            .at(&tpath)?;
            let mut f = File::from(fd);
            let copied = match content.as_file() {
                // Uncompressed objects: let the kernel copy (reflinks where it can).
                Some(src) => copy_file_range_all(src, &f, content.size()),
                None => io::copy(&mut content, &mut f).map(|_| ()),
            };
            copied.at(&tpath)?;
            f.flush().at(&tpath)?;
            if !self.opts.user_mode {
                rustix::fs::fchown(
                    &f,
                    Some(Uid::from_raw(meta.uid)),
                    Some(Gid::from_raw(meta.gid)),
                )
                .at(&tpath)?;
                set_fd_xattrs(&f, &meta.xattrs).at(&tpath)?;
            }
            // As ostree: user mode drops setuid/setgid and keeps files
            // readable by their owner.
            let mode = if self.opts.user_mode {
                (meta.mode & 0o1777) | 0o400
            } else {
                meta.mode & 0o7777
            };
            rustix::fs::fchmod(&f, Mode::from_raw_mode(mode)).at(&tpath)?;
            let zero = rustix::fs::Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            rustix::fs::futimens(
                &f,
                &Timestamps {
                    last_access: zero,
                    last_modification: zero,
                },
            )
            .at(&tpath)?;
        }
        if self.union {
            rustix::fs::renameat(dir_fd, target_name.as_str(), dir_fd, name).at(&path)?;
        }
        Ok(())
    }
}

fn tmp_name(name: &str) -> String {
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        ".{}.ostree-tmp-{}-{n}",
        &name[..name.len().min(32)],
        std::process::id()
    )
}

fn copy_file_range_all(src: &File, dst: &File, size: u64) -> io::Result<()> {
    let mut left = size;
    while left > 0 {
        let chunk = left.min(1 << 30) as usize;
        let n = match rustix::fs::copy_file_range(src, None, dst, None, chunk) {
            Ok(n) => n,
            Err(Errno::XDEV) | Err(Errno::NOSYS) | Err(Errno::INVAL) => {
                let mut s = src;
                let mut d = dst;
                io::copy(&mut s, &mut d)?;
                return Ok(());
            }
            Err(e) => return Err(errno(e)),
        };
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "object shorter than its size",
            ));
        }
        left -= n as u64;
    }
    Ok(())
}

fn set_symlink_xattrs(dir_fd: &OwnedFd, name: &str, meta: &FileMeta) -> rustix::io::Result<()> {
    if meta.xattrs.is_empty() {
        return Ok(());
    }
    use std::os::fd::AsRawFd;
    let path = format!("/proc/self/fd/{}/{name}", dir_fd.as_raw_fd());
    for (k, v) in &meta.xattrs {
        rustix::fs::lsetxattr(path.as_str(), OsStr::from_bytes(k), v, XattrFlags::empty())?;
    }
    Ok(())
}

fn checkout_single_file(
    repo: &Repo,
    c: &Checksum,
    dest: &Path,
    opts: &CheckoutOptions,
) -> Result<()> {
    let parent = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = dest
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| msg(format!("{}: invalid destination", dest.display())))?;
    let parent_fd = rustix::fs::open(
        parent,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .at(parent)?;
    let objects = repo.path().join("objects");
    let objects_fd = rustix::fs::open(
        &objects,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .at(&objects)?;
    let ctx = Ctx {
        repo,
        dest: parent,
        opts,
        union: opts.union || opts.union_identical,
        hardlink: false,
        objects_fd: &objects_fd,
    };
    ctx.place(&parent_fd, parent, name, c)
}
