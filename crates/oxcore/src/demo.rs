//! `oxcore demo`: the provisioning flow on embedded defaults.
//!
//! The flow is Butane → Ignition → first-boot engine. Today the Ignition
//! config library exists, so the demo validates the embedded config, the
//! Ignition form of a hello-world container service, and shows what it
//! would provision. The steps not built yet are named as such.

use std::process::ExitCode;

use anyhow::bail;

/// The Ignition config the demo uses: a `core` user with an SSH key, a
/// hostname, and a systemd service that runs a container.
pub const EXAMPLE_IGNITION: &str = include_str!("../examples/hello.ign");

pub fn run() -> anyhow::Result<ExitCode> {
    println!("oxcore demo: the provisioning flow on embedded defaults\n");
    println!("1. Butane -> Ignition: not built yet (issue 3); using the embedded Ignition config.");
    let (config, report) = match ignition_config::parse(EXAMPLE_IGNITION.as_bytes()) {
        Ok(ok) => ok,
        Err(f) => bail!("the embedded config is invalid: {f}"),
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
        println!(
            "   user {} ({} SSH key{})",
            u.name,
            u.ssh_authorized_keys.len(),
            if u.ssh_authorized_keys.len() == 1 {
                ""
            } else {
                "s"
            }
        );
    }
    for f in &config.storage.files {
        let mode = f
            .mode
            .map_or("default mode".to_string(), |m| format!("mode {m:04o}"));
        println!("   file {} ({mode})", f.path);
    }
    for u in &config.systemd.units {
        let state = if u.enabled == Some(true) {
            "enabled"
        } else {
            "not enabled"
        };
        println!("   unit {} ({state})", u.name);
    }
    println!("4. Apply to a scratch root: not built yet (issue 4, the Ignition engine).");
    println!(
        "\nThe same config, as oxcore serializes it:\n{}",
        ignition_config::to_json_pretty(&config)
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_config_is_valid_without_warnings() {
        let (config, report) = ignition_config::parse(EXAMPLE_IGNITION.as_bytes()).unwrap();
        assert!(report.is_empty(), "{report}");
        assert_eq!(config.systemd.units[0].name, "hello.service");
        assert_eq!(config.ignition.version, "3.5.0");
    }
}
