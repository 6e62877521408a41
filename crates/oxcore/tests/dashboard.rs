//! The dashboard in a real headless Chromium (Debian's `chromium`): the
//! page the browser builds holds the graph's SVG with a circle per release
//! and an arc per edge, the rollout progress and the fleet chart, and a
//! screenshot renders.

use std::process::{Command, Stdio};

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser"].into_iter().find(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

fn get(addr: &str, path: &str) {
    let (status, head, body) = test_support::http_get(addr, path, "");
    assert_eq!(status, 200, "{head}\n{body}");
}

#[test]
fn dashboard_renders_in_headless_chromium() {
    let Some(browser) = chromium() else {
        test_support::skip(
            "chromium is not installed (apt-get install chromium); dashboard not rendered",
        );
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let meta = tmp.path();
    let now = 1_800_000_000i64;
    let versions: Vec<String> = (0..12)
        .map(|i| format!("42.202603{:02}.3.0", i + 1))
        .collect();
    let releases: Vec<_> = versions
        .iter()
        .enumerate()
        .map(|(i, v)| serde_json::json!({"commits": [{"architecture": "x86_64", "checksum": format!("{i:064x}")}], "version": v, "metadata": ""}))
        .collect();
    let updates = serde_json::json!({"releases": [
        {"version": versions[3], "metadata": {"barrier": {"reason": "https://example.invalid/b"}}},
        {"version": versions[5], "metadata": {"deadend": {"reason": "https://example.invalid/d"}}},
        {"version": versions[8], "metadata": {"barrier": {"reason": "https://example.invalid/b2"}}},
        {"version": versions[11], "metadata": {"rollout": {"start_epoch": now - 36000, "start_percentage": 0.1, "duration_minutes": 1440}}},
    ]});
    std::fs::create_dir_all(meta.join("prod/streams/stable")).unwrap();
    std::fs::create_dir_all(meta.join("updates")).unwrap();
    std::fs::write(
        meta.join("prod/streams/stable/releases.json"),
        serde_json::json!({"stream": "stable", "releases": releases}).to_string(),
    )
    .unwrap();
    std::fs::write(meta.join("updates/stable.json"), updates.to_string()).unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_oxcore"))
        .args([
            "graph",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--stream",
            "stable",
            "--arch",
            "x86_64",
        ])
        .arg(format!("--fake-now={now}"))
        .arg("--metadata")
        .arg(meta)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = test_support::listening_addr(&mut server);
    // A fleet: 40 nodes on a few versions and platforms.
    for i in 0..40 {
        let v = &versions[[3, 8, 10, 11][i % 4]];
        let p = ["aws", "qemu", "metal"][i % 3];
        get(
            &addr,
            &format!(
                "/v1/graph?basearch=x86_64&stream=stable&node_uuid={i:032x}&os_version={v}&platform={p}"
            ),
        );
    }
    let run = |extra: &[&str]| {
        Command::new(browser)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--window-size=1280,1500",
            ])
            .arg(format!(
                "--user-data-dir={}",
                tmp.path().join("profile").display()
            ))
            .args(extra)
            .arg(format!("http://{addr}/"))
            .output()
            .unwrap()
    };
    let dom = run(&["--dump-dom"]);
    let dom = String::from_utf8_lossy(&dom.stdout).into_owned();
    assert!(dom.contains("Stream stable"), "{dom}");
    let graph_svg = dom
        .split("aria-label=\"update graph\"")
        .nth(1)
        .expect("graph svg")
        .split("</svg>")
        .next()
        .unwrap();
    assert_eq!(
        graph_svg.matches("<circle").count(),
        12,
        "a circle per release"
    );
    let (graph, _) = release::graph::Graph::build(
        &serde_json::from_value(serde_json::json!({"releases": releases})).unwrap(),
        &serde_json::from_value(updates).unwrap(),
        "x86_64",
        release::graph::Scheme::Checksum,
    );
    assert_eq!(
        graph_svg.matches("<path").count(),
        graph.edges.len(),
        "an arc per edge"
    );
    assert!(
        dom.contains("Rollouts") && dom.contains("47.5%"),
        "rollout share: 0.1 + 0.9 * 600/1440"
    );
    assert!(dom.contains("nodes by version per week"));
    assert!(dom.contains("<td>metal</td>"));
    let shot = tmp.path().join("dashboard.png");
    let out = run(&[&format!("--screenshot={}", shot.display())]);
    let _ = server.kill();
    let _ = server.wait();
    let png = std::fs::read(&shot)
        .unwrap_or_else(|_| panic!("no screenshot: {}", String::from_utf8_lossy(&out.stderr)));
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "{} bytes",
        png.len()
    );
    if let Ok(dest) = std::env::var("OXCORE_DASHBOARD_SCREENSHOT") {
        std::fs::copy(&shot, dest).unwrap();
    }
}
