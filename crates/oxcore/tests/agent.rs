//! The update agent end to end, with real parts: releases composed with
//! `oxcore release`, the real graph server (`oxcore graph serve`) and
//! FleetLock server on loopback, the node's repository pulling over HTTP,
//! real deployments in a sysroot under `--root`, and `oxcore agent --once`
//! deciding. A reboot is the configured command recording the call; the
//! bootloader is modelled as systemd-boot's boot counting behaves (an
//! entry with tries left is tried first and its counter moves; an entry
//! with none is skipped), then the kernel command line names the booted
//! deployment. Time is given with `--now`; nothing sleeps.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use common::ok;
use ostree_store::Checksum;
use ostree_store::pull::PullStats;
use ostree_store::remote::{PullRequest, Remote};
use sysroot::Sysroot;
use sysroot::bls::BootCounter;
use test_support::{RawServer, Reply};

const OS: &str = "fedora-coreos";
const REF: &str = "fedora/x86_64/coreos/stable";
const V1: &str = "41.20261125.3.0";
const V2: &str = "41.20261201.3.0";
const V3: &str = "41.20261209.3.0";
const MACHINE_ID: &str = "3d1219c7c4c5404aaa1f6d2a48adfda4";

fn oxcore(args: &[&str]) -> Output {
    common::oxcore().args(args).output().unwrap()
}

/// A child process killed when dropped.
struct Kid(Child);

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The build side (a repository and release metadata, served) and one
/// node (a sysroot under a root directory).
struct Fleet {
    tmp: tempfile::TempDir,
    repo_server: common::Server,
    graph: Option<(Kid, String)>,
    commits: Vec<(String, Checksum)>,
    /// Every release with the same kernel and initramfs (one boot
    /// checksum, so boot serials are renumbered on each switch).
    same_kernel: bool,
}

impl Fleet {
    fn build(&self) -> PathBuf {
        self.tmp.path().join("build")
    }
    fn meta(&self) -> PathBuf {
        self.tmp.path().join("meta")
    }
    fn root(&self) -> PathBuf {
        self.tmp.path().join("node")
    }
    fn p(&self, s: &str) -> PathBuf {
        self.root().join(s.trim_start_matches('/'))
    }

    /// v1 and v2 composed on `stable`, v2 rolled out to everyone; the node
    /// booted on v1.
    fn new() -> Fleet {
        Fleet::with(false)
    }

    fn with(same_kernel: bool) -> Fleet {
        let tmp = tempfile::tempdir().unwrap();
        let build = tmp.path().join("build");
        ok(oxcore(&[
            "ostree",
            &format!("--repo={}", build.display()),
            "init",
            "--mode=archive",
        ]));
        let repo_server = common::serve(&build);
        let mut f = Fleet {
            tmp,
            repo_server,
            graph: None,
            commits: Vec::new(),
            same_kernel,
        };
        f.compose(V1);
        // The node: a sysroot with the build repository as its remote.
        let root = f.root();
        let sr = Sysroot::init_fs(&root).unwrap();
        sr.os_init(OS).unwrap();
        let mut repo = ostree_store::Repo::open(&root.join("ostree/repo")).unwrap();
        Remote::set(
            &mut repo,
            "fedora",
            &format!("http://127.0.0.1:{}/", f.repo_server.1),
            &[("gpg-verify".into(), "false".into())],
        )
        .unwrap();
        drop(sr);
        let sr = Sysroot::open(&root).unwrap();
        let c1 = f.commits[0].1;
        let stats = PullStats::default();
        let refs = [c1.to_hex()];
        Remote::load(sr.repo(), "fedora")
            .unwrap()
            .pull(sr.repo(), &PullRequest::new(&refs, &stats))
            .unwrap();
        sr.deploy(
            OS,
            &c1,
            sysroot::origin_for_refspec(&format!("fedora:{REF}")),
            Some("root=LABEL=root rw ignition.platform.id=qemu".into()),
            &Default::default(),
        )
        .unwrap();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/machine-id"), format!("{MACHINE_ID}\n")).unwrap();
        f.boot();
        f.compose(V2);
        f.rollout(V2);
        f.serve_graph();
        f
    }

    fn compose(&mut self, version: &str) {
        let tree = self.tmp.path().join("tree");
        let _ = std::fs::remove_dir_all(&tree);
        for (p, text) in [
            (
                "usr/lib/modules/6.1.0/vmlinuz",
                if self.same_kernel {
                    "kernel".to_string()
                } else {
                    format!("kernel {version}")
                },
            ),
            ("usr/lib/modules/6.1.0/initramfs.img", "initramfs".into()),
            (
                "usr/lib/os-release",
                format!("NAME=\"Fedora CoreOS\"\nID=fedora\nVERSION=\"{version}\"\n"),
            ),
            ("usr/etc/motd", format!("release {version}\n")),
        ] {
            let path = tree.join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let out = ok(oxcore(&[
            "release",
            "compose",
            "--repo",
            self.build().to_str().unwrap(),
            "--metadata",
            self.meta().to_str().unwrap(),
            "--stream",
            "stable",
            "--tree",
            tree.to_str().unwrap(),
            "--version",
            version,
        ]));
        let c = out.split_whitespace().nth(2).unwrap();
        self.commits
            .push((version.to_string(), Checksum::from_hex(c).unwrap()));
    }

    fn rule(&self, args: &[&str]) {
        let meta = self.meta();
        let mut a = vec!["release", args[0], "--metadata", meta.to_str().unwrap()];
        a.extend_from_slice(&["--stream", "stable"]);
        a.extend_from_slice(&args[1..]);
        ok(oxcore(&a));
    }

    /// Opens `version` to the whole fleet.
    fn rollout(&self, version: &str) {
        let start = (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            - 7200)
            .to_string();
        self.rule(&["rollout", "--hours", "1", "--start", &start, version]);
    }

    /// (Re)starts the graph server on the current metadata and points the
    /// node's configuration at it.
    fn serve_graph(&mut self) {
        self.graph = None;
        let mut child = common::oxcore()
            .args([
                "graph",
                "serve",
                "--metadata",
                self.meta().to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
                "--stream",
                "stable",
                "--arch",
                "x86_64",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let addr = test_support::listening_addr(&mut child);
        self.graph = Some((Kid(child), addr.clone()));
        self.configure(&format!("http://{addr}/"), "");
    }

    fn graph_addr(&self) -> String {
        self.graph.as_ref().unwrap().1.clone()
    }

    /// The node's fragment: the graph at `base_url`, reboots recorded,
    /// checks once, and `extra` TOML.
    fn configure(&self, base_url: &str, extra: &str) {
        let dir = self.p("/etc/zincati/config.d");
        std::fs::create_dir_all(&dir).unwrap();
        let reboots = self.tmp.path().join("reboots");
        std::fs::write(
            dir.join("50-test.toml"),
            format!(
                "[cincinnati]\nbase_url = \"{base_url}\"\n[oxcore]\nreboot_command = [\"/bin/sh\", \"-c\", \"echo reboot >> '{}'\"]\n[oxcore.health]\ndeadline_secs = 0\n",
                reboots.display()
            ),
        )
        .unwrap();
        std::fs::write(dir.join("60-extra.toml"), extra).unwrap();
    }

    fn reboots(&self) -> usize {
        std::fs::read_to_string(self.tmp.path().join("reboots"))
            .unwrap_or_default()
            .lines()
            .count()
    }

    /// `oxcore agent --root NODE --once` (at `now`, if given): its line.
    fn once(&self, now: Option<&str>) -> String {
        let root = self.root();
        let mut args = vec!["agent", "--root", root.to_str().unwrap(), "--once"];
        if let Some(n) = now {
            args.extend_from_slice(&["--now", n]);
        }
        ok(oxcore(&args)).trim().to_string()
    }

    fn sysroot(&self) -> Sysroot {
        Sysroot::open(&self.root()).unwrap()
    }

    /// The deployments' versions, default first, with their counters.
    fn deployments(&self) -> Vec<(String, Option<BootCounter>)> {
        self.sysroot()
            .deployments()
            .unwrap()
            .into_iter()
            .map(|d| (d.version.unwrap_or_default(), d.boot_counter))
            .collect()
    }

    /// The machine restarts: `/run` is emptied, the bootloader picks the
    /// first entry with tries left (counting the try), the kernel command
    /// line names it. The booted version.
    fn boot(&self) -> String {
        let list = self.sysroot().deployments().unwrap();
        let i = list
            .iter()
            .position(|d| d.boot_counter.is_none_or(|c| c.left > 0))
            .unwrap_or(0);
        self.boot_entry(i, true)
    }

    /// The machine restarts into deployment `i` (a person's choice at the
    /// boot menu), the bootloader counting the try or not.
    fn boot_entry(&self, i: usize, count: bool) -> String {
        let run = self.p("/run");
        let _ = std::fs::remove_dir_all(&run);
        std::fs::create_dir_all(&run).unwrap();
        // A new boot ID, as the kernel makes one each boot.
        static BOOTS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = BOOTS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let ids = self.p("/proc/sys/kernel/random");
        std::fs::create_dir_all(&ids).unwrap();
        std::fs::write(
            ids.join("boot_id"),
            format!("{:08x}-0000-4000-8000-{:012x}\n", std::process::id(), n),
        )
        .unwrap();
        let sr = self.sysroot();
        let list = sr.deployments().unwrap();
        if let Some(c) = list[i].boot_counter.filter(|_| count) {
            sr.set_boot_counter(
                i,
                Some(BootCounter {
                    left: c.left - 1,
                    done: c.done + 1,
                }),
            )
            .unwrap();
        }
        std::fs::write(run.join("ostree-booted"), "").unwrap();
        std::fs::create_dir_all(self.p("/proc")).unwrap();
        std::fs::write(self.p("/proc/cmdline"), format!("{}\n", list[i].kargs)).unwrap();
        list[i].version.clone().unwrap()
    }

    fn state(&self) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.p("/var/lib/oxcore-agent/state.json")).unwrap())
            .unwrap()
    }

    fn health_script(&self, name: &str, body: &str) {
        let dir = self.p("/etc/oxcore/health.d");
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

fn entry_names(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root.join("boot/loader/entries"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn update_is_staged_finalized_on_trial_and_blessed_when_healthy() {
    let f = Fleet::new();
    let line = f.once(None);
    assert!(
        line.starts_with(&format!(
            "update finalized: {V2} (on trial: 3 boot tries); rebooting"
        )),
        "{line}"
    );
    assert_eq!(f.reboots(), 1);
    assert_eq!(
        f.deployments(),
        [(V2.into(), Some(BootCounter::new(3))), (V1.into(), None)]
    );
    assert_eq!(
        entry_names(&f.root()),
        [
            format!("ostree-1-{OS}.conf"),
            format!("ostree-2-{OS}+3.conf")
        ]
    );
    assert_eq!(f.state()["trial"]["to"]["version"], V2);
    // The new release boots (one try counted) and passes its checks.
    assert_eq!(f.boot(), V2);
    assert_eq!(
        entry_names(&f.root()),
        [
            format!("ostree-1-{OS}.conf"),
            format!("ostree-2-{OS}+2-1.conf")
        ]
    );
    let line = f.once(None);
    assert_eq!(
        line,
        format!("no update: booted release {V2} is the newest offered")
    );
    assert_eq!(
        entry_names(&f.root()),
        [format!("ostree-1-{OS}.conf"), format!("ostree-2-{OS}.conf")]
    );
    assert!(f.state()["trial"].is_null());
    assert_eq!(f.reboots(), 1);
    // The status says so.
    let status = ok(oxcore(&[
        "agent",
        "status",
        "--root",
        f.root().to_str().unwrap(),
    ]));
    assert!(status.contains("State: no_new_update"), "{status}");
    assert!(status.contains(&format!("Booted: {V2}")), "{status}");
    assert!(
        status.contains(&format!("Health: healthy: {V2} passed its checks")),
        "{status}"
    );
}

/// A server in front of the real graph server that records what comes,
/// and takes trial reports (`POST /v1/report`) as the main server will.
fn recording_front(graph: String) -> RawServer {
    RawServer::start(move |req| {
        if req.line.starts_with("POST /v1/report") {
            return Reply::ok(b"{}");
        }
        let (status, _, body) = test_support::http_get(&graph, req.target(), "");
        assert_eq!(status, 200);
        Reply::ok(body.as_bytes())
    })
}

fn reports(front: &RawServer) -> Vec<serde_json::Value> {
    front
        .seen()
        .iter()
        .filter(|s| s.line.starts_with("POST /v1/report"))
        .map(|s| serde_json::from_slice(&s.body).unwrap())
        .collect()
}

#[test]
fn a_failing_health_check_rolls_back_denylists_and_reports() {
    let f = Fleet::new();
    let front = recording_front(f.graph_addr());
    f.configure(&front.url("/"), "");
    assert!(f.once(None).starts_with("update finalized"));
    assert_eq!(f.boot(), V2);
    f.health_script("50-app", "echo the app is down >&2; exit 3");
    let line = f.once(None);
    let script = f.p("/etc/oxcore/health.d/50-app");
    assert_eq!(
        line,
        format!(
            "release {V2} failed health check {}: exit status 3: the app is down; rolled back to {V1} and denylisted {V2}; rebooting (/bin/sh -c echo reboot >> '{}')",
            script.display(),
            f.tmp.path().join("reboots").display()
        )
    );
    assert_eq!(f.reboots(), 2);
    // The previous deployment is the default; the failed one is marked bad.
    assert_eq!(
        f.deployments(),
        [
            (V1.into(), None),
            (V2.into(), Some(BootCounter { left: 0, done: 1 }))
        ]
    );
    let r = reports(&front);
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0]["outcome"], "rolled_back");
    assert_eq!(r[0]["from_version"], V1);
    assert_eq!(r[0]["to_version"], V2);
    assert_eq!(r[0]["failed_check"], script.display().to_string());
    assert_eq!(r[0]["node_uuid"].as_str().unwrap().len(), 32);
    // Back on v1, v2 is never offered again.
    assert_eq!(f.boot(), V1);
    let line = f.once(None);
    assert!(
        line.starts_with(&format!(
            "no update: every update offered is denylisted: {V2} (failed on trial: {}",
            script.display()
        )),
        "{line}"
    );
    assert_eq!(f.reboots(), 2);
}

#[test]
fn a_release_that_never_comes_up_is_rolled_back_by_its_counter() {
    let f = Fleet::new();
    let front = recording_front(f.graph_addr());
    f.configure(&front.url("/"), "");
    assert!(f.once(None).starts_with("update finalized"));
    // Three tries that die before the agent runs (a panic, a hang), then
    // the bootloader falls back to the previous entry.
    for _ in 0..3 {
        assert_eq!(f.boot(), V2);
    }
    assert_eq!(f.boot(), V1);
    let line = f.once(None);
    assert!(
        line.starts_with(&format!(
            "no update: every update offered is denylisted: {V2} (failed on trial: boot:"
        )),
        "{line}"
    );
    assert_eq!(
        f.deployments(),
        [
            (V1.into(), None),
            (V2.into(), Some(BootCounter { left: 0, done: 3 }))
        ]
    );
    let r = reports(&front);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0]["outcome"], "boot_failed");
    assert_eq!(r[0]["failed_check"], "boot");
    assert_eq!(f.reboots(), 1);
}

#[test]
fn a_persons_rollback_is_respected_until_a_newer_release() {
    let mut f = Fleet::new();
    assert!(f.once(None).starts_with("update finalized"));
    assert_eq!(f.boot(), V2);
    f.once(None);
    // The person goes back to v1.
    ok(oxcore(&[
        "rollback",
        "--sysroot",
        f.root().to_str().unwrap(),
    ]));
    assert_eq!(f.boot(), V1);
    let line = f.once(None);
    assert_eq!(
        line,
        format!(
            "no update: every update offered is denylisted: {V2} (left by a person's rollback)"
        )
    );
    assert_eq!(f.reboots(), 1);
    // A newer release is applied.
    f.compose(V3);
    f.rollout(V3);
    f.serve_graph();
    let line = f.once(None);
    assert!(
        line.starts_with(&format!("update finalized: {V3}")),
        "{line}"
    );
}

#[test]
fn periodic_windows_hold_the_reboot_across_a_dst_change() {
    let f = Fleet::new();
    f.configure(
        &format!("http://{}/", f.graph_addr()),
        "[updates]\nstrategy = \"periodic\"\n[updates.periodic]\ntime_zone = \"America/New_York\"\n[[updates.periodic.window]]\ndays = [\"Sun\"]\nstart_time = \"02:30\"\nlength_minutes = 60\n",
    );
    // 2026-03-08 02:30 does not exist in New York (clocks go from 02:00
    // to 03:00): the window opens at 03:30 EDT.
    let line = f.once(Some("2026-03-08T07:00:00Z"));
    assert_eq!(
        line,
        format!(
            "update {V2} staged; reboot pending due to update strategy: outside the maintenance windows; the next opens at Sun 2026-03-08 03:30 EDT (America/New_York)"
        )
    );
    assert_eq!(f.reboots(), 0);
    let staged = f.sysroot().staged().unwrap().unwrap();
    assert_eq!(staged.version.as_deref(), Some(V2));
    assert!(f.sysroot().finalization_locked());
    let line = f.once(Some("2026-03-08T07:45:00Z"));
    assert!(
        line.starts_with(&format!("update finalized: {V2}")),
        "{line}"
    );
    assert_eq!(f.reboots(), 1);
}

#[test]
fn fleet_lock_slot_denied_then_granted_and_released_after_the_next_boot() {
    let f = Fleet::new();
    let dir = f.tmp.path().join("fleetlock");
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[service]\naddress = \"127.0.0.1\"\nport = 0\ntls = false\n[lock]\ndefault_slots = 1\n[embedded]\npath = \"{}\"\n",
            dir.join("db.redb").display()
        ),
    )
    .unwrap();
    let mut child = common::oxcore()
        .args(["fleetlock", "serve", "-c", cfg.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = test_support::listening_addr(&mut child);
    let _server = Kid(child);
    f.configure(
        &format!("http://{}/", f.graph_addr()),
        &format!(
            "[updates]\nstrategy = \"fleet_lock\"\nfleet_lock.base_url = \"http://{addr}/\"\n"
        ),
    );
    let body = |id: &str| {
        format!(
            "{{\n  \"client_params\": {{\n    \"id\": \"{id}\",\n    \"group\": \"default\"\n  }}\n}}"
        )
    };
    let h = "fleet-lock-protocol: true\r\n";
    let (status, _, _) =
        test_support::http_request(&addr, "POST", "/v1/pre-reboot", h, &body("another-node"));
    assert_eq!(status, 200);
    let line = f.once(None);
    assert!(
        line.starts_with(&format!(
            "update {V2} staged; reboot pending due to update strategy: reboot slot not granted: server-side error, code 500: all 1 semaphore slots currently locked (failed_lock)"
        )),
        "{line}"
    );
    assert_eq!(f.reboots(), 0);
    let (status, _, _) =
        test_support::http_request(&addr, "POST", "/v1/steady-state", h, &body("another-node"));
    assert_eq!(status, 200);
    let line = f.once(None);
    assert!(
        line.starts_with(&format!("update finalized: {V2}")),
        "{line}"
    );
    // This node holds the slot now: another is refused.
    let (status, _, _) =
        test_support::http_request(&addr, "POST", "/v1/pre-reboot", h, &body("another-node"));
    assert_eq!(status, 500);
    // After the reboot, healthy: the slot is given back.
    assert_eq!(f.boot(), V2);
    let line = f.once(None);
    assert!(line.starts_with("no update"), "{line}");
    let (status, _, _) =
        test_support::http_request(&addr, "POST", "/v1/pre-reboot", h, &body("another-node"));
    assert_eq!(status, 200);
}

#[test]
fn a_dead_end_writes_zincatis_motd_and_clears_it() {
    let f = Fleet::new();
    f.rule(&["deadend", V1, "--reason", "https://example.invalid/deadend"]);
    let mut f = f;
    f.serve_graph();
    let motd = f.p("/run/motd.d/85-zincati-deadend.motd");
    let line = f.once(None);
    assert_eq!(
        line,
        format!("no update: booted release {V1} is a dead-end: https://example.invalid/deadend")
    );
    assert_eq!(
        std::fs::read_to_string(&motd).unwrap(),
        "This release is a dead-end and will not further auto-update: https://example.invalid/deadend\n"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&motd).unwrap().permissions().mode() & 0o777,
        0o644
    );
    // A person moves the node to v2, which is not a dead-end.
    let sr = f.sysroot();
    let c2 = f.commits[1].1;
    let stats = PullStats::default();
    let refs = [c2.to_hex()];
    Remote::load(sr.repo(), "fedora")
        .unwrap()
        .pull(sr.repo(), &PullRequest::new(&refs, &stats))
        .unwrap();
    let d = sr.deployments().unwrap()[0].clone();
    sr.deploy(OS, &c2, d.origin.clone(), None, &Default::default())
        .unwrap();
    assert_eq!(f.boot(), V2);
    std::fs::create_dir_all(motd.parent().unwrap()).unwrap();
    std::fs::write(&motd, "stale\n").unwrap();
    let line = f.once(None);
    assert!(line.starts_with("no update"), "{line}");
    assert!(!motd.exists());
}

/// A graph offering `to` from `from` (a downgrade the real server never
/// offers), served as a Cincinnati server would.
fn handmade_graph(from: (&str, &Checksum), to: (&str, &Checksum)) -> RawServer {
    let node = |v: &str, c: &Checksum, age: u32| {
        serde_json::json!({
            "version": v,
            "payload": c.to_hex(),
            "metadata": {
                "org.fedoraproject.coreos.scheme": "checksum",
                "org.fedoraproject.coreos.releases.age_index": age.to_string(),
            }
        })
    };
    let g = serde_json::json!({
        "nodes": [node(to.0, to.1, 0), node(from.0, from.1, 1)],
        "edges": [[1, 0]],
    })
    .to_string();
    RawServer::start(move |_| Reply::ok(g.as_bytes()))
}

#[test]
fn a_downgrade_is_refused_unless_allowed() {
    let f = Fleet::new();
    let (c1, c2) = (f.commits[0].1, f.commits[1].1);
    // The node runs v2 (deployed by hand), the graph offers v1.
    assert!(f.once(None).starts_with("update finalized"));
    assert_eq!(f.boot(), V2);
    f.once(None);
    let server = handmade_graph((V2, &c2), (V1, &c1));
    f.configure(&server.url("/"), "");
    // v1 is deployed here already (the rollback): Zincati would skip it as
    // a local deployment; remove it so only the downgrade rule decides.
    f.sysroot().undeploy(1).unwrap();
    let line = f.once(None);
    assert_eq!(
        line,
        format!(
            "no update: the graph offers {V1}, an older release, and downgrades are not allowed by configuration"
        )
    );
    f.configure(&server.url("/"), "[updates]\nallow_downgrade = true\n");
    let line = f.once(None);
    assert!(
        line.starts_with(&format!("update finalized: {V1}")),
        "{line}"
    );
}

#[test]
fn a_release_that_fails_to_deploy_twice_is_denylisted() {
    let f = Fleet::new();
    f.configure(
        &format!("http://{}/", f.graph_addr()),
        "[oxcore]\nmax_deploy_attempts = 2\n",
    );
    // The node's remote serves nothing: the pull fails.
    let mut repo = ostree_store::Repo::open(&f.p("/ostree/repo")).unwrap();
    let empty = f.tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let dead = common::serve(&empty);
    Remote::set(
        &mut repo,
        "fedora",
        &format!("http://127.0.0.1:{}/", dead.1),
        &[("gpg-verify".into(), "false".into())],
    )
    .unwrap();
    let line = f.once(None);
    assert!(
        line.starts_with("failed to stage deployment:")
            && line.ends_with(&format!("(trying to stage {V2} (failed attempts: 1))")),
        "{line}"
    );
    let line = f.once(None);
    assert!(
        line.starts_with(&format!(
            "persistent deploy failure detected, target release '{V2}' abandoned and denylisted for a day after 2 failed attempts:"
        )),
        "{line}"
    );
    let line = f.once(None);
    assert!(
        line.starts_with(&format!(
            "no update: every update offered is denylisted: {V2} (failed to deploy 2 times"
        )),
        "{line}"
    );
    assert_eq!(f.reboots(), 0);
    assert!(f.sysroot().staged().unwrap().is_none());
    // A day later it is tried again.
    let line = f.once(Some("2099-01-01T00:00:00Z"));
    assert!(line.starts_with("failed to stage deployment:"), "{line}");
}

#[test]
fn the_graph_request_is_zincatis_field_by_field() {
    let f = Fleet::new();
    let front = recording_front(f.graph_addr());
    f.configure(
        &front.url("/"),
        "[identity]\nrollout_wariness = 0.25\ngroup = \"workers\"\n",
    );
    f.once(None);
    let seen = front.seen();
    let get = seen.iter().find(|s| s.line.starts_with("GET ")).unwrap();
    let (path, query) = get.target().split_once('?').unwrap();
    assert_eq!(path, "/v1/graph");
    let mut params: Vec<(String, String)> = query
        .split('&')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_string(), util::form_decode(v))
        })
        .collect();
    params.sort();
    // What Zincati computes for this machine ID: systemd's own answer.
    let uuid = node_uuid_by_systemd().unwrap_or_else(|| {
        params
            .iter()
            .find(|(k, _)| k == "node_uuid")
            .unwrap()
            .1
            .clone()
    });
    let mut want = vec![
        ("basearch", std::env::consts::ARCH.to_string()),
        ("group", "workers".into()),
        ("node_uuid", uuid.clone()),
        ("os_checksum", f.commits[0].1.to_hex()),
        ("os_version", V1.into()),
        ("platform", "qemu".into()),
        ("rollout_wariness", "0.250000".into()),
        ("stream", "stable".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect::<Vec<_>>();
    want.sort();
    assert_eq!(params, want);
    // Headers as Zincati's client sends them: lower-case names, JSON
    // accepted, no user agent.
    assert!(
        get.head.contains("\r\naccept: application/json\r\n"),
        "{}",
        get.head
    );
    assert!(get.header("user-agent").is_none(), "{}", get.head);
}

/// `systemd-id128 machine-id --app-specific=<Zincati's ID>` for the
/// test's machine ID, run in a private mount namespace where
/// `/etc/machine-id` is the test's; `None` (a loud skip) without one.
fn node_uuid_by_systemd() -> Option<String> {
    let dir = tempfile::tempdir().unwrap();
    let mid = dir.path().join("machine-id");
    std::fs::write(&mid, format!("{MACHINE_ID}\n")).unwrap();
    let script = format!(
        "mount --bind {} /etc/machine-id && systemd-id128 machine-id --app-specific=de35106b6ec24688b63afddaa156679b",
        mid.display()
    );
    let out = Command::new("unshare")
        .args(["--mount", "sh", "-c", &script])
        .output();
    match out {
        Ok(o) if o.status.success() => {
            Some(String::from_utf8(o.stdout).unwrap().trim().to_string())
        }
        _ => {
            test_support::skip(
                "node_uuid oracle: needs root, unshare and systemd-id128 (systemd); not compared",
            );
            None
        }
    }
}

#[test]
fn a_sysroot_changed_during_the_check_is_not_overwritten() {
    use agent::{Agent, Hooks, ManualClock, Root};
    let f = Fleet::new();
    let root = Root::new(f.root());
    let settings = agent::config::load(&root).unwrap();
    let clock = std::sync::Arc::new(ManualClock::new("2026-12-02T10:00:00Z".parse().unwrap()));
    let mut a = Agent::new(root, settings, clock).unwrap();
    // A person deploys while the agent decides (after its graph check,
    // before it takes the sysroot lock to stage).
    let node = f.root();
    a.set_hooks(Hooks {
        before_stage: Some(Box::new(move || {
            let sr = Sysroot::open(&node).unwrap();
            let d = sr.deployments().unwrap()[0].clone();
            sr.deploy(OS, &d.checksum, d.origin.clone(), None, &Default::default())
                .unwrap();
        })),
    });
    let c = a.cycle().unwrap();
    assert_eq!(
        c.decision,
        format!(
            "not staging {V2}: the deployments changed while the agent was deciding (someone else changed the sysroot); deciding again at the next check"
        )
    );
    assert!(f.sysroot().staged().unwrap().is_none());
    assert_eq!(f.deployments().len(), 2);
    assert_eq!(f.reboots(), 0);
    // The next cycle decides on what is there now.
    a.set_hooks(Hooks::default());
    let c = a.cycle().unwrap();
    assert!(
        c.decision.starts_with(&format!("update finalized: {V2}")),
        "{}",
        c.decision
    );
    assert!(c.rebooted);
}

#[test]
fn interactive_sessions_postpone_the_reboot_ten_times() {
    let f = Fleet::new();
    let sessions = f.p("/run/systemd/sessions");
    std::fs::create_dir_all(&sessions).unwrap();
    std::fs::write(sessions.join("3"), "USER=core\nTTY=pts/0\nSTATE=active\n").unwrap();
    std::fs::create_dir_all(f.p("/dev/pts")).unwrap();
    std::fs::write(f.p("/dev/pts/0"), "").unwrap();
    let line = f.once(None);
    assert_eq!(
        line,
        format!(
            "update {V2} staged; reboot delayed due to active user sessions (1 interactive session(s); 9 postponement(s) left)"
        )
    );
    let told = std::fs::read_to_string(f.p("/dev/pts/0")).unwrap();
    assert!(
        told.contains("Broadcast message from Zincati at "),
        "{told}"
    );
    assert!(told.contains(&format!(
        "New update {V2} is available and has been deployed."
    )));
    assert!(told.contains("or in 10 minutes, whichever comes"), "{told}");
    for left in (0..9).rev() {
        let line = f.once(None);
        assert!(
            line.ends_with(&format!("{left} postponement(s) left)")),
            "{line}"
        );
    }
    assert_eq!(f.reboots(), 0);
    let line = f.once(None);
    assert!(
        line.starts_with(&format!("update finalized: {V2}")),
        "{line}"
    );
    assert_eq!(f.reboots(), 1);
}

#[test]
fn bad_configuration_and_unreadable_state_are_refused_with_where() {
    let f = Fleet::new();
    let root = f.root();
    let run = |extra: &[&str]| {
        let mut args = vec!["agent", "--root", root.to_str().unwrap(), "--once"];
        args.extend_from_slice(extra);
        oxcore(&args)
    };
    // A fragment masked by a link to /dev/null does not count.
    let lib = f.p("/usr/lib/zincati/config.d");
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::write(lib.join("40-x.toml"), "[updates]\nstrategy = \"weekly\"\n").unwrap();
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        format!(
            "error: failed to assemble configuration settings: {}: updates.strategy: unsupported strategy 'weekly'",
            lib.join("40-x.toml").display()
        )
    );
    std::os::unix::fs::symlink("/dev/null", f.p("/etc/zincati/config.d/40-x.toml")).unwrap();
    std::fs::write(
        f.p("/etc/zincati/config.d/70-bad.toml"),
        "[identity]\nrollout_wariness = -0.5\n",
    )
    .unwrap();
    let out = run(&[]);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        format!(
            "error: failed to assemble configuration settings: {}: identity.rollout_wariness: unexpected negative rollout wariness: -0.5",
            f.p("/etc/zincati/config.d/70-bad.toml").display()
        )
    );
    std::fs::write(
        f.p("/etc/zincati/config.d/70-bad.toml"),
        "[agent.timing]\nsteady_interval_secs = \"often\"\n",
    )
    .unwrap();
    let err = String::from_utf8_lossy(&run(&[]).stderr).to_string();
    assert!(
        err.contains("70-bad.toml: failed to parse TOML: TOML parse error at line 2, column 24"),
        "{err}"
    );
    std::fs::remove_file(f.p("/etc/zincati/config.d/70-bad.toml")).unwrap();
    // A damaged state file stops the agent before it acts.
    let state = f.p("/var/lib/oxcore-agent/state.json");
    std::fs::create_dir_all(state.parent().unwrap()).unwrap();
    std::fs::write(&state, "{\"denylist\": [").unwrap();
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}: the agent's state cannot be read (",
            state.display()
        )) && err.contains("refusing to run without it"),
        "{err}"
    );
    assert!(f.sysroot().staged().unwrap().is_none());
    assert_eq!(f.reboots(), 0);
    assert_eq!(std::fs::read_to_string(&state).unwrap(), "{\"denylist\": [");
    std::fs::remove_file(&state).unwrap();
    assert!(f.once(None).starts_with("update finalized"));
}

/// Waits for `READY=1` on a notify socket (systemd's protocol).
fn ready(sock: &std::os::unix::net::UnixDatagram) -> String {
    sock.set_read_timeout(Some(std::time::Duration::from_secs(120)))
        .unwrap();
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).expect("the agent reports READY=1");
    String::from_utf8_lossy(&buf[..n]).to_string()
}

#[test]
fn the_running_agent_answers_update_now_status_and_metrics() {
    let f = Fleet::new();
    // A window that is closed now: three days from today.
    let today = jiff::Zoned::now().weekday().to_monday_zero_offset();
    let day = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"][((today + 3) % 7) as usize];
    f.configure(
        &format!("http://{}/", f.graph_addr()),
        &format!(
            "[agent.timing]\nsteady_interval_secs = 86400\n[updates]\nstrategy = \"periodic\"\n[[updates.periodic.window]]\ndays = [\"{day}\"]\nstart_time = \"00:00\"\nlength_minutes = 60\n"
        ),
    );
    let notify_path = f.tmp.path().join("notify");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    let root = f.root();
    let child = common::oxcore()
        .args(["agent", "--root", root.to_str().unwrap()])
        .env("NOTIFY_SOCKET", &notify_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _agent = Kid(child);
    assert!(ready(&notify).contains("READY=1"));
    let out = ok(oxcore(&[
        "agent",
        "update-now",
        "--root",
        root.to_str().unwrap(),
    ]));
    assert!(
        out.starts_with(&format!(
            "update {V2} staged; reboot pending due to update strategy: outside the maintenance windows; the next opens at {day} "
        )),
        "{out}"
    );
    assert_eq!(f.reboots(), 0);
    // Another agent on the same node is refused.
    let second = oxcore(&["agent", "--root", root.to_str().unwrap(), "--once"]);
    assert_eq!(second.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&second.stderr)
            .contains("another oxcore agent is running on this node"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let status: serde_json::Value = serde_json::from_str(&ok(oxcore(&[
        "agent",
        "status",
        "--root",
        root.to_str().unwrap(),
        "--json",
    ])))
    .unwrap();
    assert_eq!(status["status"]["state"], "update_staged");
    assert_eq!(status["status"]["target"]["version"], V2);
    assert!(status["status"]["last_check"].is_string());
    // Metrics as Zincati serves them: connect, read, closed.
    let mut s =
        std::os::unix::net::UnixStream::connect(root.join("run/zincati/public/metrics.promsock"))
            .unwrap();
    let mut text = String::new();
    use std::io::Read;
    s.read_to_string(&mut text).unwrap();
    for want in [
        "zincati_updates_strategy_mode{strategy=\"periodic\"} 1",
        "zincati_cincinnati_update_checks_total 1",
        "zincati_update_agent_updates_enabled 1",
        "zincati_updates_strategy_periodic_schedule_length_minutes 60",
        "zincati_updates_strategy_can_finalize_responses_total{response=\"deny\"} 2",
        &format!(
            "zincati_identity_os_info{{os_version=\"{V1}\",basearch=\"{}\",stream=\"stable\",platform=\"qemu\"}} 1",
            std::env::consts::ARCH
        ),
    ] {
        assert!(text.contains(want), "{want} not in\n{text}");
    }
}

#[test]
fn the_shipped_fragments_give_zincatis_defaults() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = tmp.path().join("usr/lib/zincati/config.d");
    std::fs::create_dir_all(&lib).unwrap();
    let dist = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../dist/zincati/config.d"
    ));
    for e in std::fs::read_dir(dist).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), lib.join(e.file_name())).unwrap();
    }
    let s = agent::config::load(&agent::Root::new(tmp.path())).unwrap();
    assert_eq!(s.steady_interval, std::time::Duration::from_secs(300));
    assert_eq!(
        s.cincinnati_base_url,
        "https://updates.coreos.fedoraproject.org"
    );
    assert_eq!(s.group, "default");
    assert!(s.enabled && !s.allow_downgrade);
    assert_eq!(s.strategy, agent::config::StrategyConfig::Immediate);
    assert_eq!((s.node_uuid, s.rollout_wariness), (None, None));
    assert_eq!(s.oxcore.reboot_command, ["systemctl", "reboot"]);
    assert!(s.oxcore.health.enabled);
    assert_eq!(s.oxcore.health.boot_tries, 3);
    // The unit file is one systemd accepts, where systemd is here.
    let unit = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../dist/systemd/system/oxcore-agent.service"
    );
    match Command::new("systemd-analyze")
        .args(["verify", unit])
        .output()
    {
        Ok(o) => {
            let err = String::from_utf8_lossy(&o.stderr);
            // The binary is not installed at /usr/bin here; anything else
            // is a mistake in the unit.
            for line in err.lines() {
                assert!(
                    line.contains("/usr/bin/oxcore is not executable")
                        || line.contains("man oxcore-agent(8)"),
                    "{err}"
                );
            }
        }
        Err(_) => test_support::skip("systemd-analyze not installed; unit file not verified"),
    }
}

#[test]
fn coming_back_on_the_old_release_after_a_reboot_denylists_the_new_one() {
    let f = Fleet::new();
    assert!(f.once(None).starts_with("update finalized"));
    // The agent runs again before the machine restarted: it reboots again
    // (the update stays).
    let line = f.once(None);
    assert!(
        line.starts_with(&format!("update {V2} finalized; rebooting")),
        "{line}"
    );
    assert_eq!(f.reboots(), 2);
    // The machine restarts, but on the previous release although the new
    // one is the default, with no try counted (a person at the boot menu,
    // or a bootloader that does not count and fell back).
    assert_eq!(f.boot_entry(1, false), V1);
    let line = f.once(None);
    assert!(
        line.starts_with(&format!(
            "no update: every update offered is denylisted: {V2} (left: the machine came back on the previous release"
        )),
        "{line}"
    );
    assert_eq!(f.reboots(), 2);
    // The previous release is the default again: no loop back into v2.
    assert_eq!(f.deployments()[0].0, V1);
}

#[test]
fn health_checks_that_leave_children_or_never_answer_are_bounded() {
    let f = Fleet::new();
    std::fs::write(
        f.p("/etc/zincati/config.d/70-deadline.toml"),
        "[oxcore.health]\ndeadline_secs = 1\n",
    )
    .unwrap();
    assert!(f.once(None).starts_with("update finalized"));
    assert_eq!(f.boot(), V2);
    // A check that exits at once but leaves a child holding its output
    // open, and a file that is not executable (skipped): healthy.
    f.health_script("10-detach", "sleep 600 &\nexit 0");
    std::fs::write(f.p("/etc/oxcore/health.d/README"), "notes\n").unwrap();
    let line = f.once(None);
    assert_eq!(
        line,
        format!("no update: booted release {V2} is the newest offered")
    );
    // v3 on trial, with a check that never answers: killed at the
    // deadline, and the release rolled back.
    let mut f = f;
    f.compose(V3);
    f.rollout(V3);
    f.serve_graph();
    std::fs::write(
        f.p("/etc/zincati/config.d/70-deadline.toml"),
        "[oxcore.health]\ndeadline_secs = 1\n",
    )
    .unwrap();
    assert!(f.once(None).starts_with(&format!("update finalized: {V3}")));
    assert_eq!(f.boot(), V3);
    f.health_script("20-hang", "sleep 600");
    let line = f.once(None);
    assert!(
        line.starts_with(&format!(
            "release {V3} failed health check {}: did not finish within ",
            f.p("/etc/oxcore/health.d/20-hang").display()
        )),
        "{line}"
    );
    assert!(line.contains("s and was killed; rolled back to"), "{line}");
    assert_eq!(f.deployments()[0].0, V2);
}

#[test]
fn with_one_kernel_for_both_releases_nothing_is_judged_before_the_reboot() {
    // The new deployment takes boot serial 0 of the shared boot checksum,
    // so by the kernel command line the running system looks like it.
    let f = Fleet::with(true);
    assert!(f.once(None).starts_with("update finalized"));
    let line = f.once(None);
    assert!(
        line.starts_with(&format!("update {V2} finalized; rebooting")),
        "{line}"
    );
    assert_eq!(
        f.deployments(),
        [(V2.into(), Some(BootCounter::new(3))), (V1.into(), None)]
    );
    assert!(f.state()["trial"].is_object());
    // After the reboot it is judged, and kept.
    assert_eq!(f.boot(), V2);
    let line = f.once(None);
    assert!(line.starts_with("no update"), "{line}");
    assert_eq!(f.deployments(), [(V2.into(), None), (V1.into(), None)]);
}
