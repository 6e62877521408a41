//! `oxcore demo`: the provisioning and update flows on embedded defaults.
//!
//! Provisioning: Butane → Ignition → the first-boot engine. The demo
//! transpiles the embedded Butane config (the Fedora CoreOS hello-world
//! container service), validates the Ignition config it produces, and
//! applies it to a scratch root. Updates: it composes two small OS
//! releases into an OSTree-format repository, deploys the first into a
//! scratch sysroot, provisions that deployment with the same config,
//! upgrades to the second (the local /etc changes carried over) and rolls
//! back, printing the status at each step.

use std::process::ExitCode;

use anyhow::bail;

/// The Butane config the demo uses.
pub const EXAMPLE_BUTANE: &str = include_str!("../examples/hello.bu");

pub fn run(serve: bool) -> anyhow::Result<ExitCode> {
    crate::cli::log_messages_to_stderr();
    println!("oxcore demo: the provisioning flow on embedded defaults\n");
    println!("1. Butane -> Ignition (variant fcos 1.5.0):");
    let outcome = butane::transpile(EXAMPLE_BUTANE.as_bytes(), &butane::Options::default());
    let report = outcome.report.render_raw();
    if !report.is_empty() {
        print!(
            "{}",
            report
                .lines()
                .map(|l| format!("   {l}\n"))
                .collect::<String>()
        );
    }
    let ignition = match outcome.output {
        Ok(json) => json,
        Err(e) => bail!("the embedded Butane config did not translate: {e}"),
    };
    println!("   {} bytes of Ignition JSON", ignition.len());
    let (config, report) = match ignition_config::parse(ignition.as_bytes()) {
        Ok(ok) => ok,
        Err(f) => bail!("the generated Ignition config is invalid: {f}"),
    };
    println!(
        "2. Validate the Ignition config (spec {}):",
        config.ignition.version
    );
    if report.is_empty() {
        println!("   valid, no warnings");
    } else {
        for e in &report.entries {
            println!("   {e}");
        }
    }
    println!("3. What it provisions:");
    for u in &config.passwd.users {
        let n = u.ssh_authorized_keys.len();
        println!(
            "   user {} ({n} SSH key{})",
            u.name,
            if n == 1 { "" } else { "s" }
        );
    }
    for f in &config.storage.files {
        let mode = f
            .mode
            .map_or("default mode".to_string(), |m| format!("mode {m:04o}"));
        let source = f.contents.source.as_deref().unwrap_or("");
        println!("   file {} ({mode}, {source})", f.path);
    }
    for u in &config.systemd.units {
        let state = if u.enabled == Some(true) {
            "enabled"
        } else {
            "not enabled"
        };
        println!("   unit {} ({state})", u.name);
    }
    let scratch = tempfile::tempdir()?;
    println!(
        "4. Apply the files stage to a scratch root ({}):",
        scratch.path().display()
    );
    skeleton(scratch.path())?;
    let applied = ignition_engine::apply(&config, scratch.path())?;
    println!(
        "   {} files, directories and links; {} users; {} units",
        applied.nodes, applied.accounts, applied.units
    );
    for path in [
        "etc/hostname",
        "etc/systemd/system/hello.service",
        "etc/systemd/system-preset/20-ignition.preset",
        "home/core/.ssh/authorized_keys.d/ignition",
    ] {
        let full = scratch.path().join(path);
        match std::fs::symlink_metadata(&full) {
            Ok(m) => {
                use std::os::unix::fs::{MetadataExt, PermissionsExt};
                println!(
                    "   /{path}  mode {:04o}  owner {}:{}  {} bytes",
                    m.permissions().mode() & 0o7777,
                    m.uid(),
                    m.gid(),
                    m.len()
                );
            }
            Err(_) => println!("   /{path}  (not written)"),
        }
    }
    let passwd = std::fs::read_to_string(scratch.path().join("etc/passwd")).unwrap_or_default();
    if let Some(core) = passwd.lines().find(|l| l.starts_with("core:")) {
        println!("   /etc/passwd: {core}");
    }
    println!(
        "\nThe Ignition config:\n{}",
        ignition_config::to_json_pretty(&config)
    );
    updates(&config, serve)?;
    Ok(ExitCode::SUCCESS)
}

/// The branch the demo's releases are committed to.
const BRANCH: &str = "fedora/x86_64/coreos/stable";

/// A small OS release: kernel, initramfs, os-release, default /etc.
fn compose(dir: &std::path::Path, version: &str, motd: &str) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    let os_release = format!(
        "NAME=\"Fedora CoreOS\"\nID=fedora\nVERSION=\"{version}\"\nPRETTY_NAME=\"Fedora CoreOS {version}\"\n"
    );
    let files: [(&str, &str); 9] = [
        ("usr/lib/modules/6.1.0/vmlinuz", "demo kernel 6.1.0"),
        ("usr/lib/modules/6.1.0/initramfs.img", "demo initramfs"),
        ("usr/lib/os-release", &os_release),
        ("usr/etc/os-release", &os_release),
        ("usr/etc/motd", motd),
        ("usr/etc/passwd", "root:x:0:0:root:/root:/bin/bash\n"),
        ("usr/etc/group", "root:x:0:\nwheel:x:10:\n"),
        ("usr/etc/shadow", "root:*:19000:0:99999:7:::\n"),
        ("usr/etc/gshadow", "root:*::\nwheel:*::\n"),
    ];
    for (path, text) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().expect("has a parent"))?;
        std::fs::write(&p, text)?;
    }
    use std::os::unix::fs::PermissionsExt;
    for secret in ["usr/etc/shadow", "usr/etc/gshadow"] {
        std::fs::set_permissions(dir.join(secret), std::fs::Permissions::from_mode(0o600))?;
    }
    std::fs::create_dir_all(dir.join("var"))?;
    std::fs::create_dir_all(dir.join("sysroot"))?;
    std::os::unix::fs::symlink("var/home", dir.join("home"))?;
    Ok(())
}

fn commit_release(
    repo: &ostree_store::Repo,
    tree: &std::path::Path,
    version: &str,
) -> anyhow::Result<ostree_store::Checksum> {
    use ostree_store::commit::{CommitInfo, CommitOptions, TreeBuilder, write_commit};
    let parent = repo.read_ref(None, BRANCH)?;
    let tx = repo.begin()?;
    let mut builder = TreeBuilder::new(&tx, CommitOptions::default());
    builder.add_dir(tree)?;
    let root = builder.write()?;
    let info = CommitInfo {
        subject: format!("Fedora CoreOS {version}"),
        parent,
        metadata: vec![(
            "version".into(),
            ostree_store::gvariant::Value::Str(version.into()),
        )],
        ..CommitInfo::default()
    };
    let c = write_commit(&tx, &info, root)?;
    tx.set_ref(None, BRANCH, Some(c));
    tx.commit()?;
    Ok(c)
}

fn status(sr: &sysroot::Sysroot) -> anyhow::Result<()> {
    let mut out = Vec::new();
    crate::admin::print_status(sr, false, &mut out)?;
    for line in String::from_utf8_lossy(&out).lines() {
        println!("   {line}");
    }
    Ok(())
}

fn updates(config: &ignition_config::types::Config, serve: bool) -> anyhow::Result<()> {
    let scratch = tempfile::tempdir()?;
    let root = scratch.path().join("sysroot");
    let tree = scratch.path().join("tree");
    println!(
        "\n5. Compose two OS releases into the node's repository ({}/ostree/repo):",
        root.display()
    );
    let sr = sysroot::Sysroot::init_fs(&root)?;
    sr.os_init("fedora-coreos")?;
    compose(
        &tree,
        "41.20261125.3.0",
        "Welcome to Fedora CoreOS 41.20261125.3.0\n",
    )?;
    let first = commit_release(sr.repo(), &tree, "41.20261125.3.0")?;
    println!("   {BRANCH} 41.20261125.3.0 = {first}");
    compose(
        &tree,
        "41.20261209.3.0",
        "Welcome to Fedora CoreOS 41.20261209.3.0\n",
    )?;
    let tree2 = scratch.path().join("tree2");
    std::fs::rename(&tree, &tree2)?;
    println!("6. Deploy the first release:");
    let origin = sysroot::origin_for_refspec(BRANCH);
    let kargs = Some("root=LABEL=root rw ignition.platform.id=qemu".to_string());
    let d = sr.deploy(
        "fedora-coreos",
        &first,
        origin.clone(),
        kargs,
        &Default::default(),
    )?;
    status(&sr)?;
    let dep = root.join(d.rel_dir());
    println!("7. Provision it with the Ignition config (first boot):");
    // What tmpfiles.d makes in /var at boot, for useradd's home directory.
    std::fs::create_dir_all(dep.join("var/home"))?;
    let applied = ignition_engine::apply(config, &dep)?;
    println!(
        "   {} files, directories and links; {} users; {} units written into /etc and /var",
        applied.nodes, applied.accounts, applied.units
    );
    std::fs::write(dep.join("etc/motd.d-local"), "a file the admin added\n")?;
    println!("8. Upgrade to the second release (the node's /etc changes are merged):");
    let second = commit_release(sr.repo(), &tree2, "41.20261209.3.0")?;
    let d2 = sr.deploy("fedora-coreos", &second, origin, None, &Default::default())?;
    status(&sr)?;
    let dep2 = root.join(d2.rel_dir());
    let hostname = std::fs::read_to_string(dep2.join("etc/hostname")).unwrap_or_default();
    let core = std::fs::read_to_string(dep2.join("etc/passwd"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("core:"))
        .map(str::to_string);
    let motd = std::fs::read_to_string(dep2.join("etc/motd")).unwrap_or_default();
    println!("   kept:     /etc/hostname = {:?}", hostname.trim());
    println!(
        "   kept:     /etc/passwd core = {}",
        core.as_deref().unwrap_or("(missing)")
    );
    println!(
        "   kept:     /etc/motd.d-local ({})",
        if dep2.join("etc/motd.d-local").exists() {
            "present"
        } else {
            "missing"
        }
    );
    println!("   updated:  /etc/motd = {:?}", motd.trim());
    println!("9. Roll back to the first release:");
    sr.rollback()?;
    status(&sr)?;
    graph(
        &scratch.path().join("metadata"),
        &[(first, "41.20261125.3.0"), (second, "41.20261209.3.0")],
        serve,
    )
}

/// Publishes the two releases on the stable stream (the second rolling out
/// over a day), serves the update graph, and asks it as a node of the first.
fn graph(
    meta_dir: &std::path::Path,
    releases: &[(ostree_store::Checksum, &str)],
    serve: bool,
) -> anyhow::Result<()> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    println!("10. Publish the releases on stream stable and serve the update graph:");
    let meta = release::publish::Metadata::new(meta_dir, "http://127.0.0.1");
    for (c, v) in releases {
        let hex = c.to_hex();
        let new = release::publish::NewRelease {
            stream: "stable",
            version: v,
            arch: "x86_64",
            commit: &hex,
            media: &Default::default(),
        };
        meta.add_release(&new, now, None)?;
    }
    let rollout = release::publish::Rule::Rollout {
        start_epoch: now - 6 * 3600,
        start_percentage: 0.0,
        duration_minutes: Some(24 * 60),
    };
    meta.set_rule("stable", releases[1].1, rollout, now, None)?;
    let settings = graph_server::Settings::from_toml(&format!(
        "metadata = {:?}\nlisten = [\"127.0.0.1:0\"]\nstreams = [\"stable\"]\narchitectures = [\"x86_64\"]",
        meta_dir.display().to_string()
    ))
    .map_err(|e| anyhow::anyhow!(e))?;
    let source = std::sync::Arc::new(graph_server::DirSource(meta_dir.to_path_buf()));
    let running =
        graph_server::start(settings, source, None, serve).map_err(|e| anyhow::anyhow!(e))?;
    let addr = running.addrs[0];
    let client = http_client::Client::builder().build()?;
    for (who, wariness) in [
        ("an eager node (wariness 0.1)", "0.100000"),
        ("a wary node (wariness 0.9)", "0.900000"),
    ] {
        let url = format!(
            "http://{addr}/v1/graph?basearch=x86_64&stream=stable&os_version={}&node_uuid=0123456789abcdef0123456789abcdef&platform=qemu&rollout_wariness={wariness}",
            releases[0].1
        );
        let body = client.get(&url)?.read_to_vec(1 << 20)?;
        let g: serde_json::Value = serde_json::from_slice(&body)?;
        let offered = g["edges"].as_array().map_or(0, Vec::len);
        println!(
            "   {who}: {} releases in the graph, {}",
            g["nodes"].as_array().map_or(0, Vec::len),
            if offered > 0 {
                format!("may update to {}", releases[1].1)
            } else {
                "must wait for the rollout".to_string()
            }
        );
    }
    println!(
        "   the rollout of {} is open to 25% of the fleet (6 h of 24)",
        releases[1].1
    );
    println!(
        "   dashboard: http://{addr}/   graph: http://{addr}/v1/graph?basearch=x86_64&stream=stable"
    );
    fleetlock(meta_dir.parent().unwrap_or(meta_dir))?;
    update_agent(&meta_dir.parent().unwrap_or(meta_dir).join("sysroot"), addr)?;
    if serve {
        println!("   serving until interrupted (Ctrl-C)");
        running.join().map_err(|e| anyhow::anyhow!(e))?;
    }
    Ok(())
}

/// A FleetLock server on the embedded store with one reboot slot, and two
/// nodes asking for it as Zincati does.
fn fleetlock(dir: &std::path::Path) -> anyhow::Result<()> {
    println!("11. Reboot slots: a FleetLock server (embedded store, one slot) and two nodes:");
    let text = format!(
        "[service]\naddress = \"127.0.0.1\"\nport = 0\ntls = false\n[embedded]\npath = {:?}\n",
        dir.join("fleetlock.redb").display().to_string()
    );
    let config = fleetlock::Config::parse(&text, std::path::Path::new("(demo)"))?;
    let running = fleetlock::start(config, false)?;
    let client = http_client::Client::builder().build()?;
    let ask = |api: &str, node: &str| -> anyhow::Result<String> {
        let body = format!(
            "{{\n  \"client_params\": {{\n    \"id\": \"{node}\",\n    \"group\": \"default\"\n  }}\n}}"
        );
        let req =
            http_client::Request::new("POST", &format!("http://{}/v1/{api}", running.service))
                .header("fleet-lock-protocol", "true")
                .body(body.into_bytes());
        let r = client.send(&req)?;
        let status = r.status();
        let text = String::from_utf8_lossy(&r.read_to_vec(1 << 16)?)
            .trim()
            .to_string();
        Ok(if text.is_empty() {
            format!("{status}")
        } else {
            format!("{status} {text}")
        })
    };
    println!("   node-a pre-reboot:   {}", ask("pre-reboot", "node-a")?);
    println!("   node-b pre-reboot:   {}", ask("pre-reboot", "node-b")?);
    println!("   node-a steady-state: {}", ask("steady-state", "node-a")?);
    println!("   node-b pre-reboot:   {}", ask("pre-reboot", "node-b")?);
    println!("   node-b steady-state: {}", ask("steady-state", "node-b")?);
    running.stop()?;
    Ok(())
}

/// The update agent on the demo's node: it respects the person's rollback,
/// then (once the person lets it) applies the update on trial, and blesses
/// it after the reboot when its health checks pass.
fn update_agent(root: &std::path::Path, graph: std::net::SocketAddr) -> anyhow::Result<()> {
    use std::fs;
    println!(
        "12. The update agent (Zincati's configuration and request; oxcore agent --once) on the node:"
    );
    let sr = sysroot::Sysroot::open(root)?;
    // The machine boots its default deployment.
    let boot = |sr: &sysroot::Sysroot| -> anyhow::Result<()> {
        let list = sr.deployments()?;
        let i = list
            .iter()
            .position(|d| d.boot_counter.is_none_or(|c| c.left > 0))
            .unwrap_or(0);
        if let Some(c) = list[i].boot_counter {
            let next = sysroot::bls::BootCounter {
                left: c.left - 1,
                done: c.done + 1,
            };
            sr.set_boot_counter(i, Some(next))?;
        }
        let _ = fs::remove_dir_all(root.join("run"));
        fs::create_dir_all(root.join("run"))?;
        fs::write(root.join("run/ostree-booted"), "")?;
        fs::create_dir_all(root.join("proc"))?;
        fs::write(root.join("proc/cmdline"), &list[i].kargs)?;
        Ok(())
    };
    boot(&sr)?;
    fs::create_dir_all(root.join("etc"))?;
    fs::write(
        root.join("etc/machine-id"),
        "0123456789abcdef0123456789abcdef\n",
    )?;
    let conf = root.join("etc/zincati/config.d");
    fs::create_dir_all(&conf)?;
    fs::write(
        conf.join("50-demo.toml"),
        format!(
            "[cincinnati]\nbase_url = \"http://{graph}/\"\n[identity]\nrollout_wariness = 0.1\n[oxcore]\nreboot_command = [\"true\"]\n[oxcore.health]\ndeadline_secs = 0\n"
        ),
    )?;
    let once = || -> anyhow::Result<String> {
        let r = agent::Root::new(root);
        let settings = agent::config::load(&r)?;
        let mut a = agent::Agent::new(r, settings, std::sync::Arc::new(agent::SystemClock))?;
        Ok(a.cycle()?.decision)
    };
    println!("   check: {}", once()?);
    println!("   (the person removes the release they left, and the agent's record of it)");
    sr.undeploy(1)?;
    fs::remove_file(root.join("var/lib/oxcore-agent/state.json"))?;
    println!("   check: {}", once()?);
    let entries = |root: &std::path::Path| -> anyhow::Result<String> {
        let mut names: Vec<String> = fs::read_dir(root.join("boot/loader/entries"))?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<Result<_, _>>()?;
        names.sort();
        Ok(names.join(", "))
    };
    println!("   boot entries: {}", entries(root)?);
    println!("   the node reboots into it (the bootloader counts one try):");
    boot(&sr)?;
    println!("   boot entries: {}", entries(root)?);
    println!("   check: {}", once()?);
    println!("   boot entries: {} (healthy: marked good)", entries(root)?);
    Ok(())
}

/// The account databases a distribution root has, so that the shadow tools
/// can add users to the scratch root.
fn skeleton(root: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let etc = root.join("etc");
    std::fs::create_dir_all(&etc)?;
    let files = [
        ("passwd", "root:x:0:0:root:/root:/bin/bash\n", 0o644),
        ("group", "root:x:0:\nwheel:x:10:\n", 0o644),
        ("shadow", "root:*:19000:0:99999:7:::\n", 0o600),
        ("gshadow", "root:*::\nwheel:*::\n", 0o600),
    ];
    for (name, text, mode) in files {
        std::fs::write(etc.join(name), text)?;
        std::fs::set_permissions(etc.join(name), std::fs::Permissions::from_mode(mode))?;
    }
    std::fs::create_dir_all(root.join("home"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_config_translates_and_validates() {
        let outcome = butane::transpile(EXAMPLE_BUTANE.as_bytes(), &butane::Options::default());
        assert!(
            outcome.report.entries.is_empty(),
            "{}",
            outcome.report.render_raw()
        );
        let json = outcome.output.unwrap();
        let (config, report) = ignition_config::parse(json.as_bytes()).unwrap();
        assert!(report.is_empty(), "{report}");
        assert_eq!(config.ignition.version, "3.4.0");
        assert_eq!(config.systemd.units[0].name, "hello.service");
        assert_eq!(config.storage.files[0].mode, Some(0o644));
        assert_eq!(
            config.storage.files[0].contents.source.as_deref(),
            Some("data:,oxcore-demo")
        );
    }
}
