//! The Fedora CoreOS update graph server (`oxcore graph serve`).
//!
//! Answers `GET /v1/graph?basearch=…&stream=…` with the Cincinnati graph
//! the Fedora CoreOS graph server would send, the rollout policy applied
//! for the asking node; serves `/metrics` (Prometheus), `/status` (JSON),
//! `/v1/stats` (fleet statistics, JSON) and the dashboard at `/`.
//! Metadata (release index and update rules per stream) is read from a
//! directory or URL in upstream's layout and refreshed periodically; a
//! refresh that fails keeps the last good graph.

pub mod dashboard;
pub mod metrics;
pub mod state;
pub mod stats;

use std::convert::Infallible;
use std::hash::Hasher;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use hyper::{Method, Request, Response, StatusCode};
use release::graph::{Scheme, SipHash13, wariness};
use serde::Deserialize;

use crate::metrics::Metrics;
use crate::state::{Source, State};
use crate::stats::{Report, Stats};

/// Server settings (TOML file, then flags).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Metadata base: a directory or an http(s) URL.
    pub metadata: String,
    /// Addresses to listen on.
    #[serde(default = "default_listen")]
    pub listen: Vec<String>,
    /// Streams to serve.
    #[serde(default = "default_streams")]
    pub streams: Vec<String>,
    /// Architectures to serve.
    #[serde(default = "default_arches")]
    pub architectures: Vec<String>,
    /// Seconds between metadata refreshes.
    #[serde(default = "default_refresh")]
    pub refresh_secs: u64,
    /// Where fleet statistics are kept (`redb`); none keeps them in memory.
    #[serde(default)]
    pub stats_db: Option<PathBuf>,
    /// `Cache-Control: max-age` of graph answers.
    #[serde(default = "default_max_age")]
    pub cache_max_age_secs: u64,
}

fn default_listen() -> Vec<String> {
    vec!["127.0.0.1:8080".into()]
}
fn default_streams() -> Vec<String> {
    vec!["stable".into(), "testing".into(), "next".into()]
}
fn default_arches() -> Vec<String> {
    vec![
        "x86_64".into(),
        "aarch64".into(),
        "ppc64le".into(),
        "s390x".into(),
    ]
}
fn default_refresh() -> u64 {
    300
}
fn default_max_age() -> u64 {
    60
}

impl Settings {
    /// Parses a TOML settings file's text.
    pub fn from_toml(text: &str) -> Result<Settings, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }
}

/// What every request handler shares.
pub struct Ctx {
    /// Graphs.
    pub state: Arc<State>,
    /// Counters.
    pub metrics: Metrics,
    /// Fleet statistics.
    pub stats: Stats,
    /// A fixed clock for tests (`--fake-now`).
    pub fake_now: Option<i64>,
    /// The `Cache-Control` value of graph answers, made once.
    pub cache_control: String,
}

impl Ctx {
    /// The time.
    pub fn now(&self) -> i64 {
        self.fake_now.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0)
        })
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .is_some() =>
            {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).expect("checked"));
                i += 3;
                continue;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A protocol error: `{"kind": …, "value": …}` with its status.
fn error(status: StatusCode, kind: &str, value: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "kind": kind, "value": value }).to_string();
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("response")
}

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, content_type)
        .body(Full::new(body.into()))
        .expect("response")
}

/// Answers one request.
pub fn handle(ctx: &Ctx, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            req.method().as_str(),
        );
    }
    let query = req.uri().query().unwrap_or("");
    match req.uri().path() {
        "/v1/graph" => graph(ctx, req, query),
        "/metrics" => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            ctx.metrics.render(&ctx.state.current(), ctx.now()),
        ),
        "/status" => {
            let snap = ctx.state.current();
            let body = serde_json::json!({
                "streams": snap.status,
                "architectures": ctx.state.architectures,
                "now": ctx.now(),
            });
            reply(StatusCode::OK, "application/json", body.to_string())
        }
        "/v1/stats" => {
            let weekly = ctx.stats.weekly();
            let weeks: Vec<_> = weekly
                .iter()
                .map(|(w, reports)| {
                    serde_json::json!({
                        "week": stats::week_start(*w),
                        "nodes": reports.values().sum::<u64>(),
                        "by": reports.iter().map(|(r, n)| serde_json::json!({
                            "version": r.version, "stream": r.stream, "basearch": r.arch,
                            "platform": r.platform, "nodes": n,
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect();
            reply(
                StatusCode::OK,
                "application/json",
                serde_json::json!({ "weeks": weeks }).to_string(),
            )
        }
        "/" => {
            let arch = params(query)
                .ok()
                .and_then(|p| {
                    p.iter()
                        .find(|(k, _)| k == "basearch")
                        .map(|(_, v)| v.clone())
                })
                .filter(|a| ctx.state.architectures.contains(a))
                .unwrap_or_else(|| ctx.state.architectures.first().cloned().unwrap_or_default());
            let html =
                dashboard::render(&ctx.state.current(), &arch, &ctx.stats.weekly(), ctx.now());
            reply(StatusCode::OK, "text/html; charset=utf-8", html)
        }
        other => error(StatusCode::NOT_FOUND, "not_found", other),
    }
}

/// Query parameters, percent-decoded; a repeated one is an error naming
/// it.
pub fn params(query: &str) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (percent_decode(k), percent_decode(v));
        if out.iter().any(|(x, _)| *x == k) {
            return Err(k);
        }
        out.push((k, v));
    }
    Ok(out)
}

fn graph(ctx: &Ctx, req: &Request<Incoming>, query: &str) -> Response<Full<Bytes>> {
    let params = match params(query) {
        Ok(p) => p,
        Err(dup) => {
            ctx.metrics.request("", "", 400);
            return error(StatusCode::BAD_REQUEST, "duplicate_parameter", &dup);
        }
    };
    let get = |k: &str| params.iter().find(|(x, _)| x == k).map(|(_, v)| v.as_str());
    let (Some(arch), Some(stream)) = (get("basearch"), get("stream")) else {
        ctx.metrics.request("", "", 400);
        let missing = if get("basearch").is_none() {
            "basearch"
        } else {
            "stream"
        };
        return error(StatusCode::BAD_REQUEST, "missing_parameter", missing);
    };
    if !ctx.state.streams.iter().any(|s| s == stream) {
        ctx.metrics.request("", "", 404);
        return error(StatusCode::NOT_FOUND, "unknown_stream", stream);
    }
    if !ctx.state.architectures.iter().any(|a| a == arch) {
        ctx.metrics.request("", "", 404);
        return error(StatusCode::NOT_FOUND, "unknown_basearch", arch);
    }
    let scheme = if get("oci") == Some("true") {
        Scheme::Oci
    } else {
        Scheme::Checksum
    };
    let snap = ctx.state.current();
    let Some(prepared) = snap
        .graphs
        .get(&(stream.to_string(), arch.to_string(), scheme))
    else {
        // The stream's metadata has never loaded: an empty graph, as upstream.
        ctx.metrics.request(stream, arch, 200);
        return reply(
            StatusCode::OK,
            "application/json",
            r#"{"nodes":[],"edges":[]}"#,
        );
    };
    let now = ctx.now();
    let w = wariness(get("rollout_wariness"), get("node_uuid"));
    let (body, etag) = prepared.body(w, now);
    if let Some(uuid) = get("node_uuid") {
        ctx.stats.record(
            uuid,
            Report {
                version: get("os_version").unwrap_or("").to_string(),
                stream: stream.to_string(),
                arch: arch.to_string(),
                platform: get("platform").unwrap_or("").to_string(),
            },
            now,
        );
    }
    ctx.metrics.request(stream, arch, 200);
    let cache = ctx.cache_control.as_str();
    if req
        .headers()
        .get(IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        return Response::builder()
            .status(StatusCode::NOT_MODIFIED)
            .header(ETAG, &*etag)
            .header(CACHE_CONTROL, cache)
            .body(Full::new(Bytes::new()))
            .expect("response");
    }
    Response::builder()
        .status(StatusCode::OK)
        .header(CONTENT_TYPE, "application/json")
        .header(ETAG, &*etag)
        .header(CACHE_CONTROL, cache)
        .body(Full::new(body))
        .expect("response")
}

/// A strong ETag for a body.
pub fn etag_of(body: &[u8]) -> String {
    let mut h = SipHash13::default();
    h.write(body);
    format!("\"{:016x}-{:x}\"", h.finish(), body.len())
}

/// A server running in a background thread.
pub struct Running {
    /// The addresses it listens on.
    pub addrs: Vec<SocketAddr>,
    thread: std::thread::JoinHandle<Result<(), String>>,
}

impl Running {
    /// Waits for the server (it runs until the process ends).
    pub fn join(self) -> Result<(), String> {
        self.thread
            .join()
            .map_err(|_| "the server thread panicked".to_string())?
    }
}

/// Runs the server until killed: binds every listen address (printing
/// `listening on ADDR`), loads the metadata, refreshes it periodically,
/// flushes statistics every few seconds and on SIGINT/SIGTERM.
pub fn run(
    settings: Settings,
    source: Arc<dyn Source>,
    fake_now: Option<i64>,
) -> Result<(), String> {
    let running = start(settings, source, fake_now, true)?;
    for a in &running.addrs {
        println!("listening on {a}");
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    running.join()
}

/// Starts the server in a background thread and returns once it listens.
/// With `signals`, SIGINT/SIGTERM flush statistics and end the process.
pub fn start(
    settings: Settings,
    source: Arc<dyn Source>,
    fake_now: Option<i64>,
    signals: bool,
) -> Result<Running, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || serve(settings, source, fake_now, signals, tx));
    match rx.recv() {
        Ok(Ok(addrs)) => Ok(Running { addrs, thread }),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(thread
            .join()
            .map_err(|_| "the server thread panicked".to_string())?
            .err()
            .unwrap_or_default()),
    }
}

fn serve(
    settings: Settings,
    source: Arc<dyn Source>,
    fake_now: Option<i64>,
    signals: bool,
    ready: std::sync::mpsc::Sender<Result<Vec<SocketAddr>, String>>,
) -> Result<(), String> {
    let fail = |e: String| {
        let _ = ready.send(Err(e.clone()));
        e
    };
    let state = Arc::new(State::new(
        settings.streams.clone(),
        settings.architectures.clone(),
    ));
    let stats = Stats::open(settings.stats_db.as_deref()).map_err(fail)?;
    let ctx = Arc::new(Ctx {
        state: state.clone(),
        metrics: Metrics::default(),
        stats,
        fake_now,
        cache_control: format!("public, max-age={}", settings.cache_max_age_secs),
    });
    // The first load happens before serving, so the first answer is real.
    state.refresh(source.as_ref(), ctx.now());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(format!("starting the runtime: {e}")))?;
    let listeners = rt.block_on(async {
        let mut listeners = Vec::new();
        let mut addrs = Vec::new();
        for addr in &settings.listen {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| fail(format!("listening on {addr}: {e}")))?;
            addrs.push(l.local_addr().map_err(|e| fail(e.to_string()))?);
            listeners.push(l);
        }
        for a in &addrs {
            tracing::info!(address = %a, streams = ?settings.streams, architectures = ?settings.architectures, "graph server listening");
        }
        let _ = ready.send(Ok(addrs));
        Ok::<_, String>(listeners)
    })?;
    rt.block_on(async move {
        // Refresh.
        {
            let (state, source, ctx) = (state.clone(), source.clone(), ctx.clone());
            let every = Duration::from_secs(settings.refresh_secs.max(1));
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    let (st, src, now) = (state.clone(), source.clone(), ctx.now());
                    let _ =
                        tokio::task::spawn_blocking(move || st.refresh(src.as_ref(), now)).await;
                }
            });
        }
        // Statistics.
        {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    let c = ctx.clone();
                    // The dashboard shows 12 weeks; older ones stay on disk.
                    c.stats.forget_old_weeks(c.now(), 12);
                    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || c.stats.flush()).await {
                        tracing::error!(error = %e, "writing fleet statistics failed");
                    }
                }
            });
        }
        if signals {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                let mut term =
                    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    {
                        Ok(s) => s,
                        Err(_) => return,
                    };
                let mut int =
                    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
                    {
                        Ok(s) => s,
                        Err(_) => return,
                    };
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                if let Err(e) = ctx.stats.flush() {
                    tracing::error!(error = %e, "writing fleet statistics failed");
                }
                std::process::exit(0);
            });
        }
        let mut tasks = Vec::new();
        for l in listeners {
            let ctx = ctx.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = l.accept().await else {
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let ctx = ctx.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                            let ctx = ctx.clone();
                            async move { Ok::<_, Infallible>(handle(&ctx, &req)) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                            .await;
                    });
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        Ok::<(), String>(())
    })
}
