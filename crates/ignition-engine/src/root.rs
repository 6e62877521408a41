//! A target root that nothing escapes.
//!
//! Every path is resolved by the kernel relative to an open directory of
//! the root with `RESOLVE_IN_ROOT`: symlinks and `..` are followed, but as
//! if the root were `/`, so a link to `/etc` inside the root means the
//! root's `/etc`, and no link can lead outside. (Upstream Ignition resolves
//! paths as strings and writes through any symlink it meets.) New files are
//! written under a temporary name in their directory and renamed into
//! place, so a failure never leaves a half-written file.

use std::ffi::OsStr;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// An error on one path in the root.
#[derive(Debug, thiserror::Error)]
#[error("{op} {path}: {error}")]
pub struct RootError {
    /// What was being done.
    pub op: &'static str,
    /// The path inside the root.
    pub path: String,
    /// Why it failed.
    pub error: std::io::Error,
}

fn err(op: &'static str, path: &str, e: Errno) -> RootError {
    RootError {
        op,
        path: path.to_string(),
        error: std::io::Error::from_raw_os_error(e.raw_os_error()),
    }
}

/// An open target root.
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

/// What is at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Link,
    /// Something else (device, fifo, socket).
    Other,
}

const RESOLVE: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

/// Splits an absolute in-root path into its parent and final name.
fn split(path: &str) -> Result<(String, &OsStr), RootError> {
    let p = Path::new(path);
    let name = match p.components().next_back() {
        Some(Component::Normal(n)) => n,
        _ => {
            return Err(RootError {
                op: "resolve",
                path: path.into(),
                error: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "path has no final name",
                ),
            });
        }
    };
    let parent = p
        .parent()
        .map(|q| q.to_string_lossy().into_owned())
        .unwrap_or_else(|| "/".into());
    Ok((parent, name))
}

fn rel(path: &str) -> &str {
    let r = path.trim_start_matches('/');
    if r.is_empty() { "." } else { r }
}

impl Root {
    /// Opens the directory `path` as the root.
    pub fn open(path: &Path) -> Result<Root, RootError> {
        let fd = rustix::fs::open(
            path,
            OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::RDONLY,
            Mode::empty(),
        )
        .map_err(|e| err("open root", &path.display().to_string(), e))?;
        Ok(Root {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// The root's path on the host.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn open_in(&self, path: &str, flags: OFlags) -> Result<OwnedFd, Errno> {
        rustix::fs::openat2(
            &self.fd,
            rel(path),
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            RESOLVE,
        )
    }

    /// Opens a directory inside the root (symlinks resolved within it).
    pub fn open_dir(&self, path: &str) -> Result<OwnedFd, RootError> {
        self.open_in(path, OFlags::DIRECTORY | OFlags::RDONLY)
            .map_err(|e| err("open directory", path, e))
    }

    /// What is at `path` (the last component not followed).
    pub fn kind(&self, path: &str) -> Result<Option<NodeKind>, RootError> {
        let (parent, name) = split(path)?;
        let dir = match self.open_in(&parent, OFlags::DIRECTORY | OFlags::RDONLY) {
            Ok(d) => d,
            Err(Errno::NOENT | Errno::NOTDIR) => return Ok(None),
            Err(e) => return Err(err("open directory", &parent, e)),
        };
        match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => {
                let t = rustix::fs::FileType::from_raw_mode(st.st_mode);
                Ok(Some(match t {
                    rustix::fs::FileType::RegularFile => NodeKind::File,
                    rustix::fs::FileType::Directory => NodeKind::Dir,
                    rustix::fs::FileType::Symlink => NodeKind::Link,
                    _ => NodeKind::Other,
                }))
            }
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(err("stat", path, e)),
        }
    }

    /// Creates every missing directory of `path` (mode 0755, owned by
    /// root), and returns the open directory.
    pub fn create_dirs(&self, path: &str) -> Result<OwnedFd, RootError> {
        self.create_dirs_depth(path, 0)
    }

    fn create_dirs_depth(&self, path: &str, depth: usize) -> Result<OwnedFd, RootError> {
        if depth > 40 {
            return Err(err("resolve", path, Errno::LOOP));
        }
        match self.open_in(path, OFlags::DIRECTORY | OFlags::RDONLY) {
            Ok(fd) => return Ok(fd),
            Err(Errno::NOENT) => {}
            Err(e) => return Err(err("open directory", path, e)),
        }
        let (parent, name) = split(path)?;
        let parent_fd = self.create_dirs_depth(&parent, depth + 1)?;
        match rustix::fs::mkdirat(&parent_fd, name, Mode::from_raw_mode(0o755)) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                // A dangling link: create its target, inside the root.
                if let Ok(target) = rustix::fs::readlinkat(&parent_fd, name, Vec::new()) {
                    let target = target.to_string_lossy().into_owned();
                    let resolved = if target.starts_with('/') {
                        target
                    } else {
                        format!("{}/{target}", parent.trim_end_matches('/'))
                    };
                    let resolved = ignition_config::validate::clean_path(&resolved);
                    self.create_dirs_depth(&resolved, depth + 1)?;
                    return self
                        .open_in(path, OFlags::DIRECTORY | OFlags::RDONLY)
                        .map_err(|e| err("open directory", path, e));
                }
            }
            Err(e) => return Err(err("create directory", path, e)),
        }
        // The mode is exact whatever the umask.
        let fd = rustix::fs::openat(
            &parent_fd,
            name,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| err("open directory", path, e))?;
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o755)).map_err(|e| err("chmod", path, e))?;
        Ok(fd)
    }

    /// Writes a whole file: [`Root::stage_file`], the data, then
    /// [`Root::commit_file`].
    pub fn write_file(
        &self,
        path: &str,
        data: &[u8],
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> Result<(), RootError> {
        let mut staged = self.stage_file(path)?;
        staged.file().write_all(data).map_err(|e| RootError {
            op: "write",
            path: path.into(),
            error: e,
        })?;
        self.commit_file(staged, mode, owner)
    }

    /// Starts a new version of the file `path`: an empty temporary file in
    /// the deepest directory on the way to `path` that exists, so nothing of
    /// the path is created, and nothing replaced, before the contents are
    /// written and known good (a fetch streamed into it may still fail its
    /// hash). Dropped without [`Root::commit_file`], it is removed.
    pub fn stage_file(&self, path: &str) -> Result<StagedFile, RootError> {
        let (parent, name) = split(path)?;
        let mut dir_path = parent;
        let dir = loop {
            match self.open_in(&dir_path, OFlags::DIRECTORY | OFlags::RDONLY) {
                Ok(fd) => break fd,
                Err(Errno::NOENT) if dir_path != "/" => {
                    dir_path = split(&dir_path).map(|(p, _)| p)?;
                }
                Err(e) => return Err(err("open directory", &dir_path, e)),
            }
        };
        let tmp = tmp_name(name);
        let file = create_tmp(&dir, &tmp).map_err(|e| err("create", path, e))?;
        Ok(StagedFile {
            dir,
            tmp,
            file: Some(file),
            path: path.to_string(),
        })
    }

    /// Puts a staged file in place: its parents created (0755), owner and
    /// mode set, synced, renamed over `path`.
    pub fn commit_file(
        &self,
        mut staged: StagedFile,
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> Result<(), RootError> {
        let path = staged.path.clone();
        let (parent, name) = split(&path)?;
        let dir = self.create_dirs(&parent)?;
        let mut file = staged.file.take().expect("a staged file is committed once");
        // A directory made through a link may be on another filesystem:
        // then the contents are copied to a temporary file beside `path`,
        // which takes the first one's place.
        let same_fs = rustix::fs::fstat(&dir)
            .and_then(|a| rustix::fs::fstat(&staged.dir).map(|b| a.st_dev == b.st_dev))
            .map_err(|e| err("stat", &path, e))?;
        if !same_fs {
            let tmp = tmp_name(name);
            let mut copy = create_tmp(&dir, &tmp).map_err(|e| err("create", &path, e))?;
            let copied = std::io::Seek::rewind(&mut file)
                .and_then(|()| std::io::copy(&mut file, &mut copy))
                .and_then(|_| dir.try_clone());
            match copied {
                Ok(dir_copy) => {
                    let _ =
                        rustix::fs::unlinkat(&staged.dir, staged.tmp.as_os_str(), AtFlags::empty());
                    staged.dir = dir_copy;
                    staged.tmp = tmp;
                    file = copy;
                }
                Err(e) => {
                    let _ = rustix::fs::unlinkat(&dir, tmp.as_os_str(), AtFlags::empty());
                    return Err(RootError {
                        op: "copy",
                        path,
                        error: e,
                    });
                }
            }
        }
        let result = (|| {
            if let Some((uid, gid)) = owner {
                rustix::fs::fchown(
                    &file,
                    Some(rustix::fs::Uid::from_raw(uid)),
                    Some(rustix::fs::Gid::from_raw(gid)),
                )
                .map_err(|e| err("chown", &path, e))?;
            }
            // chmod after chown: chown clears setuid/setgid bits.
            rustix::fs::fchmod(&file, Mode::from_raw_mode(mode))
                .map_err(|e| err("chmod", &path, e))?;
            file.sync_all().map_err(|e| RootError {
                op: "sync",
                path: path.clone(),
                error: e,
            })?;
            rustix::fs::renameat(&staged.dir, staged.tmp.as_os_str(), &dir, name)
                .map_err(|e| err("rename into place", &path, e))
        })();
        if result.is_ok() {
            // Renamed: nothing left to remove.
            staged.tmp.clear();
        }
        result
    }

    /// Reads a whole file (symlinks resolved within the root).
    pub fn read_file(&self, path: &str) -> Result<Vec<u8>, RootError> {
        let fd = self
            .open_in(path, OFlags::RDONLY)
            .map_err(|e| err("open", path, e))?;
        let mut f = std::fs::File::from(fd);
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut f, &mut buf).map_err(|e| RootError {
            op: "read",
            path: path.into(),
            error: e,
        })?;
        Ok(buf)
    }

    /// Creates a directory (or, if one exists, just sets its mode and owner).
    pub fn make_dir(
        &self,
        path: &str,
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> Result<(), RootError> {
        let (parent, name) = split(path)?;
        let dir = self.create_dirs(&parent)?;
        match rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(err("create directory", path, e)),
        }
        let fd = rustix::fs::openat(
            &dir,
            name,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| err("open directory", path, e))?;
        if let Some((uid, gid)) = owner {
            rustix::fs::fchown(
                &fd,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
            )
            .map_err(|e| err("chown", path, e))?;
        }
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(|e| err("chmod", path, e))
    }

    /// Creates a symbolic link (replacing what is at `path` if `replace`).
    pub fn symlink(
        &self,
        path: &str,
        target: &str,
        owner: Option<(u32, u32)>,
    ) -> Result<(), RootError> {
        let (parent, name) = split(path)?;
        let dir = self.create_dirs(&parent)?;
        let tmp = tmp_name(name);
        rustix::fs::symlinkat(target, &dir, tmp.as_os_str())
            .map_err(|e| err("create link", path, e))?;
        if let Some((uid, gid)) = owner {
            let r = rustix::fs::chownat(
                &dir,
                tmp.as_os_str(),
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            );
            if let Err(e) = r {
                let _ = rustix::fs::unlinkat(&dir, tmp.as_os_str(), AtFlags::empty());
                return Err(err("chown", path, e));
            }
        }
        rustix::fs::renameat(&dir, tmp.as_os_str(), &dir, name).map_err(|e| {
            let _ = rustix::fs::unlinkat(&dir, tmp.as_os_str(), AtFlags::empty());
            err("rename into place", path, e)
        })
    }

    /// Creates a hard link at `path` to the file at `target` (both inside
    /// the root; the target's last component is not followed).
    pub fn hard_link(&self, path: &str, target: &str) -> Result<(), RootError> {
        let (tparent, tname) = split(target)?;
        let tdir = self.open_dir(&tparent)?;
        let (parent, name) = split(path)?;
        let dir = self.create_dirs(&parent)?;
        let tmp = tmp_name(name);
        rustix::fs::linkat(&tdir, tname, &dir, tmp.as_os_str(), AtFlags::empty())
            .map_err(|e| err("create hard link", path, e))?;
        rustix::fs::renameat(&dir, tmp.as_os_str(), &dir, name).map_err(|e| {
            let _ = rustix::fs::unlinkat(&dir, tmp.as_os_str(), AtFlags::empty());
            err("rename into place", path, e)
        })
    }

    /// Removes what is at `path` (a file or link, or an empty directory).
    pub fn remove(&self, path: &str) -> Result<(), RootError> {
        let (parent, name) = split(path)?;
        let dir = self.open_dir(&parent)?;
        match rustix::fs::unlinkat(&dir, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(Errno::ISDIR) => rustix::fs::unlinkat(&dir, name, AtFlags::REMOVEDIR)
                .map_err(|e| err("remove", path, e)),
            Err(e) => Err(err("remove", path, e)),
        }
    }

    /// Sets mode and owner of an existing node (not following a final link).
    pub fn set_attrs(
        &self,
        path: &str,
        mode: Option<u32>,
        owner: Option<(u32, u32)>,
    ) -> Result<(), RootError> {
        let (parent, name) = split(path)?;
        let dir = self.open_dir(&parent)?;
        if let Some((uid, gid)) = owner {
            rustix::fs::chownat(
                &dir,
                name,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| err("chown", path, e))?;
        }
        if let Some(m) = mode {
            rustix::fs::chmodat(&dir, name, Mode::from_raw_mode(m), AtFlags::empty())
                .map_err(|e| err("chmod", path, e))?;
        }
        Ok(())
    }

    /// Mode and owner of what is at `path` (a final link is not followed).
    pub fn stat(&self, path: &str) -> Result<Option<(u32, u32, u32)>, RootError> {
        let (parent, name) = split(path)?;
        let dir = match self.open_in(&parent, OFlags::DIRECTORY | OFlags::RDONLY) {
            Ok(d) => d,
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(err("open directory", &parent, e)),
        };
        match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some((st.st_mode & 0o7777, st.st_uid, st.st_gid))),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(err("stat", path, e)),
        }
    }

    /// The target of the link at `path`.
    pub fn read_link(&self, path: &str) -> Result<String, RootError> {
        let (parent, name) = split(path)?;
        let dir = self.open_dir(&parent)?;
        rustix::fs::readlinkat(&dir, name, Vec::new())
            .map(|t| t.to_string_lossy().into_owned())
            .map_err(|e| err("read link", path, e))
    }

    /// Removes what is at `path`, a whole directory tree included (links are
    /// removed, never followed).
    pub fn remove_all(&self, path: &str) -> Result<(), RootError> {
        let (parent, name) = split(path)?;
        let dir = self.open_dir(&parent)?;
        remove_tree(&dir, name).map_err(|e| err("remove", path, e))
    }

    /// The mode of the file at `path`, if it exists.
    pub fn mode(&self, path: &str) -> Result<Option<u32>, RootError> {
        let (parent, name) = split(path)?;
        let dir = match self.open_in(&parent, OFlags::DIRECTORY | OFlags::RDONLY) {
            Ok(d) => d,
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(err("open directory", &parent, e)),
        };
        match rustix::fs::statat(&dir, name, AtFlags::empty()) {
            Ok(st) => Ok(Some(st.st_mode & 0o7777)),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(err("stat", path, e)),
        }
    }

    /// Where `path` leads inside the root with its directories' symlinks
    /// followed (as if the root were `/`) and the last component not
    /// followed: the node an entry with this path writes. Dangling links
    /// are followed too, to where they would lead.
    pub fn resolve_parent(&self, path: &str) -> Result<String, RootError> {
        let clean = ignition_config::validate::clean_path(path);
        let mut pending: std::collections::VecDeque<String> = clean
            .split('/')
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect();
        let Some(last) = pending.pop_back() else {
            return Ok("/".into());
        };
        let join = |dir: &str, name: &str| format!("{}/{name}", dir.trim_end_matches('/'));
        let parent_of = |dir: &str| match dir.rfind('/') {
            Some(0) | None => "/".to_string(),
            Some(i) => dir[..i].to_string(),
        };
        let mut real = "/".to_string();
        let mut hops = 0;
        while let Some(c) = pending.pop_front() {
            match c.as_str() {
                "." => continue,
                ".." => {
                    real = parent_of(&real);
                    continue;
                }
                _ => {}
            }
            let next = join(&real, &c);
            if self.kind(&next)? != Some(NodeKind::Link) {
                real = next;
                continue;
            }
            hops += 1;
            if hops > 40 {
                return Err(err("resolve", path, Errno::LOOP));
            }
            let target = self.read_link(&next)?;
            for t in target.split('/').filter(|t| !t.is_empty()).rev() {
                pending.push_front(t.to_string());
            }
            if target.starts_with('/') {
                real = "/".into();
            }
        }
        Ok(join(&real, &last))
    }

    /// Whether `a` and `b` are the same inode (final links not followed).
    pub fn same_file(&self, a: &str, b: &str) -> Result<bool, RootError> {
        let ino = |p: &str| -> Result<Option<(u64, u64)>, RootError> {
            let (parent, name) = split(p)?;
            let dir = match self.open_in(&parent, OFlags::DIRECTORY | OFlags::RDONLY) {
                Ok(d) => d,
                Err(Errno::NOENT) => return Ok(None),
                Err(e) => return Err(err("open directory", &parent, e)),
            };
            match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => Ok(Some((st.st_dev, st.st_ino))),
                Err(Errno::NOENT) => Ok(None),
                Err(e) => Err(err("stat", p, e)),
            }
        };
        Ok(match (ino(a)?, ino(b)?) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        })
    }

    /// The fd of the root, for callers that need it.
    pub fn fd(&self) -> impl AsFd + '_ {
        &self.fd
    }
}

fn remove_tree(dir: &OwnedFd, name: &OsStr) -> Result<(), Errno> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => return Ok(()),
        Err(Errno::ISDIR) => {}
        Err(e) => return Err(e),
    }
    let sub = rustix::fs::openat(
        dir,
        name,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(&sub)? {
        let entry = entry?;
        let n = entry.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(std::ffi::OsString::from(OsStr::from_bytes(n)));
        }
    }
    for n in names {
        remove_tree(&sub, &n)?;
    }
    rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)
}

/// A file written under a temporary name, put in place by
/// [`Root::commit_file`]; removed if dropped before.
pub struct StagedFile {
    dir: OwnedFd,
    tmp: std::ffi::OsString,
    file: Option<std::fs::File>,
    path: String,
}

impl StagedFile {
    /// The file to write the contents into.
    pub fn file(&mut self) -> &mut std::fs::File {
        self.file.as_mut().expect("not yet committed")
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if !self.tmp.is_empty() {
            let _ = rustix::fs::unlinkat(&self.dir, self.tmp.as_os_str(), AtFlags::empty());
        }
    }
}

/// Creates a new, empty, private temporary file `tmp` in `dir`.
fn create_tmp(dir: &OwnedFd, tmp: &OsStr) -> Result<std::fs::File, Errno> {
    // A leftover of a killed run with the same name goes first.
    let _ = rustix::fs::unlinkat(dir, tmp, AtFlags::empty());
    let fd = rustix::fs::openat(
        dir,
        tmp,
        OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::from_raw_mode(0o600),
    )?;
    Ok(std::fs::File::from(fd))
}

fn tmp_name(name: &OsStr) -> std::ffi::OsString {
    let mut t = std::ffi::OsString::from(".");
    t.push(name);
    t.push(format!(".ignition-tmp-{}", std::process::id()));
    let _ = t.as_bytes();
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_never_lead_out_of_the_root() {
        let outside = tempfile::tempdir().unwrap();
        let root_dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root_dir.path().join("etc")).unwrap();
        // A link in the root to an absolute host path, and one with `..`.
        std::os::unix::fs::symlink(outside.path(), root_dir.path().join("evil")).unwrap();
        std::os::unix::fs::symlink("../../../../..", root_dir.path().join("up")).unwrap();
        let root = Root::open(root_dir.path()).unwrap();
        root.write_file("/evil/x", b"1", 0o644, None).unwrap();
        root.write_file("/up/etc/y", b"2", 0o644, None).unwrap();
        // Nothing was written outside; both landed inside the root.
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        let inside = root_dir
            .path()
            .join(outside.path().strip_prefix("/").unwrap())
            .join("x");
        assert_eq!(std::fs::read(inside).unwrap(), b"1");
        assert_eq!(std::fs::read(root_dir.path().join("etc/y")).unwrap(), b"2");
    }

    #[test]
    fn writes_replace_links_not_their_targets() {
        let root_dir = tempfile::tempdir().unwrap();
        std::fs::write(root_dir.path().join("target"), "keep").unwrap();
        std::os::unix::fs::symlink("/target", root_dir.path().join("link")).unwrap();
        let root = Root::open(root_dir.path()).unwrap();
        root.write_file("/link", b"new", 0o640, None).unwrap();
        assert_eq!(
            std::fs::read_to_string(root_dir.path().join("target")).unwrap(),
            "keep"
        );
        assert_eq!(
            std::fs::read_to_string(root_dir.path().join("link")).unwrap(),
            "new"
        );
        use std::os::unix::fs::PermissionsExt;
        let m = std::fs::symlink_metadata(root_dir.path().join("link")).unwrap();
        assert!(m.is_file());
        assert_eq!(m.permissions().mode() & 0o7777, 0o640);
        // No temporary file is left.
        let names: Vec<_> = std::fs::read_dir(root_dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2);
    }

    #[test]
    fn parents_are_created_0755() {
        let root_dir = tempfile::tempdir().unwrap();
        let root = Root::open(root_dir.path()).unwrap();
        root.write_file("/a/b/c", b"x", 0o600, None).unwrap();
        use std::os::unix::fs::PermissionsExt;
        for d in ["a", "a/b"] {
            let m = std::fs::metadata(root_dir.path().join(d)).unwrap();
            assert_eq!(m.permissions().mode() & 0o7777, 0o755, "{d}");
        }
        assert_eq!(root.kind("/a/b/c").unwrap(), Some(NodeKind::File));
        assert_eq!(root.kind("/a/b").unwrap(), Some(NodeKind::Dir));
        assert_eq!(root.kind("/nope/x").unwrap(), None);
    }
}
