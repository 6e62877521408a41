//! `oxcore graph serve`: the update graph server.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use clap::{Args, Subcommand};
use graph_server::{DirSource, Settings, Source, SourceError};

/// The update graph server.
#[derive(Debug, Args)]
pub struct GraphCli {
    #[command(subcommand)]
    verb: GraphVerb,
}

#[derive(Debug, Subcommand)]
enum GraphVerb {
    /// Serve the Cincinnati graph API, metrics, status and the dashboard.
    Serve(ServeArgs),
    /// Merge the fleet statistics of several servers (files saved from
    /// /v1/stats?sketches=true) into one, printed as JSON.
    MergeStats(MergeArgs),
}

#[derive(Debug, Args)]
struct MergeArgs {
    /// Statistics documents, one per server.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Settings file (TOML: metadata, listen, streams, architectures,
    /// refresh_secs, stats_db, stats_salt, platforms, cache_max_age_secs,
    /// max_connections, header_read_timeout_secs, idle_timeout_secs).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Metadata base: a directory or an http(s) URL in upstream's layout.
    #[arg(long, value_name = "BASE")]
    metadata: Option<String>,
    /// Address to listen on (repeatable; port 0 picks one).
    #[arg(long, value_name = "ADDR")]
    listen: Vec<String>,
    /// Stream to serve (repeatable; default stable, testing, next).
    #[arg(long)]
    stream: Vec<String>,
    /// Architecture to serve (repeatable).
    #[arg(long = "arch")]
    arch: Vec<String>,
    /// Seconds between metadata refreshes.
    #[arg(long)]
    refresh_secs: Option<u64>,
    /// Fleet statistics database (redb).
    #[arg(long, value_name = "PATH")]
    stats_db: Option<PathBuf>,
    /// Most client connections at once (default 4096).
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Fix the clock (epoch seconds), for reproducible tests.
    #[arg(long, hide = true)]
    fake_now: Option<i64>,
}

/// Metadata over HTTP(S) on one pooled client; each document is bounded
/// (a server that sends more, or claims to, fails that refresh and the
/// last good graph stays).
struct HttpSource {
    base: String,
    client: http_client::Client,
}

/// The most one metadata document may hold.
const MAX_METADATA: u64 = 64 << 20;

impl HttpSource {
    fn new(base: &str) -> Result<HttpSource> {
        let client = http_client::Client::builder()
            .user_agent(format!("oxcore-graph/{}", env!("CARGO_PKG_VERSION")))
            .timeout(std::time::Duration::from_secs(30))
            .build()?;
        Ok(HttpSource {
            base: base.trim_end_matches('/').to_string(),
            client,
        })
    }
}

impl Source for HttpSource {
    fn get(&self, rel: &str) -> Result<Vec<u8>, SourceError> {
        let url = format!("{}/{rel}", self.base);
        let unavailable = |e: http_client::Error| SourceError::Unavailable(e.reason());
        let r = self.client.get(&url).map_err(unavailable)?;
        if r.status() != 200 {
            return Err(SourceError::Status(r.status()));
        }
        r.read_to_vec(MAX_METADATA).map_err(unavailable)
    }

    fn describe(&self, rel: &str) -> String {
        http_client::shorten(&format!("{}/{rel}", self.base))
    }
}

/// Runs `oxcore graph`.
pub fn run(cli: GraphCli) -> Result<ExitCode> {
    let a = match cli.verb {
        GraphVerb::Serve(a) => a,
        GraphVerb::MergeStats(m) => return merge_stats(&m),
    };
    let mut settings = match &a.config {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| p.display().to_string())?;
            Settings::from_toml(&text).map_err(|e| anyhow!("{}: {e}", p.display()))?
        }
        None => Settings::from_toml(&format!(
            "metadata = {:?}",
            a.metadata
                .clone()
                .ok_or_else(|| anyhow!("--metadata or --config is required"))?
        ))
        .map_err(|e| anyhow!(e))?,
    };
    if let Some(m) = a.metadata {
        settings.metadata = m;
    }
    if !a.listen.is_empty() {
        settings.listen = a.listen;
    }
    if !a.stream.is_empty() {
        settings.streams = a.stream;
    }
    if !a.arch.is_empty() {
        settings.architectures = a.arch;
    }
    if let Some(r) = a.refresh_secs {
        settings.refresh_secs = r;
    }
    if a.stats_db.is_some() {
        settings.stats_db = a.stats_db;
    }
    if let Some(n) = a.max_connections {
        settings.max_connections = n;
    }
    settings.validate().map_err(|e| anyhow!(e))?;
    let source: Arc<dyn Source> =
        if settings.metadata.starts_with("http://") || settings.metadata.starts_with("https://") {
            Arc::new(HttpSource::new(&settings.metadata)?)
        } else {
            Arc::new(DirSource(PathBuf::from(&settings.metadata)))
        };
    // Logs to stderr; OXCORE_LOG=debug shows each stream's load too.
    let level = match std::env::var("OXCORE_LOG").as_deref() {
        Ok("debug") => tracing_subscriber::filter::LevelFilter::DEBUG,
        Ok("warn") => tracing_subscriber::filter::LevelFilter::WARN,
        Ok("error") => tracing_subscriber::filter::LevelFilter::ERROR,
        _ => tracing_subscriber::filter::LevelFilter::INFO,
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_ansi(false)
        .try_init();
    graph_server::run(settings, source, a.fake_now).map_err(|e| anyhow!(e))?;
    Ok(ExitCode::SUCCESS)
}

fn merge_stats(m: &MergeArgs) -> Result<ExitCode> {
    let mut docs = Vec::new();
    for f in &m.files {
        let text = std::fs::read(f).with_context(|| f.display().to_string())?;
        let doc: serde_json::Value =
            serde_json::from_slice(&text).with_context(|| f.display().to_string())?;
        docs.push((f.display().to_string(), doc));
    }
    let merged = graph_server::merge_stats(&docs)?;
    println!("{}", serde_json::to_string_pretty(&merged)?);
    Ok(ExitCode::SUCCESS)
}
