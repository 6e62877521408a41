//! The files stage's filesystem part: files, directories and links, written
//! into the root as upstream Ignition writes them.
//!
//! Parents are created with mode 0755. A file is written whole (contents
//! then `append`), with mode 0644 unless set, and replaces what is there
//! only with `overwrite: true`; an existing file with no new contents keeps
//! them and gets the mode and owner. A directory that exists keeps its
//! children and gets the mode (0755 unless set) and owner. Owners given by
//! name are looked up in the root's `/etc/passwd` and `/etc/group`.
//! Entries are created shallowest first.

use ignition_config::Config;

use crate::resource;
use crate::root::{NodeKind, Root, RootError};

/// A failure, with the config path of the entry.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// A filesystem operation failed.
    #[error("{at}: {error}")]
    Root {
        /// JSON path of the entry.
        at: String,
        /// The failure.
        error: RootError,
    },
    /// A resource could not be fetched.
    #[error("{at}: {error}")]
    Fetch {
        /// JSON path of the resource.
        at: String,
        /// The failure.
        error: resource::FetchError,
    },
    /// The entry conflicts with what is in the root.
    #[error("{at}: {message}")]
    Conflict {
        /// JSON path of the entry.
        at: String,
        /// What is wrong.
        message: String,
    },
}

/// Looks up user and group names in the root's databases.
pub struct Ids {
    users: Vec<(String, u32, u32, String)>,
    groups: Vec<(String, u32)>,
}

impl Ids {
    /// Reads `/etc/passwd` and `/etc/group` of the root (missing files are
    /// empty databases).
    pub fn load(root: &Root) -> Ids {
        let read = |p: &str| {
            root.read_file(p)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        };
        let users = read("/etc/passwd")
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                Some((
                    f.first()?.to_string(),
                    f.get(2)?.parse().ok()?,
                    f.get(3)?.parse().ok()?,
                    f.get(5).unwrap_or(&"").to_string(),
                ))
            })
            .collect();
        let groups = read("/etc/group")
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                Some((f.first()?.to_string(), f.get(2)?.parse().ok()?))
            })
            .collect();
        Ids { users, groups }
    }

    /// A user's uid, primary gid and home.
    pub fn user(&self, name: &str) -> Option<(u32, u32, &str)> {
        self.users
            .iter()
            .find(|u| u.0 == name)
            .map(|u| (u.1, u.2, u.3.as_str()))
    }

    /// A group's gid.
    pub fn group(&self, name: &str) -> Option<u32> {
        self.groups.iter().find(|g| g.0 == name).map(|g| g.1)
    }
}

/// The owner the entry asks for, user and group separately; an unnamed one
/// is `None` (an existing node then keeps it, a new one gets root's).
fn owner(
    ids: &Ids,
    at: &str,
    user: &ignition_config::types::NodeUser,
    group: &ignition_config::types::NodeGroup,
) -> Result<(Option<u32>, Option<u32>), FilesError> {
    let conflict = |message: String| FilesError::Conflict {
        at: at.to_string(),
        message,
    };
    let uid = match (user.id, user.name.as_deref().filter(|n| !n.is_empty())) {
        (Some(id), _) => Some(id as u32),
        (None, Some(name)) => Some(
            ids.user(name)
                .ok_or_else(|| {
                    conflict(format!("user {name:?} not found in the root's /etc/passwd"))
                })?
                .0,
        ),
        (None, None) => None,
    };
    let gid = match (group.id, group.name.as_deref().filter(|n| !n.is_empty())) {
        (Some(id), _) => Some(id as u32),
        (None, Some(name)) => Some(ids.group(name).ok_or_else(|| {
            conflict(format!("group {name:?} not found in the root's /etc/group"))
        })?),
        (None, None) => None,
    };
    Ok((uid, gid))
}

/// The owner to set: what the entry names, else the kept one, else root.
fn resolve(wanted: (Option<u32>, Option<u32>), keep: Option<(u32, u32)>) -> (u32, u32) {
    (
        wanted.0.or(keep.map(|k| k.0)).unwrap_or(0),
        wanted.1.or(keep.map(|k| k.1)).unwrap_or(0),
    )
}

fn depth(p: &str) -> usize {
    p.split('/').filter(|s| !s.is_empty()).count()
}

/// Writes the config's files, directories and links into the root.
pub fn apply(
    config: &Config,
    root: &Root,
    fetcher: &resource::Fetcher,
) -> Result<Summary, FilesError> {
    let ids = Ids::load(root);
    let s = &config.storage;
    // Shallowest first, so that parents exist before their children.
    let mut order: Vec<(usize, u8, usize)> = Vec::new();
    order.extend(
        s.directories
            .iter()
            .enumerate()
            .map(|(i, d)| (depth(&d.path), 0, i)),
    );
    order.extend(
        s.files
            .iter()
            .enumerate()
            .map(|(i, f)| (depth(&f.path), 1, i)),
    );
    order.extend(
        s.links
            .iter()
            .enumerate()
            .filter(|(_, l)| l.hard != Some(true))
            .map(|(i, l)| (depth(&l.path), 2, i)),
    );
    order.sort();
    // Hard links come last, once their targets are written, as upstream.
    order.extend(
        s.links
            .iter()
            .enumerate()
            .filter(|(_, l)| l.hard == Some(true))
            .map(|(i, _)| (usize::MAX, 2, i)),
    );
    conflicts(config, root)?;
    let mut summary = Summary::default();
    for (_, kind, i) in order {
        match kind {
            0 => directory(&s.directories[i], i, root, &ids)?,
            1 => file(&s.files[i], i, root, &ids, fetcher)?,
            _ => link(&s.links[i], i, root, &ids)?,
        }
        summary.nodes += 1;
    }
    Ok(summary)
}

/// Refuses two entries that name one node through symlinks already in
/// the root (`/foo/bar` and `/bar` when `/foo` links to `/`), as upstream
/// does, instead of letting the last one win. Directories, then files,
/// then links, in upstream's order and words.
fn conflicts(config: &Config, root: &Root) -> Result<(), FilesError> {
    let s = &config.storage;
    let entries = s
        .directories
        .iter()
        .enumerate()
        .map(|(i, d)| ("directory", format!("$.storage.directories.{i}"), &d.path))
        .chain(
            s.files
                .iter()
                .enumerate()
                .map(|(i, f)| ("file", format!("$.storage.files.{i}"), &f.path)),
        )
        .chain(
            s.links
                .iter()
                .enumerate()
                .map(|(i, l)| ("link", format!("$.storage.links.{i}"), &l.path)),
        );
    let mut seen: std::collections::HashMap<String, &str> = std::collections::HashMap::new();
    for (what, at, path) in entries {
        let resolved = root.resolve_parent(path).map_err(rooterr(&at))?;
        if let Some(existing) = seen.get(&resolved) {
            return Err(FilesError::Conflict {
                at,
                message: format!(
                    "{what} at {path} resolved to {resolved} after symlink chasing, but another entry with path {existing} also resolves there"
                ),
            });
        }
        seen.insert(resolved, path);
    }
    Ok(())
}

/// Streams a resource into `out` (fetched, decompressed, hashed as it
/// comes); an empty `source` writes nothing, as upstream (a URL without a
/// scheme fetches nothing).
fn fetch_into(
    fetcher: &resource::Fetcher,
    r: &ignition_config::types::Resource,
    out: &mut dyn std::io::Write,
) -> Result<(), resource::FetchError> {
    if r.source.as_deref() == Some("") {
        return Ok(());
    }
    fetcher.fetch_to(r, out).map(|_| ())
}

/// What was written.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Files, directories and links.
    pub nodes: usize,
}

fn rooterr(at: &str) -> impl Fn(RootError) -> FilesError + '_ {
    move |error| FilesError::Root {
        at: at.to_string(),
        error,
    }
}

fn directory(
    d: &ignition_config::types::Directory,
    i: usize,
    root: &Root,
    ids: &Ids,
) -> Result<(), FilesError> {
    let at = format!("$.storage.directories.{i}");
    let wanted = owner(ids, &at, &d.user, &d.group)?;
    let existing = root.stat(&d.path).map_err(rooterr(&at))?;
    match root.kind(&d.path).map_err(rooterr(&at))? {
        Some(NodeKind::Dir) | None => {}
        Some(_) if d.overwrite == Some(true) => root.remove_all(&d.path).map_err(rooterr(&at))?,
        Some(_) => {
            return Err(FilesError::Conflict {
                at,
                message: format!(
                    "{} exists and is not a directory, and overwrite is false",
                    d.path
                ),
            });
        }
    }
    // An existing directory keeps its mode and owner unless the config sets them.
    let is_dir = root.kind(&d.path).map_err(rooterr(&at))? == Some(NodeKind::Dir);
    let keep = existing.filter(|_| is_dir);
    let mode = d
        .mode
        .map(|m| m as u32 & 0o7777)
        .or(keep.map(|k| k.0))
        .unwrap_or(0o755);
    let owner = resolve(wanted, keep.map(|k| (k.1, k.2)));
    root.make_dir(&d.path, mode, Some(owner))
        .map_err(rooterr(&at))
}

fn file(
    f: &ignition_config::types::File,
    i: usize,
    root: &Root,
    ids: &Ids,
    fetcher: &resource::Fetcher,
) -> Result<(), FilesError> {
    let at = format!("$.storage.files.{i}");
    let wanted = owner(ids, &at, &f.user, &f.group)?;
    let overwrite = f.overwrite == Some(true);
    let has_contents = f.contents.source.is_some();
    let conflict = |what: &str| FilesError::Conflict {
        at: at.clone(),
        message: format!("error creating file {:?}: {what}", f.path),
    };
    let existing = root.kind(&f.path).map_err(rooterr(&at))?;
    let replaces_other = matches!(existing, Some(k) if k != NodeKind::File);
    if replaces_other && !overwrite {
        return Err(conflict(
            "a non regular file exists there already and overwrite is false",
        ));
    }
    // An existing file without overwrite keeps its contents (appends go
    // after them), its mode and its owner unless the entry sets them.
    let keeps = existing == Some(NodeKind::File) && !overwrite;
    if keeps && has_contents {
        return Err(conflict(
            "A file exists there already and overwrite is false",
        ));
    }
    let kept = if keeps {
        root.stat(&f.path).map_err(rooterr(&at))?
    } else {
        None
    };
    let mode = f
        .mode
        .map(|m| m as u32 & 0o7777)
        .or(kept.map(|k| k.0))
        .unwrap_or(0o644);
    // A file changed in place keeps what the entry does not name; a file
    // written anew is root's unless named.
    let owner = resolve(wanted, kept.map(|k| (k.1, k.2)));
    if keeps && f.append.is_empty() {
        // Only mode and owner change: in place, as upstream (hard links to
        // the file see it).
        return root
            .set_attrs(&f.path, Some(mode), Some(owner))
            .map_err(rooterr(&at));
    }
    // The new contents are streamed into a temporary file (fetched,
    // decompressed and hashed in one pass, so a large file costs no
    // memory) and verified before anything of the path is created or
    // replaced; a failure removes the temporary file.
    let mut staged = root.stage_file(&f.path).map_err(rooterr(&at))?;
    if keeps {
        let old = root.read_file(&f.path).map_err(rooterr(&at))?;
        std::io::Write::write_all(staged.file(), &old).map_err(|error| FilesError::Root {
            at: at.clone(),
            error: RootError {
                op: "write",
                path: f.path.clone(),
                error,
            },
        })?;
    } else {
        fetch_into(fetcher, &f.contents, staged.file()).map_err(|error| FilesError::Fetch {
            at: format!("{at}.contents"),
            error,
        })?;
    }
    for (j, a) in f.append.iter().enumerate() {
        fetch_into(fetcher, a, staged.file()).map_err(|error| FilesError::Fetch {
            at: format!("{at}.append.{j}"),
            error,
        })?;
    }
    if replaces_other {
        root.remove_all(&f.path).map_err(rooterr(&at))?;
    }
    root.commit_file(staged, mode, Some(owner))
        .map_err(rooterr(&at))
}

fn link(
    l: &ignition_config::types::Link,
    i: usize,
    root: &Root,
    ids: &Ids,
) -> Result<(), FilesError> {
    let at = format!("$.storage.links.{i}");
    let target = l.target.clone().unwrap_or_default();
    let hard = l.hard == Some(true);
    // A hard link's relative target is relative to the root, as upstream.
    let hard_target = if target.starts_with('/') {
        target.clone()
    } else {
        format!("/{target}")
    };
    let overwrite = l.overwrite == Some(true);
    let conflict = |message: String| FilesError::Conflict {
        at: at.clone(),
        message,
    };
    match root.kind(&l.path).map_err(rooterr(&at))? {
        None => {}
        // With overwrite, whatever is there goes, and the link is made
        // anew with its owner.
        Some(_) if overwrite => root.remove_all(&l.path).map_err(rooterr(&at))?,
        // Without it, a link that is already what the config asks for is
        // left alone, as upstream ("already exists, doing nothing").
        Some(_) if hard => {
            if !root
                .same_file(&l.path, &hard_target)
                .map_err(rooterr(&at))?
            {
                return Err(conflict(format!(
                    "error creating hard link {}: a file already exists at that path but is not the target and overwrite is false",
                    l.path
                )));
            }
            return Ok(());
        }
        Some(NodeKind::Link) => {
            let existing = root.read_link(&l.path).map_err(rooterr(&at))?;
            let clean = ignition_config::validate::clean_path;
            if clean(&existing) != clean(&target) {
                return Err(conflict(format!(
                    "error creating symlink {}: a symlink exists at that path but points to {existing}, not {target} and overwrite is false",
                    l.path
                )));
            }
            return Ok(());
        }
        Some(_) => {
            return Err(conflict(format!(
                "error creating symlink {}: a non-symlink already exists at that path and overwrite is false",
                l.path
            )));
        }
    }
    if hard {
        root.hard_link(&l.path, &hard_target).map_err(rooterr(&at))
    } else {
        let owner = resolve(owner(ids, &at, &l.user, &l.group)?, None);
        root.symlink(&l.path, &target, Some(owner))
            .map_err(rooterr(&at))
    }
}
