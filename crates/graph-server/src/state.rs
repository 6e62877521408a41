//! Graphs built from the metadata, per stream, architecture and scheme,
//! and the responses served from them.
//!
//! A request's answer depends only on which rollouts its node may see, so
//! each graph keeps its node list serialized once and caches one complete
//! response body per set of hidden rollouts: applying the rollout policy
//! costs a few comparisons and a lookup, not a serialization.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use crate::locks::{lock, read, write};

use std::hash::Hasher;

use bytes::Bytes;
use release::graph::{Graph, Scheme, SipHash13};
use release::meta::{ReleaseIndex, UpdatesDoc};

/// Why a metadata document could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Reading a file failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The server answered another status than 200.
    #[error("server responded with status {0}")]
    Status(u16),
    /// Fetching failed otherwise (connection, TLS, a body over its bound):
    /// the reason.
    #[error("{0}")]
    Unavailable(String),
}

/// Where metadata comes from: a directory or a URL, in upstream's layout.
pub trait Source: Send + Sync {
    /// The bytes at a path relative to the base.
    fn get(&self, rel: &str) -> Result<Vec<u8>, SourceError>;
    /// How to name a path in messages.
    fn describe(&self, rel: &str) -> String;
}

/// A directory in upstream's layout.
pub struct DirSource(pub std::path::PathBuf);

impl Source for DirSource {
    fn get(&self, rel: &str) -> Result<Vec<u8>, SourceError> {
        Ok(std::fs::read(self.0.join(rel))?)
    }

    fn describe(&self, rel: &str) -> String {
        self.0.join(rel).display().to_string()
    }
}

/// One graph, ready to serve.
pub struct Prepared {
    /// The graph.
    pub graph: Graph,
    /// `"nodes":[…]` serialized once.
    nodes_json: String,
    /// Node indexes of rollouts, in order (bit i of a mask = rollout i).
    rollouts: Vec<usize>,
    /// Body and ETag per hidden-rollout mask.
    bodies: Mutex<HashMap<u64, (Bytes, Arc<str>)>>,
}

impl Prepared {
    /// Prepares a graph for serving.
    pub fn new(graph: Graph) -> Prepared {
        let nodes_json = serde_json::to_string(&graph.nodes).expect("nodes serialize");
        let rollouts = graph
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.rollout.is_some())
            .map(|(i, _)| i)
            .collect();
        Prepared {
            graph,
            nodes_json,
            rollouts,
            bodies: Mutex::new(HashMap::new()),
        }
    }

    /// The body (and its ETag) for a node of `wariness` at `now`.
    pub fn body(&self, wariness: f64, now: i64) -> (Bytes, Arc<str>) {
        let mut mask = 0u64;
        let mut hidden = Vec::new();
        for (bit, &i) in self.rollouts.iter().enumerate() {
            if self.graph.nodes[i].hidden_from(wariness, now) {
                if bit < 64 {
                    mask |= 1 << bit;
                }
                hidden.push(i);
            }
        }
        // More than 64 rollouts cannot share a cache key; build directly.
        let cacheable = self.rollouts.len() <= 64;
        if cacheable && let Some(b) = lock(&self.bodies).get(&mask) {
            return b.clone();
        }
        let mut body =
            String::with_capacity(self.nodes_json.len() + 16 * self.graph.edges.len() + 32);
        body.push_str("{\"nodes\":");
        body.push_str(&self.nodes_json);
        body.push_str(",\"edges\":[");
        let mut first = true;
        for &(from, to) in &self.graph.edges {
            if hidden.contains(&to) {
                continue;
            }
            if !first {
                body.push(',');
            }
            first = false;
            body.push_str(&format!("[{from},{to}]"));
        }
        body.push_str("]}");
        let bytes = Bytes::from(body);
        let etag: Arc<str> = etag_of(&bytes).into();
        if cacheable {
            let mut cache = lock(&self.bodies);
            // Bounded: the masks that occur are few (rollouts open in order).
            if cache.len() < 1024 {
                cache.insert(mask, (bytes.clone(), etag.clone()));
            }
        }
        (bytes, etag)
    }
}

/// A strong ETag for a body.
pub(crate) fn etag_of(body: &[u8]) -> String {
    let mut h = SipHash13::default();
    h.write(body);
    format!("\"{:016x}-{:x}\"", h.finish(), body.len())
}

/// How a stream's last refresh went.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StreamStatus {
    /// Releases in the index.
    pub releases: usize,
    /// When the graph in use was built (epoch seconds).
    pub built_at: Option<i64>,
    /// The last refresh's error, if it failed (the previous graph stays).
    pub error: Option<String>,
    /// Metadata oddities accepted with a warning.
    pub warnings: Vec<String>,
    /// Failed refreshes so far.
    pub failures: u64,
}

/// Everything a request needs.
#[derive(Default)]
pub struct Snapshot {
    /// (stream, arch, scheme) → graph.
    pub graphs: HashMap<(String, String, Scheme), Arc<Prepared>>,
    /// The release index per stream (for the dashboard).
    pub indexes: BTreeMap<String, ReleaseIndex>,
    /// Refresh status per stream.
    pub status: BTreeMap<String, StreamStatus>,
    /// The versions of each stream's index (what the statistics count by
    /// name).
    pub versions: HashMap<String, HashSet<String>>,
}

/// The server's shared state.
pub struct State {
    /// Streams served.
    pub(crate) streams: Vec<String>,
    /// Architectures served.
    pub(crate) architectures: Vec<String>,
    /// The current snapshot.
    pub(crate) snapshot: RwLock<Arc<Snapshot>>,
}

impl State {
    /// An empty state for these streams and architectures.
    pub fn new(streams: Vec<String>, architectures: Vec<String>) -> State {
        State {
            streams,
            architectures,
            snapshot: RwLock::new(Arc::new(Snapshot::default())),
        }
    }

    /// The current snapshot.
    pub fn current(&self) -> Arc<Snapshot> {
        read(&self.snapshot).clone()
    }

    /// Rebuilds every stream from `source`; a stream that fails keeps its
    /// previous graphs and records the error.
    pub fn refresh(&self, source: &dyn Source, now: i64) {
        let started = std::time::Instant::now();
        let old = self.current();
        let mut next = Snapshot::default();
        for stream in &self.streams {
            let mut status = old.status.get(stream).cloned().unwrap_or_default();
            match load(source, stream) {
                Ok((index, updates)) => {
                    status.error = None;
                    status.releases = index.releases.len();
                    tracing::debug!(stream = %stream, releases = index.releases.len(), "metadata loaded");
                    status.built_at = Some(now);
                    status.warnings.clear();
                    for arch in &self.architectures {
                        for scheme in [Scheme::Checksum, Scheme::Oci] {
                            let (graph, notes) = Graph::build(&index, &updates, arch, scheme);
                            if scheme == Scheme::Checksum && arch == &self.architectures[0] {
                                status.warnings.extend(notes.warnings);
                            }
                            next.graphs.insert(
                                (stream.clone(), arch.clone(), scheme),
                                Arc::new(Prepared::new(graph)),
                            );
                        }
                    }
                    next.versions.insert(
                        stream.clone(),
                        index.releases.iter().map(|r| r.version.clone()).collect(),
                    );
                    next.indexes.insert(stream.clone(), index);
                }
                Err(e) => {
                    tracing::warn!(stream = %stream, error = %e, "metadata refresh failed; keeping the last good graph");
                    status.error = Some(e.to_string());
                    status.failures += 1;
                    for ((s, a, sc), g) in &old.graphs {
                        if s == stream {
                            next.graphs.insert((s.clone(), a.clone(), *sc), g.clone());
                        }
                    }
                    if let Some(i) = old.indexes.get(stream) {
                        next.indexes.insert(stream.clone(), i.clone());
                    }
                    if let Some(v) = old.versions.get(stream) {
                        next.versions.insert(stream.clone(), v.clone());
                    }
                }
            }
            next.status.insert(stream.clone(), status);
        }
        for (stream, st) in &next.status {
            for w in &st.warnings {
                tracing::warn!(stream = %stream, "{w}");
            }
        }
        tracing::info!(
            streams = self.streams.len(),
            graphs = next.graphs.len(),
            elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
            "graphs refreshed"
        );
        *write(&self.snapshot) = Arc::new(next);
    }
}

/// Why a stream's metadata did not load: the document, as the source
/// names it, and what went wrong (the text kept in the stream's status).
#[derive(Debug, thiserror::Error)]
enum LoadError {
    #[error("{place}: {error}")]
    Get { place: String, error: SourceError },
    #[error("{place}: {error}")]
    Parse {
        place: String,
        error: serde_json::Error,
    },
}

fn load(source: &dyn Source, stream: &str) -> Result<(ReleaseIndex, UpdatesDoc), LoadError> {
    let index_path = format!("prod/streams/{stream}/releases.json");
    let updates_path = format!("updates/{stream}.json");
    let get = |rel: &str| {
        source.get(rel).map_err(|error| LoadError::Get {
            place: source.describe(rel),
            error,
        })
    };
    let parse = |rel: &str, error| LoadError::Parse {
        place: source.describe(rel),
        error,
    };
    let index: ReleaseIndex =
        serde_json::from_slice(&get(&index_path)?).map_err(|e| parse(&index_path, e))?;
    let updates: UpdatesDoc =
        serde_json::from_slice(&get(&updates_path)?).map_err(|e| parse(&updates_path, e))?;
    Ok((index, updates))
}
