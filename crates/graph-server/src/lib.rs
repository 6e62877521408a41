//! The Fedora CoreOS update graph server (`oxcore graph serve`).
//!
//! Answers `GET /v1/graph?basearch=…&stream=…` with the Cincinnati graph
//! the Fedora CoreOS graph server would send, the rollout policy applied
//! for the asking node; serves `/metrics` (Prometheus), `/status` (JSON),
//! `/v1/stats` (fleet statistics, JSON) and the dashboard at `/`.
//! Metadata (release index and update rules per stream) is read from a
//! directory or URL in upstream's layout and refreshed periodically; a
//! refresh that fails keeps the last good graph.
//!
//! Graph requests are answered on the runtime's thread from prepared
//! bodies; everything slower (the dashboard, metrics, status, statistics,
//! refreshes, store writes) runs on blocking threads, so no request waits
//! behind it. Connections are bounded in number, in the time a client has
//! to send a request head and in how long they may make no progress.

//!
//! | module | job |
//! |---|---|
//! | `settings` | the TOML settings and their checks |
//! | `query` | the `/v1/graph` query string, as upstream reads it |
//! | `state` | metadata sources, graphs built per stream and architecture, prepared bodies |
//! | `api` | one request to one response: routes, protocol errors, ETags |
//! | `metrics` | Prometheus exposition |
//! | `stats` | fleet statistics in HyperLogLog sketches, their store and merge |
//! | `dashboard` | the server-rendered HTML page |
//! | `server` | listeners, connections and their limits, refresh, shutdown |

mod api;
mod dashboard;
mod locks;
mod metrics;
mod query;
mod server;
mod settings;
mod state;
mod stats;

pub use api::{Ctx, respond};
pub use metrics::Metrics;
pub use query::{GraphQuery, MAX_PARAMETERS, QueryError};
pub use server::{Running, ServerError, run, start};
pub use settings::{PLATFORMS, Settings, SettingsError};
pub use state::{DirSource, Prepared, Snapshot, Source, SourceError, State, StreamStatus};
pub use stats::{OTHER, Stats, StatsError, WeekSummary, merge as merge_stats};
