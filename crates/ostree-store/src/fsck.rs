//! Reachability and integrity: which objects a commit needs, and whether
//! every stored object still hashes to its name.

use std::collections::{BTreeSet, HashSet};
use std::io::Read;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::object::{self, Checksum, Commit, DirMeta, DirTree, FileHasher, ObjectType};
use crate::repo::{Error, Repo, Result};

/// Every object reachable from `commit` (itself included), following
/// parents up to `depth` generations (`None`: all; 0: just this commit).
/// Missing parents end the walk; missing trees are errors.
pub(crate) fn reachable(
    repo: &Repo,
    commit: &Checksum,
    depth: Option<usize>,
    out: &mut HashSet<(Checksum, ObjectType)>,
) -> Result<()> {
    let mut c = *commit;
    let mut generation = 0;
    loop {
        if !out.insert((c, ObjectType::Commit)) {
            return Ok(());
        }
        let commit = match repo.load_commit(&c) {
            Ok(commit) => commit,
            Err(Error::MissingObject { .. }) if generation > 0 => {
                out.remove(&(c, ObjectType::Commit));
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        if repo.has_object(&c, ObjectType::CommitMeta) {
            out.insert((c, ObjectType::CommitMeta));
        }
        reachable_tree(repo, &commit.root_tree, &commit.root_meta, out)?;
        generation += 1;
        match (commit.parent, depth) {
            (Some(p), None) => c = p,
            (Some(p), Some(d)) if generation <= d => c = p,
            _ => return Ok(()),
        }
    }
}

fn reachable_tree(
    repo: &Repo,
    tree: &Checksum,
    meta: &Checksum,
    out: &mut HashSet<(Checksum, ObjectType)>,
) -> Result<()> {
    out.insert((*meta, ObjectType::DirMeta));
    if !out.insert((*tree, ObjectType::DirTree)) {
        return Ok(());
    }
    let t = repo.load_dirtree(tree)?;
    for (_, c) in &t.files {
        out.insert((*c, ObjectType::File));
    }
    for (_, tc, mc) in &t.dirs {
        reachable_tree(repo, tc, mc, out)?;
    }
    Ok(())
}

/// What `fsck` found.
#[derive(Debug, Default)]
pub struct FsckReport {
    /// Commits checked.
    pub commits: usize,
    /// Objects checked.
    pub objects: usize,
    /// Problems, one line each.
    pub errors: Vec<String>,
}

/// Re-hashes every object reachable from every commit and every ref.
pub fn fsck(repo: &Repo, progress: &mut (dyn FnMut(usize, usize) + Send)) -> Result<FsckReport> {
    let mut report = FsckReport::default();
    for (name, c) in repo.list_refs()? {
        if !repo.has_object(&c, ObjectType::Commit) {
            report
                .errors
                .push(format!("Ref '{name}' points to missing commit {c}"));
        }
    }
    let all = repo.list_objects()?;
    let commits: Vec<Checksum> = all
        .iter()
        .filter(|(_, k)| *k == ObjectType::Commit)
        .map(|(c, _)| *c)
        .collect();
    let mut wanted: BTreeSet<(Checksum, ObjectType)> = BTreeSet::new();
    for c in &commits {
        report.commits += 1;
        let mut set = HashSet::new();
        match reachable(repo, c, Some(0), &mut set) {
            Ok(()) => {}
            Err(e) => {
                report.errors.push(format!("commit {c}: {e}"));
                continue;
            }
        }
        wanted.extend(set);
    }
    let wanted: Vec<_> = wanted.into_iter().collect();
    let total = wanted.len();
    let done = AtomicUsize::new(0);
    let errors = Mutex::new(Vec::new());
    let next = AtomicUsize::new(0);
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let progress = Mutex::new(progress);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((c, k)) = wanted.get(i) else { return };
                    if let Err(e) = verify_object(repo, c, *k) {
                        errors.lock().expect("lock").push(e.to_string());
                    }
                    let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                    if n.is_multiple_of(1000) || n == total {
                        (progress.lock().expect("lock"))(n, total);
                    }
                }
            });
        }
    });
    report.objects = total;
    let mut errors = errors.into_inner().expect("lock");
    errors.sort();
    report.errors.extend(errors);
    Ok(report)
}

/// Checks that one stored object parses and hashes to its name.
pub(crate) fn verify_object(repo: &Repo, c: &Checksum, kind: ObjectType) -> Result<()> {
    let corrupt = |msg: String| Error::Corrupt {
        checksum: *c,
        kind,
        msg,
    };
    if kind == ObjectType::File {
        let (meta, mut content) = repo.open_file(c)?;
        let mut h = FileHasher::new(&meta);
        let mut buf = vec![0u8; 128 * 1024];
        let mut total = 0u64;
        loop {
            let n = content
                .read(&mut buf)
                .map_err(|e| corrupt(format!("reading content: {e}")))?;
            if n == 0 {
                break;
            }
            total += n as u64;
            h.update(&buf[..n]);
        }
        if total != content.size() {
            return Err(corrupt(format!(
                "content is {total} bytes, expected {}",
                content.size()
            )));
        }
        let actual = h.finish();
        if actual != *c {
            return Err(corrupt(format!(
                "Corrupted file object; checksum expected='{c}' actual='{actual}'"
            )));
        }
        return Ok(());
    }
    let bytes = repo.load_meta_bytes(c, kind)?;
    let actual = Checksum::of(&bytes);
    if kind != ObjectType::CommitMeta && actual != *c {
        return Err(corrupt(format!(
            "Corrupted metadata object; checksum expected='{c}' actual='{actual}'"
        )));
    }
    let parsed = match kind {
        ObjectType::Commit => Commit::parse(&bytes).map(|_| ()),
        ObjectType::DirTree => DirTree::parse(&bytes).map(|_| ()),
        ObjectType::DirMeta => DirMeta::parse(&bytes).map(|_| ()),
        ObjectType::CommitMeta => object::parse_vardict(&bytes).map(|_| ()),
        ObjectType::TombstoneCommit | ObjectType::File => Ok(()),
    };
    parsed.map_err(|e| corrupt(e.to_string()))
}
