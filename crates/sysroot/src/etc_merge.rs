//! The three-way `/etc` merge of a new deployment, as OSTree does it.
//!
//! Inputs: the old deployment's defaults (`usr/etc`), its live `/etc`, and
//! the new deployment's `/etc` (a fresh copy of the new defaults). Changes
//! are file-level: a file, link or directory modified or added locally
//! replaces the new default whole; one removed locally is removed from the
//! new `/etc`; everything untouched follows the new release. A local entry
//! whose type cannot be placed (a local file where the new release has a
//! directory, or the reverse) is a conflict: an error naming the path, and
//! the caller throws the new deployment away.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::{Error, Result, io_err};

/// What the merge did, for the log and the tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MergeReport {
    /// Paths (relative to /etc) changed locally and kept.
    pub modified: Vec<String>,
    /// Paths added locally and kept.
    pub added: Vec<String>,
    /// Paths removed locally and removed from the new /etc.
    pub removed: Vec<String>,
}

#[derive(Debug, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Link,
    Other,
}

fn kind(m: &fs::Metadata) -> Kind {
    let t = m.file_type();
    if t.is_symlink() {
        Kind::Link
    } else if t.is_dir() {
        Kind::Dir
    } else if t.is_file() {
        Kind::File
    } else {
        Kind::Other
    }
}

fn lstat(p: &Path) -> Result<Option<fs::Metadata>> {
    match fs::symlink_metadata(p) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(p, e)),
    }
}

fn names(dir: &Path) -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    match fs::read_dir(dir) {
        Ok(rd) => {
            for e in rd {
                let e = e.map_err(|e| io_err(dir, e))?;
                out.insert(e.file_name().to_string_lossy().into_owned());
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(dir, e)),
    }
    Ok(out)
}

/// Whether two entries differ in type, mode, owner, xattrs, content or target.
fn differs(a: &Path, am: &fs::Metadata, b: &Path, bm: &fs::Metadata) -> Result<bool> {
    if kind(am) != kind(bm) || am.uid() != bm.uid() || am.gid() != bm.gid() {
        return Ok(true);
    }
    if kind(am) != Kind::Link && am.mode() != bm.mode() {
        return Ok(true);
    }
    if ostree_store::repo::read_xattrs(a).map_err(Error::from)?
        != ostree_store::repo::read_xattrs(b).map_err(Error::from)?
    {
        return Ok(true);
    }
    Ok(match kind(am) {
        Kind::Link => {
            fs::read_link(a).map_err(|e| io_err(a, e))?
                != fs::read_link(b).map_err(|e| io_err(b, e))?
        }
        Kind::File => {
            am.len() != bm.len()
                || fs::read(a).map_err(|e| io_err(a, e))?
                    != fs::read(b).map_err(|e| io_err(b, e))?
        }
        Kind::Dir | Kind::Other => false,
    })
}

/// Merges `modified` (the old live /etc) against `orig` (the old defaults)
/// into `new_etc`.
pub fn merge(orig: &Path, modified: &Path, new_etc: &Path) -> Result<MergeReport> {
    let mut report = MergeReport::default();
    walk(orig, modified, new_etc, "", &mut report)?;
    Ok(report)
}

fn walk(
    orig: &Path,
    modified: &Path,
    new_etc: &Path,
    rel: &str,
    report: &mut MergeReport,
) -> Result<()> {
    let o_dir = orig.join(rel);
    let m_dir = modified.join(rel);
    let mut all = names(&o_dir)?;
    all.extend(names(&m_dir)?);
    for name in all {
        let rel_path = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        let (o, m, n) = (
            orig.join(&rel_path),
            modified.join(&rel_path),
            new_etc.join(&rel_path),
        );
        match (lstat(&o)?, lstat(&m)?) {
            (Some(_), None) => {
                // Removed locally: stays removed.
                if let Some(nm) = lstat(&n)? {
                    remove(&n, &nm)?;
                }
                report.removed.push(rel_path);
            }
            (None, Some(mm)) => {
                place(&m, &mm, &n, &rel_path)?;
                report.added.push(rel_path);
            }
            (Some(om), Some(mm)) => {
                if kind(&om) == Kind::Dir && kind(&mm) == Kind::Dir {
                    if differs(&o, &om, &m, &mm)? {
                        // Directory metadata changed locally.
                        match lstat(&n)? {
                            Some(nm) if kind(&nm) != Kind::Dir => {
                                return Err(conflict(&rel_path, "a directory", &nm));
                            }
                            Some(_) => copy_meta(&m, &mm, &n)?,
                            None => fs::create_dir(&n)
                                .map_err(|e| io_err(&n, e))
                                .and_then(|()| copy_meta(&m, &mm, &n))?,
                        }
                        report.modified.push(rel_path.clone());
                    }
                    walk(orig, modified, new_etc, &rel_path, report)?;
                } else if differs(&o, &om, &m, &mm)? {
                    place(&m, &mm, &n, &rel_path)?;
                    report.modified.push(rel_path);
                }
            }
            (None, None) => {}
        }
    }
    Ok(())
}

fn conflict(rel: &str, local: &str, new: &fs::Metadata) -> Error {
    let new_kind = match kind(new) {
        Kind::Dir => "a directory",
        Kind::File => "a file",
        Kind::Link => "a symbolic link",
        Kind::Other => "a special file",
    };
    Error::Msg(format!(
        "/etc merge conflict at /etc/{rel}: it is {local} in the local /etc but {new_kind} in the new release"
    ))
}

/// Puts the local entry `m` at `n`, replacing a file or link there; a
/// directory meets a directory by merging into it.
fn place(m: &Path, mm: &fs::Metadata, n: &Path, rel: &str) -> Result<()> {
    let existing = lstat(n)?;
    match (kind(mm), existing.as_ref().map(kind)) {
        (Kind::Dir, Some(Kind::Dir)) => {
            copy_meta(m, mm, n)?;
            for name in names(m)? {
                let (cm, cn) = (m.join(&name), n.join(&name));
                let cmm = fs::symlink_metadata(&cm).map_err(|e| io_err(&cm, e))?;
                place(&cm, &cmm, &cn, &format!("{rel}/{name}"))?;
            }
            Ok(())
        }
        (Kind::Dir, Some(_)) => Err(conflict(
            rel,
            "a directory",
            existing.as_ref().expect("some"),
        )),
        (_, Some(Kind::Dir)) => Err(conflict(
            rel,
            if kind(mm) == Kind::Link {
                "a symbolic link"
            } else {
                "a file"
            },
            existing.as_ref().expect("some"),
        )),
        (Kind::Other, _) => Err(Error::Msg(format!(
            "/etc/{rel}: special files cannot be merged"
        ))),
        _ => {
            // Copied beside, then renamed over: the new /etc never holds a
            // half-copied file.
            let tmp = tmp_sibling(n);
            copy_entry(m, mm, &tmp)?;
            fs::rename(&tmp, n).map_err(|e| io_err(n, e))
        }
    }
}

fn tmp_sibling(p: &Path) -> PathBuf {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    p.with_file_name(format!(".{name}.etcmerge-tmp"))
}

fn remove(p: &Path, m: &fs::Metadata) -> Result<()> {
    if kind(m) == Kind::Dir {
        fs::remove_dir_all(p).map_err(|e| io_err(p, e))
    } else {
        fs::remove_file(p).map_err(|e| io_err(p, e))
    }
}

fn copy_meta(src: &Path, sm: &fs::Metadata, dst: &Path) -> Result<()> {
    std::os::unix::fs::lchown(dst, Some(sm.uid()), Some(sm.gid())).map_err(|e| io_err(dst, e))?;
    if kind(sm) != Kind::Link {
        fs::set_permissions(dst, fs::Permissions::from_mode(sm.mode() & 0o7777))
            .map_err(|e| io_err(dst, e))?;
    }
    for (k, v) in ostree_store::repo::read_xattrs(src)? {
        let name = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&k);
        rustix::fs::lsetxattr(dst, name, &v, rustix::fs::XattrFlags::empty())
            .map_err(|e| io_err(dst, e.into()))?;
    }
    Ok(())
}

/// Copies one entry (recursively for directories) with owner, mode and xattrs.
pub(crate) fn copy_entry(src: &Path, sm: &fs::Metadata, dst: &Path) -> Result<()> {
    match kind(sm) {
        Kind::Link => {
            let target = fs::read_link(src).map_err(|e| io_err(src, e))?;
            std::os::unix::fs::symlink(&target, dst).map_err(|e| io_err(dst, e))?;
        }
        Kind::File => {
            fs::copy(src, dst).map_err(|e| io_err(dst, e))?;
        }
        Kind::Dir => {
            fs::create_dir(dst).map_err(|e| io_err(dst, e))?;
            for name in names(src)? {
                let (cs, cd) = (src.join(&name), dst.join(&name));
                let cm = fs::symlink_metadata(&cs).map_err(|e| io_err(&cs, e))?;
                copy_entry(&cs, &cm, &cd)?;
            }
        }
        Kind::Other => {
            return Err(Error::Msg(format!(
                "{}: special files cannot be copied",
                src.display()
            )));
        }
    }
    copy_meta(src, sm, dst)
}
