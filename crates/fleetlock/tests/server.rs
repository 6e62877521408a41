//! The FleetLock server over HTTP on 127.0.0.1, with the embedded store
//! and with a real etcd: airlock's protocol case by case, no group ever
//! holding more than its slots under 100 concurrent clients, restarts,
//! leases, slot changes, etcd going away and coming back.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;

fn embedded(dir: &std::path::Path, extra: &str) -> fleetlock::Running {
    server(&format!(
        "[embedded]\npath = \"{}\"\n{extra}",
        dir.join("fleetlock.redb").display()
    ))
}

fn etcd_config(e: &Etcd, extra: &str) -> String {
    format!(
        "[etcd3]\nendpoints = [\"{}\"]\ntransaction_timeout_ms = 1500\n{extra}",
        e.url()
    )
}

/// airlock's answers, case by case.
fn protocol_cases(srv: &fleetlock::Running) {
    let a = srv.service;
    let body = zincati_body("default", "node-a");
    let (code, text) = request(a, "POST", "/v1/pre-reboot", false, &body);
    assert_eq!(code, 400);
    assert_eq!(
        text,
        "{\"kind\":\"invalid_client_identity\",\"value\":\"failed to validate client identity: wrong 'fleet-lock-protocol' header\"}\n"
    );
    let (code, text) = request(a, "POST", "/v1/pre-reboot", true, "{nope");
    assert_eq!(code, 400);
    assert!(text.contains("invalid_client_identity"), "{text}");
    let (code, text) = lock(a, "nosuch", "node-a");
    assert_eq!(code, 400);
    assert_eq!(
        text,
        "{\"kind\":\"unknown_group\",\"value\":\"unknown group \\\"nosuch\\\"\"}\n"
    );
    assert_eq!(lock(a, "default", "node-a"), (200, String::new()));
    // Recursive for its holder.
    assert_eq!(lock(a, "default", "node-a"), (200, String::new()));
    let (code, text) = lock(a, "default", "node-b");
    assert_eq!(code, 500);
    assert_eq!(
        text,
        "{\"kind\":\"failed_lock\",\"value\":\"all 1 semaphore slots currently locked\"}\n"
    );
    // Release by a non-holder: a success that changes nothing.
    assert_eq!(unlock(a, "default", "node-b").0, 200);
    assert_eq!(lock(a, "default", "node-b").0, 500);
    assert_eq!(unlock(a, "default", "node-a").0, 200);
    assert_eq!(lock(a, "default", "node-b").0, 200);
    assert_eq!(unlock(a, "default", "node-b").0, 200);
    // Unknown fields ignored, as airlock; a body over the limit refused.
    let extra = "{\"client_params\":{\"id\":\"c\",\"group\":\"default\",\"x\":1},\"y\":[]}";
    assert_eq!(request(a, "POST", "/v1/pre-reboot", true, extra).0, 200);
    assert_eq!(unlock(a, "default", "c").0, 200);
    let huge = format!(
        "{{\"client_params\":{{\"id\":\"{}\",\"group\":\"default\"}}}}",
        "x".repeat(10_000)
    );
    assert_eq!(request(a, "POST", "/v1/pre-reboot", true, &huge).0, 413);
    // Only airlock's two paths.
    let (code, text) = request(a, "POST", "/v1/other", true, &body);
    assert_eq!((code, text.as_str()), (404, "404 page not found\n"));
}

/// 100 clients, 20 lock/unlock rounds each, on a group of 3 slots: the
/// clients never count more than 3 holding at once, a sampler never sees
/// more than 3 stored, and everyone got a slot in the end.
fn no_more_holders_than_slots(servers: &[&fleetlock::Running]) {
    let services: Vec<std::net::SocketAddr> = servers.iter().map(|s| s.service).collect();
    let status = servers[0].status.unwrap();
    let holding = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut samples = 0;
            while done.load(Ordering::SeqCst) < 100 {
                let (slots, ids) = holders(status, "workers");
                assert_eq!(slots, 3);
                assert!(ids.len() <= 3, "stored holders beyond the slots: {ids:?}");
                samples += 1;
            }
            samples
        })
    };
    let clients: Vec<_> = (0..100)
        .map(|c| {
            let (holding, most, done) = (holding.clone(), most.clone(), done.clone());
            let services = services.clone();
            std::thread::spawn(move || {
                let id = format!("node-{c}");
                for round in 0..20 {
                    // Behind a load balancer: each request to any server.
                    let service = services[(c + round) % services.len()];
                    let deadline = Instant::now() + Duration::from_secs(300);
                    loop {
                        match lock(service, "workers", &id) {
                            (200, _) => break,
                            (500, body)
                                if body.contains("semaphore slots currently locked")
                                    || body.contains("conflict") => {}
                            other => panic!("{id}: {other:?}"),
                        }
                        assert!(Instant::now() < deadline, "{id} never got a slot");
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    let now = holding.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    assert!(now <= 3, "{now} clients hold a slot of 3");
                    holding.fetch_sub(1, Ordering::SeqCst);
                    let service = services[(c + round + 1) % services.len()];
                    assert_eq!(unlock(service, "workers", &id).0, 200);
                }
                done.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let samples = sampler.join().unwrap();
    assert!(samples > 0);
    assert!(most.load(Ordering::SeqCst) >= 1);
    assert_eq!(holders(status, "workers").1, Vec::<String>::new());
}

const GROUPS: &str = "[lock]\ndefault_slots = 1\n[[lock.groups]]\nname = \"workers\"\nslots = 3\n";

#[test]
fn embedded_speaks_airlocks_protocol() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = embedded(tmp.path(), GROUPS);
    protocol_cases(&srv);
    let (code, metrics) = request(srv.status.unwrap(), "GET", "/metrics", false, "");
    assert_eq!(code, 200);
    for name in [
        "airlock_config_groups 2",
        "airlock_config_semaphore_slots{group=\"workers\"} 3",
        "airlock_database_semaphore_slots{group=\"default\"} 1",
        "airlock_database_semaphore_lock_holders{group=\"default\"} 0",
        "airlock_v1_pre_reboot_incoming_requests_total",
        "airlock_v1_steady_state_incoming_requests_total",
        "oxcore_fleetlock_requests_total{api=\"pre-reboot\",outcome=\"failed_lock\"} 2",
    ] {
        assert!(metrics.contains(name), "no {name} in:\n{metrics}");
    }
    srv.stop().unwrap();
}

#[test]
fn embedded_never_has_more_holders_than_slots() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = embedded(tmp.path(), GROUPS);
    no_more_holders_than_slots(&[&srv]);
    srv.stop().unwrap();
}

#[test]
fn embedded_restarts_lose_no_lock_and_slot_changes_keep_holders() {
    let tmp = tempfile::tempdir().unwrap();
    let two = "[lock]\ndefault_slots = 2\n";
    let srv = embedded(tmp.path(), two);
    assert_eq!(lock(srv.service, "default", "a").0, 200);
    assert_eq!(lock(srv.service, "default", "b").0, 200);
    srv.stop().unwrap();
    // One slot now: a and b keep theirs, c waits for both to leave.
    let srv = embedded(tmp.path(), "[lock]\ndefault_slots = 1\n");
    assert_eq!(
        holders(srv.status.unwrap(), "default"),
        (1, vec!["a".into(), "b".into()])
    );
    assert_eq!(
        lock(srv.service, "default", "c").1,
        "{\"kind\":\"failed_lock\",\"value\":\"all 1 semaphore slots currently locked\"}\n"
    );
    assert_eq!(unlock(srv.service, "default", "a").0, 200);
    assert_eq!(lock(srv.service, "default", "c").0, 500);
    assert_eq!(unlock(srv.service, "default", "b").0, 200);
    assert_eq!(lock(srv.service, "default", "c").0, 200);
    srv.stop().unwrap();
}

#[test]
fn leases_take_a_dead_holders_slot_back() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = embedded(
        tmp.path(),
        "[lock]\ndefault_slots = 1\ndefault_lease_seconds = 1\n",
    );
    assert_eq!(lock(srv.service, "default", "dies").0, 200);
    assert_eq!(lock(srv.service, "default", "waits").0, 500);
    // Not renewed for more than a second: the slot is free again.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(lock(srv.service, "default", "waits").0, 200);
    let (_, metrics) = request(srv.status.unwrap(), "GET", "/metrics", false, "");
    assert!(
        metrics.contains("oxcore_fleetlock_lease_expiries_total{group=\"default\"} 1"),
        "{metrics}"
    );
    srv.stop().unwrap();
}

#[test]
fn manual_release_and_status_from_the_command_lines_library() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("fleetlock.redb");
    let text = format!(
        "[status]\nenabled = true\naddress = \"127.0.0.1\"\nport = {}\n[embedded]\npath = \"{}\"\n",
        free_port(),
        path.display()
    );
    let config = fleetlock::Config::parse(&text, std::path::Path::new("t.toml")).unwrap();
    // No store yet: status shows the configured groups and creates none.
    let st = fleetlock::admin::status(&config).unwrap();
    assert_eq!(
        (st["default"].total_slots, st["default"].holders.len()),
        (1, 0)
    );
    assert!(!path.exists());
    // No server: the store is read and written directly.
    assert!(!fleetlock::admin::release(&config, "default", "x").unwrap());
    let mut served = config.clone();
    served.service = ("127.0.0.1".into(), 0);
    let srv = fleetlock::start(served, false).unwrap();
    assert_eq!(lock(srv.service, "default", "stuck").0, 200);
    // The server holds the store: asked through its status listener.
    let st = fleetlock::admin::status(&config).unwrap();
    assert_eq!(st["default"].holders, ["stuck"]);
    assert!(fleetlock::admin::release(&config, "default", "stuck").unwrap());
    assert_eq!(lock(srv.service, "default", "next").0, 200);
    assert!(matches!(
        fleetlock::admin::release(&config, "nosuch", "x"),
        Err(fleetlock::admin::AdminError::UnknownGroup(_))
    ));
    srv.stop().unwrap();
    // Stopped: read directly again.
    assert_eq!(
        fleetlock::admin::status(&config).unwrap()["default"].holders,
        ["next"]
    );
}

#[test]
fn etcd_speaks_airlocks_protocol_and_key_layout() {
    let Some(e) = Etcd::start("etcd_speaks_airlocks_protocol_and_key_layout") else {
        return;
    };
    let srv = server(&etcd_config(&e, GROUPS));
    protocol_cases(&srv);
    assert_eq!(lock(srv.service, "workers", "z").0, 200);
    assert_eq!(lock(srv.service, "workers", "y").0, 200);
    // The value airlock reads, under airlock's key.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let value = stored(&rt, &e, WORKERS_KEY);
    assert_eq!(
        String::from_utf8(value).unwrap(),
        "{\"total_slots\":3,\"holders\":[\"y\",\"z\"]}"
    );
    // A slot taken by another server (airlock writing the same layout)
    // is seen here: fill the last slot behind this server's back.
    store(
        &rt,
        &e,
        WORKERS_KEY,
        "{\"total_slots\":3,\"holders\":[\"other\",\"y\",\"z\"]}",
    );
    assert_eq!(lock(srv.service, "workers", "w").0, 500);
    // A value that is not a semaphore is refused, never read as empty nor
    // overwritten.
    store(&rt, &e, WORKERS_KEY, "{\"holders\":7}");
    let (code, body) = lock(srv.service, "workers", "w");
    assert_eq!(code, 500, "{body}");
    assert!(
        body.starts_with("{\"kind\":\"failed_lock\",\"value\":\"semaphore of group \\\"workers\\\" is not readable: "),
        "{body}"
    );
    let kept = stored(&rt, &e, WORKERS_KEY);
    assert_eq!(kept, b"{\"holders\":7}");
    srv.stop().unwrap();
}

#[test]
fn an_unreadable_embedded_value_is_refused_not_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("fleetlock.redb");
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let def: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("semaphores");
            let mut t = txn.open_table(def).unwrap();
            t.insert("default", b"not json".as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let srv = embedded(tmp.path(), "");
    let (code, body) = lock(srv.service, "default", "a");
    assert_eq!(code, 500, "{body}");
    assert!(
        body.contains("semaphore of group \\\"default\\\" is not readable"),
        "{body}"
    );
    srv.stop().unwrap();
    let db = redb::Database::open(&path).unwrap();
    let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
    let def: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("semaphores");
    let t = txn.open_table(def).unwrap();
    assert_eq!(
        redb::ReadableTable::get(&t, "default")
            .unwrap()
            .unwrap()
            .value(),
        b"not json"
    );
}

#[test]
fn etcd_never_has_more_holders_than_slots() {
    let Some(e) = Etcd::start("etcd_never_has_more_holders_than_slots") else {
        return;
    };
    // Two servers on one etcd, clients alternating between them, as
    // behind a load balancer.
    let one = server(&etcd_config(&e, GROUPS));
    let two = server(&etcd_config(&e, GROUPS));
    no_more_holders_than_slots(&[&one, &two]);
    one.stop().unwrap();
    two.stop().unwrap();
}

#[test]
fn etcd_down_fails_fast_and_serves_again_when_back() {
    let Some(mut e) = Etcd::start("etcd_down_fails_fast_and_serves_again_when_back") else {
        return;
    };
    let srv = server(&etcd_config(&e, ""));
    assert_eq!(lock(srv.service, "default", "a").0, 200);
    e.stop();
    let start = Instant::now();
    let (code, body) = unlock(srv.service, "default", "a");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
    assert_eq!(code, 500, "{body}");
    assert!(
        body.starts_with(
            "{\"kind\":\"failed_sem_init\",\"value\":\"failed to initialize semaphore manager: "
        ),
        "{body}"
    );
    e.run();
    // Back, without restarting the server; the lock taken before stayed.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match lock(srv.service, "default", "b") {
            (500, body) if body.contains("failed_sem_init") && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200));
            }
            (code, body) => {
                assert_eq!(code, 500, "{body}");
                assert!(
                    body.contains("all 1 semaphore slots currently locked"),
                    "{body}"
                );
                break;
            }
        }
    }
    assert_eq!(unlock(srv.service, "default", "a").0, 200);
    assert_eq!(lock(srv.service, "default", "b").0, 200);
    srv.stop().unwrap();
}

/// airlock's TLS settings: an `https://` endpoint and a client certificate
/// from `client_cert_pub_path`/`client_cert_key_path`, which etcd requires;
/// the private CA through oxcore's `ca_cert_path` (airlock trusts only the
/// system's roots).
#[test]
fn etcd_over_tls_with_a_client_certificate() {
    let test = "etcd_over_tls_with_a_client_certificate";
    let Some(certs) = test_support::Certs::new("fleetlock test CA") else {
        return;
    };
    let server_cert = certs.issue("etcd", &["IP:127.0.0.1"]);
    let client_cert = certs.issue("client", &["DNS:client"]);
    let ca = certs.path("ca.pem");
    let tls = (ca.clone(), server_cert.clone(), certs.path("etcd.key"));
    let Some(e) = Etcd::start_with(test, Some(tls)) else {
        return;
    };
    let with_cert = format!(
        "[etcd3]\nendpoints = [\"{}\"]\ntransaction_timeout_ms = 3000\nca_cert_path = \"{}\"\nclient_cert_pub_path = \"{}\"\nclient_cert_key_path = \"{}\"\n",
        e.url(),
        ca.display(),
        client_cert.display(),
        certs.path("client.key").display()
    );
    let srv = server(&with_cert);
    assert_eq!(lock(srv.service, "default", "a"), (200, String::new()));
    assert_eq!(lock(srv.service, "default", "b").0, 500);
    assert_eq!(unlock(srv.service, "default", "a").0, 200);
    srv.stop().unwrap();
    // Without a client certificate etcd refuses the connection: a clear
    // failed_sem_init, in time.
    let without = format!(
        "[etcd3]\nendpoints = [\"{}\"]\ntransaction_timeout_ms = 1500\nca_cert_path = \"{}\"\n",
        e.url(),
        ca.display()
    );
    let srv = server(&without);
    let start = Instant::now();
    let (code, body) = lock(srv.service, "default", "a");
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_eq!(code, 500, "{body}");
    assert!(body.contains("\"kind\":\"failed_sem_init\""), "{body}");
    srv.stop().unwrap();
}

/// airlock's key of the `workers` group, written out (the layout under test).
const WORKERS_KEY: &str = "com.coreos.airlock/groups/workers/v1/semaphore";

/// The value stored under `key` in etcd, read directly.
fn stored(rt: &tokio::runtime::Runtime, e: &Etcd, key: &str) -> Vec<u8> {
    rt.block_on(async {
        let mut c = etcd_client::Client::connect([e.url()], None).await.unwrap();
        let r = c.get(key, None).await.unwrap();
        r.kvs()[0].value().to_vec()
    })
}

/// Writes `value` under `key` in etcd directly, as another server (airlock)
/// or a person would.
fn store(rt: &tokio::runtime::Runtime, e: &Etcd, key: &str, value: &str) {
    rt.block_on(async {
        let mut c = etcd_client::Client::connect([e.url()], None).await.unwrap();
        c.put(key, value, None).await.unwrap();
    });
}
