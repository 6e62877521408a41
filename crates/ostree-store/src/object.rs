//! OSTree objects: what they contain, how they serialize, how they are named.
//!
//! Every object is named by the SHA-256 of a canonical serialization:
//! metadata objects (dirtree, dirmeta, commit) by the hash of their
//! GVariant bytes; file objects by the hash of
//! `be32(len(H)) ‖ 0000 ‖ H ‖ content`, where H is the file header
//! `(uuuusa(ayay))` (uid, gid, mode with type bits, rdev, symlink target,
//! xattrs). Integers inside these variants are big-endian, as OSTree writes
//! them. Timestamps of files are not part of anything.

use std::fmt;

use crate::gvariant::{Be32, Be64, Bytes, Typed, Value, VarDict, decode, encode};

/// A SHA-256 object name.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Checksum(pub [u8; 32]);

/// An object name that is not 64 lower-case hex digits.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid checksum {0:?}")]
pub struct BadChecksum(pub String);

impl Checksum {
    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Result<Checksum, BadChecksum> {
        let b = s.as_bytes();
        if b.len() != 64 {
            return Err(BadChecksum(s.into()));
        }
        let mut out = [0u8; 32];
        for (i, pair) in b.chunks(2).enumerate() {
            let hi = hex_val(pair[0]).ok_or_else(|| BadChecksum(s.into()))?;
            let lo = hex_val(pair[1]).ok_or_else(|| BadChecksum(s.into()))?;
            out[i] = hi << 4 | lo;
        }
        Ok(Checksum(out))
    }

    /// From the 32 bytes of an `ay`.
    pub fn from_bytes(b: &[u8]) -> Option<Checksum> {
        Some(Checksum(b.try_into().ok()?))
    }

    /// The hex form.
    pub fn to_hex(&self) -> String {
        self.to_string()
    }

    /// SHA-256 of some bytes.
    pub fn of(data: &[u8]) -> Checksum {
        let d = ring::digest::digest(&ring::digest::SHA256, data);
        Checksum(d.as_ref().try_into().expect("32 bytes"))
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Checksum({self})")
    }
}

/// The kinds of object a repository stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectType {
    /// File content and metadata.
    File,
    /// A directory listing.
    DirTree,
    /// A directory's owner, mode and xattrs.
    DirMeta,
    /// A commit.
    Commit,
    /// Marks a deleted commit.
    TombstoneCommit,
    /// Detached commit metadata (signatures).
    CommitMeta,
}

impl ObjectType {
    /// The file-name extension in a repository (`file` becomes `filez` in
    /// archive repositories).
    pub fn extension(self) -> &'static str {
        match self {
            ObjectType::File => "file",
            ObjectType::DirTree => "dirtree",
            ObjectType::DirMeta => "dirmeta",
            ObjectType::Commit => "commit",
            ObjectType::TombstoneCommit => "commit-tombstone",
            ObjectType::CommitMeta => "commitmeta",
        }
    }

    /// From an extension (`filez` counts as `file`).
    pub(crate) fn from_extension(ext: &str) -> Option<ObjectType> {
        Some(match ext {
            "file" | "filez" => ObjectType::File,
            "dirtree" => ObjectType::DirTree,
            "dirmeta" => ObjectType::DirMeta,
            "commit" => ObjectType::Commit,
            "commit-tombstone" => ObjectType::TombstoneCommit,
            "commitmeta" => ObjectType::CommitMeta,
            _ => return None,
        })
    }
}

/// A malformed object.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ObjectError {
    /// Its GVariant does not parse.
    #[error("corrupt {kind}: {cause}")]
    Variant {
        /// What kind of object.
        kind: &'static str,
        /// Why (in the message, not a `source`).
        cause: crate::gvariant::Error,
    },
    /// It parses but a field is wrong.
    #[error("corrupt {kind}: {msg}")]
    Field {
        /// What kind of object.
        kind: &'static str,
        /// Why.
        msg: String,
    },
}

fn field<T>(kind: &'static str, msg: impl Into<String>) -> Result<T, ObjectError> {
    Err(ObjectError::Field {
        kind,
        msg: msg.into(),
    })
}

/// Extended attributes: names without their trailing NUL, sorted by name.
pub type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// Xattrs as stored: `a(ayay)`, names with their C terminator.
type XattrList = Vec<(Bytes, Bytes)>;

fn xattrs_typed(xattrs: &Xattrs) -> XattrList {
    let mut sorted: Vec<&(Vec<u8>, Vec<u8>)> = xattrs.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    sorted
        .into_iter()
        .map(|(k, v)| {
            // OSTree keeps the C string's terminator in the name.
            let mut name = k.clone();
            name.push(0);
            (Bytes(name), Bytes(v.clone()))
        })
        .collect()
}

fn xattrs_from(list: XattrList) -> Xattrs {
    list.into_iter()
        .map(|(Bytes(mut name), Bytes(value))| {
            if name.last() == Some(&0) {
                name.pop();
            }
            (name, value)
        })
        .collect()
}

/// The shape of a file object's header: uid, gid, mode, rdev (big-endian),
/// symlink target, xattrs.
type FileHeader = (Be32, Be32, Be32, Be32, String, XattrList);
/// The shape of an archive `.filez` header: the uncompressed size, then a
/// file header's fields.
type ArchiveHeader = (Be64, Be32, Be32, Be32, Be32, String, XattrList);
/// The shape of a dirmeta object: uid, gid, mode, xattrs.
type DirMetaT = (Be32, Be32, Be32, XattrList);
/// The shape of a dirtree object: files (name, checksum), directories
/// (name, dirtree, dirmeta).
type DirTreeT = (Vec<(String, Bytes)>, Vec<(String, Bytes, Bytes)>);
/// The shape of a commit object: metadata, parent, related, subject, body,
/// time, root dirtree, root dirmeta.
type CommitT = (
    VarDict,
    Bytes,
    Vec<(String, Bytes)>,
    String,
    String,
    Be64,
    Bytes,
    Bytes,
);

/// `S_IFMT` and friends.
pub mod mode {
    /// File type mask.
    pub const IFMT: u32 = 0o170000;
    /// Regular file.
    pub const IFREG: u32 = 0o100000;
    /// Directory.
    pub const IFDIR: u32 = 0o040000;
    /// Symbolic link.
    pub const IFLNK: u32 = 0o120000;
}

/// The metadata of a file object.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FileMeta {
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Mode including the file-type bits (regular file or symlink).
    pub mode: u32,
    /// Always 0 for the types OSTree stores.
    pub rdev: u32,
    /// The target of a symlink, empty for regular files.
    pub symlink_target: String,
    /// Extended attributes.
    pub xattrs: Xattrs,
}

impl FileMeta {
    /// Whether this is a symbolic link.
    pub fn is_symlink(&self) -> bool {
        self.mode & mode::IFMT == mode::IFLNK
    }

    fn typed(&self) -> FileHeader {
        (
            Be32(self.uid),
            Be32(self.gid),
            Be32(self.mode),
            Be32(self.rdev),
            self.symlink_target.clone(),
            xattrs_typed(&self.xattrs),
        )
    }

    /// The file header `(uuuusa(ayay))`.
    pub fn header(&self) -> Value {
        self.typed().into_value()
    }

    /// The archive header `(tuuuusa(ayay))`: the uncompressed size first.
    pub(crate) fn archive_header(&self, size: u64) -> Value {
        let (uid, gid, mode, rdev, target, xattrs) = self.typed();
        (Be64(size), uid, gid, mode, rdev, target, xattrs).into_value()
    }

    /// Parses a file header.
    pub fn from_header(data: &[u8]) -> Result<FileMeta, ObjectError> {
        let kind = "file header";
        let (uid, gid, mode, rdev, target, xattrs) =
            decode::<FileHeader>(data).map_err(|cause| ObjectError::Variant { kind, cause })?;
        FileMeta::checked(kind, (uid, gid, mode, rdev, target, xattrs))
    }

    /// Parses an archive header, returning the uncompressed size too.
    pub fn from_archive_header(data: &[u8]) -> Result<(FileMeta, u64), ObjectError> {
        let kind = "archive file header";
        let (Be64(size), uid, gid, mode, rdev, target, xattrs) =
            decode::<ArchiveHeader>(data).map_err(|cause| ObjectError::Variant { kind, cause })?;
        Ok((
            FileMeta::checked(kind, (uid, gid, mode, rdev, target, xattrs))?,
            size,
        ))
    }

    /// The `user.ostreemeta` xattr of a bare-user file: `(uuua(ayay))`,
    /// the real owner, mode and xattrs.
    pub(crate) fn ostreemeta(&self) -> Vec<u8> {
        let t: DirMetaT = (
            Be32(self.uid),
            Be32(self.gid),
            Be32(self.mode),
            xattrs_typed(&self.xattrs),
        );
        encode(t)
    }

    /// Reads a `user.ostreemeta` xattr (no symlink target: a bare-user
    /// symlink's target is the file's content).
    pub(crate) fn from_ostreemeta(data: &[u8]) -> Result<FileMeta, ObjectError> {
        let (uid, gid, mode, xattrs) =
            decode::<DirMetaT>(data).map_err(|cause| ObjectError::Variant {
                kind: "user.ostreemeta",
                cause,
            })?;
        Ok(FileMeta {
            uid: uid.0,
            gid: gid.0,
            mode: mode.0,
            rdev: 0,
            symlink_target: String::new(),
            xattrs: xattrs_from(xattrs),
        })
    }

    fn checked(kind: &'static str, header: FileHeader) -> Result<FileMeta, ObjectError> {
        let (uid, gid, mode, rdev, symlink_target, xattrs) = header;
        let meta = FileMeta {
            uid: uid.0,
            gid: gid.0,
            mode: mode.0,
            rdev: rdev.0,
            symlink_target,
            xattrs: xattrs_from(xattrs),
        };
        meta.check(kind)?;
        Ok(meta)
    }

    fn check(&self, kind: &'static str) -> Result<(), ObjectError> {
        match self.mode & mode::IFMT {
            mode::IFREG if self.symlink_target.is_empty() => {}
            mode::IFLNK if !self.symlink_target.is_empty() => {}
            mode::IFREG => return field(kind, "regular file with a symlink target"),
            mode::IFLNK => return field(kind, "symlink without a target"),
            _ => return field(kind, format!("unsupported file mode 0{:o}", self.mode)),
        }
        if self.mode & !(mode::IFMT | 0o7777) != 0 {
            return field(kind, format!("invalid mode 0{:o}", self.mode));
        }
        Ok(())
    }
}

/// Incremental checksum of a file object: header first, then content.
pub struct FileHasher(ring::digest::Context);

impl FileHasher {
    /// Starts with the file's metadata.
    pub fn new(meta: &FileMeta) -> FileHasher {
        let header = meta.header().to_bytes();
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(&(header.len() as u32).to_be_bytes());
        ctx.update(&[0; 4]);
        ctx.update(&header);
        FileHasher(ctx)
    }

    /// Adds content bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The object's name.
    pub fn finish(self) -> Checksum {
        Checksum(self.0.finish().as_ref().try_into().expect("32 bytes"))
    }
}

/// The checksum of a file object held in memory.
pub(crate) fn file_checksum(meta: &FileMeta, content: &[u8]) -> Checksum {
    let mut h = FileHasher::new(meta);
    h.update(content);
    h.finish()
}

/// Prefixes a serialized header as file objects and `.filez` do:
/// big-endian length, four zero bytes, header.
pub(crate) fn framed_header(header: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(header.len() + 8);
    out.extend_from_slice(&(header.len() as u32).to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(header);
    out
}

/// Splits a framed header off `data`: (header bytes, rest).
pub fn split_framed_header(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_be_bytes(data.get(..4)?.try_into().ok()?) as usize;
    let end = 8usize.checked_add(len)?;
    Some((data.get(8..end)?, &data[end..]))
}

/// A directory's metadata `(uuua(ayay))`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirMeta {
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Mode including `S_IFDIR`.
    pub mode: u32,
    /// Extended attributes.
    pub xattrs: Xattrs,
}

impl DirMeta {
    /// The GVariant form.
    pub fn to_value(&self) -> Value {
        let t: DirMetaT = (
            Be32(self.uid),
            Be32(self.gid),
            Be32(self.mode),
            xattrs_typed(&self.xattrs),
        );
        t.into_value()
    }

    /// Serialized bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_value().to_bytes()
    }

    /// Parses a dirmeta object.
    pub fn parse(data: &[u8]) -> Result<DirMeta, ObjectError> {
        let kind = "dirmeta";
        let (uid, gid, mode, xattrs) =
            decode::<DirMetaT>(data).map_err(|cause| ObjectError::Variant { kind, cause })?;
        let meta = DirMeta {
            uid: uid.0,
            gid: gid.0,
            mode: mode.0,
            xattrs: xattrs_from(xattrs),
        };
        if meta.mode & mode::IFMT != mode::IFDIR || meta.mode & !(mode::IFMT | 0o7777) != 0 {
            return field(kind, format!("invalid directory mode 0{:o}", meta.mode));
        }
        Ok(meta)
    }
}

/// A directory listing `(a(say)a(sayay))`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DirTree {
    /// Files: name and content checksum, sorted by name.
    pub files: Vec<(String, Checksum)>,
    /// Subdirectories: name, dirtree and dirmeta checksums, sorted by name.
    pub dirs: Vec<(String, Checksum, Checksum)>,
}

/// Whether `name` may appear in a dirtree.
pub(crate) fn valid_filename(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/')
}

impl DirTree {
    /// The GVariant form; entries are sorted by name here.
    pub fn to_value(&self) -> Value {
        let mut files: Vec<&(String, Checksum)> = self.files.iter().collect();
        files.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let mut dirs: Vec<&(String, Checksum, Checksum)> = self.dirs.iter().collect();
        dirs.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let t: DirTreeT = (
            files
                .into_iter()
                .map(|(n, c)| (n.clone(), Bytes(c.0.to_vec())))
                .collect(),
            dirs.into_iter()
                .map(|(n, t, m)| (n.clone(), Bytes(t.0.to_vec()), Bytes(m.0.to_vec())))
                .collect(),
        );
        t.into_value()
    }

    /// Serialized bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_value().to_bytes()
    }

    /// Parses a dirtree object, checking names, checksums and order.
    pub fn parse(data: &[u8]) -> Result<DirTree, ObjectError> {
        let kind = "dirtree";
        let (files, dirs) =
            decode::<DirTreeT>(data).map_err(|cause| ObjectError::Variant { kind, cause })?;
        let mut tree = DirTree::default();
        for (name, c) in files {
            let Some(c) = Checksum::from_bytes(&c.0) else {
                return field(
                    kind,
                    format!("file {name:?} has a checksum of the wrong length"),
                );
            };
            tree.files.push((name, c));
        }
        for (name, t, m) in dirs {
            let (Some(tc), Some(mc)) = (Checksum::from_bytes(&t.0), Checksum::from_bytes(&m.0))
            else {
                return field(
                    kind,
                    format!("directory {name:?} has a checksum of the wrong length"),
                );
            };
            tree.dirs.push((name, tc, mc));
        }
        for name in tree
            .files
            .iter()
            .map(|f| &f.0)
            .chain(tree.dirs.iter().map(|d| &d.0))
        {
            if !valid_filename(name) {
                return field(kind, format!("invalid file name {name:?}"));
            }
        }
        if !tree
            .files
            .windows(2)
            .all(|w| w[0].0.as_bytes() < w[1].0.as_bytes())
            || !tree
                .dirs
                .windows(2)
                .all(|w| w[0].0.as_bytes() < w[1].0.as_bytes())
        {
            return field(kind, "entries not sorted or duplicated");
        }
        Ok(tree)
    }
}

/// A commit `(a{sv}aya(say)sstayay)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Commit {
    /// Metadata `a{sv}`, in stored order.
    pub metadata: Vec<(String, Value)>,
    /// The parent commit.
    pub parent: Option<Checksum>,
    /// Related objects (unused by OSTree itself; kept).
    pub related: Vec<(String, Checksum)>,
    /// One-line subject.
    pub subject: String,
    /// Body text.
    pub body: String,
    /// Seconds since the epoch, UTC.
    pub timestamp: u64,
    /// Root dirtree.
    pub root_tree: Checksum,
    /// Root dirmeta.
    pub root_meta: Checksum,
}

impl Commit {
    /// The GVariant form.
    pub fn to_value(&self) -> Value {
        let t: CommitT = (
            VarDict(self.metadata.clone()),
            Bytes(self.parent.map(|p| p.0.to_vec()).unwrap_or_default()),
            self.related
                .iter()
                .map(|(n, c)| (n.clone(), Bytes(c.0.to_vec())))
                .collect(),
            self.subject.clone(),
            self.body.clone(),
            Be64(self.timestamp),
            Bytes(self.root_tree.0.to_vec()),
            Bytes(self.root_meta.0.to_vec()),
        );
        t.into_value()
    }

    /// Serialized bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_value().to_bytes()
    }

    /// A metadata value by key.
    pub fn meta(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// `ostree show`'s ContentChecksum: the SHA-256 of the root dirtree's
    /// and dirmeta's checksums, which names the tree whatever the commit.
    pub fn content_checksum(&self) -> Checksum {
        let mut b = self.root_tree.0.to_vec();
        b.extend_from_slice(&self.root_meta.0);
        Checksum::of(&b)
    }

    /// The `version` metadata string, if any.
    pub fn version(&self) -> Option<&str> {
        self.meta("version").and_then(Value::as_str)
    }

    /// Parses a commit object.
    pub fn parse(data: &[u8]) -> Result<Commit, ObjectError> {
        let kind = "commit";
        let (VarDict(metadata), parent, related, subject, body, Be64(timestamp), tree, meta) =
            decode::<CommitT>(data).map_err(|cause| ObjectError::Variant { kind, cause })?;
        let checksum = |b: &Bytes, what: &str| {
            Checksum::from_bytes(&b.0).ok_or_else(|| ObjectError::Field {
                kind,
                msg: format!("{what} checksum of the wrong length"),
            })
        };
        let parent = match parent.0.as_slice() {
            [] => None,
            _ => Some(checksum(&parent, "parent")?),
        };
        let related = related
            .into_iter()
            .map(|(n, c)| Ok((n, checksum(&c, "related")?)))
            .collect::<Result<_, ObjectError>>()?;
        Ok(Commit {
            metadata,
            parent,
            related,
            subject,
            body,
            timestamp,
            root_tree: checksum(&tree, "root tree")?,
            root_meta: checksum(&meta, "root meta")?,
        })
    }
}

/// Detached metadata `a{sv}` (commitmeta objects, summary signatures).
pub fn parse_vardict(data: &[u8]) -> Result<Vec<(String, Value)>, ObjectError> {
    decode::<VarDict>(data)
        .map(|d| d.0)
        .map_err(|cause| ObjectError::Variant {
            kind: "detached metadata",
            cause,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_header_matches_ostree_bytes() {
        // A symlink "a" as `ostree commit` wrote it into a .filez object.
        let meta = FileMeta {
            mode: 0o120777,
            symlink_target: "a".into(),
            ..FileMeta::default()
        };
        let bytes = meta.archive_header(0).to_bytes();
        // t size, then uid, gid, mode (0o120777 big-endian), rdev.
        let mut want = vec![0u8; 24];
        want[18] = 0xa1;
        want[19] = 0xff;
        want.extend_from_slice(b"a\0\x1a");
        assert_eq!(bytes, want);
        let (back, size) = FileMeta::from_archive_header(&bytes).unwrap();
        assert_eq!((back, size), (meta, 0));
    }

    #[test]
    fn xattr_names_carry_their_nul() {
        let meta = DirMeta {
            uid: 0,
            gid: 0,
            mode: 0o100644,
            xattrs: vec![(b"user.foo".to_vec(), b"bar".to_vec())],
        };
        // As the user.ostreemeta xattr ostree wrote for a file with user.foo=bar.
        let want = b"\0\0\0\0\0\0\0\0\0\0\x81\xa4user.foo\0bar\x09\x0d";
        assert_eq!(meta.to_bytes(), want);
    }

    #[test]
    fn commit_roundtrip_and_checksum_shape() {
        let c = Commit {
            metadata: vec![("version".into(), Value::Str("1.0".into()))],
            parent: Some(Checksum([7; 32])),
            related: vec![],
            subject: "subj2".into(),
            body: String::new(),
            timestamp: 1_704_067_200,
            root_tree: Checksum([1; 32]),
            root_meta: Checksum([2; 32]),
        };
        let bytes = c.to_bytes();
        assert_eq!(Commit::parse(&bytes).unwrap(), c);
        assert_eq!(&bytes[bytes.len() - 6..], b"\x60\x37\x36\x30\x30\x10");
    }

    #[test]
    fn checksum_hex() {
        let c = Checksum::of(b"");
        assert_eq!(
            c.to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(Checksum::from_hex(&c.to_hex()).unwrap(), c);
        assert!(Checksum::from_hex("E3B0").is_err());
    }
}
