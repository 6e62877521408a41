//! A repository on disk: layout, modes, object storage, refs, locking.
//!
//! Layout as OSTree's: `config`, `objects/XX/<62 hex>.<type>`, `refs/heads`,
//! `refs/remotes/<remote>/`, `refs/mirrors`, `tmp/`, `state/`,
//! `extensions/`. Writers work in a transaction: every object is written
//! into a private staging directory under `tmp/` (named with the boot id, so
//! a transaction killed mid-way is resumed by the next one of the same
//! boot), the filesystem is synced once, and only then are the objects
//! renamed into `objects/` and refs updated, each with one rename. A killed
//! writer therefore never leaves a partial object or a ref to a missing
//! commit behind.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::FlockOperation;

use crate::gvariant::Value;
use crate::keyfile::KeyFile;
use crate::object::{
    self, Checksum, Commit, DirMeta, DirTree, FileMeta, ObjectError, ObjectType, Xattrs,
};

/// How a repository stores file objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoMode {
    /// Compressed `.filez` objects; servable over HTTP.
    Archive,
    /// Real files with real owners, modes and xattrs (needs root).
    Bare,
    /// Real files owned by the user; true metadata in `user.ostreemeta`.
    BareUser,
    /// Like bare-user without xattrs; metadata canonicalized.
    BareUserOnly,
}

impl RepoMode {
    /// The name in `config` (`archive-z2` for archive, as OSTree writes).
    pub fn config_name(self) -> &'static str {
        match self {
            RepoMode::Archive => "archive-z2",
            RepoMode::Bare => "bare",
            RepoMode::BareUser => "bare-user",
            RepoMode::BareUserOnly => "bare-user-only",
        }
    }

    /// Parses a mode as `--mode=` or `config` spells it.
    pub fn parse(s: &str) -> Option<RepoMode> {
        Some(match s {
            "archive" | "archive-z2" => RepoMode::Archive,
            "bare" => RepoMode::Bare,
            "bare-user" => RepoMode::BareUser,
            "bare-user-only" => RepoMode::BareUserOnly,
            _ => return None,
        })
    }
}

/// What can go wrong in a repository.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error on a path.
    #[error("{}: {cause}", path.display())]
    Io {
        /// Where.
        path: PathBuf,
        /// Why (in the message, so not a `source` that `{:#}` would
        /// print a second time).
        cause: io::Error,
    },
    /// An object that does not parse, or whose content does not match its name.
    #[error("object {checksum}.{}: {msg}", kind.extension())]
    Corrupt {
        /// Its name.
        checksum: Checksum,
        /// Its kind.
        kind: ObjectType,
        /// What is wrong.
        msg: String,
    },
    /// An object that is not there.
    #[error("No such metadata object {checksum}.{}", kind.extension())]
    MissingObject {
        /// Its name.
        checksum: Checksum,
        /// Its kind.
        kind: ObjectType,
    },
    /// Anything else, said in words.
    #[error("{0}")]
    Msg(String),
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches a path to an I/O error.
pub(crate) trait IoContext<T> {
    fn at(self, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &Path) -> Result<T> {
        self.map_err(|source| Error::Io {
            path: path.to_path_buf(),
            cause: source,
        })
    }
}

impl<T> IoContext<T> for rustix::io::Result<T> {
    fn at(self, path: &Path) -> Result<T> {
        self.map_err(|e| Error::Io {
            path: path.to_path_buf(),
            cause: io::Error::from_raw_os_error(e.raw_os_error()),
        })
    }
}

pub(crate) fn msg(s: impl Into<String>) -> Error {
    Error::Msg(s.into())
}

/// The xattr bare-user repositories keep the true metadata in.
pub(crate) const OSTREEMETA_XATTR: &str = "user.ostreemeta";

/// Compression level of `.filez` content, as OSTree's default.
pub(crate) const ARCHIVE_LEVEL: u32 = 6;

/// An open repository.
#[derive(Debug)]
pub struct Repo {
    pub(crate) path: PathBuf,
    pub(crate) mode: RepoMode,
    pub(crate) config: KeyFile,
    pub(crate) fsync: bool,
}

pub(crate) fn create_dirs(path: &Path) -> Result<()> {
    fs::create_dir_all(path).at(path)
}

impl Repo {
    /// Creates a repository (or opens an existing one of the same mode, as
    /// `ostree init` does).
    pub fn init(path: &Path, mode: RepoMode) -> Result<Repo> {
        let config = path.join("config");
        if config.exists() {
            let repo = Repo::open(path)?;
            if repo.mode != mode {
                return Err(msg(format!(
                    "{}: repository exists with mode {}",
                    path.display(),
                    repo.mode.config_name()
                )));
            }
            return Ok(repo);
        }
        for d in [
            "objects",
            "tmp/cache",
            "refs/heads",
            "refs/mirrors",
            "refs/remotes",
            "state",
            "extensions",
        ] {
            create_dirs(&path.join(d))?;
        }
        let text = format!("[core]\nrepo_version=1\nmode={}\n", mode.config_name());
        write_atomic(&config, text.as_bytes(), false)?;
        Repo::open(path)
    }

    /// Opens a repository.
    pub fn open(path: &Path) -> Result<Repo> {
        let cfg_path = path.join("config");
        let text = fs::read_to_string(&cfg_path).at(&cfg_path)?;
        let config =
            KeyFile::parse(&text).map_err(|e| msg(format!("{}: {e}", cfg_path.display())))?;
        match config.get("core", "repo_version") {
            Some("1") => {}
            other => {
                return Err(msg(format!(
                    "{}: unsupported repo_version {:?}",
                    cfg_path.display(),
                    other.unwrap_or("(missing)")
                )));
            }
        }
        let mode_name = config.get("core", "mode").unwrap_or("bare");
        let mode = RepoMode::parse(mode_name).ok_or_else(|| {
            msg(format!(
                "{}: invalid mode '{mode_name}'",
                cfg_path.display()
            ))
        })?;
        let fsync = config.get_bool("core", "fsync").unwrap_or(true);
        Ok(Repo {
            path: path.to_path_buf(),
            mode,
            config,
            fsync,
        })
    }

    /// The repository's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How it stores files.
    pub fn mode(&self) -> RepoMode {
        self.mode
    }

    /// The parsed `config`.
    pub fn config(&self) -> &KeyFile {
        &self.config
    }

    /// Rewrites `config` atomically.
    pub fn write_config(&mut self, config: KeyFile) -> Result<()> {
        write_atomic(
            &self.path.join("config"),
            config.to_string().as_bytes(),
            self.fsync,
        )?;
        self.config = config;
        Ok(())
    }

    /// Turns syncing on or off for this handle only (`--fsync=false`).
    pub fn set_fsync(&mut self, on: bool) {
        self.fsync = on;
    }

    /// Whether writes are synced before they become visible.
    pub fn fsync(&self) -> bool {
        self.fsync
    }

    pub(crate) fn object_name(
        checksum: &Checksum,
        kind: ObjectType,
        mode: RepoMode,
    ) -> (String, String) {
        let hex = checksum.to_hex();
        let ext = if kind == ObjectType::File && mode == RepoMode::Archive {
            "filez"
        } else {
            kind.extension()
        };
        (hex[..2].to_string(), format!("{}.{ext}", &hex[2..]))
    }

    /// The path of an object in `objects/`.
    pub fn object_path(&self, checksum: &Checksum, kind: ObjectType) -> PathBuf {
        let (dir, name) = Repo::object_name(checksum, kind, self.mode);
        self.path.join("objects").join(dir).join(name)
    }

    /// The path relative to the repository, as served over HTTP.
    pub(crate) fn object_relpath(checksum: &Checksum, kind: ObjectType, mode: RepoMode) -> String {
        let (dir, name) = Repo::object_name(checksum, kind, mode);
        format!("objects/{dir}/{name}")
    }

    /// Whether the object is stored.
    pub fn has_object(&self, checksum: &Checksum, kind: ObjectType) -> bool {
        fs::symlink_metadata(self.object_path(checksum, kind)).is_ok()
    }

    /// Reads a metadata object's bytes.
    pub(crate) fn load_meta_bytes(&self, checksum: &Checksum, kind: ObjectType) -> Result<Vec<u8>> {
        let path = self.object_path(checksum, kind);
        match fs::read(&path) {
            Ok(b) => Ok(b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::MissingObject {
                checksum: *checksum,
                kind,
            }),
            Err(e) => Err(Error::Io { path, cause: e }),
        }
    }

    fn corrupt(checksum: &Checksum, kind: ObjectType, e: ObjectError) -> Error {
        Error::Corrupt {
            checksum: *checksum,
            kind,
            msg: e.to_string(),
        }
    }

    /// Loads a commit.
    pub fn load_commit(&self, checksum: &Checksum) -> Result<Commit> {
        let b = self.load_meta_bytes(checksum, ObjectType::Commit)?;
        Commit::parse(&b).map_err(|e| Repo::corrupt(checksum, ObjectType::Commit, e))
    }

    /// Loads a dirtree.
    pub fn load_dirtree(&self, checksum: &Checksum) -> Result<DirTree> {
        let b = self.load_meta_bytes(checksum, ObjectType::DirTree)?;
        DirTree::parse(&b).map_err(|e| Repo::corrupt(checksum, ObjectType::DirTree, e))
    }

    /// Loads a dirmeta.
    pub fn load_dirmeta(&self, checksum: &Checksum) -> Result<DirMeta> {
        let b = self.load_meta_bytes(checksum, ObjectType::DirMeta)?;
        DirMeta::parse(&b).map_err(|e| Repo::corrupt(checksum, ObjectType::DirMeta, e))
    }

    /// Loads a commit's detached metadata, if it has any.
    pub fn load_commitmeta(&self, checksum: &Checksum) -> Result<Option<Vec<(String, Value)>>> {
        match self.load_meta_bytes(checksum, ObjectType::CommitMeta) {
            Ok(b) => {
                Ok(Some(object::parse_vardict(&b).map_err(|e| {
                    Repo::corrupt(checksum, ObjectType::CommitMeta, e)
                })?))
            }
            Err(Error::MissingObject { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Opens a file object: its metadata and a reader of its content.
    pub fn open_file(&self, checksum: &Checksum) -> Result<(FileMeta, Content)> {
        let path = self.object_path(checksum, ObjectType::File);
        let kind = ObjectType::File;
        let missing = |e: io::Error| {
            if e.kind() == io::ErrorKind::NotFound {
                Error::MissingObject {
                    checksum: *checksum,
                    kind,
                }
            } else {
                Error::Io {
                    path: path.clone(),
                    cause: e,
                }
            }
        };
        match self.mode {
            RepoMode::Archive => {
                let mut f = File::open(&path).map_err(missing)?;
                let mut prefix = [0u8; 8];
                f.read_exact(&mut prefix).at(&path)?;
                let len = u32::from_be_bytes(prefix[..4].try_into().expect("4")) as usize;
                if len > 1 << 20 {
                    return Err(Repo::corrupt(
                        checksum,
                        kind,
                        ObjectError::Field {
                            kind: "archive file header",
                            msg: format!("header length {len} too large"),
                        },
                    ));
                }
                let mut header = vec![0; len];
                f.read_exact(&mut header).at(&path)?;
                let (meta, size) = FileMeta::from_archive_header(&header)
                    .map_err(|e| Repo::corrupt(checksum, kind, e))?;
                let content = if meta.is_symlink() {
                    Content::Empty
                } else {
                    Content::Deflate(
                        flate2::read::DeflateDecoder::new(io::BufReader::with_capacity(
                            64 * 1024,
                            f,
                        ))
                        .take(size),
                        size,
                    )
                };
                Ok((meta, content))
            }
            RepoMode::Bare => {
                let st = fs::symlink_metadata(&path).map_err(missing)?;
                let xattrs = read_xattrs(&path)?;
                if st.file_type().is_symlink() {
                    let target = fs::read_link(&path).at(&path)?;
                    let meta = FileMeta {
                        uid: st.uid(),
                        gid: st.gid(),
                        mode: st.mode(),
                        rdev: 0,
                        symlink_target: path_string(&target, &path)?,
                        xattrs,
                    };
                    return Ok((meta, Content::Empty));
                }
                let meta = FileMeta {
                    uid: st.uid(),
                    gid: st.gid(),
                    mode: st.mode(),
                    rdev: 0,
                    symlink_target: String::new(),
                    xattrs,
                };
                let f = File::open(&path).at(&path)?;
                Ok((meta, Content::File(f, st.len())))
            }
            RepoMode::BareUser => {
                let mut f = File::open(&path).map_err(missing)?;
                let raw = rustix_get_xattr(&f, OSTREEMETA_XATTR).at(&path)?;
                let Some(raw) = raw else {
                    return Err(Repo::corrupt(
                        checksum,
                        kind,
                        ObjectError::Field {
                            kind: "bare-user file",
                            msg: format!("no {OSTREEMETA_XATTR} xattr"),
                        },
                    ));
                };
                let mut meta = FileMeta::from_ostreemeta(&raw)
                    .map_err(|e| Repo::corrupt(checksum, kind, e))?;
                let len = f.metadata().at(&path)?.len();
                if meta.is_symlink() {
                    let mut target = Vec::new();
                    f.read_to_end(&mut target).at(&path)?;
                    if target.last() == Some(&0) {
                        target.pop();
                    }
                    meta.symlink_target = String::from_utf8(target).map_err(|_| {
                        msg(format!("{}: symlink target not UTF-8", path.display()))
                    })?;
                    return Ok((meta, Content::Empty));
                }
                Ok((meta, Content::File(f, len)))
            }
            RepoMode::BareUserOnly => {
                let st = fs::symlink_metadata(&path).map_err(missing)?;
                if st.file_type().is_symlink() {
                    let target = fs::read_link(&path).at(&path)?;
                    let meta = FileMeta {
                        mode: st.mode(),
                        symlink_target: path_string(&target, &path)?,
                        ..FileMeta::default()
                    };
                    return Ok((meta, Content::Empty));
                }
                let meta = FileMeta {
                    mode: st.mode(),
                    ..FileMeta::default()
                };
                let f = File::open(&path).at(&path)?;
                Ok((meta, Content::File(f, st.len())))
            }
        }
    }

    /// Lists objects of the repository (optionally only of one kind).
    pub(crate) fn list_objects(&self) -> Result<Vec<(Checksum, ObjectType)>> {
        let objects = self.path.join("objects");
        let mut out = Vec::new();
        for entry in fs::read_dir(&objects).at(&objects)? {
            let entry = entry.at(&objects)?;
            let prefix = entry.file_name().to_string_lossy().into_owned();
            if prefix.len() != 2 {
                continue;
            }
            let dir = entry.path();
            for e in fs::read_dir(&dir).at(&dir)? {
                let name = e.at(&dir)?.file_name().to_string_lossy().into_owned();
                let Some((rest, ext)) = name.split_once('.') else {
                    continue;
                };
                let (Some(kind), Ok(c)) = (
                    ObjectType::from_extension(ext),
                    Checksum::from_hex(&format!("{prefix}{rest}")),
                ) else {
                    continue;
                };
                out.push((c, kind));
            }
        }
        out.sort();
        Ok(out)
    }

    fn ref_path(&self, remote: Option<&str>, name: &str) -> Result<PathBuf> {
        if !valid_ref(name) {
            return Err(msg(format!("Invalid ref name {name}")));
        }
        Ok(match remote {
            None => self.path.join("refs/heads").join(name),
            Some(r) => {
                if !valid_ref(r) || r.contains('/') {
                    return Err(msg(format!("Invalid remote name {r}")));
                }
                self.path.join("refs/remotes").join(r).join(name)
            }
        })
    }

    /// Reads a ref, if it exists.
    pub fn read_ref(&self, remote: Option<&str>, name: &str) -> Result<Option<Checksum>> {
        let path = self.ref_path(remote, name)?;
        match fs::read_to_string(&path) {
            Ok(s) => Checksum::from_hex(s.trim())
                .map(Some)
                .map_err(|_| msg(format!("{}: invalid checksum in ref", path.display()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) if e.raw_os_error() == Some(21) => Ok(None),
            Err(e) => Err(Error::Io { path, cause: e }),
        }
    }

    /// Sets (or with `None` deletes) a ref, atomically.
    pub fn set_ref(
        &self,
        remote: Option<&str>,
        name: &str,
        target: Option<&Checksum>,
    ) -> Result<()> {
        let path = self.ref_path(remote, name)?;
        match target {
            Some(c) => {
                create_dirs(path.parent().expect("ref has a parent"))?;
                write_atomic(&path, format!("{c}\n").as_bytes(), self.fsync)
            }
            None => match fs::remove_file(&path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(Error::Io { path, cause: e }),
            },
        }
    }

    /// All refs: local ones by name, remote ones as `remote:name`.
    pub fn list_refs(&self) -> Result<BTreeMap<String, Checksum>> {
        let mut out = BTreeMap::new();
        let heads = self.path.join("refs/heads");
        walk_refs(&heads, "", &mut |name, c| {
            out.insert(name.to_string(), c);
        })?;
        let remotes = self.path.join("refs/remotes");
        if remotes.is_dir() {
            for e in fs::read_dir(&remotes).at(&remotes)? {
                let e = e.at(&remotes)?;
                if !e.path().is_dir() {
                    continue;
                }
                let remote = e.file_name().to_string_lossy().into_owned();
                walk_refs(&e.path(), "", &mut |name, c| {
                    out.insert(format!("{remote}:{name}"), c);
                })?;
            }
        }
        Ok(out)
    }

    /// Resolves a revision: a full checksum, a ref (`name` or
    /// `remote:name`), optionally followed by `^` for parents.
    pub fn resolve_rev(&self, rev: &str) -> Result<Checksum> {
        self.resolve_rev_opt(rev)?
            .ok_or_else(|| msg(format!("Refspec '{rev}' not found")))
    }

    /// As [`Repo::resolve_rev`], `None` when the ref does not exist.
    pub(crate) fn resolve_rev_opt(&self, rev: &str) -> Result<Option<Checksum>> {
        if let Some(base) = rev.strip_suffix('^') {
            let Some(c) = self.resolve_rev_opt(base)? else {
                return Ok(None);
            };
            let commit = self.load_commit(&c)?;
            return commit
                .parent
                .map(Some)
                .ok_or_else(|| msg(format!("Commit {c} has no parent")));
        }
        if let Ok(c) = Checksum::from_hex(rev) {
            return Ok(Some(c));
        }
        if let Some((remote, name)) = rev.split_once(':') {
            return self.read_ref(Some(remote), name);
        }
        if let Some(c) = self.read_ref(None, rev)? {
            return Ok(Some(c));
        }
        // As OSTree, an unqualified name also matches a remote's ref of that
        // name when the local one does not exist.
        for (name, c) in self.list_refs()? {
            if let Some((_, n)) = name.split_once(':')
                && n == rev
            {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }

    /// Takes the repository lock, shared (writers) or exclusive (prune).
    pub fn lock(&self, exclusive: bool) -> Result<RepoLock> {
        let path = self.path.join(".lock");
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .at(&path)?;
        let op = if exclusive {
            FlockOperation::LockExclusive
        } else {
            FlockOperation::LockShared
        };
        rustix::fs::flock(&f, op).at(&path)?;
        Ok(RepoLock { _file: f })
    }

    /// Syncs the filesystem holding the repository (when fsync is on).
    pub fn sync(&self) -> Result<()> {
        if self.fsync {
            let f = File::open(&self.path).at(&self.path)?;
            rustix::fs::syncfs(&f).at(&self.path)?;
        }
        Ok(())
    }
}

/// Whether a ref name is valid: path components of `[\w.-]`, no `..`.
pub(crate) fn valid_ref(name: &str) -> bool {
    !name.is_empty()
        && name.split('/').all(|c| {
            !c.is_empty()
                && c != "."
                && c != ".."
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
        })
}

fn walk_refs(dir: &Path, prefix: &str, f: &mut dyn FnMut(&str, Checksum)) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(Error::Io {
                path: dir.to_path_buf(),
                cause: e,
            });
        }
    };
    let mut names: Vec<_> = entries.filter_map(|e| e.ok()).collect();
    names.sort_by_key(|e| e.file_name());
    for e in names {
        let name = format!("{prefix}{}", e.file_name().to_string_lossy());
        let path = e.path();
        if path.is_dir() {
            walk_refs(&path, &format!("{name}/"), f)?;
        } else if let Ok(s) = fs::read_to_string(&path)
            && let Ok(c) = Checksum::from_hex(s.trim())
        {
            f(&name, c);
        }
    }
    Ok(())
}

fn path_string(p: &Path, at: &Path) -> Result<String> {
    p.to_str()
        .map(str::to_string)
        .ok_or_else(|| msg(format!("{}: not UTF-8", at.display())))
}

/// A held repository lock.
#[derive(Debug)]
pub struct RepoLock {
    _file: File,
}

/// The content of a file object.
pub enum Content {
    /// A symlink: no content.
    Empty,
    /// A plain file and its size.
    File(File, u64),
    /// Compressed archive content and its uncompressed size.
    Deflate(
        io::Take<flate2::read::DeflateDecoder<io::BufReader<File>>>,
        u64,
    ),
}

impl Content {
    /// The uncompressed size.
    pub fn size(&self) -> u64 {
        match self {
            Content::Empty => 0,
            Content::File(_, n) | Content::Deflate(_, n) => *n,
        }
    }

    /// The underlying file when the content is stored uncompressed.
    pub(crate) fn as_file(&self) -> Option<&File> {
        match self {
            Content::File(f, _) => Some(f),
            _ => None,
        }
    }
}

impl Read for Content {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Content::Empty => Ok(0),
            Content::File(f, _) => f.read(buf),
            Content::Deflate(d, _) => d.read(buf),
        }
    }
}

/// Writes `data` to `path` (mode 0644) through a temporary file and a
/// rename ([`util::write_atomic`]).
pub fn write_atomic(path: &Path, data: &[u8], fsync: bool) -> Result<()> {
    util::write_atomic(path, data, 0o644, fsync).at(path)
}

pub(crate) fn unique() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{}-{t:08x}-{n}", std::process::id())
}

fn rustix_get_xattr(f: &File, name: &str) -> rustix::io::Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; 256];
    loop {
        match rustix::fs::fgetxattr(f.as_fd(), name, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(Some(buf));
            }
            Err(rustix::io::Errno::NODATA) => return Ok(None),
            Err(rustix::io::Errno::RANGE) => {
                let n = rustix::fs::fgetxattr(f.as_fd(), name, &mut [0u8; 0][..])?;
                buf.resize(n.max(buf.len() * 2), 0);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Reads the xattrs of a path without following a final symlink, sorted by
/// name. Unsupported filesystems give none.
pub fn read_xattrs(path: &Path) -> Result<Xattrs> {
    let mut names = vec![0u8; 1024];
    let n = loop {
        match rustix::fs::llistxattr(path, &mut names[..]) {
            Ok(n) => break n,
            Err(rustix::io::Errno::RANGE) => {
                let n = rustix::fs::llistxattr(path, &mut [0u8; 0][..]).at(path)?;
                names.resize(n.max(names.len() * 2), 0);
            }
            Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e).at(path),
        }
    };
    let mut out = Vec::new();
    for name in names[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        if name == OSTREEMETA_XATTR.as_bytes() {
            continue;
        }
        let cname = std::ffi::OsStr::from_encoded_bytes_unchecked_safe(name);
        let mut buf = vec![0u8; 256];
        let len = loop {
            match rustix::fs::lgetxattr(path, cname, &mut buf[..]) {
                Ok(len) => break Some(len),
                Err(rustix::io::Errno::NODATA) => break None,
                Err(rustix::io::Errno::RANGE) => {
                    let l = rustix::fs::lgetxattr(path, cname, &mut [0u8; 0][..]).at(path)?;
                    buf.resize(l.max(buf.len() * 2), 0);
                }
                Err(e) => return Err(e).at(path),
            }
        };
        if let Some(len) = len {
            buf.truncate(len);
            out.push((name.to_vec(), buf));
        }
    }
    out.sort();
    Ok(out)
}

/// `OsStr` from raw bytes without `unsafe`.
pub(crate) trait FromBytes {
    fn from_encoded_bytes_unchecked_safe(b: &[u8]) -> &std::ffi::OsStr;
}

impl FromBytes for std::ffi::OsStr {
    fn from_encoded_bytes_unchecked_safe(b: &[u8]) -> &std::ffi::OsStr {
        use std::os::unix::ffi::OsStrExt;
        std::ffi::OsStr::from_bytes(b)
    }
}
