//! Prometheus metrics with Zincati's names, served as Zincati serves them:
//! each connection to the Unix socket `/run/zincati/public/metrics.promsock`
//! gets the text exposition, then the socket is closed.
//!
//! The exposition is OpenMetrics text (the `prometheus-client` crate), so
//! every counter's samples end in `_total`; Zincati's three counters whose
//! names lack the suffix (`…_finalization_attempts`,
//! `…_finalization_blocked_count`, `…_finalization_successes`,
//! `…_can_finalize_responses`) gain it.

use std::io::Write;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::{Error, Result, Root};

/// Where Zincati serves its metrics.
pub const SOCKET: &str = "/run/zincati/public/metrics.promsock";

type Labels = Vec<(String, String)>;
type FGauge = Gauge<f64, AtomicU64>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The agent's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Process start (seconds since the epoch).
    pub start_time: Gauge,
    /// Configured wariness (registered only when configured).
    pub wariness: FGauge,
    /// Booted OS information.
    pub os_info: Family<Labels, Gauge>,
    /// Graph size.
    pub graph_nodes: Gauge,
    /// Graph size.
    pub graph_edges: Gauge,
    /// Booted release is a dead-end.
    pub deadend: Gauge,
    /// Targets dropped by the denylist.
    pub ignored_targets: Gauge,
    /// Graph checks.
    pub update_checks: Counter,
    /// Failed graph checks by kind.
    pub update_check_errors: Family<Labels, Counter>,
    /// Deploys tried.
    pub deploy_attempts: Counter,
    /// Deploys failed.
    pub deploy_failures: Counter,
    /// Finalizations tried.
    pub finalize_attempts: Counter,
    /// Finalizations failed.
    pub finalize_failures: Counter,
    /// Downgrades allowed.
    pub allow_downgrade: Gauge,
    /// Updates enabled.
    pub enabled: Gauge,
    /// Last state change.
    pub latest_state_change: Gauge,
    /// Last tick.
    pub last_refresh: Gauge,
    /// Postponed finalizations.
    pub postponed: Counter,
    /// Users seen at finalization.
    pub active_users: Gauge,
    /// Agent finalization attempts.
    pub finalization_attempts: Counter,
    /// Finalizations blocked for other reasons than the strategy.
    pub finalization_blocked: Family<Labels, Counter>,
    /// Finalizations done.
    pub finalization_successes: Counter,
    /// Strategy in use.
    pub strategy_mode: Family<Labels, Gauge>,
    /// Periodic schedule length.
    pub periodic_minutes: Gauge,
    /// Strategy answers.
    pub can_finalize: Family<Labels, Counter>,
    /// FleetLock requests by API.
    pub fleet_lock_requests: Family<Labels, Counter>,
    /// FleetLock errors by API.
    pub fleet_lock_errors: Family<Labels, Counter>,
    /// Trials by outcome (oxcore).
    pub trials: Family<Labels, Counter>,
}

impl Metrics {
    /// All metrics, registered; the wariness gauge only if `wariness`.
    pub fn new(wariness: bool) -> Metrics {
        let mut r = Registry::default();
        macro_rules! reg {
            ($name:literal, $help:literal, $m:expr) => {{
                let m = $m;
                r.register($name, $help, m.clone());
                m
            }};
        }
        let start_time = reg!(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            Gauge::default()
        );
        let wariness_gauge = FGauge::default();
        if wariness {
            r.register(
                "zincati_identity_rollout_wariness",
                "Client wariness for updates rollout",
                wariness_gauge.clone(),
            );
        }
        Metrics {
            start_time,
            wariness: wariness_gauge,
            os_info: reg!(
                "zincati_identity_os_info",
                "Information about the underlying booted OS",
                Family::default()
            ),
            graph_nodes: reg!(
                "zincati_cincinnati_graph_nodes_count",
                "Number of nodes in Cincinnati update graph.",
                Gauge::default()
            ),
            graph_edges: reg!(
                "zincati_cincinnati_graph_edges_count",
                "Number of edges in Cincinnati update graph.",
                Gauge::default()
            ),
            deadend: reg!(
                "zincati_cincinnati_booted_release_is_deadend",
                "Whether currently booted OS release is a dead-end.",
                Gauge::default()
            ),
            ignored_targets: reg!(
                "zincati_cincinnati_ignored_update_targets",
                "Number of ignored targets among update targets found.",
                Gauge::default()
            ),
            update_checks: reg!(
                "zincati_cincinnati_update_checks",
                "Total number of checks for updates to the upstream Cincinnati server.",
                Counter::default()
            ),
            update_check_errors: reg!(
                "zincati_cincinnati_update_checks_errors",
                "Total number of errors while checking for updates.",
                Family::default()
            ),
            deploy_attempts: reg!(
                "zincati_rpm_ostree_deploy_attempts",
                "Total number of 'rpm-ostree deploy' attempts.",
                Counter::default()
            ),
            deploy_failures: reg!(
                "zincati_rpm_ostree_deploy_failures",
                "Total number of 'rpm-ostree deploy' failures.",
                Counter::default()
            ),
            finalize_attempts: reg!(
                "zincati_rpm_ostree_finalize_attempts",
                "Total number of 'rpm-ostree finalize-deployment' attempts.",
                Counter::default()
            ),
            finalize_failures: reg!(
                "zincati_rpm_ostree_finalize_failures",
                "Total number of 'rpm-ostree finalize-deployment' failures.",
                Counter::default()
            ),
            allow_downgrade: reg!(
                "zincati_update_agent_updates_allow_downgrade",
                "Whether downgrades via auto-updates logic are allowed.",
                Gauge::default()
            ),
            enabled: reg!(
                "zincati_update_agent_updates_enabled",
                "Whether auto-updates logic is enabled.",
                Gauge::default()
            ),
            latest_state_change: reg!(
                "zincati_update_agent_latest_state_change_timestamp",
                "UTC timestamp of update-agent last state change.",
                Gauge::default()
            ),
            last_refresh: reg!(
                "zincati_update_agent_last_refresh_timestamp",
                "UTC timestamp of update-agent last refresh tick.",
                Gauge::default()
            ),
            postponed: reg!(
                "zincati_update_agent_postponed_finalizations",
                "Total number of update finalization postponements due to active users.",
                Counter::default()
            ),
            active_users: reg!(
                "zincati_update_agent_finalization_detected_active_users",
                "Number of active users detected by the update-agent.",
                Gauge::default()
            ),
            finalization_attempts: reg!(
                "zincati_update_agent_finalization_attempts",
                "Total number of attempts to finalize a staged deployment by the update agent.",
                Counter::default()
            ),
            finalization_blocked: reg!(
                "zincati_update_agent_finalization_blocked_count",
                "Total number of finalization attempts blocked due to reasons unrelated to update strategy.",
                Family::default()
            ),
            finalization_successes: reg!(
                "zincati_update_agent_finalization_successes",
                "Total number of successful update finalizations by the update agent.",
                Counter::default()
            ),
            strategy_mode: reg!(
                "zincati_updates_strategy_mode",
                "Update strategy mode in use",
                Family::default()
            ),
            periodic_minutes: reg!(
                "zincati_updates_strategy_periodic_schedule_length_minutes",
                "Total length of the periodic strategy schedule in use",
                Gauge::default()
            ),
            can_finalize: reg!(
                "zincati_updates_strategy_can_finalize_responses",
                "Total number of responses from querying update strategy for finalization consent.",
                Family::default()
            ),
            fleet_lock_requests: reg!(
                "zincati_strategy_fleet_lock_requests",
                "Total number of requests to the FleetLock server.",
                Family::default()
            ),
            fleet_lock_errors: reg!(
                "zincati_strategy_fleet_lock_errors",
                "Total number of errors while talking to the FleetLock server.",
                Family::default()
            ),
            trials: reg!(
                "oxcore_agent_trials",
                "Updates booted on trial, by outcome (healthy, rolled_back, boot_failed).",
                Family::default()
            ),
            registry: r,
        }
    }

    /// Counts a strategy answer.
    pub fn count_can_finalize(&self, response: &str) {
        self.can_finalize
            .get_or_create(&labels(&[("response", response)]))
            .inc();
    }

    /// Counts a FleetLock request and its error.
    pub fn count_fleet_lock(&self, api: &str, error: Option<&str>) {
        self.fleet_lock_requests
            .get_or_create(&labels(&[("api", api)]))
            .inc();
        if let Some(kind) = error {
            self.fleet_lock_errors
                .get_or_create(&labels(&[("api", api), ("kind", kind)]))
                .inc();
        }
    }

    /// Counts a graph check error.
    pub fn count_check_error(&self, kind: &str) {
        self.update_check_errors
            .get_or_create(&labels(&[("kind", kind)]))
            .inc();
    }

    /// Counts a blocked finalization.
    pub fn count_blocked(&self, reason: &str) {
        self.finalization_blocked
            .get_or_create(&labels(&[("reason", reason)]))
            .inc();
    }

    /// Counts a trial outcome.
    pub fn count_trial(&self, outcome: &str) {
        self.trials
            .get_or_create(&labels(&[("outcome", outcome)]))
            .inc();
    }

    /// Sets the booted OS information.
    pub fn set_os_info(&self, version: &str, basearch: &str, stream: &str, platform: &str) {
        self.os_info
            .get_or_create(&labels(&[
                ("os_version", version),
                ("basearch", basearch),
                ("stream", stream),
                ("platform", platform),
            ]))
            .set(1);
    }

    /// Sets the strategy in use.
    pub fn set_strategy(&self, name: &str) {
        self.strategy_mode
            .get_or_create(&labels(&[("strategy", name)]))
            .set(1);
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = encode(&mut s, &self.registry);
        s
    }
}

/// Serves `metrics` on the socket under `root` from a thread: the socket
/// is replaced if it exists; a failure to bind is fatal, as in Zincati.
pub fn serve(root: &Root, metrics: Arc<Metrics>) -> Result<PathBuf> {
    let path = root.path(SOCKET);
    let dir = path.parent().expect("has a parent");
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(|e| {
        Error::Invalid(format!(
            "failed to setup metrics service on '{}': {e}",
            path.display()
        ))
    })?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut c) = conn else { continue };
                let _ = c.set_write_timeout(Some(std::time::Duration::from_secs(5)));
                let _ = c.write_all(metrics.render().as_bytes());
            }
        })
        .map_err(|e| Error::io(&path, e))?;
    Ok(path)
}
