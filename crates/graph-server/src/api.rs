//! The HTTP API: one request in, one response out, on what every handler
//! shares ([`Ctx`]).
//!
//! `GET /v1/graph` answers the Cincinnati graph for the asking node (the
//! query read as upstream's policy engine reads it, the rollout policy
//! applied, ETag and `Cache-Control` set) and counts the node in the
//! statistics; `/metrics`, `/status`, `/v1/stats` and the dashboard at `/`
//! are the slow requests (see [`is_quick`]). Protocol errors are JSON
//! `{"kind": …, "value": …}` with upstream's status codes.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use hyper::{Method, Request, Response, StatusCode};
use release::graph::{Scheme, wariness};

use crate::dashboard;
use crate::metrics::Metrics;
use crate::query::{self, GraphQuery, QueryError};
use crate::state::{Snapshot, State};
use crate::stats::{OTHER, Report, Stats};

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
    /// Platforms counted by name.
    pub platforms: HashSet<String>,
}

impl Ctx {
    /// The time.
    pub(crate) fn now(&self) -> i64 {
        self.fake_now.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0)
        })
    }

    /// What a node reported, each value known or [`OTHER`]: the version
    /// must be in the stream's index, the platform in the settings.
    fn report(&self, snap: &Snapshot, stream: &str, arch: &str, q: &GraphQuery) -> Report {
        let version = q
            .os_version
            .as_deref()
            .filter(|v| snap.versions.get(stream).is_some_and(|vs| vs.contains(*v)))
            .unwrap_or(OTHER);
        let platform = q
            .platform
            .as_deref()
            .filter(|p| self.platforms.contains(*p))
            .unwrap_or(OTHER);
        Report {
            version: version.to_string(),
            stream: stream.to_string(),
            arch: arch.to_string(),
            platform: platform.to_string(),
        }
    }
}

/// A protocol error: `{"kind": …, "value": …}` with its status.
pub(crate) fn error(status: StatusCode, kind: &str, value: &str) -> Response<Full<Bytes>> {
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

/// Whether a request is answered on the runtime's thread (graph requests
/// and errors) rather than on a blocking thread.
pub(crate) fn is_quick<B>(req: &Request<B>) -> bool {
    let get = req.method() == Method::GET || req.method() == Method::HEAD;
    !get || !matches!(req.uri().path(), "/" | "/metrics" | "/status" | "/v1/stats")
}

/// Answers one request; a handler that panics answers 500
/// `internal_error` (and is counted) instead of taking the server down.
pub fn respond<B>(ctx: &Ctx, req: &Request<B>) -> Response<Full<Bytes>> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handle(ctx, req))) {
        Ok(r) => r,
        Err(_) => {
            ctx.metrics
                .panics
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::error!(path = %req.uri().path(), "request handler panicked");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                req.uri().path(),
            )
        }
    }
}

/// Answers one request.
pub(crate) fn handle<B>(ctx: &Ctx, req: &Request<B>) -> Response<Full<Bytes>> {
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
            let sketches = query::first(query, "sketches").as_deref() == Some("true");
            reply(
                StatusCode::OK,
                "application/json",
                ctx.stats.to_json(sketches).to_string(),
            )
        }
        "/" => {
            let arch = query::first(query, "basearch")
                .filter(|a| ctx.state.architectures.contains(a))
                .unwrap_or_else(|| ctx.state.architectures.first().cloned().unwrap_or_default());
            let html =
                dashboard::render(&ctx.state.current(), &arch, &ctx.stats.summary(), ctx.now());
            reply(StatusCode::OK, "text/html; charset=utf-8", html)
        }
        other => error(StatusCode::NOT_FOUND, "not_found", other),
    }
}

fn graph<B>(ctx: &Ctx, req: &Request<B>, query: &str) -> Response<Full<Bytes>> {
    let bad = |e: QueryError| {
        ctx.metrics.request("", "", 400);
        error(StatusCode::BAD_REQUEST, e.kind(), &e.value())
    };
    let q = match GraphQuery::parse(query) {
        Ok(q) => q,
        Err(e) => return bad(e),
    };
    let (arch, stream) = match q.scope() {
        Ok(s) => s,
        Err(e) => return bad(e),
    };
    if !ctx.state.streams.iter().any(|s| s == stream) {
        ctx.metrics.request("", "", 404);
        return error(StatusCode::NOT_FOUND, "unknown_stream", stream);
    }
    if !ctx.state.architectures.iter().any(|a| a == arch) {
        ctx.metrics.request("", "", 404);
        return error(StatusCode::NOT_FOUND, "unknown_basearch", arch);
    }
    let scheme = if q.oci == Some(true) {
        Scheme::Oci
    } else {
        Scheme::Checksum
    };
    let snap = ctx.state.current();
    let now = ctx.now();
    if let Some(uuid) = q.node_uuid.as_deref() {
        ctx.stats
            .record(uuid, &ctx.report(&snap, stream, arch, &q), now);
    }
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
    let w = wariness(q.rollout_wariness.as_deref(), q.node_uuid.as_deref());
    let (body, etag) = prepared.body(w, now);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::default_platforms;

    fn ctx() -> Ctx {
        Ctx {
            state: Arc::new(State::new(vec!["stable".into()], vec!["x86_64".into()])),
            metrics: Metrics::default(),
            stats: Stats::open(None, Some("t")).unwrap(),
            fake_now: Some(1_800_000_000),
            cache_control: "public, max-age=60".into(),
            platforms: default_platforms().into_iter().collect(),
        }
    }

    fn get(ctx: &Ctx, uri: &str) -> Response<Full<Bytes>> {
        respond(ctx, &Request::get(uri).body(()).unwrap())
    }

    #[test]
    fn a_panic_under_a_lock_does_not_break_later_requests() {
        let ctx = Arc::new(ctx());
        let c = ctx.clone();
        // A handler panicking while it holds the snapshot lock poisons it.
        let _ = std::thread::spawn(move || {
            let _w = c.state.snapshot.write();
            panic!("boom");
        })
        .join();
        assert!(ctx.state.snapshot.is_poisoned());
        for uri in [
            "/v1/graph?basearch=x86_64&stream=stable&node_uuid=00",
            "/",
            "/status",
            "/metrics",
            "/v1/stats",
        ] {
            assert_eq!(get(&ctx, uri).status(), StatusCode::OK, "{uri}");
        }
    }

    #[test]
    fn upstream_status_codes() {
        let ctx = ctx();
        for (uri, status) in [
            ("/v1/graph?basearch=x86_64&stream=stable", 200),
            ("/v1/graph?basearch=x86_64&stream=stable&oci=false", 200),
            ("/v1/graph?basearch=x86_64&stream=stable&oci=true", 200),
            ("/v1/graph?basearch=x86_64&stream=stable&oci=1", 400),
            ("/v1/graph?basearch=x86_64&stream=stable&oci=TRUE", 400),
            ("/v1/graph?basearch=x86_64&stream=stable&oci=yes", 400),
            ("/v1/graph?basearch=x86_64&stream=stable&oci=", 400),
            ("/v1/graph?basearch=x86_64&stream=", 400),
            ("/v1/graph?basearch=&stream=stable", 400),
            ("/v1/graph?basearch=x86_64&stream=nope", 404),
            // Repeats of what upstream does not read are ignored, as there.
            (
                "/v1/graph?basearch=x86_64&stream=stable&group=a&group=b",
                200,
            ),
        ] {
            assert_eq!(get(&ctx, uri).status().as_u16(), status, "{uri}");
        }
    }

    #[test]
    fn statistics_count_only_known_values() {
        let ctx = ctx();
        let q = |v: &str, p: &str| {
            format!(
                "/v1/graph?basearch=x86_64&stream=stable&node_uuid=00&os_version={v}&platform={p}"
            )
        };
        // The stream has not loaded: no version is known.
        assert_eq!(get(&ctx, &q("41.1", "qemu")).status(), StatusCode::OK);
        assert_eq!(
            get(&ctx, &q("evil%09injected%09stream", "nowhere")).status(),
            StatusCode::OK
        );
        let s = &ctx.stats.summary()[0];
        assert_eq!(
            s.by_version["stable"].keys().collect::<Vec<_>>(),
            vec![OTHER]
        );
        assert_eq!(
            s.by_platform.keys().collect::<Vec<_>>(),
            vec![OTHER, "qemu"]
        );
    }
}
