//! Graph refresh time: 1,000 releases (with barriers, dead-ends and
//! rollouts) read from metadata files, parsed, and built into graphs for
//! one stream, 4 architectures and both payload schemes, as a refresh does.
//! Prints the median of 30 refreshes. Goal (issue 7): under 10 ms.
//! Run: cargo bench -p graph-server --bench refresh

use std::time::Instant;

use graph_server::{DirSource, State};

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let arches = ["x86_64", "aarch64", "ppc64le", "s390x"];
    let mut releases = Vec::new();
    let mut rules = Vec::new();
    for i in 0..1000u32 {
        let v = format!("{}.{}.3.{}", 30 + i / 100, 20200101 + (i % 28), i % 7);
        let commits: Vec<_> = arches
            .iter()
            .map(|a| serde_json::json!({"architecture": a, "checksum": format!("{i:060}{:04}", a.len())}))
            .collect();
        releases.push(serde_json::json!({"commits": commits, "version": v, "metadata": format!("https://example.invalid/{v}/release.json")}));
        if i % 50 == 0 {
            rules.push(serde_json::json!({"version": v, "metadata": {"barrier": {"reason": "https://example.invalid/b"}}}));
        }
        if i % 97 == 0 {
            rules.push(serde_json::json!({"version": v, "metadata": {"deadend": {"reason": "https://example.invalid/d"}}}));
        }
        if i >= 995 {
            rules.push(serde_json::json!({"version": v, "metadata": {"rollout": {"start_epoch": 1_800_000_000, "start_percentage": 0.1, "duration_minutes": 1440}}}));
        }
    }
    std::fs::create_dir_all(dir.path().join("prod/streams/stable")).unwrap();
    std::fs::create_dir_all(dir.path().join("updates")).unwrap();
    std::fs::write(
        dir.path().join("prod/streams/stable/releases.json"),
        serde_json::json!({"stream": "stable", "releases": releases}).to_string(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("updates/stable.json"),
        serde_json::json!({"stream": "stable", "releases": rules}).to_string(),
    )
    .unwrap();
    let source = DirSource(dir.path().to_path_buf());
    let state = State::new(
        vec!["stable".into()],
        arches.iter().map(|a| a.to_string()).collect(),
    );
    let mut times = Vec::new();
    for _ in 0..30 {
        let t = Instant::now();
        state.refresh(&source, 1_800_000_000);
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    let snap = state.current();
    assert!(snap.status["stable"].error.is_none());
    let g = &snap.graphs[&(
        "stable".to_string(),
        "x86_64".to_string(),
        release::graph::Scheme::Checksum,
    )]
        .graph;
    println!(
        "graph refresh, 1000 releases x 4 architectures x 2 schemes ({} nodes, {} edges per graph): median {:.2} ms, min {:.2} ms",
        g.nodes.len(),
        g.edges.len(),
        times[times.len() / 2],
        times[0]
    );
}
