//! The write transaction: objects are written into a private staging
//! directory under `tmp/` (named with the boot id, so a transaction killed
//! mid-way is resumed by the next one of the same boot), checked against
//! their names as they are written, synced once, and only then renamed into
//! `objects/`; queued refs move last. Content arrives whole (commit,
//! `pull-local`) or as a stream (`.filez` from a pull, inflated and hashed
//! as it comes).

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use flate2::Compression;
use rustix::fs::{FlockOperation, Timestamps, XattrFlags};

use crate::object::{self, Checksum, FileHasher, FileMeta, ObjectType};
use crate::repo::{
    ARCHIVE_LEVEL, Error, FromBytes, IoContext, OSTREEMETA_XATTR, Repo, RepoLock, RepoMode, Result,
    create_dirs, msg, unique,
};

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
    pub(crate) fn new(repo: &'r Repo) -> Result<Transaction<'r>> {
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

    /// Reads a metadata object from this transaction or the repository.
    pub(crate) fn load_meta_bytes(&self, checksum: &Checksum, kind: ObjectType) -> Result<Vec<u8>> {
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
    pub(crate) fn write_meta(&self, kind: ObjectType, data: &[u8]) -> Result<Checksum> {
        let checksum = Checksum::of(data);
        self.write_meta_trusted(kind, &checksum, data)?;
        Ok(checksum)
    }

    /// Writes a metadata object whose name must be `expected`.
    pub(crate) fn write_meta_expect(
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
    pub(crate) fn write_file_trusted(
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
    pub(crate) fn write_file_stream(
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
                rustix::fs::fsetxattr(
                    &f,
                    OSTREEMETA_XATTR,
                    &meta.ostreemeta(),
                    XattrFlags::empty(),
                )
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
pub(crate) const MAX_METADATA_SIZE: u64 = 10 << 20;

impl Repo {
    /// Starts a write transaction.
    pub fn begin(&self) -> Result<Transaction<'_>> {
        Transaction::new(self)
    }
}

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
