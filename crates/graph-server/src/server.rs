//! The server's runtime: listeners, connections and their limits, the
//! periodic refresh and statistics flush, and shutdown.
//!
//! One current-thread runtime serves every connection; graph requests are
//! answered on it from prepared bodies, everything slower on blocking
//! threads (at most [`SLOW_AT_ONCE`] slow requests at a time, the rest
//! waiting without holding the runtime). Connections are limited in
//! number (`max_connections`: beyond it the listener is not polled and
//! clients wait in the kernel's backlog), in the time a request head may
//! take (`header_read_timeout_secs`, which also closes an idle kept-alive
//! connection) and in how long a connection may go without progress
//! (`idle_timeout_secs`). A failed `accept` (descriptors exhausted) pauses
//! that listener, 10 ms doubling to 1 s, instead of retrying at once.
//! SIGTERM and SIGINT (or [`Running::stop`]) stop the listeners, write the
//! statistics and return.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::Request;
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Semaphore, watch};

use crate::api::{Ctx, error, is_quick, respond};
use crate::metrics::Metrics;
use crate::settings::{Settings, SettingsError};
use crate::state::{Source, State};
use crate::stats::{Stats, StatsError, week_of};

/// Why the server could not start, or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The settings are refused.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The statistics store cannot be opened.
    #[error(transparent)]
    Stats(StatsError),
    /// The runtime could not be made.
    #[error("starting the runtime")]
    Runtime(#[source] std::io::Error),
    /// An address cannot be listened on (in use, not this host's, …).
    #[error("listening on {addr}")]
    Listen {
        /// The address, as in the settings.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A listener's own address cannot be read.
    #[error(transparent)]
    LocalAddr(std::io::Error),
    /// The statistics could not be written when the server stopped.
    #[error("writing fleet statistics")]
    WriteStats(#[source] StatsError),
    /// The server's thread panicked.
    #[error("the server thread panicked")]
    Panicked,
}

/// Slow requests (dashboard, metrics, status, statistics) handled at once.
pub(crate) const SLOW_AT_ONCE: usize = 2;

/// Weeks of statistics in memory (what the dashboard shows).
const WEEKS_IN_MEMORY: i64 = 12;

/// Longest pause after failed accepts.
const MAX_ACCEPT_PAUSE: Duration = Duration::from_secs(1);

/// Largest request head (request line and headers); a longer one is
/// answered 431.
const MAX_HEAD: usize = 32 * 1024;

/// A server running in a background thread.
pub struct Running {
    /// The addresses it listens on.
    pub addrs: Vec<SocketAddr>,
    thread: std::thread::JoinHandle<Result<(), ServerError>>,
    stop: Arc<watch::Sender<bool>>,
}

impl Running {
    /// Waits for the server (until a signal or [`Running::stop`]).
    pub fn join(self) -> Result<(), ServerError> {
        self.thread.join().map_err(|_| ServerError::Panicked)?
    }

    /// Stops listening, writes the statistics and waits for the end.
    pub fn stop(self) -> Result<(), ServerError> {
        let _ = self.stop.send(true);
        self.join()
    }
}

/// Runs the server until SIGTERM or SIGINT: binds every listen address
/// (printing `listening on ADDR`), loads the metadata, refreshes it
/// periodically, flushes statistics every few seconds and at the end.
pub fn run(
    settings: Settings,
    source: Arc<dyn Source>,
    fake_now: Option<i64>,
) -> Result<(), ServerError> {
    util::raise_descriptor_limit();
    let running = start(settings, source, fake_now, true)?;
    for a in &running.addrs {
        println!("listening on {a}");
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    running.join()
}

/// Starts the server in a background thread and returns once it listens.
/// With `signals`, SIGINT/SIGTERM stop it (statistics written).
pub fn start(
    settings: Settings,
    source: Arc<dyn Source>,
    fake_now: Option<i64>,
    signals: bool,
) -> Result<Running, ServerError> {
    settings.validate()?;
    let (tx, rx) = std::sync::mpsc::channel();
    let stop = Arc::new(watch::channel(false).0);
    let thread = {
        let stop = stop.clone();
        std::thread::spawn(move || serve(settings, source, fake_now, signals, stop, tx))
    };
    match rx.recv() {
        Ok(Ok(addrs)) => Ok(Running {
            addrs,
            thread,
            stop,
        }),
        Ok(Err(e)) => Err(e),
        // Every way out of `serve` reports first: no report is a panic.
        Err(_) => Err(ServerError::Panicked),
    }
}

fn serve(
    settings: Settings,
    source: Arc<dyn Source>,
    fake_now: Option<i64>,
    signals: bool,
    stop: Arc<watch::Sender<bool>>,
    ready: std::sync::mpsc::Sender<Result<Vec<SocketAddr>, ServerError>>,
) -> Result<(), ServerError> {
    // An error before the server listens goes to `start`, which returns
    // it; this thread then ends without one.
    let fail = |e: ServerError| {
        let _ = ready.send(Err(e));
    };
    let state = Arc::new(State::new(
        settings.streams.clone(),
        settings.architectures.clone(),
    ));
    let now = fake_now.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    });
    // Memory holds the weeks the dashboard shows; the store keeps all.
    let stats = match Stats::open_since(
        settings.stats_db.as_deref(),
        settings.stats_salt.as_deref(),
        week_of(now) - WEEKS_IN_MEMORY + 1,
    ) {
        Ok(s) => s,
        Err(e) => {
            fail(ServerError::Stats(e));
            return Ok(());
        }
    };
    let ctx = Arc::new(Ctx {
        state: state.clone(),
        metrics: Metrics::default(),
        stats,
        fake_now,
        cache_control: format!("public, max-age={}", settings.cache_max_age_secs),
        platforms: settings.platforms.iter().cloned().collect(),
    });
    // The first load happens before serving, so the first answer is real.
    state.refresh(source.as_ref(), ctx.now());
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(8)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            fail(ServerError::Runtime(e));
            return Ok(());
        }
    };
    let bound = rt.block_on(async {
        let mut listeners = Vec::new();
        let mut addrs = Vec::new();
        for addr in &settings.listen {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::Listen {
                    addr: addr.clone(),
                    source,
                })?;
            addrs.push(l.local_addr().map_err(ServerError::LocalAddr)?);
            listeners.push(l);
        }
        Ok::<_, ServerError>((listeners, addrs))
    });
    let listeners = match bound {
        Ok((listeners, addrs)) => {
            for a in &addrs {
                tracing::info!(address = %a, streams = ?settings.streams, architectures = ?settings.architectures, max_connections = settings.max_connections, "graph server listening");
            }
            warn_descriptor_limit(settings.max_connections);
            let _ = ready.send(Ok(addrs));
            listeners
        }
        Err(e) => {
            fail(e);
            return Ok(());
        }
    };
    let limits = Arc::new(Limits {
        connections: Arc::new(Semaphore::new(settings.max_connections)),
        slow: Arc::new(Semaphore::new(SLOW_AT_ONCE)),
        header_read: Duration::from_secs(settings.header_read_timeout_secs),
        idle: Duration::from_secs(settings.idle_timeout_secs),
    });
    rt.block_on(async {
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
                    let written = tokio::task::spawn_blocking(move || {
                        let r = c.stats.flush();
                        c.stats.forget_old_weeks(c.now(), WEEKS_IN_MEMORY);
                        r
                    })
                    .await;
                    if let Ok(Err(e)) = written {
                        tracing::error!(error = %e, "writing fleet statistics failed");
                    }
                }
            });
        }
        if signals {
            let stop = stop.clone();
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
                tracing::info!("stopping: writing fleet statistics");
                let _ = stop.send(true);
            });
        }
        let mut tasks = Vec::new();
        for l in listeners {
            tasks.push(tokio::spawn(accept_loop(
                l,
                ctx.clone(),
                limits.clone(),
                stop.subscribe(),
            )));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
    // Stopped: write what the statistics hold, then leave the runtime
    // without waiting for open connections or a refresh under way.
    rt.shutdown_timeout(Duration::from_secs(1));
    ctx.stats
        .flush()
        .map(|_| ())
        .map_err(ServerError::WriteStats)
}

/// Warns when connections could exhaust the descriptors.
fn warn_descriptor_limit(max_connections: usize) {
    let l = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    if let Some(cur) = l.current
        && cur < max_connections as u64 + 64
    {
        tracing::warn!(
            descriptor_limit = cur,
            max_connections,
            "max_connections is near or above the descriptor limit; accepts may fail (and pause) when descriptors run out"
        );
    }
}

struct Limits {
    connections: Arc<Semaphore>,
    slow: Arc<Semaphore>,
    header_read: Duration,
    idle: Duration,
}

async fn accept_loop(
    l: tokio::net::TcpListener,
    ctx: Arc<Ctx>,
    limits: Arc<Limits>,
    mut stop: watch::Receiver<bool>,
) {
    let mut pause = Duration::ZERO;
    loop {
        // A free connection slot first: at the limit, the listener is not
        // polled and clients wait in the backlog.
        let permit = tokio::select! {
            p = limits.connections.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = stop.wait_for(|s| *s) => return,
        };
        let accepted = tokio::select! {
            a = l.accept() => a,
            _ = stop.wait_for(|s| *s) => return,
        };
        match accepted {
            Ok((stream, _)) => {
                pause = Duration::ZERO;
                let _ = stream.set_nodelay(true);
                tokio::spawn(connection(stream, ctx.clone(), limits.clone(), permit));
            }
            Err(e) => {
                // EMFILE, ENFILE, ENOBUFS…: retrying at once would spin.
                drop(permit);
                ctx.metrics.accept_errors.fetch_add(1, Ordering::Relaxed);
                pause = (pause * 2).clamp(Duration::from_millis(10), MAX_ACCEPT_PAUSE);
                if pause < MAX_ACCEPT_PAUSE / 2 {
                    tracing::warn!(error = %e, pause_ms = pause.as_millis() as u64, "accepting a connection failed; pausing");
                }
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        }
    }
}

async fn connection(
    stream: tokio::net::TcpStream,
    ctx: Arc<Ctx>,
    limits: Arc<Limits>,
    _permit: tokio::sync::OwnedSemaphorePermit,
) {
    ctx.metrics.connections.fetch_add(1, Ordering::Relaxed);
    let start = tokio::time::Instant::now();
    let activity = Arc::new(AtomicU64::new(0));
    let io = hyper_util::rt::TokioIo::new(Tracked {
        inner: stream,
        start,
        activity: activity.clone(),
    });
    let service = {
        let (ctx, slow) = (ctx.clone(), limits.slow.clone());
        hyper::service::service_fn(move |req: Request<Incoming>| {
            let (ctx, slow) = (ctx.clone(), slow.clone());
            async move {
                if is_quick(&req) {
                    return Ok::<_, Infallible>(respond(&ctx, &req));
                }
                let permit = slow.acquire_owned().await;
                let answer = tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    respond(&ctx, &req)
                })
                .await;
                Ok(answer.unwrap_or_else(|_| {
                    error(
                        hyper::StatusCode::INTERNAL_SERVER_ERROR,
                        "internal_error",
                        "",
                    )
                }))
            }
        })
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_read)
        .max_buf_size(MAX_HEAD)
        .serve_connection(io, service);
    tokio::pin!(conn);
    loop {
        let seen = activity.load(Ordering::Relaxed);
        let deadline = start + Duration::from_millis(seen) + limits.idle;
        tokio::select! {
            _ = conn.as_mut() => break,
            _ = tokio::time::sleep_until(deadline) => {
                if activity.load(Ordering::Relaxed) == seen {
                    // No byte either way for idle_timeout: dropping the
                    // connection closes the socket.
                    break;
                }
            }
        }
    }
    ctx.metrics.connections.fetch_sub(1, Ordering::Relaxed);
}

/// A socket that notes when it last moved a byte (milliseconds since
/// `start`).
struct Tracked {
    inner: tokio::net::TcpStream,
    start: tokio::time::Instant,
    activity: Arc<AtomicU64>,
}

impl Tracked {
    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.activity.store(ms, Ordering::Relaxed);
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
