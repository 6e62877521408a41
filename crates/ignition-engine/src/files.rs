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
    #[error("{at}: {source}")]
    Root {
        /// JSON path of the entry.
        at: String,
        /// The failure.
        #[source]
        source: RootError,
    },
    /// A resource could not be fetched.
    #[error("{at}: {source}")]
    Fetch {
        /// JSON path of the resource.
        at: String,
        /// The failure.
        #[source]
        source: resource::FetchError,
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

fn owner(
    ids: &Ids,
    at: &str,
    user: &ignition_config::types::NodeUser,
    group: &ignition_config::types::NodeGroup,
) -> Result<(u32, u32), FilesError> {
    let conflict = |message: String| FilesError::Conflict {
        at: at.to_string(),
        message,
    };
    let uid = match (user.id, user.name.as_deref().filter(|n| !n.is_empty())) {
        (Some(id), _) => id as u32,
        (None, Some(name)) => {
            ids.user(name)
                .ok_or_else(|| {
                    conflict(format!("user {name:?} not found in the root's /etc/passwd"))
                })?
                .0
        }
        (None, None) => 0,
    };
    let gid = match (group.id, group.name.as_deref().filter(|n| !n.is_empty())) {
        (Some(id), _) => id as u32,
        (None, Some(name)) => ids.group(name).ok_or_else(|| {
            conflict(format!("group {name:?} not found in the root's /etc/group"))
        })?,
        (None, None) => 0,
    };
    Ok((uid, gid))
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
            .map(|(i, l)| (depth(&l.path), 2, i)),
    );
    order.sort();
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

/// What was written.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Files, directories and links.
    pub nodes: usize,
}

fn rooterr(at: &str) -> impl Fn(RootError) -> FilesError + '_ {
    move |source| FilesError::Root {
        at: at.to_string(),
        source,
    }
}

fn directory(
    d: &ignition_config::types::Directory,
    i: usize,
    root: &Root,
    ids: &Ids,
) -> Result<(), FilesError> {
    let at = format!("$.storage.directories.{i}");
    let (uid, gid) = owner(ids, &at, &d.user, &d.group)?;
    match root.kind(&d.path).map_err(rooterr(&at))? {
        Some(NodeKind::Dir) | None => {}
        Some(_) if d.overwrite == Some(true) => root.remove(&d.path).map_err(rooterr(&at))?,
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
    let mode = d.mode.map_or(0o755, |m| m as u32 & 0o7777);
    root.make_dir(&d.path, mode, Some((uid, gid)))
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
    let (uid, gid) = owner(ids, &at, &f.user, &f.group)?;
    // Everything is fetched and verified before the root is touched.
    let contents = fetcher
        .fetch(&f.contents)
        .map_err(|source| FilesError::Fetch {
            at: format!("{at}.contents"),
            source,
        })?;
    let mut appends = Vec::with_capacity(f.append.len());
    for (j, a) in f.append.iter().enumerate() {
        let data = fetcher.fetch(a).map_err(|source| FilesError::Fetch {
            at: format!("{at}.append.{j}"),
            source,
        })?;
        appends.push(data.unwrap_or_default());
    }
    let existing = root.kind(&f.path).map_err(rooterr(&at))?;
    let overwrite = f.overwrite == Some(true);
    let mut data = match (existing, &contents) {
        (Some(NodeKind::File), None) if !overwrite => {
            root.read_file(&f.path).map_err(rooterr(&at))?
        }
        (Some(_), Some(_)) if !overwrite => {
            return Err(FilesError::Conflict {
                at,
                message: format!(
                    "error creating file {:?}: A file exists there already and overwrite is false",
                    f.path
                ),
            });
        }
        (Some(NodeKind::Dir), _) => {
            return Err(FilesError::Conflict {
                at,
                message: format!("{} is a directory", f.path),
            });
        }
        _ => contents.clone().unwrap_or_default(),
    };
    for a in appends {
        data.extend_from_slice(&a);
    }
    let keep_mode = if existing == Some(NodeKind::File) && contents.is_none() && !overwrite {
        root.mode(&f.path).map_err(rooterr(&at))?
    } else {
        None
    };
    let mode = f
        .mode
        .map(|m| m as u32 & 0o7777)
        .or(keep_mode)
        .unwrap_or(0o644);
    root.write_file(&f.path, &data, mode, Some((uid, gid)))
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
    if root.kind(&l.path).map_err(rooterr(&at))?.is_some() {
        if l.overwrite != Some(true) {
            return Err(FilesError::Conflict {
                at,
                message: format!(
                    "error creating link {:?}: A file exists there already and overwrite is false",
                    l.path
                ),
            });
        }
        root.remove(&l.path).map_err(rooterr(&at))?;
    }
    if l.hard == Some(true) {
        let t = if target.starts_with('/') {
            target
        } else {
            let parent = l
                .path
                .rsplit_once('/')
                .map_or("/", |(p, _)| if p.is_empty() { "/" } else { p });
            ignition_config::validate::clean_path(&format!("{parent}/{target}"))
        };
        root.hard_link(&l.path, &t).map_err(rooterr(&at))
    } else {
        let owner = owner(ids, &at, &l.user, &l.group)?;
        root.symlink(&l.path, &target, Some(owner))
            .map_err(rooterr(&at))
    }
}
