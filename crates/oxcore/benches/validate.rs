//! Validating a large Ignition config: 10,000 files, 1,000 units, 100 users
//! and 20 partitions.
//!
//! Prints the in-library time, the time of the whole `oxcore ignition
//! validate` process, and, when upstream's `ignition-validate` is on the
//! PATH, its time on the same file and the ratio. The config uses spec 3.3.0
//! so that Debian's ignition-validate (2.14) reads it too.
//!
//! Run: `cargo bench -p oxcore --bench validate`

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn large_config(version: &str) -> String {
    let files: Vec<Value> = (0..10_000)
        .map(|i| {
            json!({
                "path": format!("/etc/oxcore/dir{}/file{i}.conf", i % 100),
                "mode": 420,
                "overwrite": true,
                "user": {"name": "core"},
                "contents": {
                    "source": format!("data:,line%20{i}%0A"),
                    "verification": {"hash": format!("sha512-{}", "ab".repeat(64))}
                }
            })
        })
        .collect();
    let units: Vec<Value> = (0..1_000)
        .map(|i| {
            json!({
                "name": format!("oxcore-{i}.service"),
                "enabled": true,
                "contents": format!(
                    "[Unit]\nDescription=unit {i}\n\n[Service]\nType=oneshot\nExecStart=/usr/bin/true {i}\n\n[Install]\nWantedBy=multi-user.target\n"
                ),
                "dropins": [{"name": "10-env.conf", "contents": "[Service]\nEnvironment=A=1\n"}]
            })
        })
        .collect();
    let users: Vec<Value> = (0..100)
        .map(|i| {
            json!({
                "name": format!("user{i}"),
                "uid": 2000 + i,
                "groups": ["wheel", "sudo"],
                "sshAuthorizedKeys": [format!("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{i:040} user{i}")]
            })
        })
        .collect();
    let partitions: Vec<Value> = (0..20)
        .map(|i| {
            json!({
                "number": i + 1,
                "label": format!("part{i}"),
                "startMiB": 1 + i * 100,
                "sizeMiB": 100,
                "typeGuid": "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
            })
        })
        .collect();
    let config = json!({
        "ignition": {"version": version},
        "passwd": {"users": users},
        "storage": {
            "disks": [{"device": "/dev/vdb", "wipeTable": true, "partitions": partitions}],
            "files": files
        },
        "systemd": {"units": units}
    });
    serde_json::to_string_pretty(&config).expect("serializable")
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn time_process(mut cmd: impl FnMut() -> Command, runs: usize) -> Option<Duration> {
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        let out = cmd().output().ok()?;
        samples.push(start.elapsed());
        if !out.status.success() {
            eprintln!("  command failed: {}", String::from_utf8_lossy(&out.stdout));
            return None;
        }
    }
    Some(median(samples))
}

fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let config = large_config("3.3.0");
    let dir = std::env::temp_dir().join(format!("oxcore-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("large.ign");
    std::fs::write(&file, &config).expect("write config");
    println!(
        "config: 10000 files, 1000 units, 100 users, 20 partitions; {} bytes",
        config.len()
    );

    // Warm up, and check the config is valid without findings.
    let (_, report) = ignition_config::parse(config.as_bytes()).expect("valid config");
    assert!(report.is_empty(), "{report}");
    let lib = median(
        (0..21)
            .map(|_| {
                let start = Instant::now();
                let r = ignition_config::parse(config.as_bytes());
                let t = start.elapsed();
                assert!(r.is_ok());
                t
            })
            .collect(),
    );
    println!(
        "oxcore library parse+validate: {:.1} ms (median of 21)",
        ms(lib)
    );

    let exe = env!("CARGO_BIN_EXE_oxcore");
    let ours = time_process(
        || {
            let mut c = Command::new(exe);
            c.args(["ignition", "validate"]).arg(&file);
            c
        },
        11,
    )
    .expect("oxcore ignition validate runs");
    println!(
        "oxcore ignition validate (process): {:.1} ms (median of 11)",
        ms(ours)
    );

    if on_path("ignition-validate") {
        let upstream = time_process(
            || {
                let mut c = Command::new("ignition-validate");
                c.arg(Path::new(&file));
                c
            },
            11,
        );
        match upstream {
            Some(up) => {
                println!(
                    "upstream ignition-validate (process): {:.1} ms (median of 11)",
                    ms(up)
                );
                println!(
                    "ratio upstream/oxcore: {:.1}x (process), {:.1}x (against the library)",
                    up.as_secs_f64() / ours.as_secs_f64(),
                    up.as_secs_f64() / lib.as_secs_f64()
                );
            }
            None => println!("upstream ignition-validate failed on the config; no ratio"),
        }
    } else {
        println!(
            "SKIP ratio: upstream ignition-validate is not on PATH (Debian package `ignition`)"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
