//! The server: the FleetLock listener (`/v1/pre-reboot`,
//! `/v1/steady-state`, exactly as airlock routes them), the status
//! listener (`/metrics`, and oxcore's `/v1/status` and, from loopback
//! only, `/v1/release`), and a sweep that takes expired leases back and
//! keeps the gauges current.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request as HttpRequest, Response, StatusCode};
use tokio::sync::{Semaphore as Slots, watch};

use crate::backend::{Backend, BackendError};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::protocol::{ClientParams, MAX_BODY, ProtocolError, client_params};
use crate::semaphore::{Applied, Request, Semaphore};

/// Connections served at once; beyond, clients wait in the backlog.
const MAX_CONNECTIONS: usize = 4096;

/// How long a request head, and then its body, may take.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The runtime could not be made.
    #[error("starting the runtime: {0}")]
    Runtime(std::io::Error),
    /// The backend cannot be opened.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// An address cannot be listened on.
    #[error("listening on {addr}: {error}")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        error: std::io::Error,
    },
    /// The server's thread panicked.
    #[error("the server thread panicked")]
    Panicked,
}

/// A server running in a background thread.
pub struct Running {
    /// The FleetLock listener's address.
    pub service: SocketAddr,
    /// The status listener's address, when enabled.
    pub status: Option<SocketAddr>,
    thread: std::thread::JoinHandle<()>,
    stop: Arc<watch::Sender<bool>>,
}

impl Running {
    /// Waits for the end (a signal, when started with signals).
    pub fn join(self) -> Result<(), ServerError> {
        self.thread.join().map_err(|_| ServerError::Panicked)
    }

    /// Stops the listeners and waits for the end.
    pub fn stop(self) -> Result<(), ServerError> {
        let _ = self.stop.send(true);
        self.join()
    }
}

/// What every request shares.
struct Shared {
    config: Config,
    backend: Backend,
    metrics: Metrics,
}

impl Shared {
    async fn transact(&self, group: &str, request: Request) -> Result<Applied, ProtocolError> {
        let Some(policy) = self.config.groups.get(group) else {
            return Err(ProtocolError::unknown_group(group));
        };
        let applied = self
            .backend
            .transact(group, policy, request, now())
            .await
            .map_err(|e| match e {
                BackendError::Conflict | BackendError::Corrupt { .. } => {
                    ProtocolError::lock(&e.to_string())
                }
                e => ProtocolError::backend(&e.to_string()),
            })?;
        for id in &applied.expired {
            tracing::warn!(group, id = id.as_str(), "lease ran out; slot taken back");
        }
        self.metrics.expired(group, applied.expired.len());
        self.metrics.observe(group, &applied.semaphore);
        Ok(applied)
    }

    /// Every configured group's semaphore, read through the backend
    /// (expired leases taken back on the way).
    async fn status(&self) -> Result<BTreeMap<String, Semaphore>, ProtocolError> {
        let mut out = BTreeMap::new();
        for name in self.config.groups.keys() {
            let applied = self.transact(name, Request::Read).await?;
            out.insert(name.clone(), applied.semaphore);
        }
        Ok(out)
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Starts the server in a background thread and returns once both
/// listeners are bound. With `signals`, SIGTERM and SIGINT stop it.
pub fn start(config: Config, signals: bool) -> Result<Running, ServerError> {
    // Up to MAX_CONNECTIONS connections need as many descriptors.
    util::raise_descriptor_limit();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop, stop_rx) = watch::channel(false);
    let stop = Arc::new(stop);
    let stop_tx = stop.clone();
    let thread = std::thread::Builder::new()
        .name("fleetlock".into())
        .spawn(move || serve(config, signals, stop_tx, stop_rx, ready_tx))
        .map_err(ServerError::Runtime)?;
    match ready_rx.recv() {
        Ok(Ok((service, status))) => Ok(Running {
            service,
            status,
            thread,
            stop,
        }),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(ServerError::Panicked),
    }
}

type Ready = std::sync::mpsc::Sender<Result<(SocketAddr, Option<SocketAddr>), ServerError>>;

fn serve(
    config: Config,
    signals: bool,
    stop_tx: Arc<watch::Sender<bool>>,
    stop: watch::Receiver<bool>,
    ready: Ready,
) {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("fleetlock-worker")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(ServerError::Runtime(e)));
            return;
        }
    };
    rt.block_on(async move {
        let started = async {
            let backend = Backend::open(&config.backend).await?;
            let bind = |addr: String| async move {
                tokio::net::TcpListener::bind(&addr)
                    .await
                    .map_err(|error| ServerError::Listen { addr, error })
            };
            let service = bind(config.service_addr()).await?;
            let status = match config.status_addr() {
                Some(a) => Some(bind(a).await?),
                None => None,
            };
            Ok::<_, ServerError>((backend, service, status))
        };
        let (backend, service, status) = match started.await {
            Ok(v) => v,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let addrs = (
            service.local_addr().expect("a bound listener has an address"),
            status.as_ref().map(|s| s.local_addr().expect("a bound listener has an address")),
        );
        tracing::debug!(address = %addrs.0, backend = backend.describe(), groups = config.groups.len(), "fleetlock listening");
        let shared = Arc::new(Shared {
            metrics: Metrics::new(&config),
            config,
            backend,
        });
        let _ = ready.send(Ok(addrs));
        if signals {
            tokio::spawn(async move {
                use tokio::signal::unix::{SignalKind, signal};
                let (Ok(mut term), Ok(mut int)) = (
                    signal(SignalKind::terminate()),
                    signal(SignalKind::interrupt()),
                ) else {
                    tracing::error!("cannot watch SIGTERM and SIGINT");
                    return;
                };
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                let _ = stop_tx.send(true);
            });
        }
        tokio::spawn(sweep(shared.clone(), stop.clone()));
        let slots = Arc::new(Slots::new(MAX_CONNECTIONS));
        let mut tasks = vec![tokio::spawn(accept(
            service,
            Listener::Service,
            shared.clone(),
            slots.clone(),
            stop.clone(),
        ))];
        if let Some(s) = status {
            tasks.push(tokio::spawn(accept(
                s,
                Listener::Status,
                shared.clone(),
                slots,
                stop.clone(),
            )));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
    rt.shutdown_timeout(Duration::from_secs(1));
}

/// Takes expired leases back and refreshes the gauges: at start, then
/// every minute (airlock's consistency check), or every half of the
/// shortest lease.
async fn sweep(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let shortest = shared
        .config
        .groups
        .values()
        .filter_map(|g| g.lease_seconds)
        .min();
    let every = shortest.map_or(Duration::from_secs(60), |l| {
        Duration::from_secs((l / 2).clamp(1, 60))
    });
    loop {
        if let Err(e) = shared.status().await {
            tracing::warn!(error = e.value.as_str(), "checking the semaphores failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[derive(Clone, Copy)]
enum Listener {
    Service,
    Status,
}

async fn accept(
    l: tokio::net::TcpListener,
    which: Listener,
    shared: Arc<Shared>,
    slots: Arc<Slots>,
    mut stop: watch::Receiver<bool>,
) {
    let mut pause = Duration::ZERO;
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = stop.wait_for(|s| *s) => return,
        };
        let accepted = tokio::select! {
            a = l.accept() => a,
            _ = stop.wait_for(|s| *s) => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => {
                pause = Duration::ZERO;
                a
            }
            Err(e) => {
                // Descriptors exhausted: retrying at once would spin.
                drop(permit);
                pause = (pause * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
                tracing::warn!(error = %e, "accepting a connection failed; pausing");
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(route(&shared, which, peer, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(READ_TIMEOUT)
                .max_buf_size(16 * 1024)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn route(
    shared: &Shared,
    which: Listener,
    peer: SocketAddr,
    req: HttpRequest<Incoming>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    match (which, path.as_str()) {
        (Listener::Service, "/v1/pre-reboot") => {
            shared.metrics.pre_reboot.inc();
            fleetlock(shared, "pre-reboot", req).await
        }
        (Listener::Service, "/v1/steady-state") => {
            shared.metrics.steady_state.inc();
            fleetlock(shared, "steady-state", req).await
        }
        (Listener::Status, "/metrics") => {
            let mut r = Response::new(Full::new(Bytes::from(shared.metrics.render())));
            r.headers_mut().insert(
                "content-type",
                "application/openmetrics-text; version=1.0.0; charset=utf-8"
                    .parse()
                    .expect("a valid header"),
            );
            r
        }
        (Listener::Status, "/v1/status") => match shared.status().await {
            Ok(groups) => json_response(&status_json(&shared.config, &groups)),
            Err(e) => error_response(&e),
        },
        (Listener::Status, "/v1/release") => {
            if !peer.ip().is_loopback() {
                return error_response(&ProtocolError {
                    status: 403,
                    kind: "forbidden",
                    value: "manual release is only taken from this machine (loopback)".into(),
                });
            }
            fleetlock(shared, "release", req).await
        }
        _ => {
            let mut r = Response::new(Full::new(Bytes::from_static(b"404 page not found\n")));
            *r.status_mut() = StatusCode::NOT_FOUND;
            r.headers_mut().insert(
                "content-type",
                "text/plain; charset=utf-8".parse().expect("a valid header"),
            );
            r
        }
    }
}

/// One FleetLock request: header, body, group, then the backend.
async fn fleetlock(
    shared: &Shared,
    api: &str,
    req: HttpRequest<Incoming>,
) -> Response<Full<Bytes>> {
    let answer = async {
        let header = req
            .headers()
            .get("fleet-lock-protocol")
            .map(|v| v.as_bytes().to_vec());
        let body = read_body(req.into_body()).await?;
        let ClientParams { group, id } = client_params(header.as_deref(), &body)?;
        let request = if api == "pre-reboot" {
            Request::Lock(id.clone())
        } else {
            Request::Unlock(id.clone())
        };
        let applied = shared.transact(&group, request).await?;
        if let Err(e) = applied.result {
            return Err(ProtocolError::lock(&e.to_string()));
        }
        tracing::debug!(api, group = group.as_str(), id = id.as_str(), "ok");
        Ok(())
    };
    match answer.await {
        Ok(()) => {
            shared.metrics.outcome(api, "ok");
            Response::new(Full::new(Bytes::new()))
        }
        Err(e) => {
            shared.metrics.outcome(api, e.kind);
            tracing::debug!(api, kind = e.kind, value = e.value.as_str(), "refused");
            error_response(&e)
        }
    }
}

/// The body, at most [`MAX_BODY`] bytes, within [`READ_TIMEOUT`].
async fn read_body(body: Incoming) -> Result<Bytes, ProtocolError> {
    let collected =
        tokio::time::timeout(READ_TIMEOUT, Limited::new(body, MAX_BODY).collect()).await;
    match collected {
        Ok(Ok(b)) => Ok(b.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(ProtocolError {
            status: 413,
            ..ProtocolError::identity(&format!("request body over {MAX_BODY} bytes"))
        }),
        Ok(Err(e)) => Err(ProtocolError::identity(&format!("reading the body: {e}"))),
        Err(_) => Err(ProtocolError::identity("the body did not arrive in time")),
    }
}

fn error_response(e: &ProtocolError) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(e.body())));
    *r.status_mut() = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = r.headers_mut();
    h.insert(
        "content-type",
        "text/plain; charset=utf-8".parse().expect("a valid header"),
    );
    h.insert(
        "x-content-type-options",
        "nosniff".parse().expect("a valid header"),
    );
    r
}

fn json_response(v: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(format!("{v:#}\n"))));
    r.headers_mut().insert(
        "content-type",
        "application/json".parse().expect("a valid header"),
    );
    r
}

/// The status document: per group its configured and stored slots, lease,
/// and holders with since when (when leases are kept).
pub fn status_json(config: &Config, groups: &BTreeMap<String, Semaphore>) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for (name, sem) in groups {
        let g = config.groups.get(name);
        let holders: Vec<serde_json::Value> = sem
            .holders
            .iter()
            .map(|h| {
                let lease = sem.leases.get(h);
                serde_json::json!({
                    "id": h,
                    "since": lease.map(|l| l.since),
                    "renewed": lease.map(|l| l.renewed),
                })
            })
            .collect();
        out.insert(
            name.clone(),
            serde_json::json!({
                "slots": sem.total_slots,
                "configured_slots": g.map(|g| g.slots),
                "lease_seconds": g.and_then(|g| g.lease_seconds),
                "holders": holders,
            }),
        );
    }
    serde_json::json!({ "groups": out })
}
