//! The update graph as Zincati reads it: the request (its parameters,
//! headers and timeout), the graph's nodes and edges, the release chosen
//! from them, and the dead-end notice in the MOTD.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::config::join_url;
use crate::{Error, Result, Root};

/// Zincati's bound on one graph request.
pub const GRAPH_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// The most of a graph body read (Fedora CoreOS's is under 1 MiB).
pub const MAX_GRAPH_BYTES: u64 = 32 << 20;
/// Where Zincati writes the dead-end notice.
pub const DEADEND_MOTD: &str = "/run/motd.d/85-zincati-deadend.motd";

/// Metadata keys.
pub mod keys {
    /// `checksum` or `oci`.
    pub const SCHEME: &str = "org.fedoraproject.coreos.scheme";
    /// Position in the release index.
    pub const AGE_INDEX: &str = "org.fedoraproject.coreos.releases.age_index";
    /// `true` for a dead-end.
    pub const DEADEND: &str = "org.fedoraproject.coreos.updates.deadend";
    /// The dead-end's reason.
    pub const DEADEND_REASON: &str = "org.fedoraproject.coreos.updates.deadend_reason";
}

/// What the node sends.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// `x86_64`, …
    pub basearch: String,
    /// The booted release's stream.
    pub stream: String,
    /// The booted release's version.
    pub os_version: String,
    /// The booted commit, or the image pullspec by digest.
    pub os_checksum: String,
    /// The update group.
    pub group: String,
    /// 32 lower-case hexadecimal digits.
    pub node_uuid: String,
    /// From `ignition.platform.id=`.
    pub platform: String,
    /// Booted from an OCI image.
    pub oci: bool,
    /// Only when configured.
    pub rollout_wariness: Option<f64>,
}

impl Request {
    /// The query parameters, in the order sent (Zincati's order is that of
    /// a hash map, so varies; the set is the same).
    pub fn params(&self) -> Vec<(&'static str, String)> {
        let mut p = vec![
            ("basearch", self.basearch.clone()),
            ("stream", self.stream.clone()),
            ("os_version", self.os_version.clone()),
            ("os_checksum", self.os_checksum.clone()),
            ("group", self.group.clone()),
            ("node_uuid", self.node_uuid.clone()),
            ("platform", self.platform.clone()),
        ];
        if self.oci {
            p.push(("oci", "true".into()));
        }
        if let Some(w) = self.rollout_wariness {
            p.push(("rollout_wariness", format!("{w:.6}")));
        }
        p
    }

    /// The request URL under `base_url` (`<base>` joined with `v1/graph`).
    pub fn url(&self, base_url: &str) -> String {
        let q: Vec<String> = self
            .params()
            .iter()
            .map(|(k, v)| format!("{k}={}", form_encode(v)))
            .collect();
        format!("{}?{}", join_url(base_url, "v1/graph"), q.join("&"))
    }
}

/// `application/x-www-form-urlencoded` encoding, as serde_urlencoded does.
pub fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A server-given string made safe to log, show and write to terminals:
/// control characters replaced, at most `max` bytes.
pub fn clean(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    for c in s.chars() {
        if out.len() + c.len_utf8() > max {
            out.push('…');
            break;
        }
        out.push(if c.is_control() { '?' } else { c });
    }
    out
}

/// A server-given error kind as a metric label: `[a-z0-9_]`, at most 64
/// bytes, else `server_error` (a hostile server cannot mint labels).
pub fn label(kind: &str) -> String {
    if !kind.is_empty()
        && kind.len() <= 64
        && kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        kind.to_string()
    } else {
        "server_error".to_string()
    }
}

/// One graph node.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Node {
    /// The release version.
    pub version: String,
    /// The commit checksum or image pullspec.
    pub payload: String,
    /// String metadata.
    pub metadata: std::collections::BTreeMap<String, String>,
}

/// A Cincinnati graph.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Graph {
    /// Nodes.
    pub nodes: Vec<Node>,
    /// Edges as node indexes.
    pub edges: Vec<(u64, u64)>,
}

#[derive(Deserialize)]
struct ServerError {
    kind: String,
    value: String,
}

/// A graph fetch that failed, with the kind Zincati counts it under.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchError {
    /// `client_failed_request`, `generic_http_503`, a server's kind, …
    pub kind: String,
    /// Zincati's wording.
    pub message: String,
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Fetches the graph for `req` from `base_url`.
pub fn fetch(
    http: &http_client::Client,
    base_url: &str,
    req: &Request,
    timeout: Duration,
) -> Result<Graph, FetchError> {
    let url = req.url(base_url);
    let client_err = |kind: &str, msg: String| FetchError {
        kind: kind.to_string(),
        message: format!("client-side error: {msg}"),
    };
    let r = http_client::Request::get(&url)
        .header("accept", "application/json")
        .timeout(timeout);
    let resp = http
        .send(&r)
        .map_err(|e| client_err("client_failed_request", e.to_string()))?;
    let status = resp.status();
    let body = resp
        .read_to_vec(MAX_GRAPH_BYTES)
        .map_err(|e| client_err("client_failed_request", e.to_string()))?;
    if !(200..300).contains(&status) {
        return Err(match serde_json::from_slice::<ServerError>(&body) {
            Ok(e) => FetchError {
                kind: label(&e.kind),
                message: format!("server-side error, code {status}: {}", clean(&e.value, 512)),
            },
            Err(_) => FetchError {
                kind: format!("generic_http_{status}"),
                message: format!(
                    "server-side error, code {status}: (unknown/generic server error)"
                ),
            },
        });
    }
    serde_json::from_slice(&body).map_err(|e| {
        client_err(
            "client_failed_json_decoding",
            format!("failed to decode graph: {e}"),
        )
    })
}

/// A release as a graph node describes it, ordered as Zincati orders them
/// (age index, then version, then payload).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Release {
    /// Position in the release index.
    pub age_index: u64,
    /// Version.
    pub version: String,
    /// Commit checksum or image pullspec.
    pub payload: String,
}

impl Release {
    /// Parses a node as Zincati does.
    pub fn from_node(n: &Node) -> Result<Release, String> {
        if n.version.is_empty() {
            return Err("empty version field".into());
        }
        if n.payload.is_empty() {
            return Err("empty payload field (checksum)".into());
        }
        if n.version.len() > 256 || n.version.chars().any(char::is_control) {
            return Err(format!("invalid version field: {}", clean(&n.version, 64)));
        }
        if n.payload.len() > 1024 || n.payload.chars().any(char::is_control) {
            return Err(format!("invalid payload field: {}", clean(&n.payload, 64)));
        }
        match n.metadata.get(keys::SCHEME).map(String::as_str) {
            Some("checksum") | Some("oci") => {}
            Some(s) => return Err(format!("unexpected payload scheme: {s}")),
            None => return Err(format!("missing metadata key: {}", keys::SCHEME)),
        }
        let age_index = match n.metadata.get(keys::AGE_INDEX) {
            None => 0,
            Some(v) => v
                .parse()
                .map_err(|_| format!("invalid age_index value: {v}"))?,
        };
        Ok(Release {
            age_index,
            version: n.version.clone(),
            payload: n.payload.clone(),
        })
    }
}

/// Whether the booted release is a dead-end, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadEnd {
    /// Not a dead-end.
    No,
    /// A dead-end, with its reason.
    Yes(String),
}

/// What the graph offers the booted release.
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    /// The booted release's node was found: its dead-end state.
    pub deadend: Option<DeadEnd>,
    /// The release chosen, if any.
    pub update: Option<Release>,
    /// Targets dropped by the denylist.
    pub ignored: usize,
    /// Targets offered (before the denylist).
    pub targets: Vec<Release>,
    /// The best target was older and downgrades are not allowed.
    pub downgrade_refused: Option<Release>,
}

/// Chooses the update as Zincati does: targets are the ends of edges from
/// the booted node; denylisted payloads are dropped; the newest remaining
/// one wins; an older one only when downgrades are allowed.
pub fn choose(
    graph: &Graph,
    booted_payload: &str,
    denylist: &dyn Fn(&Release) -> bool,
    allow_downgrade: bool,
) -> Result<Offer, String> {
    let Some(bi) = graph.nodes.iter().position(|n| n.payload == booted_payload) else {
        tracing::warn!("booted deployment {booted_payload} not found in the update graph");
        return Ok(Offer {
            deadend: None,
            update: None,
            ignored: 0,
            targets: Vec::new(),
            downgrade_refused: None,
        });
    };
    let booted_node = &graph.nodes[bi];
    let booted = Release::from_node(booted_node)?;
    let deadend = if booted_node.metadata.get(keys::DEADEND).map(String::as_str) == Some("true") {
        let reason = booted_node
            .metadata
            .get(keys::DEADEND_REASON)
            .filter(|r| !r.is_empty())
            .map(|r| clean(r, 512))
            .unwrap_or_else(|| "(unknown reason)".into());
        DeadEnd::Yes(reason)
    } else {
        DeadEnd::No
    };
    // Each target once, however many edges name it.
    let ends: std::collections::BTreeSet<u64> = graph
        .edges
        .iter()
        .filter(|(from, _)| *from == bi as u64)
        .map(|&(_, to)| to)
        .collect();
    let mut targets = Vec::new();
    for to in ends {
        let node = usize::try_from(to)
            .ok()
            .and_then(|i| graph.nodes.get(i))
            .ok_or_else(|| format!("target node '{to}' not present in graph"))?;
        targets.push(Release::from_node(node)?);
    }
    let allowed: Vec<&Release> = targets.iter().filter(|r| !denylist(r)).collect();
    let ignored = targets.len() - allowed.len();
    let best = allowed.into_iter().max().cloned();
    let mut downgrade_refused = None;
    let update = match best {
        Some(next) if next <= booted => {
            tracing::warn!("downgrade hint towards target release '{}'", next.version);
            if allow_downgrade {
                Some(next)
            } else {
                tracing::warn!("update hint rejected, downgrades are not allowed by configuration");
                downgrade_refused = Some(next);
                None
            }
        }
        other => other,
    };
    Ok(Offer {
        deadend: Some(deadend),
        update,
        ignored,
        targets,
        downgrade_refused,
    })
}

/// Writes or removes the dead-end notice as Zincati's `deadend-motd`
/// does: the file is written under a temporary name, made 0644, renamed.
pub fn set_deadend_motd(root: &Root, deadend: &DeadEnd) -> Result<()> {
    let path: PathBuf = root.path(DEADEND_MOTD);
    match deadend {
        DeadEnd::Yes(reason) => {
            let dir = path.parent().expect("has a parent");
            fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            let text =
                format!("This release is a dead-end and will not further auto-update: {reason}\n");
            util::write_atomic(&path, text.as_bytes(), 0o644, false)
                .map_err(|e| Error::io(&path, e))
        }
        DeadEnd::No => match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(&path, e)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(v: &str, age: u64, extra: &[(&str, &str)]) -> Node {
        let mut metadata: std::collections::BTreeMap<String, String> = [
            (keys::SCHEME, "checksum".to_string()),
            (keys::AGE_INDEX, age.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        for (k, v) in extra {
            metadata.insert(k.to_string(), v.to_string());
        }
        Node {
            version: v.into(),
            payload: format!("c{age}"),
            metadata,
        }
    }

    fn graph() -> Graph {
        Graph {
            nodes: vec![node("1", 0, &[]), node("2", 1, &[]), node("3", 2, &[])],
            edges: vec![(0, 1), (0, 2), (1, 2)],
        }
    }

    #[test]
    fn the_newest_target_not_denylisted_wins() {
        let g = graph();
        let o = choose(&g, "c0", &|_| false, false).unwrap();
        assert_eq!(o.update.unwrap().version, "3");
        assert_eq!(o.deadend, Some(DeadEnd::No));
        let o = choose(&g, "c0", &|r| r.version == "3", false).unwrap();
        assert_eq!(o.update.unwrap().version, "2");
        assert_eq!(o.ignored, 1);
        let o = choose(&g, "c2", &|_| false, false).unwrap();
        assert_eq!(o.update, None);
        let o = choose(&g, "nope", &|_| false, false).unwrap();
        assert_eq!((o.update, o.deadend), (None, None));
    }

    #[test]
    fn downgrades_only_when_allowed() {
        let mut g = graph();
        g.edges = vec![(2, 0)];
        let o = choose(&g, "c2", &|_| false, false).unwrap();
        assert_eq!(o.update, None);
        assert_eq!(o.downgrade_refused.unwrap().version, "1");
        let o = choose(&g, "c2", &|_| false, true).unwrap();
        assert_eq!(o.update.unwrap().version, "1");
    }

    #[test]
    fn deadends_and_bad_nodes() {
        let mut g = graph();
        g.nodes[0] = node("1", 0, &[(keys::DEADEND, "true")]);
        let o = choose(&g, "c0", &|_| false, false).unwrap();
        assert_eq!(o.deadend, Some(DeadEnd::Yes("(unknown reason)".into())));
        g.edges.push((0, 9));
        assert_eq!(
            choose(&g, "c0", &|_| false, false).unwrap_err(),
            "target node '9' not present in graph"
        );
        g.nodes[1]
            .metadata
            .insert(keys::SCHEME.into(), "rpm".into());
        g.edges = vec![(0, 1)];
        assert_eq!(
            choose(&g, "c0", &|_| false, false).unwrap_err(),
            "unexpected payload scheme: rpm"
        );
    }

    #[test]
    fn request_parameters_are_zincatis() {
        let r = Request {
            basearch: "x86_64".into(),
            stream: "stable".into(),
            os_version: "41.20261125.3.0".into(),
            os_checksum: "ab".into(),
            group: "default".into(),
            node_uuid: "0123".into(),
            platform: "qemu".into(),
            oci: false,
            rollout_wariness: Some(0.5),
        };
        assert_eq!(
            r.url("https://u.example/p"),
            "https://u.example/v1/graph?basearch=x86_64&stream=stable&os_version=41.20261125.3.0&os_checksum=ab&group=default&node_uuid=0123&platform=qemu&rollout_wariness=0.500000"
        );
        assert_eq!(form_encode("a b/c:d@e"), "a+b%2Fc%3Ad%40e");
    }
}
