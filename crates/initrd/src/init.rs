//! `/init` of the oxcore initramfs: what Fedora CoreOS's dracut modules
//! and systemd units do in its initramfs, as one sequential program.
//!
//! 1. Mount `/proc`, `/sys`, `/dev` (devtmpfs) and `/run`; load the
//!    modules listed in `/etc/oxcore-initrd/modules`, in order; start
//!    udev (the `/dev/disk/by-*` links configs name) and settle it.
//! 2. Wait for the root device (`root=`, default `LABEL=root`), bounded by
//!    `rd.timeout=` seconds (default 90).
//! 3. On first boot (`ignition.firstboot` on the command line, put there
//!    by the bootloader while the boot partition holds the
//!    `ignition.firstboot` stamp), run Ignition's stages as FCOS orders
//!    its units: the user config the installer left on the boot partition
//!    (`ignition/config.ign`) copied to `/usr/lib/ignition/user.ign`;
//!    `fetch-offline`; `fetch` when the config needs the network; `kargs`
//!    against the boot partition (a change reboots, as
//!    `coreos-kargs-reboot` does); `disks`; the root mounted and
//!    prepared; `mount`; `/var` populated by `systemd-tmpfiles` (as
//!    `ignition-ostree-populate-var`); `files`, `umount`.
//! 4. Mount the root at `/sysroot`, `prepare-root` into the deployment
//!    `ostree=` names, mark `/run/ostree-booted`, move `/dev`, `/proc`,
//!    `/sys` and `/run` into it, free the initramfs and switch root to
//!    `init=` (default `/sbin/init`).
//!
//! Any failure stops the boot: the reason is printed on the console and
//! the machine waits (or powers off or reboots with
//! `oxcore.initrd.failure=poweroff|reboot`); the root is never switched
//! to a half-provisioned system.

use std::fs;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rustix::mount::{MountFlags, UnmountFlags, mount, mount_move, unmount};

use crate::{Error, Result};

const OXCORE: &str = "/usr/bin/oxcore";
const BOOT_MNT: &str = "/run/oxcore-initrd/boot";

fn err(s: impl Into<String>) -> Error {
    Error::Msg(s.into())
}

/// Seconds since the kernel started, for the phase timings on the console.
fn uptime() -> f64 {
    fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

fn say(s: &str) {
    eprintln!("oxcore-initrd: [{:8.3}] {s}", uptime());
}

/// The kernel command line, as words.
#[derive(Debug, Clone, Default)]
pub struct Cmdline(Vec<String>);

impl Cmdline {
    /// Parses a command line (whitespace separated; quotes are not needed
    /// by anything read here).
    pub fn parse(text: &str) -> Cmdline {
        Cmdline(text.split_whitespace().map(str::to_string).collect())
    }

    /// The last value of `key=`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
    }

    /// Whether the bare flag `key` (or `key=1`/`key=true`) is there.
    pub fn flag(&self, key: &str) -> bool {
        self.0.iter().any(|w| w == key) || matches!(self.get(key), Some("1" | "true" | "yes"))
    }

    /// The raw text.
    pub fn text(&self) -> String {
        self.0.join(" ")
    }
}

fn sys_mount(src: &str, target: &str, fs: &str, flags: MountFlags) -> Result<()> {
    fs::create_dir_all(target).map_err(|e| err(format!("{target}: {e}")))?;
    mount(src, target, fs, flags, None).map_err(|e| {
        err(format!(
            "mounting {fs} on {target}: {}",
            std::io::Error::from(e)
        ))
    })
}

fn mount_basics() -> Result<()> {
    let nosuid = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    sys_mount("proc", "/proc", "proc", nosuid)?;
    sys_mount("sysfs", "/sys", "sysfs", nosuid)?;
    if mount("devtmpfs", "/dev", "devtmpfs", MountFlags::NOSUID, None).is_err() {
        // Already there (a kernel with CONFIG_DEVTMPFS_MOUNT).
    }
    sys_mount(
        "tmpfs",
        "/run",
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV,
    )?;
    Ok(())
}

fn load_modules() {
    let list = fs::read_to_string("/etc/oxcore-initrd/modules").unwrap_or_default();
    let mut loaded = 0;
    for rel in list.lines().filter(|l| !l.is_empty()) {
        let path = format!("/{rel}");
        let compressed = [".xz", ".zst", ".gz"].iter().any(|s| rel.ends_with(s));
        let r = fs::File::open(&path).and_then(|f| {
            // MODULE_INIT_COMPRESSED_FILE: the kernel decompresses.
            let flags = if compressed { 4 } else { 0 };
            rustix::system::finit_module(&f, c"", flags).map_err(std::io::Error::from)
        });
        match r {
            Ok(()) => loaded += 1,
            Err(e) if e.raw_os_error() == Some(17) => {}
            Err(e) => say(&format!("module {rel}: {e} (going on)")),
        }
    }
    say(&format!("{loaded} kernel modules loaded"));
}

/// The search path of the initramfs's programs (the kernel starts /init
/// with no `PATH`).
const PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// `name` found on [`PATH`] (as given when it is not there).
fn which(name: &str) -> String {
    PATH.split(':')
        .map(|d| format!("{d}/{name}"))
        .find(|p| Path::new(p).is_file())
        .unwrap_or_else(|| name.to_string())
}

fn run_tool(argv: &[&str], limit: Duration) -> Result<util::cmd::Output> {
    let mut argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
    if let Some(first) = argv.first_mut() {
        *first = which(first);
    }
    util::cmd::run_with(&argv, None, limit).map_err(|e| err(e.to_string()))
}

/// The device `spec` names (`LABEL=`, `UUID=`, `PARTLABEL=`, `PARTUUID=`
/// or a path), found by probing (no udev runs here).
fn find_device(spec: &str) -> Result<Option<String>> {
    if spec.starts_with('/') {
        return Ok(Path::new(spec).exists().then(|| spec.to_string()));
    }
    if !spec.contains('=') {
        return Err(err(format!("root={spec}: not a path or TAG=value")));
    }
    let out = run_tool(
        &["blkid", "-c", "/dev/null", "-l", "-o", "device", "-t", spec],
        Duration::from_secs(30),
    )?;
    let dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Ok((out.status.success() && !dev.is_empty()).then_some(dev))
}

fn block_devices() -> String {
    let mut v: Vec<String> = fs::read_dir("/sys/class/block")
        .map(|rd| {
            rd.filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

fn wait_for(spec: &str, timeout: Duration) -> Result<String> {
    let start = Instant::now();
    let mut said = false;
    loop {
        if let Some(dev) = find_device(spec)? {
            return Ok(dev);
        }
        if start.elapsed() >= timeout {
            return Err(err(format!(
                "the device {spec} did not appear within {} s (block devices: {})",
                timeout.as_secs(),
                block_devices()
            )));
        }
        if !said && start.elapsed() > Duration::from_secs(2) {
            say(&format!("waiting for {spec}"));
            said = true;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn mount_dev(dev: &str, target: &str, opts: &str) -> Result<()> {
    fs::create_dir_all(target).map_err(|e| err(format!("{target}: {e}")))?;
    let out = run_tool(
        &["mount", "-o", opts, dev, target],
        Duration::from_secs(120),
    )?;
    if !out.status.success() {
        return Err(err(format!(
            "mount -o {opts} {dev} {target}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

fn umount(target: &str) -> Result<()> {
    unmount(target, UnmountFlags::empty())
        .map_err(|e| err(format!("unmounting {target}: {}", std::io::Error::from(e))))
}

/// One Ignition stage on the root at /sysroot.
fn ignition(stage: &str, platform: &str) -> Result<()> {
    ignition_at(stage, platform, "/sysroot")
}

/// One Ignition stage, with upstream's flags, its output on the console.
fn ignition_at(stage: &str, platform: &str, root: &str) -> Result<()> {
    say(&format!("Ignition: {stage}"));
    let status = Command::new(OXCORE)
        .env("PATH", PATH)
        .args([
            "ignition",
            "--platform",
            platform,
            "--stage",
            stage,
            "--root",
            root,
        ])
        .status()
        .map_err(|e| err(format!("{OXCORE}: {e}")))?;
    if !status.success() {
        return Err(Error::Ignition(format!("{stage} stage: {status}")));
    }
    Ok(())
}

fn entries_snapshot(loader: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = fs::read_dir(loader.join("entries"))
        .map(|rd| {
            rd.filter_map(|e| {
                let e = e.ok()?;
                Some((
                    e.file_name().to_string_lossy().into_owned(),
                    fs::read(e.path()).ok()?,
                ))
            })
            .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The first boot's Ignition run, up to the root prepared at /sysroot.
fn first_boot(cmd: &Cmdline, root_dev: &str) -> Result<()> {
    let platform = cmd.get("ignition.platform.id").ok_or_else(|| {
        Error::Ignition("ignition.platform.id is not set on the kernel command line".into())
    })?;
    let boot_dev = find_device("LABEL=boot")?
        .ok_or_else(|| err("no filesystem labelled boot: the boot partition is missing"))?;
    // The config the installer put on the boot partition.
    mount_dev(&boot_dev, BOOT_MNT, "ro")?;
    let user = Path::new(BOOT_MNT).join("ignition/config.ign");
    let copied = if user.is_file() {
        fs::create_dir_all("/usr/lib/ignition").map_err(|e| err(e.to_string()))?;
        fs::copy(&user, "/usr/lib/ignition/user.ign")
            .map_err(|e| err(format!("{}: {e}", user.display())))?;
        true
    } else {
        false
    };
    umount(BOOT_MNT)?;
    if copied {
        say("the user config from the boot partition (ignition/config.ign)");
    }
    ignition("fetch-offline", platform)?;
    if Path::new("/run/ignition/neednet").exists() && !Path::new("/run/ignition.json").exists() {
        // The online fetch needs a network stack, which this initramfs
        // does not bring up.
        return Err(Error::Ignition(
            "the config needs the network (a remote config or resource), and this initramfs \
             has no network: pass the config through the platform (fw_cfg on QEMU) or \
             `oxcore install --ignition-file`, with its resources inline"
                .into(),
        ));
    }
    // kargs: against the boot partition's entries.
    let kroot = "/run/oxcore-initrd/kargs-root";
    let kboot = format!("{kroot}/boot");
    mount_dev(&boot_dev, &kboot, "rw")?;
    let loader = Path::new(&kboot).join("loader");
    let before = entries_snapshot(&loader);
    if let Err(e) = ignition_at("kargs", platform, kroot) {
        let _ = umount(&kboot);
        return Err(e);
    }
    let changed = entries_snapshot(&loader) != before;
    if changed && sysroot::grub::in_use(Path::new(&kboot)) {
        sysroot::grub::write_config(&loader).map_err(|e| err(e.to_string()))?;
    }
    rustix::fs::sync();
    umount(&kboot)?;
    if changed {
        say("kernel arguments changed; rebooting into them");
        rustix::fs::sync();
        let _ = rustix::system::reboot(rustix::system::RebootCommand::Restart);
    }
    ignition("disks", platform)?;
    mount_root(cmd, root_dev)?;
    ignition("mount", platform)?;
    populate_var()?;
    let files = ignition("files", platform);
    // umount runs whatever files did, as the unit's ExecStop does.
    let umounted = ignition("umount", platform);
    files?;
    umounted?;
    Ok(())
}

/// `/var` of a new deployment is empty until the real root's tmpfiles
/// runs; the files stage needs its directories now (`/home` is
/// `var/home`), as FCOS's `ignition-ostree-populate-var` makes them.
fn populate_var() -> Result<()> {
    say("populating /var (systemd-tmpfiles)");
    let out = run_tool(
        &[
            "systemd-tmpfiles",
            "--create",
            "--boot",
            "--root=/sysroot",
            "--prefix=/var",
        ],
        Duration::from_secs(120),
    )?;
    // Exit 65 (a line that could not be applied) is a warning here, as in
    // the real root's boot; anything else is a failure.
    match out.status.code() {
        Some(0 | 65) => Ok(()),
        _ => Err(Error::Ignition(format!(
            "populating /var: systemd-tmpfiles: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
    }
}

/// The physical root at /sysroot, then the deployment in its place.
fn mount_root(cmd: &Cmdline, dev: &str) -> Result<()> {
    let mut opts = if cmd.flag("ro") && !cmd.flag("rw") {
        "ro".to_string()
    } else {
        "rw".to_string()
    };
    if let Some(f) = cmd.get("rootflags") {
        opts = format!("{opts},{f}");
    }
    mount_dev(dev, "/sysroot", &opts)?;
    let deployment = sysroot::prepare::prepare_root(
        Path::new("/sysroot"),
        &cmd.text(),
        Path::new("/run/oxcore-initrd/staging"),
    )
    .map_err(|e| err(format!("prepare-root: {e}")))?;
    fs::write("/run/ostree-booted", b"").map_err(|e| err(format!("/run/ostree-booted: {e}")))?;
    say(&format!("prepared the deployment {}", deployment.display()));
    Ok(())
}

/// Removes the initramfs's own files (they are RAM), staying on its
/// filesystem.
fn free_initramfs(dir: &Path, dev: u64) {
    use std::os::unix::fs::MetadataExt;
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        let Ok(m) = fs::symlink_metadata(&p) else {
            continue;
        };
        if m.dev() != dev {
            continue;
        }
        if m.is_dir() {
            free_initramfs(&p, dev);
            let _ = fs::remove_dir(&p);
        } else {
            let _ = fs::remove_file(&p);
        }
    }
}

/// udev, as in upstream's initramfs: the daemon, every device announced
/// again, and the queue settled (the `/dev/disk/by-*` links exist).
fn start_udev() -> Result<()> {
    let udevd = "/usr/lib/systemd/systemd-udevd";
    let out = run_tool(
        &[udevd, "--daemon", "--resolve-names=never"],
        Duration::from_secs(30),
    )?;
    if !out.status.success() {
        return Err(err(format!(
            "{udevd} --daemon: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    for kind in ["subsystems", "devices"] {
        let t = format!("--type={kind}");
        run_tool(
            &["udevadm", "trigger", &t, "--action=add"],
            Duration::from_secs(60),
        )?;
    }
    let _ = run_tool(
        &["udevadm", "settle", "--timeout=60"],
        Duration::from_secs(90),
    )?;
    say("udev started");
    Ok(())
}

/// Stops the initramfs's udev (systemd starts its own in the real root,
/// keeping the database in /run/udev).
fn stop_udev() {
    let _ = run_tool(
        &["udevadm", "settle", "--timeout=30"],
        Duration::from_secs(40),
    );
    let _ = run_tool(&["udevadm", "control", "--exit"], Duration::from_secs(30));
}

fn switch_root(cmd: &Cmdline) -> Result<Error> {
    let init = cmd.get("init").unwrap_or("/sbin/init").to_string();
    stop_udev();
    say(&format!("switching root to /sysroot, running {init}"));
    for m in ["/dev", "/proc", "/sys", "/run"] {
        let target = format!("/sysroot{m}");
        mount_move(m, &target).map_err(|e| {
            err(format!(
                "moving {m} to {target}: {}",
                std::io::Error::from(e)
            ))
        })?;
    }
    {
        use std::os::unix::fs::MetadataExt;
        let dev = fs::symlink_metadata("/").map(|m| m.dev()).unwrap_or(0);
        std::env::set_current_dir("/sysroot").map_err(|e| err(format!("/sysroot: {e}")))?;
        for e in fs::read_dir("/").map_err(|e| err(e.to_string()))?.flatten() {
            let p = e.path();
            if p != Path::new("/sysroot") {
                if p.is_dir() && !p.is_symlink() {
                    free_initramfs(&p, dev);
                    let _ = fs::remove_dir(&p);
                } else {
                    let _ = fs::remove_file(&p);
                }
            }
        }
    }
    mount_move(".", "/")
        .map_err(|e| err(format!("moving /sysroot to /: {}", std::io::Error::from(e))))?;
    rustix::process::chroot(".")
        .map_err(|e| err(format!("chroot: {}", std::io::Error::from(e))))?;
    std::env::set_current_dir("/").map_err(|e| err(e.to_string()))?;
    let e = Command::new(&init).arg0(&init).exec();
    Ok(err(format!("running {init}: {e}")))
}

fn run(cmd: &mut Cmdline) -> Result<Error> {
    mount_basics()?;
    let text =
        fs::read_to_string("/proc/cmdline").map_err(|e| err(format!("/proc/cmdline: {e}")))?;
    *cmd = Cmdline::parse(&text);
    say("starting");
    load_modules();
    start_udev()?;
    let timeout = cmd
        .get("rd.timeout")
        .and_then(|t| t.parse().ok())
        .unwrap_or(90);
    let spec = cmd.get("root").unwrap_or("LABEL=root").to_string();
    let dev = wait_for(&spec, Duration::from_secs(timeout))?;
    say(&format!("root device {dev} ({spec})"));
    if cmd.flag("ignition.firstboot") {
        first_boot(cmd, &dev)?;
        say("Ignition finished");
    } else {
        mount_root(cmd, &dev)?;
    }
    switch_root(cmd)
}

/// Whether the boot partition's grubenv records a trial with tries left
/// or just spent (the bootloader booted an entry on trial).
fn on_trial() -> bool {
    let Ok(Some(dev)) = find_device("LABEL=boot") else {
        return false;
    };
    let mnt = "/run/oxcore-initrd/boot-trial";
    if mount_dev(&dev, mnt, "ro").is_err() {
        return false;
    }
    let env = sysroot::grub::read_env(Path::new(mnt)).unwrap_or_default();
    let _ = umount(mnt);
    env.iter()
        .any(|(k, v)| k == sysroot::grub::TRIAL_VAR && !v.is_empty())
}

/// PID 1's body; never returns.
pub fn main() -> ! {
    let mut cmd = Cmdline::default();
    let e = match run(&mut cmd) {
        Ok(e) | Err(e) => e,
    };
    eprintln!();
    if let Error::Ignition(why) = &e {
        eprintln!("------");
        eprintln!("Ignition has failed: {why}");
        eprintln!("Please ensure your config is valid. Note that only Ignition spec v3.0.0+");
        eprintln!(
            "configs are accepted. The boot stopped in the initramfs; nothing was switched to."
        );
        eprintln!("------");
    }
    say(&format!("error: {e}"));
    say("the boot stopped here");
    rustix::fs::sync();
    let action = match cmd.get("oxcore.initrd.failure") {
        Some(a) => a.to_string(),
        // A release on trial that cannot boot: restart, so the
        // bootloader spends a try and falls back when none is left.
        None if !cmd.flag("ignition.firstboot") && on_trial() => {
            say("this boot is a trial (grubenv): restarting in 5 s so the bootloader counts it");
            std::thread::sleep(Duration::from_secs(5));
            "reboot".into()
        }
        None => "halt".into(),
    };
    match action.as_str() {
        "poweroff" => {
            let _ = rustix::system::reboot(rustix::system::RebootCommand::PowerOff);
        }
        "reboot" => {
            let _ = rustix::system::reboot(rustix::system::RebootCommand::Restart);
        }
        _ => {}
    }
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_words() {
        let c = Cmdline::parse(
            "BOOT_IMAGE=x root=LABEL=root rw ignition.firstboot ignition.platform.id=qemu root=UUID=1\n",
        );
        assert_eq!(c.get("root"), Some("UUID=1"));
        assert!(c.flag("ignition.firstboot"));
        assert!(c.flag("rw"));
        assert!(!c.flag("ro"));
        assert_eq!(c.get("ignition.platform.id"), Some("qemu"));
        assert_eq!(c.get("ignition"), None);
        assert!(Cmdline::parse("ignition.firstboot=1").flag("ignition.firstboot"));
    }
}
