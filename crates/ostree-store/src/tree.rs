//! Walking a commit's tree: looking a path up, and the differences between
//! two commits as `ostree diff` lists them.

use std::collections::BTreeMap;

use crate::object::{Checksum, Commit};
use crate::repo::{Repo, Result, msg};

/// What a path in a commit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node {
    /// A file (or symlink) object.
    File(Checksum),
    /// A directory: its dirtree and dirmeta.
    Dir(Checksum, Checksum),
}

/// Looks `path` up in `commit` (`/` is the root; empty components are
/// ignored).
pub fn lookup(repo: &Repo, commit: &Commit, path: &str) -> Result<Node> {
    let mut node = Node::Dir(commit.root_tree, commit.root_meta);
    for comp in path.split('/').filter(|c| !c.is_empty()) {
        let Node::Dir(t, _) = node else {
            return Err(msg(format!("No such file or directory: {path}")));
        };
        let tree = repo.load_dirtree(&t)?;
        node = if let Some((_, tc, mc)) = tree.dirs.iter().find(|d| d.0 == comp) {
            Node::Dir(*tc, *mc)
        } else if let Some((_, fc)) = tree.files.iter().find(|f| f.0 == comp) {
            Node::File(*fc)
        } else {
            return Err(msg(format!("No such file or directory: {path}")));
        };
    }
    Ok(node)
}

/// How a path differs, as `ostree diff` marks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// `A`: only in the second tree.
    Added,
    /// `D`: only in the first tree.
    Deleted,
    /// `M`: in both, different (content, or a directory's metadata).
    Modified,
}

impl Change {
    /// The letter `ostree diff` prints.
    pub fn letter(self) -> char {
        match self {
            Change::Added => 'A',
            Change::Deleted => 'D',
            Change::Modified => 'M',
        }
    }
}

/// A directory as (dirtree, dirmeta), or nothing.
type TreeRef = Option<(Checksum, Checksum)>;

/// A dirtree's files and directories by name.
type Listing = (
    BTreeMap<String, Checksum>,
    BTreeMap<String, (Checksum, Checksum)>,
);

/// The paths that differ between the trees of `a` and `b`, in `ostree
/// diff`'s order (by name, depth first; a file that became a directory is
/// deleted then added, with the directory's contents after it).
pub fn diff(repo: &Repo, a: &Commit, b: &Commit) -> Result<Vec<(Change, String)>> {
    let mut out = Vec::new();
    diff_trees(
        repo,
        Some((a.root_tree, a.root_meta)),
        Some((b.root_tree, b.root_meta)),
        "",
        &mut out,
    )?;
    Ok(out)
}

fn diff_trees(
    repo: &Repo,
    a: TreeRef,
    b: TreeRef,
    prefix: &str,
    out: &mut Vec<(Change, String)>,
) -> Result<()> {
    let load = |t: TreeRef| -> Result<Listing> {
        match t {
            None => Ok(Default::default()),
            Some((tc, _)) => {
                let tree = repo.load_dirtree(&tc)?;
                Ok((
                    tree.files.into_iter().collect(),
                    tree.dirs.into_iter().map(|(n, t, m)| (n, (t, m))).collect(),
                ))
            }
        }
    };
    let (fa, da) = load(a)?;
    let (fb, db) = load(b)?;
    let mut names: Vec<&String> = fa
        .keys()
        .chain(fb.keys())
        .chain(da.keys())
        .chain(db.keys())
        .collect();
    names.sort();
    names.dedup();
    use Change::{Added, Deleted, Modified};
    for n in names {
        let path = format!("{prefix}/{n}");
        match (fa.get(n), fb.get(n), da.get(n), db.get(n)) {
            (Some(x), Some(y), _, _) if x != y => out.push((Modified, path)),
            (Some(_), Some(_), _, _) => {}
            (Some(_), None, _, None) => out.push((Deleted, path)),
            (None, Some(_), None, _) => out.push((Added, path)),
            (Some(_), None, _, Some(d)) => {
                out.push((Deleted, path.clone()));
                out.push((Added, path.clone()));
                diff_trees(repo, None, Some(*d), &path, out)?;
            }
            (None, Some(_), Some(d), _) => {
                diff_trees(repo, Some(*d), None, &path, out)?;
                out.push((Deleted, path.clone()));
                out.push((Added, path));
            }
            (None, None, Some(x), Some(y)) => {
                if x.1 != y.1 {
                    out.push((Modified, path.clone()));
                }
                if x.0 != y.0 {
                    diff_trees(repo, Some(*x), Some(*y), &path, out)?;
                }
            }
            (None, None, Some(x), None) => {
                out.push((Deleted, path.clone()));
                diff_trees(repo, Some(*x), None, &path, out)?;
            }
            (None, None, None, Some(y)) => {
                out.push((Added, path.clone()));
                diff_trees(repo, None, Some(*y), &path, out)?;
            }
            (None, None, None, None) => {}
        }
    }
    Ok(())
}
