//! RAID arrays, created with `mdadm --create` as upstream does.

use std::path::Path;
use std::time::{Duration, Instant};

use ignition_config::types::Raid;

use super::command::{Ctx, DiskError};

/// The `mdadm --create` command line upstream runs for `raid`.
pub fn raid_create_command(raid: &Raid) -> Vec<String> {
    let spares = raid.spares.unwrap_or(0);
    let mut args = vec![
        "mdadm".to_string(),
        "--create".to_string(),
        raid.name.clone(),
        "--force".to_string(),
        "--run".to_string(),
        "--homehost".to_string(),
        "any".to_string(),
        "--level".to_string(),
        raid.level.clone().unwrap_or_default(),
        "--raid-devices".to_string(),
        (raid.devices.len() as i64 - spares).to_string(),
    ];
    if spares > 0 {
        args.extend(["--spare-devices".to_string(), spares.to_string()]);
    }
    args.extend(raid.options.iter().cloned());
    args.extend(raid.devices.iter().cloned());
    args
}

/// The device node of the array: the name itself when it is under `/dev`,
/// else `/dev/md/NAME`.
pub fn raid_device(raid: &Raid) -> String {
    if raid.name.starts_with("/dev") {
        raid.name.clone()
    } else {
        format!("/dev/md/{}", raid.name)
    }
}

/// Creates the array with `mdadm` and waits (up to 90 seconds, systemd's
/// default device timeout) for its device node. `at` is the config path.
pub fn create_raid(raid: &Raid, at: &str) -> Result<(), DiskError> {
    let device = raid_device(raid);
    let ctx = Ctx {
        at,
        device: &device,
    };
    ctx.run("mdadm failed", &raid_create_command(raid))?;
    let deadline = Instant::now() + Duration::from_secs(90);
    while !Path::new(&device).exists() {
        if Instant::now() >= deadline {
            return Err(ctx.refused(format!(
                "failed to wait on raids devs: {} did not appear",
                ignition_config::go_quote(&device)
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}
