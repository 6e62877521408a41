//! Transpiling Butane configs: a typical ~40-line config, and a large one
//! (5,000 files, 500 units and a 2,000-file tree under `--files-dir`).
//!
//! Prints the median time of the whole `oxcore butane` process and, when
//! an upstream `butane` is found (`$BUTANE_ORACLE`, else `butane` on the
//! PATH), its time on the same input and the ratio.
//!
//! Run: `cargo bench -p oxcore --bench butane`

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const TYPICAL: &str = r#"variant: fcos
version: 1.5.0
passwd:
  users:
    - name: core
      ssh_authorized_keys:
        - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG9ZqVnGxQ8f3zY2vYcRk0p1d0mXr6w1bU8cTqY0eXjY core
      groups: [wheel, sudo]
storage:
  disks:
    - device: /dev/vdb
      wipe_table: true
      partitions:
        - label: data
          number: 1
  filesystems:
    - device: /dev/disk/by-partlabel/data
      format: xfs
      path: /var/data
      with_mount_unit: true
  files:
    - path: /etc/hostname
      mode: 0644
      contents:
        inline: node1
    - path: /etc/motd
      mode: 0644
      contents:
        inline: |
          Welcome to oxcore. This machine is managed by Ignition; local changes to /etc are merged on update.
systemd:
  units:
    - name: app.service
      enabled: true
      contents: |
        [Unit]
        Description=App
        [Service]
        ExecStart=/usr/bin/podman run --rm quay.io/fedora/fedora:latest sleep infinity
        [Install]
        WantedBy=multi-user.target
"#;

fn large(dir: &Path) -> String {
    let tree = dir.join("files/tree");
    for i in 0..2000 {
        let sub = tree.join(format!("d{}", i % 40));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(
            sub.join(format!("f{i}.conf")),
            format!("key{i}=value {i}\nother=line\n"),
        )
        .unwrap();
    }
    let mut s = String::from(
        "variant: fcos\nversion: 1.5.0\nstorage:\n  trees:\n    - local: tree\n      path: /opt/tree\n  files:\n",
    );
    for i in 0..5000 {
        s.push_str(&format!(
            "    - path: /etc/oxcore/f{i}.conf\n      mode: 0644\n      contents:\n        inline: |\n          setting{i}=on\n          # generated file {i} of the large benchmark config\n"
        ));
    }
    s.push_str("systemd:\n  units:\n");
    for i in 0..500 {
        s.push_str(&format!(
            "    - name: svc{i}.service\n      enabled: true\n      contents: |\n        [Service]\n        ExecStart=/usr/bin/true {i}\n        [Install]\n        WantedBy=multi-user.target\n"
        ));
    }
    s
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time(bin: &Path, args: &[&str], file: &Path, runs: usize) -> Option<(Duration, String)> {
    let mut samples = Vec::new();
    let mut out = String::new();
    for _ in 0..runs {
        let start = Instant::now();
        let o = Command::new(bin).args(args).arg(file).output().ok()?;
        samples.push(start.elapsed());
        if !o.status.success() {
            eprintln!(
                "{} failed: {}",
                bin.display(),
                String::from_utf8_lossy(&o.stderr)
            );
            return None;
        }
        out = String::from_utf8_lossy(&o.stdout).into_owned();
    }
    Some((median(samples), out))
}

fn oracle() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BUTANE_ORACLE") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("butane"))
            .find(|b| b.is_file())
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let dir = std::env::temp_dir().join(format!("oxcore-butane-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ours = Path::new(env!("CARGO_BIN_EXE_oxcore"));
    let link = dir.join("butane");
    std::os::unix::fs::symlink(ours, &link).unwrap();
    let upstream = oracle();

    let typical = dir.join("typical.bu");
    std::fs::write(&typical, TYPICAL).unwrap();
    let (t_ours, out_ours) = time(&link, &[], &typical, 51).expect("oxcore butane runs");
    println!(
        "typical config ({} lines): oxcore {:.2} ms (median of 51 processes)",
        TYPICAL.lines().count(),
        ms(t_ours)
    );
    if let Some(up) = &upstream
        && let Some((t_up, out_up)) = time(up, &[], &typical, 21)
    {
        println!(
            "typical config: upstream {:.2} ms; ratio {:.1}x; outputs {}",
            ms(t_up),
            t_up.as_secs_f64() / t_ours.as_secs_f64(),
            if out_up == out_ours {
                "identical"
            } else {
                "DIFFER"
            }
        );
    }

    let big = dir.join("large.bu");
    std::fs::write(&big, large(&dir)).unwrap();
    let files_dir = dir.join("files");
    let fd = files_dir.to_str().unwrap();
    let (t_ours, out_ours) =
        time(&link, &["-d", fd], &big, 5).expect("oxcore butane runs on the large config");
    println!(
        "large config (5000 files, 500 units, 2000-file tree): oxcore {:.1} ms (median of 5)",
        ms(t_ours)
    );
    match &upstream {
        Some(up) => {
            if let Some((t_up, out_up)) = time(up, &["-d", fd], &big, 3) {
                println!(
                    "large config: upstream {:.1} ms; ratio {:.1}x; outputs {}",
                    ms(t_up),
                    t_up.as_secs_f64() / t_ours.as_secs_f64(),
                    if out_up == out_ours {
                        "identical"
                    } else {
                        "DIFFER"
                    }
                );
            }
        }
        None => {
            println!("SKIP ratio: no upstream butane (set BUTANE_ORACLE or put butane on the PATH)")
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
