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

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use flate2::Compression;
use rustix::fs::{FlockOperation, Timestamps, XattrFlags};

use crate::gvariant::{Type, Value};
use crate::keyfile::KeyFile;
use crate::object::{
    self, Checksum, Commit, DirMeta, DirTree, FileHasher, FileMeta, ObjectError, ObjectType,
    Xattrs, mode,
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
pub const OSTREEMETA_XATTR: &str = "user.ostreemeta";

/// Compression level of `.filez` content, as OSTree's default.
const ARCHIVE_LEVEL: u32 = 6;

/// An open repository.
#[derive(Debug)]
pub struct Repo {
    path: PathBuf,
    mode: RepoMode,
    config: KeyFile,
    fsync: bool,
}

fn create_dirs(path: &Path) -> Result<()> {
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

    fn object_name(checksum: &Checksum, kind: ObjectType, mode: RepoMode) -> (String, String) {
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
    pub fn object_relpath(checksum: &Checksum, kind: ObjectType, mode: RepoMode) -> String {
        let (dir, name) = Repo::object_name(checksum, kind, mode);
        format!("objects/{dir}/{name}")
    }

    /// Whether the object is stored.
    pub fn has_object(&self, checksum: &Checksum, kind: ObjectType) -> bool {
        fs::symlink_metadata(self.object_path(checksum, kind)).is_ok()
    }

    /// Reads a metadata object's bytes.
    pub fn load_meta_bytes(&self, checksum: &Checksum, kind: ObjectType) -> Result<Vec<u8>> {
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
                let dm = Value::parse(&Type::parse("(uuua(ayay))").expect("static"), &raw)
                    .map_err(|e| msg(format!("{}: {OSTREEMETA_XATTR}: {e}", path.display())))?;
                let items = dm.as_tuple().expect("tuple");
                let xattrs = DirMeta::parse(&{
                    // Reuse the dirmeta parser for the xattr list.
                    let mut t = items.to_vec();
                    t[2] = Value::be32(mode::IFDIR | 0o755);
                    Value::Tuple(t).to_bytes()
                })
                .map_err(|e| Repo::corrupt(checksum, kind, e))?
                .xattrs;
                let mut meta = FileMeta {
                    uid: items[0].as_be32().expect("u"),
                    gid: items[1].as_be32().expect("u"),
                    mode: items[2].as_be32().expect("u"),
                    rdev: 0,
                    symlink_target: String::new(),
                    xattrs,
                };
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
    pub fn list_objects(&self) -> Result<Vec<(Checksum, ObjectType)>> {
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
    pub fn resolve_rev_opt(&self, rev: &str) -> Result<Option<Checksum>> {
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

    /// Starts a write transaction.
    pub fn begin(&self) -> Result<Transaction<'_>> {
        Transaction::new(self)
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
pub fn valid_ref(name: &str) -> bool {
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
    pub fn as_file(&self) -> Option<&File> {
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

fn unique() -> String {
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
trait FromBytes {
    fn from_encoded_bytes_unchecked_safe(b: &[u8]) -> &std::ffi::OsStr;
}

impl FromBytes for std::ffi::OsStr {
    fn from_encoded_bytes_unchecked_safe(b: &[u8]) -> &std::ffi::OsStr {
        use std::os::unix::ffi::OsStrExt;
        std::ffi::OsStr::from_bytes(b)
    }
}

/// A queued ref change: remote, name, new target (`None` deletes).
type RefUpdate = (Option<String>, String, Option<Checksum>);

/// A write transaction: objects go to a private staging directory and
/// become visible together in [`Transaction::commit`].
pub struct Transaction<'r> {
    repo: &'r Repo,
    staging: PathBuf,
    written: Mutex<HashSet<(Checksum, ObjectType)>>,
    refs: Mutex<Vec<RefUpdate>>,
    _staging_lock: File,
    _repo_lock: RepoLock,
}

fn boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().replace('-', ""))
        .unwrap_or_else(|_| "noboot".into())
}

fn try_lock(path: &Path) -> Result<Option<File>> {
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .at(path)?;
    match rustix::fs::flock(&f, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(f)),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
        Err(e) => Err(e).at(path),
    }
}

impl<'r> Transaction<'r> {
    fn new(repo: &'r Repo) -> Result<Transaction<'r>> {
        let repo_lock = repo.lock(false)?;
        let tmp = repo.path.join("tmp");
        create_dirs(&tmp)?;
        let boot = boot_id();
        let mine = format!("staging-{boot}-");
        let mut adopted = None;
        let mut entries: Vec<_> = fs::read_dir(&tmp)
            .at(&tmp)?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("staging-") && !n.ends_with(".lock"))
            .collect();
        entries.sort();
        for name in entries {
            let lock_path = tmp.join(format!("{name}.lock"));
            let Some(lock) = try_lock(&lock_path)? else {
                continue; // another writer's
            };
            if name.starts_with(&mine) && adopted.is_none() {
                // Left by a writer of this boot that was killed: its objects
                // were completely written (each by a rename), so keep them.
                adopted = Some((tmp.join(&name), lock));
            } else {
                // From an earlier boot: unsynced data may be garbage.
                let dir = tmp.join(&name);
                fs::remove_dir_all(&dir).at(&dir)?;
                let _ = fs::remove_file(&lock_path);
            }
        }
        let (staging, lock) = match adopted {
            Some(a) => a,
            None => {
                let name = format!("{mine}{}", unique());
                let lock = try_lock(&tmp.join(format!("{name}.lock")))?
                    .ok_or_else(|| msg("staging lock unexpectedly held"))?;
                let dir = tmp.join(name);
                fs::create_dir(&dir).at(&dir)?;
                (dir, lock)
            }
        };
        let mut written = HashSet::new();
        for e in fs::read_dir(&staging).at(&staging)?.filter_map(|e| e.ok()) {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some((hex, ext)) = name.split_once('.')
                && let (Ok(c), Some(k)) = (Checksum::from_hex(hex), ObjectType::from_extension(ext))
            {
                written.insert((c, k));
            } else {
                let _ = fs::remove_file(e.path());
            }
        }
        Ok(Transaction {
            repo,
            staging,
            written: Mutex::new(written),
            refs: Mutex::new(Vec::new()),
            _staging_lock: lock,
            _repo_lock: repo_lock,
        })
    }

    /// The repository.
    pub fn repo(&self) -> &Repo {
        self.repo
    }

    fn staged_path(&self, checksum: &Checksum, kind: ObjectType) -> PathBuf {
        let ext = if kind == ObjectType::File && self.repo.mode == RepoMode::Archive {
            "filez"
        } else {
            kind.extension()
        };
        self.staging.join(format!("{checksum}.{ext}"))
    }

    /// Whether the object is in the repository or this transaction.
    pub fn has_object(&self, checksum: &Checksum, kind: ObjectType) -> bool {
        self.written
            .lock()
            .expect("lock")
            .contains(&(*checksum, kind))
            || self.repo.has_object(checksum, kind)
    }

    /// Number of objects written so far in this transaction (including a
    /// resumed one's).
    pub fn staged_count(&self) -> usize {
        self.written.lock().expect("lock").len()
    }

    /// Reads a metadata object from this transaction or the repository.
    pub fn load_meta_bytes(&self, checksum: &Checksum, kind: ObjectType) -> Result<Vec<u8>> {
        let staged = self.staged_path(checksum, kind);
        match fs::read(&staged) {
            Ok(b) => Ok(b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.repo.load_meta_bytes(checksum, kind)
            }
            Err(e) => Err(Error::Io {
                path: staged,
                cause: e,
            }),
        }
    }

    fn stage(
        &self,
        checksum: &Checksum,
        kind: ObjectType,
        fill: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<()> {
        let final_path = self.staged_path(checksum, kind);
        let tmp = self.staging.join(format!(".tmp-{}", unique()));
        let result = fill(&tmp).and_then(|()| fs::rename(&tmp, &final_path).at(&final_path));
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result?;
        crate::failpoint("object-staged")?;
        self.written.lock().expect("lock").insert((*checksum, kind));
        Ok(())
    }

    /// Writes a metadata object and returns its checksum.
    pub fn write_meta(&self, kind: ObjectType, data: &[u8]) -> Result<Checksum> {
        let checksum = Checksum::of(data);
        self.write_meta_trusted(kind, &checksum, data)?;
        Ok(checksum)
    }

    /// Writes a metadata object whose name must be `expected`.
    pub fn write_meta_expect(
        &self,
        kind: ObjectType,
        expected: &Checksum,
        data: &[u8],
    ) -> Result<()> {
        let actual = Checksum::of(data);
        if actual != *expected {
            return Err(Error::Corrupt {
                checksum: *expected,
                kind,
                msg: format!(
                    "Corrupted metadata object; checksum expected='{expected}' actual='{actual}'"
                ),
            });
        }
        self.write_meta_trusted(kind, expected, data)
    }

    fn write_meta_trusted(&self, kind: ObjectType, checksum: &Checksum, data: &[u8]) -> Result<()> {
        if self.has_object(checksum, kind) {
            return Ok(());
        }
        self.stage(checksum, kind, |tmp| {
            let mut f = File::create(tmp).at(tmp)?;
            f.write_all(data).at(tmp)
        })
    }

    /// Writes a file object whose content is in memory.
    pub fn write_file(&self, meta: &FileMeta, content: &[u8]) -> Result<Checksum> {
        let checksum = object::file_checksum(meta, content);
        self.write_file_trusted(meta, content, &checksum)?;
        Ok(checksum)
    }

    /// Writes a file object already known to be named `checksum` (the
    /// caller hashed exactly these bytes).
    pub fn write_file_trusted(
        &self,
        meta: &FileMeta,
        content: &[u8],
        checksum: &Checksum,
    ) -> Result<()> {
        if self.has_object(checksum, ObjectType::File) {
            return Ok(());
        }
        self.check_mode(meta, checksum)?;
        self.stage(checksum, ObjectType::File, |tmp| {
            self.store_file(tmp, meta, &mut &content[..], content.len() as u64)
        })
    }

    /// As OSTree: a bare-user-only repository holds no regular file whose
    /// mode has bits beyond 0775 (setuid, setgid, sticky, writable by
    /// others), since it cannot record them (`--canonical-permissions`
    /// makes a tree fit).
    fn check_mode(&self, meta: &FileMeta, checksum: &Checksum) -> Result<()> {
        if self.repo.mode != RepoMode::BareUserOnly || meta.is_symlink() {
            return Ok(());
        }
        let invalid = meta.mode & 0o7777 & !0o775;
        if invalid != 0 {
            return Err(msg(format!(
                "Content object {checksum}: invalid mode 0{:04o} with bits 0{invalid:04o}",
                meta.mode
            )));
        }
        Ok(())
    }

    /// Writes a file object by streaming its content, hashing as it goes;
    /// returns the checksum. `size` must be the content's length.
    pub fn write_file_stream(
        &self,
        meta: &FileMeta,
        content: &mut dyn Read,
        size: u64,
    ) -> Result<Checksum> {
        let tmp = self.staging.join(format!(".tmp-{}", unique()));
        let mut hasher = FileHasher::new(meta);
        let mut tee = HashingReader {
            inner: content,
            hasher: &mut hasher,
            count: 0,
        };
        let stored = self.store_file(&tmp, meta, &mut tee, size);
        let count = tee.count;
        if let Err(e) = stored {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        if count != size {
            let _ = fs::remove_file(&tmp);
            return Err(msg(format!(
                "content changed while reading: expected {size} bytes, read {count}"
            )));
        }
        let checksum = hasher.finish();
        if self.has_object(&checksum, ObjectType::File) {
            let _ = fs::remove_file(&tmp);
            return Ok(checksum);
        }
        if let Err(e) = self.check_mode(meta, &checksum) {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        self.stage(&checksum, ObjectType::File, |staged| {
            fs::rename(&tmp, staged).at(staged)
        })?;
        Ok(checksum)
    }

    /// Stores a fetched `.filez` stream: read once, decompressed and
    /// hashed as it arrives, written to a temporary file and renamed into
    /// staging only when its content is named `expected`. Archive
    /// repositories keep the bytes as received (the header and the
    /// compressed stream, byte for byte); other modes unpack the content.
    /// Memory stays small whatever the header claims: the claimed size
    /// bounds nothing but the check that the content has exactly that
    /// length. A symlink's `.filez` is a header with no body at all (as
    /// `ostree` writes it); its target is in the header.
    pub fn write_filez(&self, expected: &Checksum, filez: &mut dyn Read) -> Result<()> {
        let corrupt = |m: String| Error::Corrupt {
            checksum: *expected,
            kind: ObjectType::File,
            msg: m,
        };
        let mut frame = [0u8; 8];
        filez.read_exact(&mut frame).map_err(|e| {
            corrupt(format!(
                "truncated header: {}",
                http_client::error_chain(&e)
            ))
        })?;
        let hlen = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as u64;
        if hlen > MAX_METADATA_SIZE {
            return Err(corrupt(format!(
                "header of {hlen} bytes exceeds the maximum of {MAX_METADATA_SIZE}"
            )));
        }
        let mut header = Vec::new();
        filez
            .take(hlen)
            .read_to_end(&mut header)
            .map_err(|e| corrupt(format!("reading header: {}", http_client::error_chain(&e))))?;
        if header.len() as u64 != hlen {
            return Err(corrupt("truncated header".into()));
        }
        let (meta, size) =
            FileMeta::from_archive_header(&header).map_err(|e| corrupt(e.to_string()))?;
        let tmp = self.staging.join(format!(".tmp-{}", unique()));
        let written = self.unpack_filez(&tmp, &frame, &header, &meta, size, filez, &corrupt);
        let checksum = match written {
            Ok(c) => c,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        };
        if checksum != *expected {
            let _ = fs::remove_file(&tmp);
            return Err(corrupt(format!(
                "Corrupted file object; checksum expected='{expected}' actual='{checksum}'"
            )));
        }
        if self.has_object(expected, ObjectType::File) {
            let _ = fs::remove_file(&tmp);
            return Ok(());
        }
        if let Err(e) = self.check_mode(&meta, expected) {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        self.stage(expected, ObjectType::File, |staged| {
            fs::rename(&tmp, staged).at(staged)
        })
    }

    /// Writes the object of a `.filez` whose header is read into `tmp` and
    /// returns the checksum of what it held.
    #[allow(clippy::too_many_arguments)] // one object's parts; private
    fn unpack_filez(
        &self,
        tmp: &Path,
        frame: &[u8; 8],
        header: &[u8],
        meta: &FileMeta,
        size: u64,
        body: &mut dyn Read,
        corrupt: &dyn Fn(String) -> Error,
    ) -> Result<Checksum> {
        let mut hasher = FileHasher::new(meta);
        if meta.is_symlink() {
            // No body: the target is the content that counts.
            if self.repo.mode == RepoMode::Archive {
                let mut f = File::create(tmp).at(tmp)?;
                f.write_all(frame).at(tmp)?;
                f.write_all(header).at(tmp)?;
            } else {
                self.store_file(tmp, meta, &mut io::empty(), 0)?;
            }
            return Ok(hasher.finish());
        }
        // Archive mode keeps the received bytes: they are copied to the
        // file as the decompressor takes them.
        let raw_copy = match self.repo.mode {
            RepoMode::Archive => {
                let mut f = io::BufWriter::with_capacity(64 * 1024, File::create(tmp).at(tmp)?);
                f.write_all(frame).at(tmp)?;
                f.write_all(header).at(tmp)?;
                Some(f)
            }
            _ => None,
        };
        let mut tee = TeeReader {
            inner: body,
            copy: raw_copy,
        };
        let count = {
            let mut decoder = flate2::read::DeflateDecoder::new(&mut tee);
            // One byte more than claimed is enough to know it lies.
            let mut limited = (&mut decoder as &mut dyn Read).take(size.saturating_add(1));
            let mut hashing = HashingReader {
                inner: &mut limited,
                hasher: &mut hasher,
                count: 0,
            };
            let copied =
                match self.repo.mode {
                    RepoMode::Archive => io::copy(&mut hashing, &mut io::sink())
                        .map(|_| ())
                        .map_err(|e| {
                            corrupt(format!("decompressing: {}", http_client::error_chain(&e)))
                        }),
                    _ => self.store_file(tmp, meta, &mut hashing, size),
                };
            copied?;
            hashing.count
        };
        if count != size {
            return Err(corrupt(format!(
                "content is {}{count} bytes, header says {size}",
                if count > size { "over " } else { "" }
            )));
        }
        if let Some(mut f) = tee.copy.take() {
            // Whatever follows the compressed stream is kept as received,
            // within reason.
            let extra = io::copy(&mut (&mut tee.inner).take(MAX_TRAILING + 1), &mut f)
                .map_err(|e| corrupt(format!("reading: {}", http_client::error_chain(&e))))?;
            if extra > MAX_TRAILING {
                return Err(corrupt(format!(
                    "more than {MAX_TRAILING} bytes after the compressed content"
                )));
            }
            f.flush().at(tmp)?;
        }
        Ok(hasher.finish())
    }

    fn store_file(
        &self,
        tmp: &Path,
        meta: &FileMeta,
        content: &mut dyn Read,
        size: u64,
    ) -> Result<()> {
        match self.repo.mode {
            RepoMode::Archive => {
                let f = File::create(tmp).at(tmp)?;
                let mut w = io::BufWriter::with_capacity(64 * 1024, f);
                w.write_all(&object::framed_header(
                    &meta.archive_header(size).to_bytes(),
                ))
                .at(tmp)?;
                if !meta.is_symlink() {
                    let mut enc =
                        flate2::write::DeflateEncoder::new(w, Compression::new(ARCHIVE_LEVEL));
                    io::copy(content, &mut enc).at(tmp)?;
                    w = enc.finish().at(tmp)?;
                }
                w.flush().at(tmp)?;
                Ok(())
            }
            RepoMode::Bare if meta.is_symlink() => {
                std::os::unix::fs::symlink(&meta.symlink_target, tmp).at(tmp)?;
                std::os::unix::fs::lchown(tmp, Some(meta.uid), Some(meta.gid)).at(tmp)?;
                for (k, v) in &meta.xattrs {
                    rustix::fs::lsetxattr(
                        tmp,
                        std::ffi::OsStr::from_encoded_bytes_unchecked_safe(k),
                        v,
                        XattrFlags::empty(),
                    )
                    .at(tmp)?;
                }
                Ok(())
            }
            RepoMode::Bare => {
                let mut f = File::create(tmp).at(tmp)?;
                io::copy(content, &mut f).at(tmp)?;
                rustix::fs::fchown(
                    &f,
                    Some(rustix::fs::Uid::from_raw(meta.uid)),
                    Some(rustix::fs::Gid::from_raw(meta.gid)),
                )
                .at(tmp)?;
                f.set_permissions(fs::Permissions::from_mode(meta.mode & 0o7777))
                    .at(tmp)?;
                for (k, v) in &meta.xattrs {
                    rustix::fs::fsetxattr(
                        &f,
                        std::ffi::OsStr::from_encoded_bytes_unchecked_safe(k),
                        v,
                        XattrFlags::empty(),
                    )
                    .at(tmp)?;
                }
                zero_mtime(&f, tmp)
            }
            RepoMode::BareUser => {
                let mut f = File::create(tmp).at(tmp)?;
                if meta.is_symlink() {
                    // OSTree stores the target with its C terminator.
                    f.write_all(meta.symlink_target.as_bytes()).at(tmp)?;
                    f.write_all(&[0]).at(tmp)?;
                    f.set_permissions(fs::Permissions::from_mode(0o644))
                        .at(tmp)?;
                } else {
                    io::copy(content, &mut f).at(tmp)?;
                    f.set_permissions(fs::Permissions::from_mode((meta.mode & 0o775) | 0o400))
                        .at(tmp)?;
                }
                let dm = Value::Tuple(vec![
                    Value::be32(meta.uid),
                    Value::be32(meta.gid),
                    Value::be32(meta.mode),
                    DirMeta {
                        uid: 0,
                        gid: 0,
                        mode: 0,
                        xattrs: meta.xattrs.clone(),
                    }
                    .to_value()
                    .as_tuple()
                    .expect("tuple")[3]
                        .clone(),
                ]);
                rustix::fs::fsetxattr(&f, OSTREEMETA_XATTR, &dm.to_bytes(), XattrFlags::empty())
                    .at(tmp)?;
                zero_mtime(&f, tmp)
            }
            RepoMode::BareUserOnly => {
                if meta.is_symlink() {
                    std::os::unix::fs::symlink(&meta.symlink_target, tmp).at(tmp)?;
                    return Ok(());
                }
                let mut f = File::create(tmp).at(tmp)?;
                io::copy(content, &mut f).at(tmp)?;
                f.set_permissions(fs::Permissions::from_mode(meta.mode & 0o775))
                    .at(tmp)?;
                zero_mtime(&f, tmp)
            }
        }
    }

    /// Queues a ref update, applied after the objects in [`Transaction::commit`].
    pub fn set_ref(&self, remote: Option<&str>, name: &str, target: Option<Checksum>) {
        self.refs.lock().expect("lock").push((
            remote.map(str::to_string),
            name.to_string(),
            target,
        ));
    }

    /// Makes everything written visible: sync, move objects into place,
    /// then update refs.
    pub fn commit(self) -> Result<()> {
        crate::failpoint("before-sync")?;
        if self.repo.fsync {
            let d = File::open(&self.staging).at(&self.staging)?;
            rustix::fs::syncfs(&d).at(&self.staging)?;
        }
        let objects = self.repo.path.join("objects");
        let mut made = HashSet::new();
        let written = std::mem::take(&mut *self.written.lock().expect("lock"));
        let mut written: Vec<_> = written.into_iter().collect();
        // Contents first, commits last: a crash in between leaves no commit
        // whose objects are missing.
        written.sort_by_key(|(_, k)| match k {
            ObjectType::File => 0,
            ObjectType::DirMeta => 1,
            ObjectType::DirTree => 2,
            ObjectType::CommitMeta => 3,
            ObjectType::Commit | ObjectType::TombstoneCommit => 4,
        });
        for (i, (c, k)) in written.iter().enumerate() {
            let (dir, name) = Repo::object_name(c, *k, self.repo.mode);
            let dir_path = objects.join(&dir);
            if made.insert(dir.clone()) {
                match fs::create_dir(&dir_path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => {
                        return Err(Error::Io {
                            path: dir_path,
                            cause: e,
                        });
                    }
                }
            }
            let from = self.staged_path(c, *k);
            let to = dir_path.join(name);
            fs::rename(&from, &to).at(&to)?;
            if i == written.len() / 2 {
                crate::failpoint("objects-half-moved")?;
            }
        }
        crate::failpoint("objects-moved")?;
        let refs = std::mem::take(&mut *self.refs.lock().expect("lock"));
        if !refs.is_empty() {
            self.repo.sync()?;
        }
        for (remote, name, target) in refs {
            self.repo
                .set_ref(remote.as_deref(), &name, target.as_ref())?;
        }
        let _ = fs::remove_dir(&self.staging);
        let lock = PathBuf::from(format!("{}.lock", self.staging.display()));
        let _ = fs::remove_file(lock);
        Ok(())
    }
}

fn zero_mtime(f: &File, path: &Path) -> Result<()> {
    let zero = rustix::fs::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    rustix::fs::futimens(
        f,
        &Timestamps {
            last_access: zero,
            last_modification: zero,
        },
    )
    .at(path)
}

/// A reader that copies what it reads to `copy`.
struct TeeReader<'a> {
    inner: &'a mut dyn Read,
    copy: Option<io::BufWriter<File>>,
}

impl Read for TeeReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(c) = &mut self.copy {
            c.write_all(&buf[..n])?;
        }
        Ok(n)
    }
}

/// The largest metadata object (and file header) accepted, as OSTree's
/// `OSTREE_MAX_METADATA_SIZE`.
pub const MAX_METADATA_SIZE: u64 = 10 << 20;

/// Bytes accepted after a `.filez`'s compressed stream.
const MAX_TRAILING: u64 = 64 << 10;

struct HashingReader<'a> {
    inner: &'a mut dyn Read,
    hasher: &'a mut FileHasher,
    count: u64,
}

impl Read for HashingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}
