//! The library's API, as a program embedding the server calls it:
//! settings and their errors, a state refreshed from a metadata directory,
//! requests answered by [`respond`] (graph, ETag, protocol errors,
//! status), statistics recorded and merged, and the errors of a server
//! that cannot start.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};

use graph_server::{
    Ctx, DirSource, OTHER, ServerError, Settings, SettingsError, Source, SourceError, State, Stats,
    StatsError, merge_stats, respond,
};

const NOW: i64 = 1_800_000_000;

fn metadata(dir: &Path) {
    std::fs::create_dir_all(dir.join("prod/streams/stable")).unwrap();
    std::fs::create_dir_all(dir.join("updates")).unwrap();
    std::fs::write(
        dir.join("prod/streams/stable/releases.json"),
        r#"{"stream":"stable","releases":[
            {"version":"41.1","commits":[{"architecture":"x86_64","checksum":"aa"}],"metadata":""},
            {"version":"41.2","commits":[{"architecture":"x86_64","checksum":"bb"}],"metadata":""},
            {"version":"41.3","commits":[{"architecture":"x86_64","checksum":"cc"}],"metadata":""}]}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("updates/stable.json"),
        // 41.3 rolls out from 0 % an hour before NOW to 100 % an hour after.
        r#"{"stream":"stable","releases":[
            {"version":"41.2","metadata":{"barrier":{"reason":"r"}}},
            {"version":"41.3","metadata":{"rollout":{"start_epoch":1799996400,"start_percentage":0.0,"duration_minutes":120}}}]}"#,
    )
    .unwrap();
}

/// A handler context on `dir`'s metadata, serving stable and testing
/// (which has no metadata) on x86_64.
fn ctx(dir: &Path) -> Ctx {
    let state = Arc::new(State::new(
        vec!["stable".into(), "testing".into()],
        vec!["x86_64".into()],
    ));
    state.refresh(&DirSource(dir.to_path_buf()), NOW);
    Ctx {
        state,
        metrics: Default::default(),
        stats: Stats::open(None, Some("salt")).unwrap(),
        fake_now: Some(NOW),
        cache_control: "public, max-age=60".into(),
        platforms: ["qemu".to_string()].into_iter().collect(),
    }
}

fn body(r: Response<Full<Bytes>>) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let bytes = rt.block_on(r.into_body().collect()).unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn get(ctx: &Ctx, uri: &str) -> (u16, String) {
    let r = respond(ctx, &Request::get(uri).body(()).unwrap());
    (r.status().as_u16(), body(r))
}

#[test]
fn settings_defaults_and_refusals() {
    let s = Settings::from_toml("metadata = \"/srv/meta\"").unwrap();
    assert_eq!(s.listen, ["127.0.0.1:8080"]);
    assert_eq!(s.streams, ["stable", "testing", "next"]);
    assert_eq!(s.max_connections, 4096);
    assert!(s.validate().is_ok());

    let unknown = Settings::from_toml("metadata = \"m\"\nlisten_on = []").unwrap_err();
    assert!(matches!(unknown, SettingsError::Toml(_)), "{unknown:?}");
    assert!(unknown.to_string().contains("listen_on"), "{unknown}");
    assert!(matches!(
        Settings::from_toml("listen = []"),
        Err(SettingsError::Toml(_))
    ));

    let zero = Settings::from_toml("metadata = \"m\"\nidle_timeout_secs = 0")
        .unwrap()
        .validate()
        .unwrap_err();
    assert!(matches!(zero, SettingsError::Zero("idle_timeout_secs")));
    assert_eq!(zero.to_string(), "idle_timeout_secs must be at least 1");
}

#[test]
fn a_directory_source_names_what_is_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let source = DirSource(tmp.path().to_path_buf());
    match source.get("updates/stable.json") {
        Err(SourceError::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        source.describe("updates/stable.json"),
        tmp.path().join("updates/stable.json").display().to_string()
    );
}

#[test]
fn graphs_are_answered_with_upstream_rules_and_etags() {
    let tmp = tempfile::tempdir().unwrap();
    metadata(tmp.path());
    let ctx = ctx(tmp.path());

    let (status, text) = get(
        &ctx,
        "/v1/graph?basearch=x86_64&stream=stable&rollout_wariness=0.1",
    );
    assert_eq!(status, 200);
    let g: serde_json::Value = serde_json::from_str(&text).unwrap();
    let versions: Vec<&str> = g["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["41.1", "41.2", "41.3"]);
    // Only barriers and rollouts are targets: 41.1 goes to the barrier
    // 41.2, which goes to 41.3, open at NOW to half the fleet: to a node of
    // wariness 0.1, not to one of 0.9.
    assert_eq!(g["edges"], serde_json::json!([[1, 2], [0, 1]]));
    let (_, wary) = get(
        &ctx,
        "/v1/graph?basearch=x86_64&stream=stable&rollout_wariness=0.9",
    );
    let wary: serde_json::Value = serde_json::from_str(&wary).unwrap();
    assert_eq!(wary["edges"], serde_json::json!([[0, 1]]));

    // The same answer again is 304 for the ETag given.
    let first = respond(
        &ctx,
        &Request::get("/v1/graph?basearch=x86_64&stream=stable")
            .body(())
            .unwrap(),
    );
    let etag = first.headers()["etag"].clone();
    let again = respond(
        &ctx,
        &Request::get("/v1/graph?basearch=x86_64&stream=stable")
            .header("if-none-match", etag)
            .body(())
            .unwrap(),
    );
    assert_eq!(again.status(), 304);

    // A stream whose metadata never loaded answers an empty graph.
    assert_eq!(
        get(&ctx, "/v1/graph?basearch=x86_64&stream=testing"),
        (200, r#"{"nodes":[],"edges":[]}"#.to_string())
    );
}

#[test]
fn protocol_errors_are_json_with_upstream_codes() {
    let tmp = tempfile::tempdir().unwrap();
    metadata(tmp.path());
    let ctx = ctx(tmp.path());
    for (uri, status, kind, value) in [
        (
            "/v1/graph?basearch=x86_64&stream=next",
            404,
            "unknown_stream",
            "next",
        ),
        (
            "/v1/graph?basearch=s390x&stream=stable",
            404,
            "unknown_basearch",
            "s390x",
        ),
        (
            "/v1/graph?basearch=x86_64&stream=stable&stream=next",
            400,
            "duplicate_parameter",
            "stream",
        ),
        (
            "/v1/graph?basearch=x86_64",
            400,
            "missing_parameter",
            "stream",
        ),
        ("/nowhere", 404, "not_found", "/nowhere"),
    ] {
        let (got, text) = get(&ctx, uri);
        assert_eq!(got, status, "{uri}");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).unwrap(),
            serde_json::json!({"kind": kind, "value": value}),
            "{uri}"
        );
    }
    let post = respond(&ctx, &Request::post("/v1/graph").body(()).unwrap());
    assert_eq!(post.status(), 405);
}

#[test]
fn status_says_which_stream_failed_and_where() {
    let tmp = tempfile::tempdir().unwrap();
    metadata(tmp.path());
    let ctx = ctx(tmp.path());
    let (status, text) = get(&ctx, "/status");
    assert_eq!(status, 200);
    let st: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(st["streams"]["stable"]["releases"], 3);
    assert!(st["streams"]["stable"]["error"].is_null());
    let missing = tmp.path().join("prod/streams/testing/releases.json");
    assert_eq!(
        st["streams"]["testing"]["error"],
        format!(
            "{}: No such file or directory (os error 2)",
            missing.display()
        )
    );
}

#[test]
fn statistics_are_recorded_and_merged() {
    let tmp = tempfile::tempdir().unwrap();
    metadata(tmp.path());
    let ctx = ctx(tmp.path());
    for (uuid, version, platform) in [
        ("a", "41.1", "qemu"),
        ("b", "39.9", "qemu"),
        ("c", "41.1", "nowhere"),
    ] {
        let uri = format!(
            "/v1/graph?basearch=x86_64&stream=stable&node_uuid={uuid}&os_version={version}&platform={platform}"
        );
        assert_eq!(get(&ctx, &uri).0, 200);
    }
    let week = &ctx.stats.summary()[0];
    assert_eq!(week.nodes, 3);
    assert_eq!(week.by_version["stable"]["41.1"], 2);
    assert_eq!(week.by_version["stable"][OTHER], 1);
    assert_eq!(week.by_platform["qemu"], 2);

    let (_, doc) = get(&ctx, "/v1/stats?sketches=true");
    let doc: serde_json::Value = serde_json::from_str(&doc).unwrap();
    let merged = merge_stats(&[("a".into(), doc.clone()), ("b".into(), doc)]).unwrap();
    // The same nodes on two servers count once.
    assert_eq!(merged["weeks"][0]["nodes"], 3);

    let bad = merge_stats(&[("x.json".into(), serde_json::json!({"weeks": 3}))]).unwrap_err();
    assert!(matches!(bad, StatsError::Document { .. }), "{bad:?}");
    assert!(bad.to_string().starts_with("x.json: "), "{bad}");
}

#[test]
fn a_server_that_cannot_start_says_why() {
    let tmp = tempfile::tempdir().unwrap();
    metadata(tmp.path());
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let settings = Settings::from_toml(&format!(
        "metadata = \"m\"\nlisten = [{addr:?}]\nstreams = [\"stable\"]\narchitectures = [\"x86_64\"]"
    ))
    .unwrap();
    let source = Arc::new(DirSource(tmp.path().to_path_buf()));
    match graph_server::start(settings.clone(), source.clone(), Some(NOW), false) {
        Err(ServerError::Listen { addr: a, source }) => {
            assert_eq!(a, addr);
            assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse);
        }
        Err(e) => panic!("{e:?}"),
        Ok(_) => panic!("listened on a taken address"),
    }
    let mut zero = settings;
    zero.max_connections = 0;
    assert!(matches!(
        graph_server::start(zero, source, Some(NOW), false),
        Err(ServerError::Settings(SettingsError::Zero(
            "max_connections"
        )))
    ));
}
