//! Writing the metadata of a stream: adding releases, promoting them from
//! one stream to the next, barriers, dead-ends and rollouts.
//!
//! Every change is validated before anything is written; every file is
//! written under a temporary name and renamed, then signed: a detached
//! ed25519 signature of its exact bytes goes to `<file>.sig` (base64, as the
//! signer the caller passes makes it), so a client holding the public key can
//! check what it downloaded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::meta::{
    Commit, DocMeta, IndexRelease, Reason, ReleaseArch, ReleaseDoc, ReleaseIndex, Rollout,
    StreamDoc, StreamPlatform, UpdateEntry, UpdateRules, UpdatesDoc, Version, VersionError,
    stream_id,
};

/// Signs bytes, returning the detached signature as text (base64).
pub type Signer<'a> = &'a dyn Fn(&[u8]) -> String;

/// A refused change.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The change does not make sense.
    #[error("{0}")]
    Invalid(String),
    /// A version is not of the Fedora CoreOS scheme.
    #[error(transparent)]
    Version(#[from] VersionError),
    /// A file could not be read, parsed or written.
    #[error("{}: {msg}", path.display())]
    File {
        /// Which file.
        path: PathBuf,
        /// Why.
        msg: String,
    },
}

fn invalid<T>(m: impl Into<String>) -> Result<T, PublishError> {
    Err(PublishError::Invalid(m.into()))
}

/// The metadata tree of one base directory.
pub struct Metadata {
    base: PathBuf,
    /// URL the base is published at (for `metadata` links in the index).
    pub base_url: String,
}

/// An RFC 3339 UTC time.
pub(crate) fn rfc3339(epoch: i64) -> String {
    let t = civil_time::utc(epoch);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

impl Metadata {
    /// Opens (or will create) the tree under `base`.
    pub fn new(base: &Path, base_url: &str) -> Metadata {
        Metadata {
            base: base.to_path_buf(),
            base_url: base_url.trim_end_matches('/').to_string(),
        }
    }

    fn index_path(&self, stream: &str) -> PathBuf {
        self.base
            .join(format!("prod/streams/{stream}/releases.json"))
    }
    fn updates_path(&self, stream: &str) -> PathBuf {
        self.base.join(format!("updates/{stream}.json"))
    }
    fn stream_path(&self, stream: &str) -> PathBuf {
        self.base.join(format!("streams/{stream}.json"))
    }
    fn release_path(&self, stream: &str, version: &str) -> PathBuf {
        self.base.join(format!(
            "prod/streams/{stream}/builds/{version}/release.json"
        ))
    }

    fn read<T: serde::de::DeserializeOwned + Default>(path: &Path) -> Result<T, PublishError> {
        match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| PublishError::File {
                path: path.to_path_buf(),
                msg: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
            Err(e) => Err(PublishError::File {
                path: path.to_path_buf(),
                msg: e.to_string(),
            }),
        }
    }

    /// The release index of a stream (empty when there is none yet).
    pub fn index(&self, stream: &str) -> Result<ReleaseIndex, PublishError> {
        Metadata::read(&self.index_path(stream))
    }

    /// The update rules of a stream.
    pub fn updates(&self, stream: &str) -> Result<UpdatesDoc, PublishError> {
        Metadata::read(&self.updates_path(stream))
    }

    /// A release's `release.json`.
    pub fn release(&self, stream: &str, version: &str) -> Result<ReleaseDoc, PublishError> {
        check_name("stream", stream)?;
        version.parse::<Version>()?;
        let p = self.release_path(stream, version);
        if !p.exists() {
            return invalid(format!("release {version} is not in stream {stream}"));
        }
        Metadata::read(&p)
    }

    fn write(
        &self,
        path: &Path,
        value: &impl serde::Serialize,
        sign: Option<Signer<'_>>,
    ) -> Result<(), PublishError> {
        let err = |m: String| PublishError::File {
            path: path.to_path_buf(),
            msg: m,
        };
        let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| err(e.to_string()))?;
        bytes.push(b'\n');
        let dir = path.parent().expect("metadata files have a parent");
        std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
        write_atomic(path, &bytes).map_err(err)?;
        if let Some(sign) = sign {
            let sig = sign(&bytes);
            let sig_path = PathBuf::from(format!("{}.sig", path.display()));
            write_atomic(&sig_path, format!("{sig}\n").as_bytes()).map_err(|e| {
                PublishError::File {
                    path: sig_path,
                    msg: e,
                }
            })?;
        }
        Ok(())
    }

    /// Checks that `version` of `arch` may be added to `stream` (the same
    /// rules as [`Metadata::add_release`]), before anything is committed.
    pub fn check_new_release(
        &self,
        stream: &str,
        version: &str,
        arch: &str,
    ) -> Result<(), PublishError> {
        check_name("stream", stream)?;
        check_name("architecture", arch)?;
        let v: Version = version.parse()?;
        if let Some(id) = stream_id(stream)
            && v.stream != id
        {
            return invalid(format!(
                "version {version} has stream id {} but stream {stream} is {id}",
                v.stream
            ));
        }
        let index = self.index(stream)?;
        match index.releases.iter().find(|r| r.version == version) {
            Some(r) if r.commits.iter().any(|c| c.architecture == arch) => invalid(format!(
                "release {version} of stream {stream} already has an {arch} commit"
            )),
            Some(_) => Ok(()),
            None => match index
                .releases
                .last()
                .and_then(|n| n.version.parse::<Version>().ok().map(|v| (n, v)))
            {
                Some((newest, nv)) if nv >= v => invalid(format!(
                    "version {version} is not newer than {}, the stream's newest release",
                    newest.version
                )),
                _ => Ok(()),
            },
        }
    }

    /// Adds a release (one architecture's commit at a time) to a stream:
    /// its `release.json`, the index, and the stream metadata. A version
    /// must belong to the stream (its stream id) and, when new, be newer
    /// than every release the stream has.
    pub fn add_release(
        &self,
        new: &NewRelease<'_>,
        now: i64,
        sign: Option<Signer<'_>>,
    ) -> Result<(), PublishError> {
        let NewRelease {
            stream,
            version,
            arch,
            commit,
            media,
        } = *new;
        check_name("stream", stream)?;
        check_name("architecture", arch)?;
        let v: Version = version.parse()?;
        if let Some(id) = stream_id(stream)
            && v.stream != id
        {
            return invalid(format!(
                "version {version} has stream id {} but stream {stream} is {id}",
                v.stream
            ));
        }
        if commit.len() != 64 || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
            return invalid(format!("'{commit}' is not an OSTree commit checksum"));
        }
        let mut index = self.index(stream)?;
        let existing = index.releases.iter().position(|r| r.version == version);
        if existing.is_none()
            && let Some(newest) = index.releases.last()
            && let Ok(nv) = newest.version.parse::<Version>()
            && nv >= v
        {
            return invalid(format!(
                "version {version} is not newer than {}, the stream's newest release",
                newest.version
            ));
        }
        let stamp = rfc3339(now);
        // release.json
        let mut doc = if existing.is_some() {
            self.release(stream, version)?
        } else {
            ReleaseDoc {
                release: version.to_string(),
                stream: stream.to_string(),
                ..Default::default()
            }
        };
        if let Some(a) = doc.architectures.get(arch)
            && a.commit != commit
        {
            return invalid(format!(
                "release {version} already has {arch} commit {}",
                a.commit
            ));
        }
        doc.metadata.last_modified = stamp.clone();
        doc.architectures.insert(
            arch.to_string(),
            ReleaseArch {
                commit: commit.to_string(),
                oci_image: None,
                media: media.clone(),
            },
        );
        // releases.json
        let url = format!(
            "{}/prod/streams/{stream}/builds/{version}/release.json",
            self.base_url
        );
        let entry = match existing {
            Some(i) => &mut index.releases[i],
            None => {
                index.releases.push(IndexRelease {
                    version: version.to_string(),
                    metadata: url,
                    ..Default::default()
                });
                index.releases.last_mut().expect("just pushed")
            }
        };
        entry.commits.retain(|c| c.architecture != arch);
        entry.commits.push(Commit {
            architecture: arch.to_string(),
            checksum: commit.to_string(),
        });
        entry
            .commits
            .sort_by(|a, b| a.architecture.cmp(&b.architecture));
        index.stream = stream.to_string();
        index.note.get_or_insert_with(|| {
            "For use only by Fedora CoreOS internal tooling. All other applications should obtain release info from stream metadata endpoints.".into()
        });
        index.metadata = DocMeta {
            last_modified: stamp.clone(),
            ..index.metadata
        };
        // streams/<stream>.json: the newest release's artifacts.
        let mut sdoc: StreamDoc = Metadata::read(&self.stream_path(stream))?;
        sdoc.stream = stream.to_string();
        sdoc.metadata.last_modified = stamp.clone();
        let sarch = sdoc.architectures.entry(arch.to_string()).or_default();
        for (platform, p) in media {
            sarch.artifacts.insert(
                platform.clone(),
                StreamPlatform {
                    release: version.to_string(),
                    formats: p.artifacts.clone(),
                },
            );
        }
        // updates/<stream>.json exists from the first release on.
        let mut updates = self.updates(stream)?;
        updates.stream = stream.to_string();
        updates.metadata.last_modified = stamp;
        // Written in the order clients read them: the build first, the
        // index that points at it after.
        self.write(&self.release_path(stream, version), &doc, sign)?;
        self.write(&self.stream_path(stream), &sdoc, sign)?;
        self.write(&self.updates_path(stream), &updates, sign)?;
        self.write(&self.index_path(stream), &index, sign)?;
        Ok(())
    }

    /// Adds artifacts (disk images built after the release was composed)
    /// to `arch` of an existing release: its `release.json`, and the
    /// stream metadata when it is the stream's newest release. Artifacts
    /// of the same platform, format and name are replaced.
    pub fn add_artifacts(
        &self,
        stream: &str,
        version: &str,
        arch: &str,
        media: &BTreeMap<String, crate::meta::Platform>,
        now: i64,
        sign: Option<Signer<'_>>,
    ) -> Result<(), PublishError> {
        check_name("stream", stream)?;
        check_name("architecture", arch)?;
        let index = self.index(stream)?;
        if !index.releases.iter().any(|r| r.version == version) {
            return invalid(format!("release {version} is not in stream {stream}"));
        }
        let newest = index.releases.last().is_some_and(|r| r.version == version);
        let mut doc = self.release(stream, version)?;
        let Some(a) = doc.architectures.get_mut(arch) else {
            return invalid(format!(
                "release {version} of stream {stream} has no {arch} commit"
            ));
        };
        for (platform, p) in media {
            let mine = a.media.entry(platform.clone()).or_default();
            for (format, files) in &p.artifacts {
                mine.artifacts
                    .entry(format.clone())
                    .or_default()
                    .extend(files.clone());
            }
        }
        let all = a.media.clone();
        let stamp = rfc3339(now);
        doc.metadata.last_modified = stamp.clone();
        self.write(&self.release_path(stream, version), &doc, sign)?;
        if newest {
            let mut sdoc: StreamDoc = Metadata::read(&self.stream_path(stream))?;
            sdoc.stream = stream.to_string();
            sdoc.metadata.last_modified = stamp;
            let sarch = sdoc.architectures.entry(arch.to_string()).or_default();
            for (platform, p) in &all {
                sarch.artifacts.insert(
                    platform.clone(),
                    StreamPlatform {
                        release: version.to_string(),
                        formats: p.artifacts.clone(),
                    },
                );
            }
            self.write(&self.stream_path(stream), &sdoc, sign)?;
        }
        Ok(())
    }

    /// Adds a barrier, a dead-end or a rollout to a release of a stream.
    pub fn set_rule(
        &self,
        stream: &str,
        version: &str,
        rule: Rule,
        now: i64,
        sign: Option<Signer<'_>>,
    ) -> Result<(), PublishError> {
        check_name("stream", stream)?;
        let index = self.index(stream)?;
        if !index.releases.iter().any(|r| r.version == version) {
            return invalid(format!("release {version} is not in stream {stream}"));
        }
        let mut updates = self.updates(stream)?;
        let pos = match updates.releases.iter().position(|e| e.version == version) {
            Some(p) => p,
            None => {
                updates.releases.push(UpdateEntry {
                    version: version.to_string(),
                    metadata: UpdateRules::default(),
                });
                updates.releases.len() - 1
            }
        };
        let rules = &mut updates.releases[pos].metadata;
        match rule {
            Rule::Barrier(reason) => {
                rules.barrier = Some(Reason {
                    reason: Some(reason),
                })
            }
            Rule::Deadend(reason) => {
                rules.deadend = Some(Reason {
                    reason: Some(reason),
                })
            }
            Rule::Rollout {
                start_epoch,
                start_percentage,
                duration_minutes,
            } => {
                if !(0.0..=1.0).contains(&start_percentage) {
                    return invalid(format!(
                        "start percentage {start_percentage} is not between 0 and 1"
                    ));
                }
                rules.rollout = Some(Rollout {
                    start_epoch: Some(start_epoch),
                    start_percentage: Some(start_percentage),
                    duration_minutes,
                });
            }
        }
        updates.stream = stream.to_string();
        updates.metadata.last_modified = rfc3339(now);
        self.write(&self.updates_path(stream), &updates, sign)
    }
}

/// One architecture's build of a release, to add to a stream.
#[derive(Debug, Clone, Copy)]
pub struct NewRelease<'a> {
    /// The stream.
    pub stream: &'a str,
    /// The version.
    pub version: &'a str,
    /// The architecture.
    pub arch: &'a str,
    /// Its OSTree commit.
    pub commit: &'a str,
    /// Its artifacts per platform.
    pub media: &'a std::collections::BTreeMap<String, crate::meta::Platform>,
}

/// One update rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    /// Every node must pass through the release.
    Barrier(String),
    /// No update leaves the release.
    Deadend(String),
    /// A phased rollout.
    Rollout {
        /// Start (epoch seconds).
        start_epoch: i64,
        /// Share open at the start.
        start_percentage: f64,
        /// Minutes to the whole fleet.
        duration_minutes: Option<u64>,
    },
}

/// Stream and architecture names become path components: plain names only.
fn check_name(what: &str, name: &str) -> Result<(), PublishError> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return invalid(format!("invalid {what} name '{name}'"));
    }
    Ok(())
}

/// The version a release gets in another stream: the same Fedora major,
/// date and respin, the target's stream id.
pub fn promoted_version(version: &str, to: &str) -> Result<String, PublishError> {
    let mut v: Version = version.parse()?;
    v.stream =
        stream_id(to).ok_or_else(|| PublishError::Invalid(format!("unknown stream '{to}'")))?;
    Ok(v.to_string())
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<(), String> {
    util::write_atomic(path, data, 0o644, true).map_err(|e| e.to_string())
}
