//! The Cincinnati update graph for Fedora CoreOS, built and filtered as the
//! Fedora CoreOS graph server does.
//!
//! Building (once per stream, architecture and scheme, at each refresh):
//! every release of the index with a payload for the architecture becomes
//! a node, in index order, with `org.fedoraproject.coreos.*` metadata;
//! update rules add barrier, dead-end and rollout keys. Edges: only
//! releases with a barrier or a rollout are targets; a rollout gets an edge
//! from every release from the previous barrier (inclusive) up to it; a
//! barrier that is not a rollout gets edges from every release from the
//! previous barrier up to it; no edge leaves a dead-end.
//!
//! Policy (per request): an edge into a rollout is hidden from a node whose
//! wariness is greater than the share of the fleet the rollout has opened
//! to at that time.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use serde::Serialize;

use crate::meta::{ReleaseIndex, UpdatesDoc};

/// Metadata keys.
pub mod keys {
    /// `checksum` or `oci`.
    pub const SCHEME: &str = "org.fedoraproject.coreos.scheme";
    /// Position in `releases.json`.
    pub const AGE_INDEX: &str = "org.fedoraproject.coreos.releases.age_index";
    /// `true` for a barrier.
    pub const BARRIER: &str = "org.fedoraproject.coreos.updates.barrier";
    /// The barrier's reason.
    pub const BARRIER_REASON: &str = "org.fedoraproject.coreos.updates.barrier_reason";
    /// `true` for a dead-end.
    pub const DEADEND: &str = "org.fedoraproject.coreos.updates.deadend";
    /// The dead-end's reason.
    pub const DEADEND_REASON: &str = "org.fedoraproject.coreos.updates.deadend_reason";
    /// `true` for a rollout.
    pub const ROLLOUT: &str = "org.fedoraproject.coreos.updates.rollout";
    /// Rollout start (epoch seconds).
    pub const START_EPOCH: &str = "org.fedoraproject.coreos.updates.start_epoch";
    /// Rollout start share.
    pub const START_VALUE: &str = "org.fedoraproject.coreos.updates.start_value";
    /// Rollout duration in minutes.
    pub const DURATION: &str = "org.fedoraproject.coreos.updates.duration_minutes";
}

/// A graph node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Node {
    /// The release version.
    pub version: String,
    /// String metadata.
    pub metadata: BTreeMap<String, String>,
    /// The commit checksum, or the image pullspec by digest.
    pub payload: String,
    /// The rollout, parsed once (not serialized).
    #[serde(skip)]
    pub rollout: Option<RolloutWindow>,
    /// Whether no edge may leave it (not serialized).
    #[serde(skip)]
    pub deadend: bool,
}

impl Node {
    /// Whether edges into this node are hidden from a node of `wariness`
    /// at `now`: it is a rollout not yet open that far.
    pub fn hidden_from(&self, wariness: f64, now: i64) -> bool {
        self.rollout.is_some_and(|r| wariness > r.share(now))
    }
}

/// A rollout's parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RolloutWindow {
    /// Start, epoch seconds (0 when unset).
    pub start_epoch: i64,
    /// Share open at the start.
    pub start_value: f64,
    /// Minutes to reach the whole fleet, if set.
    pub duration_minutes: Option<u64>,
}

impl RolloutWindow {
    /// The share of the fleet the rollout is open to at `now`.
    pub fn share(&self, now: i64) -> f64 {
        if now < self.start_epoch {
            return 0.0;
        }
        match self.duration_minutes {
            // As upstream, a duration of 0 counts as one minute.
            Some(d) => {
                // In i128: metadata may hold any epoch and duration.
                let (start, now) = (i128::from(self.start_epoch), i128::from(now));
                let end = start + i128::from(d.max(1)) * 60;
                if now >= end {
                    1.0
                } else {
                    let progress = (now - start) as f64 / (end - start) as f64;
                    self.start_value + (1.0 - self.start_value) * progress
                }
            }
            None => self.start_value,
        }
    }
}

/// A Cincinnati graph.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Graph {
    /// Nodes, in release-index order.
    pub nodes: Vec<Node>,
    /// Edges as (from, to) node indexes.
    pub edges: Vec<(usize, usize)>,
}

/// Which payload the nodes carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scheme {
    /// OSTree commit checksums.
    Checksum,
    /// OCI image pullspecs by digest (`oci=true`).
    Oci,
}

/// Problems found in the metadata that did not stop the build.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BuildNotes {
    /// Human-readable lines.
    pub warnings: Vec<String>,
}

impl Graph {
    /// Builds the graph of `arch` from a release index and update rules.
    pub fn build(
        index: &ReleaseIndex,
        updates: &UpdatesDoc,
        arch: &str,
        scheme: Scheme,
    ) -> (Graph, BuildNotes) {
        let mut notes = BuildNotes::default();
        let mut nodes: Vec<Node> = Vec::new();
        for (age, rel) in index.releases.iter().enumerate() {
            // As upstream: the last entry for the architecture with a
            // non-empty checksum or digest-ref; none, and the release is
            // not in this graph.
            let payload = match scheme {
                Scheme::Checksum => rel
                    .commits
                    .iter()
                    .rfind(|c| c.architecture == arch && !c.checksum.is_empty())
                    .map(|c| c.checksum.clone()),
                Scheme::Oci => rel
                    .oci_images
                    .iter()
                    .rfind(|i| i.architecture == arch && !i.digest_ref.is_empty())
                    .map(|i| i.digest_ref.clone()),
            };
            let Some(payload) = payload else { continue };
            let mut metadata = BTreeMap::new();
            metadata.insert(
                keys::SCHEME.to_string(),
                match scheme {
                    Scheme::Checksum => "checksum",
                    Scheme::Oci => "oci",
                }
                .to_string(),
            );
            metadata.insert(keys::AGE_INDEX.to_string(), age.to_string());
            nodes.push(Node {
                version: rel.version.clone(),
                metadata,
                payload,
                rollout: None,
                deadend: false,
            });
        }
        for entry in &updates.releases {
            let Some(node) = nodes.iter_mut().find(|n| n.version == entry.version) else {
                continue;
            };
            let rules = &entry.metadata;
            if let Some(b) = &rules.barrier {
                node.metadata.insert(keys::BARRIER.into(), "true".into());
                node.metadata
                    .insert(keys::BARRIER_REASON.into(), reason_or_generic(&b.reason));
                if b.reason.is_none() {
                    notes
                        .warnings
                        .push(format!("{}: barrier without a reason", entry.version));
                }
            }
            if let Some(d) = &rules.deadend {
                node.metadata.insert(keys::DEADEND.into(), "true".into());
                node.deadend = true;
                node.metadata
                    .insert(keys::DEADEND_REASON.into(), reason_or_generic(&d.reason));
                if d.reason.is_none() {
                    notes
                        .warnings
                        .push(format!("{}: dead-end without a reason", entry.version));
                }
            }
            if let Some(r) = &rules.rollout {
                node.metadata.insert(keys::ROLLOUT.into(), "true".into());
                let mut w = node.rollout.unwrap_or(RolloutWindow {
                    start_epoch: 0,
                    start_value: 0.0,
                    duration_minutes: None,
                });
                if let Some(e) = r.start_epoch {
                    node.metadata
                        .insert(keys::START_EPOCH.into(), e.to_string());
                    w.start_epoch = e;
                }
                if let Some(p) = r.start_percentage {
                    node.metadata
                        .insert(keys::START_VALUE.into(), p.to_string());
                    w.start_value = p;
                }
                if let Some(d) = r.duration_minutes {
                    node.metadata.insert(keys::DURATION.into(), d.to_string());
                    w.duration_minutes = Some(d);
                }
                node.rollout = Some(w);
            }
        }
        // Edges in upstream's order: into rollouts, newest rollout first,
        // each from the previous barrier (inclusive); then into barriers that
        // are not rollouts, oldest first, each from the previous barrier; then
        // edges leaving dead-ends are dropped.
        let rollouts: Vec<usize> = (0..nodes.len())
            .filter(|&i| nodes[i].rollout.is_some())
            .collect();
        let barriers: Vec<usize> = (0..nodes.len())
            .filter(|&i| nodes[i].metadata.contains_key(keys::BARRIER))
            .collect();
        let mut edges = Vec::new();
        for &r in rollouts.iter().rev() {
            let previous = barriers.iter().copied().rfind(|&b| b < r).unwrap_or(0);
            edges.extend((previous..r).map(|i| (i, r)));
        }
        let mut start = 0;
        for &b in &barriers {
            if nodes[b].rollout.is_none() {
                edges.extend((start..b).map(|i| (i, b)));
            }
            start = b;
        }
        edges.retain(|&(from, _)| !nodes[from].deadend);
        (Graph { nodes, edges }, notes)
    }

    /// The edges a node with `wariness` sees at `now`: those into
    /// rollouts not yet open to it are removed.
    pub(crate) fn visible_edges(&self, wariness: f64, now: i64) -> Vec<(usize, usize)> {
        let hidden: Vec<bool> = self
            .nodes
            .iter()
            .map(|n| n.hidden_from(wariness, now))
            .collect();
        self.edges
            .iter()
            .copied()
            .filter(|(_, to)| !hidden[*to])
            .collect()
    }

    /// The graph a node with `wariness` sees at `now`.
    pub fn filtered(&self, wariness: f64, now: i64) -> Graph {
        Graph {
            nodes: self.nodes.clone(),
            edges: self.visible_edges(wariness, now),
        }
    }

    /// Serializes the graph the way `filtered` would, without cloning it.
    pub fn to_json_filtered(&self, wariness: f64, now: i64) -> Vec<u8> {
        #[derive(Serialize)]
        struct View<'a> {
            nodes: &'a [Node],
            edges: Vec<(usize, usize)>,
        }
        let view = View {
            nodes: &self.nodes,
            edges: self.visible_edges(wariness, now),
        };
        serde_json::to_vec(&view).expect("graph serializes")
    }
}

/// An empty or missing reason reads `generic`, as upstream writes it.
fn reason_or_generic(r: &Option<String>) -> String {
    match r.as_deref() {
        Some(r) if !r.is_empty() => r.to_string(),
        _ => "generic".to_string(),
    }
}

/// Lowest wariness a node UUID can hash to.
pub const MIN_WARINESS: f64 = 0.000_001;

/// A node's wariness: `rollout_wariness` when it parses as a float
/// (clamped to [0, 1]; NaN is kept and hides nothing), else derived from
/// the node UUID as upstream does (SipHash-1-3 with zero keys over the
/// string, scaled to [1e-6, 1]).
pub fn wariness(rollout_wariness: Option<&str>, node_uuid: Option<&str>) -> f64 {
    if let Some(w) = rollout_wariness.and_then(|w| w.parse::<f64>().ok()) {
        return if w.is_nan() { w } else { w.clamp(0.0, 1.0) };
    }
    // Rust's `Hash for str` (the bytes, then 0xFF) into SipHash-1-3 with
    // zero keys: what upstream gets from `DefaultHasher::new()`.
    let mut h = SipHash13::default();
    node_uuid.unwrap_or("").hash(&mut h);
    let digest = h.finish();
    let scaled = digest as f64 / u64::MAX as f64;
    scaled.clamp(MIN_WARINESS, 1.0)
}

/// SipHash-1-3 with zero keys: one compression round per message block,
/// three finalization rounds (what std's `DefaultHasher::new()` computes;
/// written out so the wariness of a node never changes with the compiler).
#[derive(Debug, Clone)]
pub struct SipHash13 {
    v: [u64; 4],
    tail: u64,
    ntail: usize,
    length: usize,
}

impl Default for SipHash13 {
    fn default() -> SipHash13 {
        SipHash13 {
            v: [
                0x736f_6d65_7073_6575,
                0x646f_7261_6e64_6f6d,
                0x6c79_6765_6e65_7261,
                0x7465_6462_7974_6573,
            ],
            tail: 0,
            ntail: 0,
            length: 0,
        }
    }
}

impl SipHash13 {
    fn round(&mut self) {
        let v = &mut self.v;
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13);
        v[1] ^= v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16);
        v[3] ^= v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21);
        v[3] ^= v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17);
        v[1] ^= v[2];
        v[2] = v[2].rotate_left(32);
    }

    fn block(&mut self, m: u64) {
        self.v[3] ^= m;
        self.round();
        self.v[0] ^= m;
    }
}

impl Hasher for SipHash13 {
    fn write(&mut self, bytes: &[u8]) {
        self.length += bytes.len();
        for &b in bytes {
            self.tail |= u64::from(b) << (8 * self.ntail);
            self.ntail += 1;
            if self.ntail == 8 {
                let m = self.tail;
                self.block(m);
                self.tail = 0;
                self.ntail = 0;
            }
        }
    }

    fn finish(&self) -> u64 {
        let mut s = self.clone();
        let b = ((s.length as u64 & 0xff) << 56) | s.tail;
        s.block(b);
        s.v[2] ^= 0xff;
        s.round();
        s.round();
        s.round();
        s.v[0] ^ s.v[1] ^ s.v[2] ^ s.v[3]
    }
}
