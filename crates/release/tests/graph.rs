//! Every graph rule, each with the exact nodes and edges expected.

use std::hash::{Hash, Hasher};

use release::graph::{Graph, MIN_WARINESS, Scheme, SipHash13, keys, wariness};
use release::meta::{
    Commit, IndexRelease, OciImage, Reason, ReleaseIndex, Rollout, UpdateEntry, UpdateRules,
    UpdatesDoc,
};

fn index(versions: &[&str]) -> ReleaseIndex {
    ReleaseIndex {
        stream: "stable".into(),
        releases: versions
            .iter()
            .enumerate()
            .map(|(i, v)| IndexRelease {
                version: v.to_string(),
                commits: vec![
                    Commit {
                        architecture: "x86_64".into(),
                        checksum: format!("x86-{i}"),
                    },
                    Commit {
                        architecture: "aarch64".into(),
                        checksum: format!("arm-{i}"),
                    },
                ],
                oci_images: vec![OciImage {
                    architecture: "x86_64".into(),
                    image: "quay.io/fedora/fedora-coreos".into(),
                    digest_ref: format!("quay.io/fedora/fedora-coreos@sha256:{i:02}"),
                }],
                metadata: format!("https://example/{v}/release.json"),
            })
            .collect(),
        ..Default::default()
    }
}

fn barrier(v: &str) -> UpdateEntry {
    UpdateEntry {
        version: v.into(),
        metadata: UpdateRules {
            barrier: Some(Reason {
                reason: Some(format!("https://issue/{v}")),
            }),
            ..Default::default()
        },
    }
}

fn deadend(v: &str) -> UpdateEntry {
    UpdateEntry {
        version: v.into(),
        metadata: UpdateRules {
            deadend: Some(Reason {
                reason: Some("https://issue/dead".into()),
            }),
            ..Default::default()
        },
    }
}

fn rollout(v: &str, start: i64, pct: f64, minutes: Option<u64>) -> UpdateEntry {
    UpdateEntry {
        version: v.into(),
        metadata: UpdateRules {
            rollout: Some(Rollout {
                start_epoch: Some(start),
                start_percentage: Some(pct),
                duration_minutes: minutes,
            }),
            ..Default::default()
        },
    }
}

fn build(versions: &[&str], rules: Vec<UpdateEntry>) -> Graph {
    let updates = UpdatesDoc {
        releases: rules,
        ..Default::default()
    };
    Graph::build(&index(versions), &updates, "x86_64", Scheme::Checksum).0
}

const V: [&str; 6] = [
    "1.20240101.3.0",
    "1.20240102.3.0",
    "1.20240103.3.0",
    "1.20240104.3.0",
    "1.20240105.3.0",
    "1.20240106.3.0",
];

#[test]
fn no_rules_no_edges_and_node_metadata() {
    let g = build(&V[..3], vec![]);
    assert_eq!(g.edges, vec![]);
    assert_eq!(g.nodes.len(), 3);
    assert_eq!(g.nodes[1].payload, "x86-1");
    assert_eq!(g.nodes[1].metadata[keys::SCHEME], "checksum");
    assert_eq!(g.nodes[1].metadata[keys::AGE_INDEX], "1");
    let json: serde_json::Value = serde_json::from_slice(&g.to_json_filtered(0.5, 0)).unwrap();
    assert_eq!(json["nodes"][2]["version"], V[2]);
    assert_eq!(json["edges"], serde_json::json!([]));
}

#[test]
fn a_barrier_collects_everything_before_it() {
    let g = build(&V[..4], vec![barrier(V[2])]);
    assert_eq!(g.edges, vec![(0, 2), (1, 2)]);
    assert_eq!(g.nodes[2].metadata[keys::BARRIER], "true");
    assert_eq!(
        g.nodes[2].metadata[keys::BARRIER_REASON],
        format!("https://issue/{}", V[2])
    );
}

#[test]
fn chained_barriers_start_at_the_previous_barrier_inclusive() {
    let g = build(&V, vec![barrier(V[1]), barrier(V[4])]);
    assert_eq!(g.edges, vec![(0, 1), (1, 4), (2, 4), (3, 4)]);
}

#[test]
fn rollouts_take_edges_from_the_previous_barrier_and_do_not_move_it() {
    let g = build(
        &V,
        vec![
            barrier(V[1]),
            rollout(V[3], 0, 1.0, None),
            rollout(V[5], 0, 1.0, None),
        ],
    );
    assert_eq!(
        g.edges,
        // Upstream's order: rollouts newest first, then barriers oldest first.
        vec![(1, 5), (2, 5), (3, 5), (4, 5), (1, 3), (2, 3), (0, 1)]
    );
    assert_eq!(g.nodes[3].metadata[keys::ROLLOUT], "true");
    assert_eq!(g.nodes[3].metadata[keys::START_VALUE], "1");
    assert_eq!(g.nodes[3].metadata[keys::START_EPOCH], "0");
}

#[test]
fn a_barrier_that_is_also_a_rollout_gets_rollout_edges_once() {
    let mut both = barrier(V[2]);
    both.metadata.rollout = Some(Rollout {
        start_epoch: Some(10),
        start_percentage: Some(0.5),
        duration_minutes: Some(60),
    });
    let g = build(&V[..4], vec![both, rollout(V[3], 0, 1.0, None)]);
    assert_eq!(g.edges, vec![(2, 3), (0, 2), (1, 2)]);
}

#[test]
fn no_edge_leaves_a_deadend() {
    let g = build(&V[..4], vec![deadend(V[1]), barrier(V[3])]);
    assert_eq!(g.edges, vec![(0, 3), (2, 3)]);
    assert_eq!(g.nodes[1].metadata[keys::DEADEND], "true");
    assert_eq!(
        g.nodes[1].metadata[keys::DEADEND_REASON],
        "https://issue/dead"
    );
}

#[test]
fn repeated_entries_all_apply_later_keys_winning() {
    let g = build(
        &V[..3],
        vec![
            rollout(V[2], 100, 0.1, Some(10)),
            rollout(V[2], 200, 0.2, None),
            barrier(V[2]),
        ],
    );
    assert_eq!(g.nodes[2].metadata[keys::START_EPOCH], "200");
    assert_eq!(g.nodes[2].metadata[keys::START_VALUE], "0.2");
    assert_eq!(g.nodes[2].metadata[keys::DURATION], "10");
    assert_eq!(g.nodes[2].metadata[keys::BARRIER], "true");
}

#[test]
fn rollout_throttling_over_time_and_wariness() {
    // Opens from 20% at t=1000 to everyone 100 minutes later.
    let g = build(&V[..3], vec![rollout(V[2], 1000, 0.2, Some(100))]);
    let edges = |w: f64, t: i64| g.filtered(w, t).edges;
    let all = vec![(0, 2), (1, 2)];
    // Before the start, the share is 0: only wariness 0 sees it.
    assert_eq!(edges(0.0, 999), all);
    assert_eq!(edges(0.01, 999), vec![]);
    // At the start, 20%.
    assert_eq!(edges(0.2, 1000), all);
    assert_eq!(edges(0.21, 1000), vec![]);
    // Half way: 0.2 + 0.8 * 0.5 = 0.6.
    assert_eq!(edges(0.6, 1000 + 50 * 60), all);
    assert_eq!(edges(0.61, 1000 + 50 * 60), vec![]);
    // After the end everyone.
    assert_eq!(edges(1.0, 1000 + 100 * 60), all);
    // Without a duration it stays at the start value.
    let g = build(&V[..2], vec![rollout(V[1], 0, 0.3, None)]);
    assert_eq!(g.filtered(0.3, 1 << 40).edges, vec![(0, 1)]);
    assert_eq!(g.filtered(0.31, 1 << 40).edges, vec![]);
    // A negative start hides it even from wariness 0.
    let g = build(&V[..2], vec![rollout(V[1], 0, -0.1, None)]);
    assert_eq!(g.filtered(0.0, 10).edges, vec![]);
    // Extreme metadata does not overflow.
    let g = build(&V[..2], vec![rollout(V[1], i64::MIN, 0.5, Some(u64::MAX))]);
    assert_eq!(g.filtered(0.5, i64::MAX).edges, vec![(0, 1)]);
    let g = build(&V[..2], vec![rollout(V[1], i64::MAX, 0.5, Some(u64::MAX))]);
    assert_eq!(g.filtered(0.0, i64::MAX).edges, vec![(0, 1)]);
    // NaN hides nothing.
    assert_eq!(g.filtered(f64::NAN, 10).edges, vec![(0, 1)]);
}

#[test]
fn architectures_and_oci_payloads() {
    let mut idx = index(&V[..3]);
    idx.releases[1]
        .commits
        .retain(|c| c.architecture != "aarch64");
    let updates = UpdatesDoc {
        releases: vec![barrier(V[2])],
        ..Default::default()
    };
    let (arm, _) = Graph::build(&idx, &updates, "aarch64", Scheme::Checksum);
    assert_eq!(
        arm.nodes
            .iter()
            .map(|n| n.version.as_str())
            .collect::<Vec<_>>(),
        [V[0], V[2]]
    );
    assert_eq!(
        arm.nodes[1].metadata[keys::AGE_INDEX],
        "2",
        "age index is the raw index position"
    );
    assert_eq!(arm.edges, vec![(0, 1)]);
    let (oci, _) = Graph::build(&idx, &updates, "x86_64", Scheme::Oci);
    assert_eq!(
        oci.nodes[0].payload,
        "quay.io/fedora/fedora-coreos@sha256:00"
    );
    assert_eq!(oci.nodes[0].metadata[keys::SCHEME], "oci");
    let (none, _) = Graph::build(&idx, &updates, "s390x", Scheme::Checksum);
    assert!(none.nodes.is_empty() && none.edges.is_empty());
    let (empty, _) = Graph::build(
        &ReleaseIndex::default(),
        &UpdatesDoc::default(),
        "x86_64",
        Scheme::Checksum,
    );
    assert_eq!(empty, Graph::default());
}

#[test]
fn barriers_without_reason_are_accepted_with_a_warning() {
    let updates = UpdatesDoc {
        releases: vec![UpdateEntry {
            version: V[1].into(),
            metadata: UpdateRules {
                barrier: Some(Reason { reason: None }),
                ..Default::default()
            },
        }],
        ..Default::default()
    };
    let (g, notes) = Graph::build(&index(&V[..2]), &updates, "x86_64", Scheme::Checksum);
    assert_eq!(g.edges, vec![(0, 1)]);
    assert_eq!(notes.warnings.len(), 1);
    // As upstream writes it for an empty reason.
    assert_eq!(g.nodes[1].metadata[keys::BARRIER_REASON], "generic");
}

#[test]
fn empty_checksums_do_not_count_and_a_zero_duration_is_one_minute() {
    let mut idx = index(&V[..2]);
    idx.releases[0].commits[0].checksum.clear();
    let (g, _) = Graph::build(&idx, &UpdatesDoc::default(), "x86_64", Scheme::Checksum);
    assert_eq!(g.nodes.len(), 1);
    assert_eq!(g.nodes[0].metadata[keys::AGE_INDEX], "1");
    let g = build(&V[..2], vec![rollout(V[1], 1000, 0.0, Some(0))]);
    assert_eq!(
        g.filtered(0.5, 1030).edges,
        vec![(0, 1)],
        "half way through one minute"
    );
    assert_eq!(g.filtered(0.51, 1030).edges, vec![]);
    assert_eq!(g.filtered(1.0, 1060).edges, vec![(0, 1)]);
}

#[test]
fn wariness_from_parameters_and_uuid() {
    assert_eq!(wariness(Some("0.500000"), None), 0.5);
    assert_eq!(wariness(Some("7"), None), 1.0);
    assert_eq!(wariness(Some("-1"), None), 0.0);
    assert_eq!(wariness(Some("inf"), None), 1.0);
    assert!(wariness(Some("nan"), None).is_nan());
    // Unparsable falls back to the UUID hash, like an absent value.
    let u = "d5d5a4a1c3c84b2c9f2e0f5b8b0a7c61";
    assert_eq!(wariness(Some("lots"), Some(u)), wariness(None, Some(u)));
    let w = wariness(None, Some(u));
    assert!((MIN_WARINESS..=1.0).contains(&w));
    // The hash is std's DefaultHasher (what upstream uses), bit for bit.
    for s in [
        "",
        u,
        "a",
        "0123456789abcdef0123456789abcdef",
        "x".repeat(100).as_str(),
    ] {
        let mut ours = SipHash13::default();
        s.hash(&mut ours);
        let mut std_h = std::collections::hash_map::DefaultHasher::new();
        s.hash(&mut std_h);
        assert_eq!(ours.finish(), std_h.finish(), "{s:?}");
    }
}

#[test]
fn an_empty_oci_digest_ref_does_not_count() {
    // Upstream skips an `oci-images` entry whose `digest-ref` is empty, as it
    // skips an empty commit checksum; among several entries for an
    // architecture the last non-empty one is the payload.
    let mut idx = index(&V[..3]);
    idx.releases[0].oci_images[0].digest_ref.clear();
    idx.releases[2].oci_images.push(OciImage {
        architecture: "x86_64".into(),
        image: "quay.io/fedora/fedora-coreos".into(),
        digest_ref: String::new(),
    });
    idx.releases[1].oci_images.push(OciImage {
        architecture: "x86_64".into(),
        image: "quay.io/fedora/fedora-coreos".into(),
        digest_ref: "quay.io/fedora/fedora-coreos@sha256:later".into(),
    });
    let (g, _) = Graph::build(&idx, &UpdatesDoc::default(), "x86_64", Scheme::Oci);
    let payloads: Vec<&str> = g.nodes.iter().map(|n| n.payload.as_str()).collect();
    assert_eq!(
        payloads,
        vec![
            "quay.io/fedora/fedora-coreos@sha256:later",
            "quay.io/fedora/fedora-coreos@sha256:02"
        ]
    );
    assert_eq!(g.nodes[0].metadata[keys::AGE_INDEX], "1");
    // The checksum graph still has all three.
    let (g, _) = Graph::build(&idx, &UpdatesDoc::default(), "x86_64", Scheme::Checksum);
    assert_eq!(g.nodes.len(), 3);
}
