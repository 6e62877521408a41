//! `prepare-root`: the initramfs step that turns the physical root mounted
//! at `/sysroot` into the booted deployment, as `ostree-prepare-root` does.
//!
//! From `ostree=/ostree/boot.N/<os>/<bootcsum>/<serial>` on the kernel
//! command line it finds the deployment by reading the link farm one link
//! at a time (each target must have the shape OSTree writes, so no link can
//! lead outside the sysroot), then:
//!
//! 1. binds the deployment on a staging mount point (`<sysroot>.tmp`);
//! 2. binds the OS's shared `ostree/deploy/<os>/var` on its `/var`;
//! 3. makes its `/usr` a read-only bind mount;
//! 4. moves the physical root to its `/sysroot`;
//! 5. moves the staging mount to `<sysroot>`, where the initramfs's
//!    `switch_root` finds the deployment as the new `/`.

use std::path::{Path, PathBuf};

use rustix::mount::{MountFlags, mount_bind, mount_move, mount_remount};

use crate::{Error, Result, bls, io_err};

fn msg(s: impl Into<String>) -> Error {
    Error::Msg(s.into())
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains('/')
}

/// The deployment `cmdline`'s `ostree=` names, as (path, os).
pub fn resolve(sysroot: &Path, cmdline: &str) -> Result<(PathBuf, String)> {
    let arg = cmdline
        .split_whitespace()
        .find_map(|a| a.strip_prefix("ostree="))
        .ok_or_else(|| msg("No ostree= kernel argument found"))?;
    let (bootversion, os, bootcsum, serial) = bls::parse_ostree_arg(arg)
        .ok_or_else(|| msg(format!("Invalid ostree= argument '{arg}'")))?;
    if !valid_name(&os) || !valid_name(&bootcsum) {
        return Err(msg(format!("Invalid ostree= argument '{arg}'")));
    }
    let link = sysroot.join(format!("ostree/boot.{bootversion}"));
    let farm = std::fs::read_link(&link).map_err(|e| io_err(&link, e))?;
    let farm = farm.to_string_lossy().into_owned();
    let expected = format!("boot.{bootversion}.");
    if !(farm.starts_with(&expected) && matches!(&farm[expected.len()..], "0" | "1")) {
        return Err(msg(format!("{}: unexpected target {farm}", link.display())));
    }
    let entry = sysroot.join(format!("ostree/{farm}/{os}/{bootcsum}/{serial}"));
    let target = std::fs::read_link(&entry).map_err(|e| io_err(&entry, e))?;
    let target = target.to_string_lossy().into_owned();
    let name = target
        .strip_prefix(&format!("../../../deploy/{os}/deploy/"))
        .filter(|n| valid_name(n))
        .ok_or_else(|| msg(format!("{}: unexpected target {target}", entry.display())))?;
    let deployment = sysroot.join(format!("ostree/deploy/{os}/deploy/{name}"));
    if !deployment.join("usr").is_dir() {
        return Err(msg(format!(
            "{}: not a deployment (no usr/)",
            deployment.display()
        )));
    }
    Ok((deployment, os))
}

fn mnt(what: &str, path: &Path, r: rustix::io::Result<()>) -> Result<()> {
    r.map_err(|e| {
        Error::Msg(format!(
            "{what} {}: {}",
            path.display(),
            std::io::Error::from(e)
        ))
    })
}

/// Sets up the deployment `cmdline` names as the root at `sysroot`;
/// `staging` is an empty directory outside it. Returns the deployment's
/// path in the physical root.
pub fn prepare_root(sysroot: &Path, cmdline: &str, staging: &Path) -> Result<PathBuf> {
    let (deployment, os) = resolve(sysroot, cmdline)?;
    std::fs::create_dir_all(staging).map_err(|e| io_err(staging, e))?;
    for dir in ["var", "usr", "sysroot"] {
        if !deployment.join(dir).is_dir() {
            return Err(msg(format!(
                "{}: the deployment has no /{dir} directory",
                deployment.display()
            )));
        }
    }
    mnt(
        "binding the deployment on",
        staging,
        mount_bind(&deployment, staging),
    )?;
    let var = sysroot.join(format!("ostree/deploy/{os}/var"));
    mnt(
        "binding /var from",
        &var,
        mount_bind(&var, staging.join("var")),
    )?;
    let usr = staging.join("usr");
    mnt("binding", &usr, mount_bind(&usr, &usr))?;
    mnt(
        "making read-only",
        &usr,
        mount_remount(&usr, MountFlags::BIND | MountFlags::RDONLY, ""),
    )?;
    mnt(
        "moving the physical root to",
        &staging.join("sysroot"),
        mount_move(sysroot, staging.join("sysroot")),
    )?;
    mnt(
        "moving the deployment to",
        sysroot,
        mount_move(staging, sysroot),
    )?;
    Ok(deployment)
}
