//! `oxcore demo`: the provisioning flow on embedded defaults.
//!
//! The flow is Butane → Ignition → first-boot engine. The demo transpiles
//! the embedded Butane config (the Fedora CoreOS hello-world container
//! service), validates the Ignition config it produces, and shows what it
//! would provision. The engine that applies it is not built yet, and the
//! demo says so.

use std::process::ExitCode;

use anyhow::bail;

/// The Butane config the demo uses.
pub const EXAMPLE_BUTANE: &str = include_str!("../examples/hello.bu");

pub fn run() -> anyhow::Result<ExitCode> {
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
    println!("   Disks, platforms and remote resources: not built yet (issue 4).");
    println!(
        "\nThe Ignition config:\n{}",
        ignition_config::to_json_pretty(&config)
    );
    Ok(ExitCode::SUCCESS)
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
