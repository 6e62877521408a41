//! Prometheus metrics on the status listener: airlock's names where it has
//! them, and requests by outcome and lease expiries besides.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::config::Config;
use crate::semaphore::Semaphore;

type Labels = Vec<(String, String)>;

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    /// `airlock_v1_pre_reboot_incoming_requests_total`.
    pub pre_reboot: Counter,
    /// `airlock_v1_steady_state_incoming_requests_total`.
    pub steady_state: Counter,
    db_holders: Family<Labels, Gauge>,
    db_slots: Family<Labels, Gauge>,
    requests: Family<Labels, Counter>,
    expiries: Family<Labels, Counter>,
}

fn group(g: &str) -> Labels {
    vec![("group".to_string(), g.to_string())]
}

impl Metrics {
    /// Metrics for `config`'s groups.
    pub fn new(config: &Config) -> Metrics {
        let mut registry = Registry::default();
        let config_groups = Gauge::<i64>::default();
        config_groups.set(config.groups.len() as i64);
        registry.register(
            "airlock_config_groups",
            "Number of configured lock groups",
            config_groups,
        );
        let config_slots = Family::<Labels, Gauge>::default();
        for (name, g) in &config.groups {
            config_slots
                .get_or_create(&group(name))
                .set(i64::try_from(g.slots).unwrap_or(i64::MAX));
        }
        registry.register(
            "airlock_config_semaphore_slots",
            "Semaphore slots, per group, as configured",
            config_slots,
        );
        let db_holders = Family::<Labels, Gauge>::default();
        registry.register(
            "airlock_database_semaphore_lock_holders",
            "Semaphore lock holders, per group, as stored",
            db_holders.clone(),
        );
        let db_slots = Family::<Labels, Gauge>::default();
        registry.register(
            "airlock_database_semaphore_slots",
            "Semaphore slots, per group, as stored",
            db_slots.clone(),
        );
        let pre_reboot = Counter::default();
        registry.register(
            "airlock_v1_pre_reboot_incoming_requests",
            "Incoming pre-reboot requests",
            pre_reboot.clone(),
        );
        let steady_state = Counter::default();
        registry.register(
            "airlock_v1_steady_state_incoming_requests",
            "Incoming steady-state requests",
            steady_state.clone(),
        );
        let requests = Family::<Labels, Counter>::default();
        registry.register(
            "oxcore_fleetlock_requests",
            "FleetLock requests by endpoint and outcome (ok or the error kind)",
            requests.clone(),
        );
        let expiries = Family::<Labels, Counter>::default();
        registry.register(
            "oxcore_fleetlock_lease_expiries",
            "Slots taken back from holders whose lease ran out, per group",
            expiries.clone(),
        );
        Metrics {
            registry,
            pre_reboot,
            steady_state,
            db_holders,
            db_slots,
            requests,
            expiries,
        }
    }

    /// Notes a group's stored semaphore.
    pub fn observe(&self, name: &str, sem: &Semaphore) {
        self.db_holders
            .get_or_create(&group(name))
            .set(sem.holders.len() as i64);
        self.db_slots
            .get_or_create(&group(name))
            .set(i64::try_from(sem.total_slots).unwrap_or(i64::MAX));
    }

    /// Counts a request's outcome (`ok` or an error kind).
    pub fn outcome(&self, api: &str, outcome: &str) {
        self.requests
            .get_or_create(&vec![
                ("api".to_string(), api.to_string()),
                ("outcome".to_string(), outcome.to_string()),
            ])
            .inc();
    }

    /// Counts leases that ran out.
    pub fn expired(&self, name: &str, n: usize) {
        if n > 0 {
            self.expiries.get_or_create(&group(name)).inc_by(n as u64);
        }
    }

    /// The text exposition (OpenMetrics, which Prometheus reads).
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}
