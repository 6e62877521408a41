//! The `summary` file: every local ref with its commit's size, checksum,
//! version and timestamp, plus repository facts, as
//! `(a(s(taya{sv}))a{sv})`. Clients read it to resolve refs in one request;
//! `summary.sig` holds its signatures as detached metadata.

use crate::gvariant::{Bytes, Value, VarDict, decode, encode};
use crate::object::{self, Checksum, ObjectType};
use crate::repo::{Error, Repo, Result, msg, write_atomic};

/// One ref in a summary.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryRef {
    /// Ref name.
    pub name: String,
    /// Size of the commit object in bytes.
    pub commit_size: u64,
    /// The commit.
    pub checksum: Checksum,
    /// Per-ref metadata (`ostree.commit.timestamp`, `ostree.commit.version`).
    pub metadata: Vec<(String, Value)>,
}

/// A parsed summary.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Refs, sorted by name.
    pub refs: Vec<SummaryRef>,
    /// Repository metadata.
    pub metadata: Vec<(String, Value)>,
}

/// The shape of a summary: refs (name, (commit size, checksum, metadata)),
/// then the repository's metadata.
type SummaryT = (Vec<(String, (u64, Bytes, VarDict))>, VarDict);

impl Summary {
    /// Builds the summary of a repository's local refs, as `summary -u`.
    pub fn generate(repo: &Repo, now: u64) -> Result<Summary> {
        let mut refs = Vec::new();
        for (name, c) in repo.list_refs()? {
            if name.contains(':') {
                continue;
            }
            let bytes = repo.load_meta_bytes(&c, ObjectType::Commit)?;
            let commit = object::Commit::parse(&bytes).map_err(|e| Error::Corrupt {
                checksum: c,
                kind: ObjectType::Commit,
                msg: e.to_string(),
            })?;
            let mut metadata = Vec::new();
            if let Some(v) = commit.version() {
                metadata.push((
                    "ostree.commit.version".to_string(),
                    Value::Str(v.to_string()),
                ));
            }
            metadata.push((
                "ostree.commit.timestamp".to_string(),
                Value::be64(commit.timestamp),
            ));
            refs.push(SummaryRef {
                name,
                commit_size: bytes.len() as u64,
                checksum: c,
                metadata,
            });
        }
        let metadata = vec![
            (
                "ostree.summary.mode".to_string(),
                Value::Str(repo.mode().config_name().to_string()),
            ),
            ("ostree.summary.last-modified".to_string(), Value::be64(now)),
            (
                "ostree.summary.tombstone-commits".to_string(),
                Value::Bool(false),
            ),
            (
                "ostree.summary.indexed-deltas".to_string(),
                Value::Bool(true),
            ),
        ];
        Ok(Summary { refs, metadata })
    }

    /// Serialized bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let t: SummaryT = (
            self.refs
                .iter()
                .map(|r| {
                    (
                        r.name.clone(),
                        (
                            r.commit_size,
                            Bytes(r.checksum.0.to_vec()),
                            VarDict(r.metadata.clone()),
                        ),
                    )
                })
                .collect(),
            VarDict(self.metadata.clone()),
        );
        encode(t)
    }

    /// Parses a summary file.
    pub fn parse(data: &[u8]) -> Result<Summary> {
        let bad = |m: String| msg(format!("invalid summary: {m}"));
        let (entries, VarDict(metadata)) =
            decode::<SummaryT>(data).map_err(|e| bad(e.to_string()))?;
        let refs = entries
            .into_iter()
            .map(|(name, (commit_size, checksum, VarDict(metadata)))| {
                let checksum = Checksum::from_bytes(&checksum.0)
                    .ok_or_else(|| bad("ref checksum of the wrong length".into()))?;
                Ok(SummaryRef {
                    name,
                    commit_size,
                    checksum,
                    metadata,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Summary { refs, metadata })
    }

    /// The commit a ref names.
    pub fn lookup(&self, name: &str) -> Option<&SummaryRef> {
        self.refs.iter().find(|r| r.name == name)
    }
}

/// Regenerates `summary` (and signs it into `summary.sig` with `keys`),
/// each file replaced atomically.
pub fn update(repo: &Repo, keys: &[crate::sign::SecretKey]) -> Result<Summary> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let summary = Summary::generate(repo, now)?;
    let bytes = summary.to_bytes();
    let sig_path = repo.path().join("summary.sig");
    if keys.is_empty() {
        // A stale signature would not match the new summary.
        let _ = std::fs::remove_file(&sig_path);
    } else {
        let mut meta = Vec::new();
        for k in keys {
            crate::sign::add_signature(&mut meta, k.sign(&bytes));
        }
        write_atomic(&sig_path, &Value::vardict(meta).to_bytes(), repo.fsync())?;
    }
    write_atomic(&repo.path().join("summary"), &bytes, repo.fsync())?;
    Ok(summary)
}
