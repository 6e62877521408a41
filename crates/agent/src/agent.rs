//! The update agent's state machine, Zincati's (initialized, reported
//! steady, no new update, update available, update staged, update
//! finalized, end), driven one check-and-act cycle at a time, with the
//! trial of a finalized update in front of it.
//!
//! A cycle: settle the boot (a trial to judge, a person's rollback to
//! remember); report steady state to the strategy once; ask the graph
//! server; stage the release chosen (finalization locked, boot counter
//! armed); ask the strategy; wait out interactive sessions; finalize and
//! reboot. Each step that cannot go on says why, in one line.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use ostree_store::Checksum;
use ostree_store::gvariant::Value;
use ostree_store::pull::PullStats;
use ostree_store::remote::{PullRequest, Remote};
use sysroot::bls::BootCounter;
use sysroot::{Deployment, Sysroot};

use crate::config::{Settings, substitute};
use crate::graph::{self, DeadEnd, Release};
use crate::metrics::Metrics;
use crate::sessions;
use crate::state::{Persistent, ReleaseRef, Status, Trial};
use crate::strategy::{Strategy, Verdict};
use crate::{Clock, Error, Result, Root, identity};

/// Pause while the steady state is not reported or the strategy denies.
const DEFAULT_REFRESH: Duration = Duration::from_secs(300);
/// Pause in the end state.
const END_INTERVAL: Duration = Duration::from_secs(10800);
/// Bound on a report to the graph server and the health check's graph
/// request.
const SHORT_TIMEOUT: Duration = Duration::from_secs(30);

/// Zincati's states.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    /// Started, steady state not yet reported.
    Initialized,
    /// Steady state reported; polling for updates.
    ReportedSteady,
    /// The last check found nothing to apply.
    NoNewUpdate,
    /// A release to stage, and the failed attempts so far.
    UpdateAvailable(Release, u32),
    /// A release staged, waiting for the strategy.
    UpdateStaged(Release),
    /// A release finalized; rebooting into it.
    UpdateFinalized(Release),
    /// Updates disabled, or nothing more to do.
    End,
}

impl State {
    /// The state's name, as `status` shows it.
    pub fn name(&self) -> &'static str {
        match self {
            State::Initialized => "initialized",
            State::ReportedSteady => "reported_steady",
            State::NoNewUpdate => "no_new_update",
            State::UpdateAvailable(..) => "update_available",
            State::UpdateStaged(_) => "update_staged",
            State::UpdateFinalized(_) => "update_finalized",
            State::End => "end",
        }
    }
}

/// What one cycle did.
#[derive(Debug, Clone, PartialEq)]
pub struct Cycle {
    /// The state it ended in.
    pub state: State,
    /// What it decided, in one line.
    pub decision: String,
    /// When the next cycle should run.
    pub next: Duration,
    /// The reboot command was run.
    pub rebooted: bool,
}

/// Points where tests can act as a person between the agent's steps.
#[derive(Default)]
pub struct Hooks {
    /// Runs after the agent decided to stage and before it takes the
    /// sysroot lock to do so.
    pub before_stage: Option<Box<dyn Fn() + Send + Sync>>,
}

/// The booted system, as one cycle sees it.
#[derive(Debug, Clone)]
struct Booted {
    /// Deployments in boot order (no staged one).
    list: Vec<Deployment>,
    /// The booted one's index in `list`.
    index: usize,
    /// The staged deployment.
    staged: Option<Deployment>,
    version: String,
    payload: String,
    stream: String,
    oci: bool,
    timestamp: u64,
}

impl Booted {
    fn deployment(&self) -> &Deployment {
        &self.list[self.index]
    }

    fn release(&self) -> ReleaseRef {
        ReleaseRef {
            version: self.version.clone(),
            payload: self.payload.clone(),
        }
    }

    /// What a change by someone else would alter.
    fn fingerprint(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .list
            .iter()
            .map(|d| format!("{}/{}", d.os, d.name()))
            .collect();
        v.push(format!(
            "staged:{}",
            self.staged
                .as_ref()
                .map(Deployment::name)
                .unwrap_or_default()
        ));
        v
    }
}

/// The agent.
pub struct Agent {
    root: Root,
    settings: Settings,
    clock: Arc<dyn Clock>,
    http: http_client::Client,
    metrics: Arc<Metrics>,
    node_uuid: String,
    platform: String,
    strategy: Strategy,
    state: State,
    persistent: Persistent,
    status: Status,
    deadend: Option<DeadEnd>,
    steady_reported: bool,
    startup_denylist: Option<Vec<String>>,
    hooks: Hooks,
    _lock: Option<std::fs::File>,
}

/// Where the agent lock is taken (one agent per node).
pub const LOCK_FILE: &str = "/run/oxcore-agent/lock";

fn now_text(clock: &dyn Clock) -> String {
    clock
        .now()
        .round(jiff::Unit::Second)
        .unwrap_or(clock.now())
        .to_string()
}

impl Agent {
    /// An agent for the node at `root`, configured from its fragments.
    /// Takes the agent lock: a second agent on the same root is refused.
    pub fn new(root: Root, settings: Settings, clock: Arc<dyn Clock>) -> Result<Agent> {
        let lock = take_lock(&root)?;
        let persistent = Persistent::load(&root)?;
        let node_uuid = match &settings.node_uuid {
            Some(u) => u.clone(),
            None => identity::node_uuid(&root)?,
        };
        let cmdline = identity::read_cmdline(&root)?;
        let platform = identity::platform(&cmdline).ok_or_else(|| {
            Error::Invalid(format!(
                "could not find flag 'ignition.platform.id' in {}",
                root.path("/proc/cmdline").display()
            ))
        })?;
        let http = http_client::Client::builder()
            .plain_headers()
            .timeout(graph::GRAPH_TIMEOUT)
            .build()
            .map_err(|e| Error::Http(e.to_string()))?;
        let mut strategy_config = settings.strategy.clone();
        if let crate::config::StrategyConfig::FleetLock { base_url } = &mut strategy_config
            && base_url.contains("${")
        {
            // Zincati substitutes the same variables as in the graph URL.
            let sr = Sysroot::open(root.dir())?;
            let stream = Self::booted(&sr)?.stream;
            *base_url = substitute(
                base_url,
                &[
                    ("basearch", identity::basearch()),
                    ("group", &settings.group),
                    ("platform", &platform),
                    ("stream", &stream),
                ],
            )?;
        }
        let strategy = Strategy::new(&strategy_config, &root, &http, &node_uuid, &settings.group)?;
        let metrics = Arc::new(Metrics::new(settings.rollout_wariness.is_some()));
        metrics.start_time.set(clock.now().as_second());
        if let Some(w) = settings.rollout_wariness {
            metrics.wariness.set(w);
        }
        metrics.enabled.set(i64::from(settings.enabled));
        metrics
            .allow_downgrade
            .set(i64::from(settings.allow_downgrade));
        metrics.set_strategy(strategy.name());
        if let Strategy::Periodic(p) = &strategy {
            metrics.periodic_minutes.set(p.schedule_minutes() as i64);
        }
        if settings.allow_downgrade {
            tracing::warn!(
                "client configuration allows (possibly vulnerable) downgrades via auto-updates logic"
            );
        }
        let status = Status {
            pid: std::process::id(),
            strategy: strategy.describe(clock.now()),
            ..Default::default()
        };
        Ok(Agent {
            root,
            settings,
            clock,
            http,
            metrics,
            node_uuid,
            platform,
            strategy,
            state: State::Initialized,
            persistent,
            status,
            deadend: None,
            steady_reported: false,
            startup_denylist: None,
            hooks: Hooks::default(),
            _lock: Some(lock),
        })
    }

    /// Sets the test hooks.
    pub fn set_hooks(&mut self, hooks: Hooks) {
        self.hooks = hooks;
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The metrics.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// The node UUID sent to the graph server and the FleetLock server.
    pub fn node_uuid(&self) -> &str {
        &self.node_uuid
    }

    /// The current state.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The remembered state.
    pub fn persistent(&self) -> &Persistent {
        &self.persistent
    }

    fn sysroot(&self) -> Result<Sysroot> {
        Ok(Sysroot::open(self.root.dir())?)
    }

    /// The booted system as `sr` shows it.
    fn booted(sr: &Sysroot) -> Result<Booted> {
        let status = sr.status()?;
        let mut list = Vec::new();
        let mut staged = None;
        let mut booted = None;
        for d in status.deployments {
            if d.staged {
                staged = Some(d.deployment);
                continue;
            }
            if d.booted {
                booted = Some((list.len(), d.commit_meta.clone(), d.timestamp));
            }
            list.push(d.deployment);
        }
        let (index, meta, timestamp) =
            booted.ok_or_else(|| Error::Invalid("no booted deployment found".into()))?;
        let d = &list[index];
        let version = d.version.clone().filter(|v| !v.is_empty()).ok_or_else(|| {
            Error::Invalid("failed to introspect booted OS image: empty version".into())
        })?;
        let (payload, oci) = image_payload(d, &meta).unwrap_or((d.checksum.to_hex(), false));
        let stream = stream_of(d, &meta).ok_or_else(|| {
            Error::Invalid(format!(
                "failed to introspect OS updates stream: deployment {} has no `com.coreos.stream` label, `fedora-coreos.stream` annotation or metadata, and its origin names no stream",
                d.name()
            ))
        })?;
        Ok(Booted {
            list,
            index,
            staged,
            version,
            payload,
            stream,
            oci,
            timestamp: timestamp.unwrap_or(0),
        })
    }

    /// The graph request for the booted release.
    fn request(&self, b: &Booted) -> graph::Request {
        graph::Request {
            basearch: identity::basearch().to_string(),
            stream: b.stream.clone(),
            os_version: b.version.clone(),
            os_checksum: b.payload.clone(),
            group: self.settings.group.clone(),
            node_uuid: self.node_uuid.clone(),
            platform: self.platform.clone(),
            oci: b.oci,
            rollout_wariness: self.settings.rollout_wariness,
        }
    }

    fn base_url(&self, b: &Booted) -> Result<String> {
        substitute(
            &self.settings.cincinnati_base_url,
            &[
                ("basearch", identity::basearch()),
                ("group", &self.settings.group),
                ("platform", &self.platform),
                ("stream", &b.stream),
            ],
        )
    }

    fn save(&self) -> Result<()> {
        self.persistent.save(&self.root)
    }

    fn set_state(&mut self, s: State) {
        if std::mem::discriminant(&s) != std::mem::discriminant(&self.state) {
            self.metrics
                .latest_state_change
                .set(self.clock.now().as_second());
        }
        self.state = s;
    }

    fn finish(&mut self, decision: String, next: Duration, rebooted: bool) -> Cycle {
        let now = self.clock.now();
        let next_at = now
            .checked_add(jiff::SignedDuration::try_from(next).unwrap_or(jiff::SignedDuration::MAX))
            .unwrap_or(jiff::Timestamp::MAX);
        self.status.state = self.state.name().to_string();
        self.status.decision = decision.clone();
        self.status.strategy = self.strategy.describe(now);
        self.status.next_check = Some(
            next_at
                .round(jiff::Unit::Second)
                .unwrap_or(next_at)
                .to_string(),
        );
        self.status.target = match &self.state {
            State::UpdateAvailable(r, _) | State::UpdateStaged(r) | State::UpdateFinalized(r) => {
                Some(ReleaseRef {
                    version: r.version.clone(),
                    payload: r.payload.clone(),
                })
            }
            _ => None,
        };
        if let Err(e) = self.status.save(&self.root) {
            tracing::warn!("cannot write the status: {e}");
        }
        tracing::info!("{decision}");
        Cycle {
            state: self.state.clone(),
            decision,
            next,
            rebooted,
        }
    }

    fn jitter(&self, d: Duration) -> Duration {
        let unit = (d.as_secs() / 100).max(1);
        let n = u64::from(self.clock.now().subsec_nanosecond().unsigned_abs()) % 11;
        d + Duration::from_secs(unit * n)
    }

    /// Runs one check-and-act cycle.
    pub fn cycle(&mut self) -> Result<Cycle> {
        self.metrics.last_refresh.set(self.clock.now().as_second());
        if self.persistent.expire(self.clock.now()) {
            self.save()?;
        }
        let sr = self.sysroot()?;
        let b = Self::booted(&sr)?;
        self.status.booted = Some(b.release());
        self.metrics
            .set_os_info(&b.version, identity::basearch(), &b.stream, &self.platform);
        if self.startup_denylist.is_none() {
            // As Zincati: every deployment on disk at start (but a staged
            // one) is not a target.
            let list: Vec<String> = b.list.iter().map(|d| d.checksum.to_hex()).collect();
            for d in &b.list {
                if d.checksum.to_hex() != b.payload {
                    tracing::info!(
                        "deployment {} ({}) will be excluded from being a future update target",
                        d.version.as_deref().unwrap_or("?"),
                        d.checksum
                    );
                }
            }
            self.startup_denylist = Some(list);
        }
        if let Some(c) = self.settle_boot(&sr, &b)? {
            return Ok(c);
        }
        let b = Self::booted(&sr)?;
        if !self.settings.enabled {
            self.set_state(State::End);
            return Ok(self.finish(
                "auto-updates logic disabled by configuration".into(),
                self.jitter(END_INTERVAL),
                false,
            ));
        }
        if let State::UpdateFinalized(r) = &self.state {
            let r = r.clone();
            return self.reboot(format!("update {} finalized", r.version));
        }
        if !self.steady_reported {
            match self.strategy.report_steady() {
                Ok(()) => {
                    if let Strategy::FleetLock(_) = self.strategy {
                        self.metrics.count_fleet_lock("steady-state", None);
                        self.status.lock = Some("not held".into());
                    }
                    self.steady_reported = true;
                    self.set_state(State::ReportedSteady);
                    tracing::info!("reached steady state, periodically polling for updates");
                }
                Err(e) => {
                    self.metrics
                        .count_fleet_lock("steady-state", Some(&error_kind(&e)));
                    return Ok(self.finish(
                        format!(
                            "cannot report steady state yet: lock-manager steady-state failure: {e}"
                        ),
                        self.jitter(DEFAULT_REFRESH),
                        false,
                    ));
                }
            }
        }
        // A release already staged waits for the strategy.
        if let State::UpdateStaged(r) = &self.state {
            let r = r.clone();
            if b.staged
                .as_ref()
                .is_some_and(|s| s.checksum.to_hex() == r.payload)
            {
                return self.try_finalize(&sr, &b, r);
            }
        }
        let release = match self.check(&b)? {
            Ok(r) => r,
            Err(c) => return Ok(c),
        };
        self.set_state(State::UpdateAvailable(release.clone(), 0));
        tracing::info!(
            "target release '{}' selected, proceeding to stage it",
            release.version
        );
        match self.stage(&sr, &b, &release)? {
            Some(c) => Ok(c),
            None => {
                let b = Self::booted(&sr)?;
                self.set_state(State::UpdateStaged(release.clone()));
                self.try_finalize(&sr, &b, release)
            }
        }
    }

    /// The payloads not to update to.
    fn denied(&self, payload: &str) -> bool {
        self.persistent.denied(payload).is_some()
            || self
                .startup_denylist
                .as_ref()
                .is_some_and(|l| l.iter().any(|p| p == payload))
    }

    /// Asks the graph: the release to apply, or the cycle's end.
    fn check(&mut self, b: &Booted) -> Result<std::result::Result<Release, Cycle>> {
        let base = self.base_url(b)?;
        let req = self.request(b);
        self.status.last_check = Some(now_text(&*self.clock));
        self.metrics.update_checks.inc();
        let g = match graph::fetch(&self.http, &base, &req, graph::GRAPH_TIMEOUT) {
            Ok(g) => g,
            Err(e) => {
                self.metrics.count_check_error(&e.kind);
                self.set_state(State::NoNewUpdate);
                return Ok(Err(self.finish(
                    format!("failed to check Cincinnati for updates: {e}"),
                    self.jitter(self.settings.steady_interval),
                    false,
                )));
            }
        };
        self.metrics.graph_nodes.set(g.nodes.len() as i64);
        self.metrics.graph_edges.set(g.edges.len() as i64);
        let denied = |r: &Release| self.denied(&r.payload);
        let offer = match graph::choose(&g, &b.payload, &denied, self.settings.allow_downgrade) {
            Ok(o) => o,
            Err(e) => {
                self.metrics.count_check_error("client_failed_node_parsing");
                self.set_state(State::NoNewUpdate);
                return Ok(Err(self.finish(
                    format!("failed to check Cincinnati for updates: client-side error: {e}"),
                    self.jitter(self.settings.steady_interval),
                    false,
                )));
            }
        };
        self.metrics.ignored_targets.set(offer.ignored as i64);
        if let Some(d) = &offer.deadend
            && self.deadend.as_ref() != Some(d)
        {
            match d {
                DeadEnd::Yes(r) => {
                    tracing::warn!("current release detected as dead-end, reason: {r}")
                }
                DeadEnd::No => tracing::info!("current release detected as not a dead-end"),
            }
            if let Err(e) = graph::set_deadend_motd(&self.root, d) {
                tracing::warn!("cannot update the dead-end notice: {e}");
            } else {
                self.deadend = Some(d.clone());
            }
            self.metrics
                .deadend
                .set(i64::from(matches!(d, DeadEnd::Yes(_))));
        }
        if let Some(r) = offer.update {
            return Ok(Ok(r));
        }
        let why = match (&offer.deadend, &offer.downgrade_refused) {
            (None, _) => format!(
                "booted release {} ({}) is not in the update graph",
                b.version, b.payload
            ),
            (Some(DeadEnd::Yes(r)), _) => {
                format!("booted release {} is a dead-end: {r}", b.version)
            }
            (_, Some(d)) => format!(
                "the graph offers {}, an older release, and downgrades are not allowed by configuration",
                d.version
            ),
            _ if offer.ignored > 0 => {
                let names: Vec<String> = offer
                    .targets
                    .iter()
                    .filter(|r| self.denied(&r.payload))
                    .map(|r| match self.persistent.denied(&r.payload) {
                        Some(d) => format!("{} ({})", r.version, d.reason),
                        None => format!("{} (deployed on this node already)", r.version),
                    })
                    .collect();
                format!("every update offered is denylisted: {}", names.join(", "))
            }
            _ => format!("booted release {} is the newest offered", b.version),
        };
        self.set_state(State::NoNewUpdate);
        Ok(Err(self.finish(
            format!("no update: {why}"),
            self.jitter(self.settings.steady_interval),
            false,
        )))
    }

    /// Pulls and stages `r` with finalization locked; `Some` ends the
    /// cycle early (failure, or the sysroot changed under the agent).
    fn stage(&mut self, sr: &Sysroot, b: &Booted, r: &Release) -> Result<Option<Cycle>> {
        if b.staged
            .as_ref()
            .is_some_and(|s| s.checksum.to_hex() == r.payload)
        {
            sr.set_finalization_locked(true)?;
            tracing::info!("update staged: {} (staged already)", r.version);
            return Ok(None);
        }
        self.metrics.deploy_attempts.inc();
        let result = self.try_stage(sr, b, r);
        match result {
            Ok(true) => {
                self.persistent.deploy_failures.remove(&r.payload);
                self.save()?;
                tracing::info!("update staged: {}", r.version);
                Ok(None)
            }
            Ok(false) => {
                self.set_state(State::NoNewUpdate);
                Ok(Some(self.finish(
                    format!(
                        "not staging {}: the deployments changed while the agent was deciding (someone else changed the sysroot); deciding again at the next check",
                        r.version
                    ),
                    self.jitter(self.settings.steady_interval),
                    false,
                )))
            }
            Err(e) => {
                self.metrics.deploy_failures.inc();
                let n = {
                    let n = self
                        .persistent
                        .deploy_failures
                        .entry(r.payload.clone())
                        .or_insert(0);
                    *n += 1;
                    *n
                };
                let max = self.settings.oxcore.max_deploy_attempts;
                let decision = if n >= max {
                    self.persistent.deploy_failures.remove(&r.payload);
                    let until = self
                        .clock
                        .now()
                        .checked_add(jiff::SignedDuration::from_hours(24))
                        .ok()
                        .map(|t| t.to_string());
                    self.persistent.deny_until(
                        ReleaseRef {
                            version: r.version.clone(),
                            payload: r.payload.clone(),
                        },
                        format!("failed to deploy {n} times; last: {e}"),
                        now_text(&*self.clock),
                        until,
                    );
                    self.set_state(State::NoNewUpdate);
                    format!(
                        "persistent deploy failure detected, target release '{}' abandoned and denylisted for a day after {n} failed attempts: {e}",
                        r.version
                    )
                } else {
                    self.set_state(State::UpdateAvailable(r.clone(), n));
                    format!(
                        "failed to stage deployment: {e} (trying to stage {} (failed attempts: {n}))",
                        r.version
                    )
                };
                self.save()?;
                Ok(Some(self.finish(
                    decision,
                    self.jitter(DEFAULT_REFRESH),
                    false,
                )))
            }
        }
    }

    /// `Ok(false)`: the sysroot changed since `b` was read.
    fn try_stage(&self, sr: &Sysroot, b: &Booted, r: &Release) -> Result<bool> {
        if b.oci {
            return Err(Error::Invalid(
                "updates of a deployment booted from an OCI image are not supported yet".into(),
            ));
        }
        let commit = Checksum::from_hex(&r.payload).map_err(|e| {
            Error::Invalid(format!(
                "graph payload '{}' is not a commit: {e}",
                r.payload
            ))
        })?;
        let d = b.deployment();
        let refspec = d.refspec().unwrap_or("").to_string();
        if sr.repo().load_commit(&commit).is_err() {
            let Some((remote, _)) = refspec.split_once(':') else {
                return Err(Error::Invalid(format!(
                    "commit {commit} is not in the repository and the origin '{refspec}' names no remote to pull it from"
                )));
            };
            let remote = Remote::load(sr.repo(), remote)?;
            let stats = PullStats::default();
            let refs = [commit.to_hex()];
            let req = PullRequest::new(&refs, &stats);
            remote.pull(sr.repo(), &req)?;
        }
        let new = sr.repo().load_commit(&commit)?;
        if !self.settings.allow_downgrade && new.timestamp < b.timestamp {
            return Err(Error::Sysroot(sysroot::Error::Downgrade {
                new: commit,
                new_timestamp: new.timestamp,
                old: d.checksum,
                old_timestamp: b.timestamp,
            }));
        }
        if let Some(h) = &self.hooks.before_stage {
            h();
        }
        let _lock = sr.lock()?;
        let now = Self::booted(sr)?;
        if now.fingerprint() != b.fingerprint() {
            return Ok(false);
        }
        let mut origin = d.origin.clone();
        origin.set("origin", "override-commit", &commit.to_hex());
        let tries = self
            .settings
            .oxcore
            .health
            .enabled
            .then_some(self.settings.oxcore.health.boot_tries);
        sr.stage_with_trial(&d.os, &commit, origin, None, true, tries)?;
        Ok(true)
    }

    /// Asks the strategy and the sessions; finalizes and reboots when
    /// both allow.
    fn try_finalize(&mut self, sr: &Sysroot, b: &Booted, r: Release) -> Result<Cycle> {
        self.metrics.finalization_attempts.inc();
        let verdict = self.strategy.can_finalize(self.clock.now());
        let is_fleet_lock = matches!(self.strategy, Strategy::FleetLock(_));
        match &verdict {
            Verdict::Allow => {
                self.metrics.count_can_finalize("allow");
                if is_fleet_lock {
                    self.metrics.count_fleet_lock("pre-reboot", None);
                    self.status.lock = Some("held".into());
                }
            }
            Verdict::Deny(why) | Verdict::Error(why) => {
                self.metrics
                    .count_can_finalize(if matches!(verdict, Verdict::Deny(_)) {
                        "deny"
                    } else {
                        "error"
                    });
                if is_fleet_lock {
                    self.metrics
                        .count_fleet_lock("pre-reboot", Some(&error_kind(why)));
                }
                // As Zincati: a full grace period again once allowed.
                if self.persistent.postponements.take().is_some() {
                    self.save()?;
                }
                let why = if is_fleet_lock {
                    format!("reboot slot not granted: {why}")
                } else {
                    why.clone()
                };
                self.set_state(State::UpdateStaged(r.clone()));
                return Ok(self.finish(
                    format!(
                        "update {} staged; reboot pending due to update strategy: {why}",
                        r.version
                    ),
                    self.jitter(DEFAULT_REFRESH),
                    false,
                ));
            }
        }
        // Interactive sessions postpone the reboot, up to ten times.
        let users = sessions::interactive(&self.root);
        self.metrics.active_users.set(users.len() as i64);
        let left = match &self.persistent.postponements {
            Some((p, n)) if *p == r.payload => *n,
            _ => sessions::MAX_POSTPONEMENTS,
        };
        if !users.is_empty() && !self.root.path(sessions::OVERRIDE).exists() {
            if left == 0 {
                tracing::warn!(
                    "reached end of grace period while waiting for interactive sessions"
                );
            } else {
                let grace = sessions::POSTPONEMENT * left;
                if left == sessions::MAX_POSTPONEMENTS {
                    tracing::warn!(
                        "interactive sessions detected, entering grace period (maximum {})",
                        sessions::human(grace)
                    );
                } else if left == 1 {
                    tracing::warn!("last attempt to wait for the end of all interactive sessions");
                }
                if left == sessions::MAX_POSTPONEMENTS || left == 1 {
                    let text = sessions::broadcast_text(&r.version, grace, self.clock.now());
                    sessions::broadcast(&self.root, &users, &text);
                }
                self.persistent.postponements = Some((r.payload.clone(), left - 1));
                self.save()?;
                self.metrics.postponed.inc();
                self.metrics.count_blocked("active_usersessions");
                self.set_state(State::UpdateStaged(r.clone()));
                return Ok(self.finish(
                    format!(
                        "update {} staged; reboot delayed due to active user sessions ({} interactive session(s); {} postponement(s) left)",
                        r.version,
                        users.len(),
                        left - 1
                    ),
                    sessions::POSTPONEMENT,
                    false,
                ));
            }
        }
        tracing::info!(
            "staged deployment '{}' available, proceeding to finalize it",
            r.version
        );
        self.metrics.finalize_attempts.inc();
        // The trial is recorded before the switch: a crash in between
        // leaves a trial whose release was never finalized, which the
        // next start forgets, never a finalized release without a trial.
        self.persistent.postponements = None;
        self.persistent.last_finalized = Some(ReleaseRef {
            version: r.version.clone(),
            payload: r.payload.clone(),
        });
        if self.settings.oxcore.health.enabled {
            self.persistent.trial = Some(Trial {
                from: b.release(),
                to: ReleaseRef {
                    version: r.version.clone(),
                    payload: r.payload.clone(),
                },
                finalized_at: now_text(&*self.clock),
                boot_id: boot_id(&self.root),
            });
        }
        self.save()?;
        let finalized = (|| -> Result<()> {
            let _lock = sr.lock()?;
            let staged = sr.staged()?;
            if staged.as_ref().map(|s| s.checksum.to_hex()) != Some(r.payload.clone()) {
                return Err(Error::Invalid(format!(
                    "expected pending deployment '{}', but found {}",
                    r.version,
                    staged
                        .map(|s| format!("'{}'", s.version.unwrap_or_default()))
                        .unwrap_or_else(|| "none".into())
                )));
            }
            sr.set_finalization_locked(false)?;
            if let Err(e) = sr.finalize_staged(false) {
                // Held again: nothing else may finalize it at shutdown.
                let _ = sr.set_finalization_locked(true);
                return Err(e.into());
            }
            Ok(())
        })();
        if let Err(e) = finalized {
            self.persistent.trial = None;
            self.save()?;
            self.metrics.finalize_failures.inc();
            self.set_state(State::UpdateStaged(r.clone()));
            return Ok(self.finish(
                format!("failed to finalize deployment: {e}"),
                self.jitter(DEFAULT_REFRESH),
                false,
            ));
        }
        self.metrics.finalization_successes.inc();
        self.set_state(State::UpdateFinalized(r.clone()));
        let what = if self.settings.oxcore.health.enabled {
            format!(
                "update finalized: {} (on trial: {} boot tries)",
                r.version, self.settings.oxcore.health.boot_tries
            )
        } else {
            format!("update finalized: {}", r.version)
        };
        self.reboot(what)
    }

    /// Runs the reboot command.
    fn reboot(&mut self, what: String) -> Result<Cycle> {
        let cmd = &self.settings.oxcore.reboot_command;
        let shown = cmd.join(" ");
        let out = Command::new(&cmd[0])
            .args(&cmd[1..])
            .stdin(std::process::Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => {
                Ok(self.finish(format!("{what}; rebooting ({shown})"), END_INTERVAL, true))
            }
            Ok(o) => Ok(self.finish(
                format!(
                    "{what}; reboot command `{shown}` failed ({}): {}",
                    o.status,
                    String::from_utf8_lossy(&o.stderr).trim()
                ),
                self.jitter(DEFAULT_REFRESH),
                false,
            )),
            Err(e) => Ok(self.finish(
                format!("{what}; cannot run reboot command `{shown}`: {e}"),
                self.jitter(DEFAULT_REFRESH),
                false,
            )),
        }
    }

    /// The trial in progress: recorded, or (if the agent stopped between
    /// finalizing and recording) read from the booted entry's counter.
    fn trial(&self, b: &Booted) -> Option<Trial> {
        if let Some(t) = &self.persistent.trial {
            return Some(t.clone());
        }
        let d = b.deployment();
        if d.boot_counter?.exhausted() || self.persistent.denied(&b.payload).is_some() {
            return None;
        }
        let prev = b.list.iter().enumerate().find(|(i, _)| *i != b.index)?.1;
        Some(Trial {
            from: ReleaseRef {
                version: prev.version.clone().unwrap_or_default(),
                payload: prev.checksum.to_hex(),
            },
            to: b.release(),
            finalized_at: String::new(),
            boot_id: None,
        })
    }

    /// Judges a trial, remembers a person's rollback. `Some` ends the
    /// cycle (a rollback that reboots, a check that must be retried).
    fn settle_boot(&mut self, sr: &Sysroot, b: &Booted) -> Result<Option<Cycle>> {
        // Still running a release that failed its trial and was rolled
        // back (the reboot did not happen): reboot into the default.
        if b.index != 0
            && let Some(d) = self.persistent.denied(&b.payload)
            && d.reason.starts_with("failed on trial")
        {
            let what = format!(
                "running {}, which failed its trial and was rolled back; the default is {}",
                b.version,
                b.list[0].version.as_deref().unwrap_or("?")
            );
            self.set_state(State::End);
            return self.reboot(what).map(Some);
        }
        let Some(trial) = self.trial(b) else {
            self.remember_rollbacks(b)?;
            return Ok(None);
        };
        let now_boot = boot_id(&self.root);
        if b.payload == trial.to.payload && !same_boot(&trial, &now_boot) {
            return self.judge(sr, b, trial);
        }
        let idx = b
            .list
            .iter()
            .position(|d| d.checksum.to_hex() == trial.to.payload);
        // The release on trial, to reboot into while not rebooted yet.
        let pending = Release {
            age_index: 0,
            version: trial.to.version.clone(),
            payload: trial.to.payload.clone(),
        };
        if (b.payload == trial.to.payload
            || b.payload == trial.from.payload && same_boot(&trial, &now_boot))
            && idx.is_some()
        {
            // Finalized in this very boot: the machine has not restarted
            // (with the same kernel, the booted deployment's boot serial
            // may now name the new one). Reboot into it.
            self.set_state(State::UpdateFinalized(pending));
            return Ok(None);
        }
        if b.payload == trial.from.payload {
            match idx.map(|i| (i, b.list[i].boot_counter)) {
                None => {
                    tracing::info!(
                        "release {} was never finalized; forgetting its trial",
                        trial.to.version
                    );
                }
                Some((i, Some(c))) if c.exhausted() => {
                    // The bootloader gave up: the new release never came
                    // up. The booted one becomes the default again.
                    if i < b.index {
                        sr.set_default(b.index)?;
                    }
                    self.fail_trial(&trial, "boot", "its boot tries ran out before the health checks ran (kernel panic, hang or reboot loop)", "boot_failed");
                    self.persistent.trial = None;
                    self.save()?;
                    self.set_state(State::Initialized);
                    let c = self.finish(
                        format!(
                            "release {} never came up (its boot tries ran out); back on {}, which is the default again; {} is denylisted",
                            trial.to.version, trial.from.version, trial.to.version
                        ),
                        Duration::ZERO,
                        false,
                    );
                    tracing::warn!("{}", c.decision);
                    return Ok(None);
                }
                Some((_, c)) if !rebooted(&trial, &now_boot) && c.is_none_or(|c| c.done == 0) => {
                    // Finalized, not rebooted yet.
                    self.set_state(State::UpdateFinalized(pending));
                    return Ok(None);
                }
                Some((i, _)) => {
                    // The machine restarted and came back on the previous
                    // release although the new one was the default: a
                    // person chose it at the boot menu, or a bootloader
                    // without boot counting fell back. Either way the new
                    // release did not stay; it is not the default either.
                    if i < b.index {
                        sr.set_default(b.index)?;
                    }
                    self.persistent.deny(
                        trial.to.clone(),
                        "left: the machine came back on the previous release (chosen at the boot menu, or the bootloader fell back)".into(),
                        now_text(&*self.clock),
                    );
                    self.metrics.count_trial("left");
                }
            }
        } else {
            tracing::info!(
                "booted release {} is neither side of the trial of {}; forgetting the trial",
                b.version,
                trial.to.version
            );
        }
        self.persistent.trial = None;
        self.save()?;
        Ok(None)
    }

    /// Runs the health checks of the release on trial.
    fn judge(&mut self, sr: &Sysroot, b: &Booted, trial: Trial) -> Result<Option<Cycle>> {
        self.status.health = Some(format!("on trial: {}", trial.to.version));
        let health = self.settings.oxcore.health.clone();
        let base = self.base_url(b)?;
        let req = self.request(b);
        let http = self.http.clone();
        // The server must be reachable: an answer of any kind (even an
        // error status) shows the node's network works; only a request
        // that got no answer fails the check.
        let graph_check = move || match graph::fetch(&http, &base, &req, SHORT_TIMEOUT) {
            Err(e) if e.kind == "client_failed_request" => Err(e.to_string()),
            _ => Ok(()),
        };
        let verdict = if health.enabled {
            crate::health::check(&self.root, &health, &*self.clock, &graph_check)
        } else {
            Ok(())
        };
        match verdict {
            Ok(()) => {
                {
                    // The checks took a while: find the entry again.
                    let _lock = sr.lock()?;
                    let me = b.deployment();
                    let list = sr.deployments()?;
                    if let Some(i) = list
                        .iter()
                        .position(|d| d.checksum == me.checksum && d.serial == me.serial)
                    {
                        sr.set_boot_counter(i, None)?;
                    }
                }
                self.persistent.trial = None;
                self.save()?;
                self.metrics.count_trial("healthy");
                self.report(b, &trial, "healthy", None);
                self.status.health =
                    Some(format!("healthy: {} passed its checks", trial.to.version));
                tracing::info!(
                    "release {} passed its health checks; its boot entry is marked good",
                    trial.to.version
                );
                Ok(None)
            }
            Err(f) => {
                let _lock = sr.lock()?;
                let prev = sr
                    .deployments()?
                    .iter()
                    .position(|d| d.checksum.to_hex() == trial.from.payload);
                let Some(prev) = prev else {
                    self.fail_trial(&trial, &f.check, &f.detail, "rolled_back");
                    self.persistent.trial = None;
                    self.save()?;
                    self.set_state(State::End);
                    return Ok(Some(self.finish(
                        format!(
                            "release {} failed health check {f}; the previous deployment ({}) is gone, so there is nothing to roll back to",
                            trial.to.version, trial.from.version
                        ),
                        END_INTERVAL,
                        false,
                    )));
                };
                {
                    sr.set_default(prev)?;
                    let failed = sr
                        .deployments()?
                        .iter()
                        .position(|d| d.checksum.to_hex() == trial.to.payload);
                    if let Some(i) = failed {
                        let done = b.list[b.index].boot_counter.map_or(1, |c| c.done.max(1));
                        sr.set_boot_counter(i, Some(BootCounter { left: 0, done }))?;
                    }
                }
                drop(_lock);
                self.fail_trial(&trial, &f.check, &f.detail, "rolled_back");
                self.persistent.trial = None;
                self.save()?;
                self.status.health = Some(format!("rolled back from {}: {f}", trial.to.version));
                self.set_state(State::End);
                let what = format!(
                    "release {} failed health check {f}; rolled back to {} and denylisted {}",
                    trial.to.version, trial.from.version, trial.to.version
                );
                tracing::error!("{what}");
                self.reboot(what).map(Some)
            }
        }
    }

    fn fail_trial(&mut self, trial: &Trial, check: &str, detail: &str, outcome: &str) {
        self.persistent.deny(
            trial.to.clone(),
            format!("failed on trial: {check}: {detail}"),
            now_text(&*self.clock),
        );
        self.metrics.count_trial(outcome);
        if let Ok(sr) = self.sysroot()
            && let Ok(b) = Self::booted(&sr)
        {
            self.report(&b, trial, outcome, Some(check));
        }
    }

    /// Tells the graph server how a trial ended (`POST /v1/report`); a
    /// server without the endpoint, or no server, is not an error.
    fn report(&self, b: &Booted, trial: &Trial, outcome: &str, failed_check: Option<&str>) {
        if !self.settings.oxcore.report {
            return;
        }
        let Ok(base) = self.base_url(b) else { return };
        let url = crate::config::join_url(&base, "v1/report");
        let body = serde_json::json!({
            "node_uuid": self.node_uuid,
            "group": self.settings.group,
            "stream": b.stream,
            "from_version": trial.from.version,
            "from_payload": trial.from.payload,
            "to_version": trial.to.version,
            "to_payload": trial.to.payload,
            "outcome": outcome,
            "failed_check": failed_check,
        });
        let req = http_client::Request::new("POST", &url)
            .header("content-type", "application/json")
            .body(body.to_string().into_bytes())
            .timeout(SHORT_TIMEOUT);
        match self.http.send(&req) {
            Ok(r) if (200..300).contains(&r.status()) => {
                tracing::info!(
                    "reported the trial of {} ({outcome}) to {url}",
                    trial.to.version
                )
            }
            Ok(r) => tracing::debug!("{url}: {} (reports not accepted; ignored)", r.status()),
            Err(e) => tracing::debug!("{url}: {e} (report not sent; ignored)"),
        }
    }

    /// A deployment after the booted one that is newer than it was left
    /// by a person's rollback: it is not applied again until something
    /// newer comes.
    fn remember_rollbacks(&mut self, b: &Booted) -> Result<()> {
        // The agent's own move (an allowed downgrade) is not a person's.
        if self
            .persistent
            .last_finalized
            .as_ref()
            .is_some_and(|r| r.payload == b.payload)
        {
            return Ok(());
        }
        let sr = self.sysroot()?;
        let mut changed = false;
        for d in b.list.iter().skip(b.index + 1) {
            let payload = d.checksum.to_hex();
            if self.persistent.denied(&payload).is_some() || payload == b.payload {
                continue;
            }
            if newer(
                sr.repo(),
                &d.checksum,
                &b.deployment().checksum,
                b.timestamp,
            ) {
                tracing::info!(
                    "release {} was left by a rollback; it will not be applied again",
                    d.version.as_deref().unwrap_or("?")
                );
                self.persistent.deny(
                    ReleaseRef {
                        version: d.version.clone().unwrap_or_default(),
                        payload,
                    },
                    "left by a person's rollback".into(),
                    now_text(&*self.clock),
                );
                changed = true;
            }
        }
        if changed {
            self.save()?;
        }
        Ok(())
    }
}

/// Whether `candidate` is newer than `booted`: a descendant of it (the
/// history of a stream), or, when neither is in the other's history, of a
/// later commit time.
fn newer(
    repo: &ostree_store::Repo,
    candidate: &Checksum,
    booted: &Checksum,
    booted_time: u64,
) -> bool {
    let Ok(first) = repo.load_commit(candidate) else {
        return false;
    };
    let mut parent = first.parent;
    // Bounded: a history is walked as far as the repository holds it.
    for _ in 0..10_000 {
        let Some(p) = parent else { break };
        if p == *booted {
            return true;
        }
        match repo.load_commit(&p) {
            Ok(c) => parent = c.parent,
            Err(_) => break,
        }
    }
    first.timestamp > booted_time
}

/// This boot's ID (`/proc/sys/kernel/random/boot_id`), if readable.
fn boot_id(root: &Root) -> Option<String> {
    let text = std::fs::read_to_string(root.path("/proc/sys/kernel/random/boot_id")).ok()?;
    Some(text.trim().to_string()).filter(|t| !t.is_empty())
}

/// Whether this is the boot `trial` was finalized in (known boot IDs
/// only).
fn same_boot(trial: &Trial, now: &Option<String>) -> bool {
    matches!((&trial.boot_id, now), (Some(then), Some(now)) if then == now)
}

/// Whether the machine restarted since `trial` was finalized (unknown
/// boot IDs: not known to have restarted).
fn rebooted(trial: &Trial, now: &Option<String>) -> bool {
    matches!((&trial.boot_id, now), (Some(then), Some(now)) if then != now)
}

/// The `kind` a FleetLock error counts under.
fn error_kind(e: &str) -> String {
    if let Some(open) = e.rfind('(')
        && e.ends_with(')')
        && e.starts_with("server-side")
    {
        return e[open + 1..e.len() - 1].to_string();
    }
    if let Some(rest) = e.strip_prefix("server-side error, code ") {
        let code = rest.split(':').next().unwrap_or("");
        return format!("generic_http_{code}");
    }
    "client_failed_request".to_string()
}

/// A deployment booted from an OCI image: its pullspec by digest.
fn image_payload(d: &Deployment, meta: &[(String, Value)]) -> Option<(String, bool)> {
    let reference = d.origin.get("origin", "container-image-reference")?;
    let digest = meta.iter().find_map(|(k, v)| match (k.as_str(), v) {
        ("ostree.manifest-digest", Value::Str(s)) => Some(s.clone()),
        _ => None,
    })?;
    let image = reference.rsplit_once("docker://")?.1;
    // Drop the tag (after the last `/`, a `:`).
    let name = match image.rfind(':') {
        Some(i) if i > image.rfind('/').unwrap_or(0) => &image[..i],
        _ => image,
    };
    Some((format!("{name}@{digest}"), true))
}

/// The booted release's stream: the image's `com.coreos.stream` label or
/// `fedora-coreos.stream` annotation (what Zincati reads), the commit's
/// `fedora-coreos.stream` metadata (what it read before), or the last
/// component of the origin's ref (`fedora/x86_64/coreos/stable`).
fn stream_of(d: &Deployment, meta: &[(String, Value)]) -> Option<String> {
    let get = |key: &str| {
        meta.iter().find_map(|(k, v)| match v {
            Value::Str(s) if k == key => Some(s.clone()),
            _ => None,
        })
    };
    if let Some(cfg) = get("ostree.container.image-config")
        && let Ok(v) = serde_json::from_str::<serde_json::Value>(&cfg)
        && let Some(s) = v["config"]["Labels"]["com.coreos.stream"].as_str()
    {
        return Some(s.to_string()).filter(|s| !s.is_empty());
    }
    if let Some(m) = get("ostree.manifest")
        && let Ok(v) = serde_json::from_str::<serde_json::Value>(&m)
        && let Some(s) = v["annotations"]["fedora-coreos.stream"].as_str()
    {
        return Some(s.to_string()).filter(|s| !s.is_empty());
    }
    if let Some(s) = get("fedora-coreos.stream") {
        return Some(s).filter(|s| !s.is_empty());
    }
    let refspec = d.refspec()?;
    let branch = refspec.split_once(':').map_or(refspec, |(_, b)| b);
    branch
        .rsplit('/')
        .next()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Takes the agent lock under `root` (an exclusive `flock`, held for the
/// agent's life).
fn take_lock(root: &Root) -> Result<std::fs::File> {
    let path = root.path(LOCK_FILE);
    let dir = path.parent().expect("has a parent");
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    match rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {
            use std::io::Write;
            let _ = f.set_len(0);
            let _ = (&f).write_all(format!("{}\n", std::process::id()).as_bytes());
            Ok(f)
        }
        Err(rustix::io::Errno::WOULDBLOCK) => {
            let pid = std::fs::read_to_string(&path).unwrap_or_default();
            Err(Error::Busy(format!(
                "another oxcore agent is running on this node (pid {}); ask it with `oxcore agent update-now` or `oxcore agent status`",
                pid.trim()
            )))
        }
        Err(e) => Err(Error::io(&path, e.into())),
    }
}
