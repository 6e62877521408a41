//! Deployments in OSTree's sysroot layout, readable by `ostree admin
//! status` and able to read what `ostree admin deploy` wrote.
//!
//! Layout (`<sysroot>/`):
//!
//! - `ostree/repo`: the node's repository (mode `bare`);
//! - `ostree/deploy/<os>/deploy/<checksum>.<serial>`: checked-out
//!   deployments (hard links into the repository), each with a
//!   `<checksum>.<serial>.origin` key file beside it, and the OS's shared
//!   `ostree/deploy/<os>/var`;
//! - `boot/ostree/<os>-<bootcsum>/{vmlinuz,initramfs}-<kver>`: kernels,
//!   named by the SHA-256 of kernel and initramfs;
//! - `boot/loader.N/entries/ostree-<v>-<os>.conf`: one BLS entry per
//!   deployment, its `ostree=/ostree/boot.N/<os>/<bootcsum>/<bootserial>`
//!   argument resolving through the link farm
//!   `ostree/boot.N -> boot.N.M`, `ostree/boot.N.M/<os>/<bootcsum>/<i>`
//!   to the deployment;
//! - `boot/loader -> loader.N`: the one link whose atomic replacement
//!   switches from one set of deployments to the next;
//! - `ostree/repo/refs/heads/ostree/N/M/<i>`: GC refs that keep deployed
//!   commits from being pruned.
//!
//! Every change writes the other `loader.N` and `boot.N.M` completely,
//! syncs, then renames a `loader.tmp` link over `boot/loader`: a crash
//! leaves the old configuration or the new one. A new deployment is built
//! under a temporary name and renamed into place just before the switch;
//! directories no entry references are removed by the next operation.

pub mod bls;
pub mod etc_merge;
pub mod lock;
pub mod policy;
pub mod prepare;
pub mod status;

pub use lock::SysrootLock;
pub use policy::{Puller, UpdateOptions, Upgrade};

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use ostree_store::checkout::{CheckoutOptions, checkout};
use ostree_store::keyfile::KeyFile;
use ostree_store::{Checksum, Repo, RepoMode};

use crate::bls::BootEntry;

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error on a path.
    #[error("{}: {cause}", path.display())]
    Io {
        /// Where.
        path: PathBuf,
        /// Why (in the message, so not a `source` that `{:#}` would
        /// print a second time).
        cause: io::Error,
    },
    /// From the repository.
    #[error(transparent)]
    Repo(#[from] ostree_store::Error),
    /// The boot configuration cannot be read while deployments exist (an
    /// unmounted or damaged `/boot`): nothing may be changed or deleted.
    #[error("{}: the boot configuration cannot be read: {why}; refusing to treat it as \"nothing is deployed\" (is /boot mounted?)", path.display())]
    BootConfig {
        /// The sysroot.
        path: PathBuf,
        /// What is missing or inconsistent.
        why: String,
    },
    /// A deployment a boot entry would name is missing or incomplete.
    #[error("deployment {dir} is missing or incomplete ({why}); refusing to make it bootable")]
    BrokenDeployment {
        /// Its directory, relative to the sysroot.
        dir: String,
        /// What is wrong.
        why: String,
    },
    /// There is no deployment to start from.
    #[error("No deployments")]
    NoDeployments,
    /// The deployment's origin follows no refspec.
    #[error("Deployment has no origin refspec")]
    NoOriginRefspec,
    /// The update is older than what is deployed, and that was not allowed.
    #[error(
        "Upgrade target revision '{new}' with timestamp {new_timestamp} is chronologically older than current revision '{old}' with timestamp {old_timestamp}; use --allow-downgrade to permit"
    )]
    Downgrade {
        /// The update.
        new: Checksum,
        /// Its commit time.
        new_timestamp: u64,
        /// The deployed commit.
        old: Checksum,
        /// Its commit time.
        old_timestamp: u64,
    },
    /// `deploy VERSION` found no such version in the origin's history.
    #[error("Version {version} not found in the history of {refspec}")]
    VersionNotFound {
        /// The version asked for.
        version: String,
        /// The origin's refspec.
        refspec: String,
    },
    /// Anything else, in words.
    #[error("{0}")]
    Msg(String),
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io_err(p: &Path, e: io::Error) -> Error {
    Error::Io {
        path: p.to_path_buf(),
        cause: e,
    }
}

fn msg(s: impl Into<String>) -> Error {
    Error::Msg(s.into())
}

/// Stops here when the named failpoint is armed (tests only).
fn failpoint(name: &str) -> Result<()> {
    ostree_store::failpoint(name).map_err(Error::from)
}

/// One deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    /// The OS name (`stateroot`).
    pub os: String,
    /// The commit it is a checkout of.
    pub checksum: Checksum,
    /// Distinguishes deployments of the same commit.
    pub serial: u32,
    /// SHA-256 of kernel and initramfs (hex).
    pub bootcsum: String,
    /// Index among deployments with the same bootcsum.
    pub bootserial: u32,
    /// Kernel arguments as the entry's `options` hold them: OSTree keeps
    /// the `ostree=` argument's position when arguments are appended, so
    /// it stays in here (its value is rewritten on every write).
    pub kargs: String,
    /// The `.origin` key file.
    pub origin: KeyFile,
    /// The commit's `version` metadata.
    pub version: Option<String>,
}

impl Deployment {
    /// `<checksum>.<serial>`
    pub fn name(&self) -> String {
        format!("{}.{}", self.checksum, self.serial)
    }

    /// The directory, relative to the sysroot.
    pub fn rel_dir(&self) -> String {
        format!("ostree/deploy/{}/deploy/{}", self.os, self.name())
    }

    /// The kernel arguments without `ostree=`.
    pub fn kargs_display(&self) -> String {
        self.kargs
            .split_whitespace()
            .filter(|a| !a.starts_with("ostree="))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Whether it is pinned (kept by cleanups).
    pub fn pinned(&self) -> bool {
        self.origin
            .get_bool("libostree-transient", "pinned")
            .unwrap_or(false)
    }

    /// The origin's refspec, if it follows one.
    pub fn refspec(&self) -> Option<&str> {
        self.origin.get("origin", "refspec")
    }

    /// The commit an override pins the origin to, if any.
    pub fn override_commit(&self) -> Option<&str> {
        self.origin.get("origin", "override-commit")
    }
}

/// An origin that follows `refspec`.
pub fn origin_for_refspec(refspec: &str) -> KeyFile {
    let mut k = KeyFile::default();
    k.set("origin", "refspec", refspec);
    k
}

/// An opened sysroot.
pub struct Sysroot {
    path: PathBuf,
    repo: Repo,
}

fn read_link_name(p: &Path) -> Result<Option<String>> {
    match fs::read_link(p) {
        Ok(t) => Ok(Some(t.to_string_lossy().into_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(p, e)),
    }
}

fn write_file_atomic(path: &Path, data: &[u8]) -> Result<()> {
    ostree_store::repo::write_atomic(path, data, true).map_err(Error::from)
}

/// Replaces (or creates) the symlink `link` -> `target` with one rename.
fn symlink_atomic(target: &str, link: &Path) -> Result<()> {
    let tmp = link.with_file_name(format!(
        "{}.tmp",
        link.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).map_err(|e| io_err(&tmp, e))?;
    fs::rename(&tmp, link).map_err(|e| io_err(link, e))
}

fn sync_path(p: &Path) -> Result<()> {
    let f = fs::File::open(p).map_err(|e| io_err(p, e))?;
    rustix::fs::syncfs(&f).map_err(|e| io_err(p, e.into()))
}

/// Sets or clears the immutable attribute where the filesystem has it.
fn set_immutable(dir: &Path, on: bool) -> Result<()> {
    let f = match fs::File::open(dir) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(dir, e)),
    };
    let flags = match rustix::fs::ioctl_getflags(&f) {
        Ok(f) => f,
        // tmpfs and others have no attribute flags.
        Err(rustix::io::Errno::NOTTY)
        | Err(rustix::io::Errno::NOTSUP)
        | Err(rustix::io::Errno::INVAL) => return Ok(()),
        Err(e) => return Err(io_err(dir, e.into())),
    };
    let want = if on {
        flags | rustix::fs::IFlags::IMMUTABLE
    } else {
        flags - rustix::fs::IFlags::IMMUTABLE
    };
    if want != flags {
        rustix::fs::ioctl_setflags(&f, want).map_err(|e| io_err(dir, e.into()))?;
    }
    Ok(())
}

/// Removes a directory tree, clearing immutable flags on the way.
fn remove_tree(dir: &Path) -> Result<()> {
    if fs::symlink_metadata(dir).is_err() {
        return Ok(());
    }
    set_immutable(dir, false)?;
    fs::remove_dir_all(dir).map_err(|e| io_err(dir, e))
}

impl Sysroot {
    /// `ostree admin init-fs`: the top-level directories and a bare repo.
    pub fn init_fs(path: &Path) -> Result<Sysroot> {
        fs::create_dir_all(path).map_err(|e| io_err(path, e))?;
        for (d, mode) in [
            ("boot", 0o755),
            ("dev", 0o755),
            ("home", 0o755),
            ("proc", 0o755),
            ("root", 0o700),
            ("run", 0o755),
            ("sys", 0o755),
            ("tmp", 0o1777),
            ("ostree/deploy", 0o755),
        ] {
            let p = path.join(d);
            fs::create_dir_all(&p).map_err(|e| io_err(&p, e))?;
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).map_err(|e| io_err(&p, e))?;
        }
        Repo::init(&path.join("ostree/repo"), RepoMode::Bare)?;
        Sysroot::open(path)
    }

    /// Opens an initialized sysroot.
    pub fn open(path: &Path) -> Result<Sysroot> {
        let repo_path = path.join("ostree/repo");
        let repo = Repo::open(&repo_path)
            .map_err(|e| msg(format!("loading sysroot {}: {e}", path.display())))?;
        Ok(Sysroot {
            path: path.to_path_buf(),
            repo,
        })
    }

    /// The sysroot's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The node's repository.
    pub fn repo(&self) -> &Repo {
        &self.repo
    }

    /// `ostree admin os-init`: the OS's deploy directory and shared /var.
    pub fn os_init(&self, os: &str) -> Result<()> {
        if os.is_empty() || os.contains('/') || os.starts_with('.') {
            return Err(msg(format!("Invalid OS name '{os}'")));
        }
        let base = self.path.join("ostree/deploy").join(os);
        for d in ["deploy", "var/lib", "var/log", "var/tmp"] {
            let p = base.join(d);
            fs::create_dir_all(&p).map_err(|e| io_err(&p, e))?;
        }
        use std::os::unix::fs::PermissionsExt;
        let tmp = base.join("var/tmp");
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o1777))
            .map_err(|e| io_err(&tmp, e))?;
        for (link, target) in [("var/run", "../run"), ("var/lock", "../run/lock")] {
            let p = base.join(link);
            if fs::symlink_metadata(&p).is_err() {
                std::os::unix::fs::symlink(target, &p).map_err(|e| io_err(&p, e))?;
            }
        }
        Ok(())
    }

    /// Takes the sysroot lock (see [`lock`]) until the guard is dropped;
    /// every change below takes it too, so a command that reads, decides
    /// and writes holds it across all three.
    pub fn lock(&self) -> Result<SysrootLock> {
        lock::lock(&self.path, &mut || {})
    }

    /// [`Sysroot::lock`], calling `on_wait` if another holder makes it wait.
    pub fn lock_with(&self, mut on_wait: impl FnMut()) -> Result<SysrootLock> {
        lock::lock(&self.path, &mut on_wait)
    }

    /// What `boot/loader` names: `Some(N)` for `loader.N`, `None` when the
    /// link does not exist. Anything else is an error, as in OSTree.
    fn loader_link(&self) -> Result<Option<u8>> {
        let p = self.path.join("boot/loader");
        match fs::symlink_metadata(&p) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&p, e)),
            Ok(m) if !m.file_type().is_symlink() => {
                return Err(msg(format!("Not a symbolic link: {}", p.display())));
            }
            Ok(_) => {}
        }
        match read_link_name(&p)?.as_deref() {
            Some("loader.0") => Ok(Some(0)),
            Some("loader.1") => Ok(Some(1)),
            Some(t) => Err(msg(format!("Invalid target '{t}' in {}", p.display()))),
            None => Ok(None),
        }
    }

    /// The current boot version (the N of `boot/loader -> loader.N`); 0
    /// when the link is missing, as OSTree reads it.
    pub fn bootversion(&self) -> Result<u8> {
        Ok(self.loader_link()?.unwrap_or(0))
    }

    /// The deployment directories on disk (`<os>/<checksum>.<serial>`),
    /// whatever the boot configuration says.
    fn deployment_dirs(&self) -> Result<Vec<String>> {
        let deploy = self.path.join("ostree/deploy");
        let mut out = Vec::new();
        let oses = match fs::read_dir(&deploy) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io_err(&deploy, e)),
        };
        for os in oses {
            let os = os.map_err(|e| io_err(&deploy, e))?;
            let dir = os.path().join("deploy");
            let entries = match fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&dir, e)),
            };
            for e in entries {
                let name = e.map_err(|e| io_err(&dir, e))?.file_name();
                let name = name.to_string_lossy();
                if !name.starts_with('.') && !name.ends_with(".origin") {
                    out.push(format!("{}/{name}", os.file_name().to_string_lossy()));
                }
            }
        }
        Ok(out)
    }

    /// The boot version whose entries hold the configuration, checked to
    /// be readable. A missing `boot/loader` reads as version 0, as in
    /// OSTree; but where that would make existing deployments look
    /// undeployed (the entries are missing: `/boot` unmounted or damaged)
    /// or where the link's absence leaves two candidate configurations,
    /// this is [`Error::BootConfig`], so nothing is changed or deleted on
    /// the strength of a configuration that could not be read.
    fn readable_bootversion(&self) -> Result<(u8, bool)> {
        let link = self.loader_link()?;
        let bv = link.unwrap_or(0);
        let refuse = |why: String| Error::BootConfig {
            path: self.path.clone(),
            why,
        };
        if link.is_none() && self.path.join("boot/loader.1").symlink_metadata().is_ok() {
            return Err(refuse(
                "boot/loader is missing and boot/loader.1 exists, so the current boot version \
                 cannot be told (restore the link: ln -s loader.N boot/loader)"
                    .into(),
            ));
        }
        let entries = self.path.join(format!("boot/loader.{bv}/entries"));
        match fs::symlink_metadata(&entries) {
            Ok(_) => Ok((bv, true)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let dirs = self.deployment_dirs()?;
                if dirs.is_empty() {
                    return Ok((bv, false));
                }
                let what = if link.is_none() {
                    "boot/loader is missing and there is no boot/loader.0/entries".to_string()
                } else {
                    format!("boot/loader.{bv}/entries is missing")
                };
                Err(refuse(format!(
                    "{what}, but {} deployment(s) exist under ostree/deploy ({})",
                    dirs.len(),
                    dirs.join(", ")
                )))
            }
            Err(e) => Err(io_err(&entries, e)),
        }
    }

    fn subbootversion(&self, bootversion: u8) -> Result<u8> {
        match read_link_name(&self.path.join(format!("ostree/boot.{bootversion}")))? {
            Some(t) if t == format!("boot.{bootversion}.1") => Ok(1),
            _ => Ok(0),
        }
    }

    /// The deployments, default (next boot) first.
    pub fn deployments(&self) -> Result<Vec<Deployment>> {
        let (bv, configured) = self.readable_bootversion()?;
        if !configured {
            return Ok(Vec::new());
        }
        let entries_dir = self.path.join(format!("boot/loader.{bv}/entries"));
        let mut entries = Vec::new();
        for e in fs::read_dir(&entries_dir).map_err(|e| io_err(&entries_dir, e))? {
            let e = e.map_err(|e| io_err(&entries_dir, e))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".conf") {
                continue;
            }
            let text = fs::read_to_string(e.path()).map_err(|err| io_err(&e.path(), err))?;
            entries.push((e.path(), BootEntry::parse(&text)));
        }
        let version = |e: &BootEntry| {
            e.get("version")
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        entries.sort_by_key(|(_, e)| std::cmp::Reverse(version(e)));
        let mut out = Vec::new();
        for (path, entry) in entries {
            let arg = entry
                .ostree_arg()
                .ok_or_else(|| msg(format!("{}: no ostree= kernel argument", path.display())))?;
            let (_, os, bootcsum, bootserial) = bls::parse_ostree_arg(arg)
                .ok_or_else(|| msg(format!("{}: invalid ostree={arg}", path.display())))?;
            let link = self
                .path
                .join(format!("ostree/boot.{bv}/{os}/{bootcsum}/{bootserial}"));
            let target = read_link_name(&link)?
                .ok_or_else(|| msg(format!("{}: missing", link.display())))?;
            let dir_name = target.rsplit('/').next().unwrap_or("");
            let (csum, serial) = dir_name
                .split_once('.')
                .ok_or_else(|| msg(format!("{}: bad target {target}", link.display())))?;
            let checksum =
                Checksum::from_hex(csum).map_err(|e| msg(format!("{}: {e}", link.display())))?;
            let serial: u32 = serial
                .parse()
                .map_err(|_| msg(format!("{}: bad serial in {target}", link.display())))?;
            let origin_path = self
                .path
                .join(format!("ostree/deploy/{os}/deploy/{csum}.{serial}.origin"));
            let origin = match fs::read_to_string(&origin_path) {
                Ok(t) => KeyFile::parse(&t)
                    .map_err(|e| msg(format!("{}: {e}", origin_path.display())))?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => KeyFile::default(),
                Err(e) => return Err(io_err(&origin_path, e)),
            };
            let version = self
                .repo
                .load_commit(&checksum)
                .ok()
                .and_then(|c| c.version().map(str::to_string));
            out.push(Deployment {
                os,
                checksum,
                serial,
                bootcsum,
                bootserial,
                kargs: entry.get("options").unwrap_or("").to_string(),
                origin,
                version,
            });
        }
        Ok(out)
    }

    /// The booted deployment's index: the one named by `ostree=` in
    /// `<sysroot>/proc/cmdline` when `<sysroot>/run/ostree-booted` exists
    /// (on a booted host both are the real ones).
    pub fn booted_index(&self, deployments: &[Deployment]) -> Result<Option<usize>> {
        if !self.path.join("run/ostree-booted").exists() {
            return Ok(None);
        }
        let cmdline = fs::read_to_string(self.path.join("proc/cmdline")).unwrap_or_default();
        let Some(arg) = cmdline
            .split_whitespace()
            .find_map(|a| a.strip_prefix("ostree="))
        else {
            return Ok(None);
        };
        let Some((_, os, bootcsum, serial)) = bls::parse_ostree_arg(arg) else {
            return Ok(None);
        };
        Ok(deployments
            .iter()
            .position(|d| d.os == os && d.bootcsum == bootcsum && d.bootserial == serial))
    }

    fn next_serial(&self, os: &str, checksum: &Checksum) -> Result<u32> {
        let dir = self.path.join(format!("ostree/deploy/{os}/deploy"));
        let mut max = None;
        for e in fs::read_dir(&dir).map_err(|e| io_err(&dir, e))? {
            let name = e
                .map_err(|e| io_err(&dir, e))?
                .file_name()
                .to_string_lossy()
                .into_owned();
            let name = name.trim_start_matches(".tmp-");
            if let Some(rest) = name.strip_prefix(&format!("{checksum}."))
                && let Ok(n) = rest.trim_end_matches(".origin").parse::<u32>()
            {
                max = Some(max.map_or(n, |m: u32| m.max(n)));
            }
        }
        Ok(max.map_or(0, |m| m + 1))
    }

    /// Builds a new deployment of `commit` (not yet in the boot
    /// configuration): checkout, `/etc` from the new defaults merged with
    /// `merge`'s local changes, kernel installed under `boot/ostree`,
    /// origin written. On any error nothing of it remains.
    pub fn new_deployment(
        &self,
        os: &str,
        commit: &Checksum,
        origin: KeyFile,
        kargs: Option<String>,
        merge: Option<&Deployment>,
    ) -> Result<Deployment> {
        let _lock = self.lock()?;
        let deploy_dir = self.path.join(format!("ostree/deploy/{os}/deploy"));
        if !deploy_dir.is_dir() {
            return Err(msg(format!("No such OS '{os}': run os-init first")));
        }
        let serial = self.next_serial(os, commit)?;
        let name = format!("{commit}.{serial}");
        let staging = deploy_dir.join(format!(".tmp-{name}"));
        remove_tree(&staging)?;
        let result = self.build(os, commit, &staging, merge);
        let bootcsum = match result {
            Ok(b) => b,
            Err(e) => {
                let _ = remove_tree(&staging);
                return Err(e);
            }
        };
        failpoint("deployment-built")?;
        let kargs = kargs
            .or_else(|| merge.map(|m| m.kargs.clone()))
            .unwrap_or_default();
        let version = self
            .repo
            .load_commit(commit)
            .ok()
            .and_then(|c| c.version().map(str::to_string));
        let final_dir = deploy_dir.join(&name);
        // Pinning belongs to a deployment, not to its successors.
        let mut origin = origin;
        origin.remove_group("libostree-transient");
        write_file_atomic(
            &deploy_dir.join(format!("{name}.origin")),
            origin.to_string().as_bytes(),
        )?;
        fs::rename(&staging, &final_dir).map_err(|e| io_err(&final_dir, e))?;
        set_immutable(&final_dir, true)?;
        Ok(Deployment {
            os: os.to_string(),
            checksum: *commit,
            serial,
            bootcsum,
            bootserial: 0,
            kargs,
            origin,
            version,
        })
    }

    fn build(
        &self,
        os: &str,
        commit: &Checksum,
        dir: &Path,
        merge: Option<&Deployment>,
    ) -> Result<String> {
        let user_mode = self.repo.mode() != RepoMode::Bare;
        checkout(
            &self.repo,
            commit,
            dir,
            &CheckoutOptions {
                user_mode,
                ..CheckoutOptions::default()
            },
        )?;
        failpoint("deployment-checked-out")?;
        let (etc, usr_etc) = (dir.join("etc"), dir.join("usr/etc"));
        match (
            etc.symlink_metadata().is_ok(),
            usr_etc.symlink_metadata().is_ok(),
        ) {
            (true, true) => {
                return Err(msg("Preparing /etc: Tree contains both /etc and /usr/etc"));
            }
            (true, false) => fs::rename(&etc, &usr_etc).map_err(|e| io_err(&usr_etc, e))?,
            _ => {}
        }
        if usr_etc.is_dir() {
            let m = fs::symlink_metadata(&usr_etc).map_err(|e| io_err(&usr_etc, e))?;
            etc_merge::copy_entry(&usr_etc, &m, &etc)?;
        } else {
            fs::create_dir(&etc).map_err(|e| io_err(&etc, e))?;
        }
        if let Some(m) = merge {
            let old = self.path.join(m.rel_dir());
            etc_merge::merge(&old.join("usr/etc"), &old.join("etc"), &etc)?;
        }
        let var = dir.join("var");
        if fs::symlink_metadata(&var).is_err() {
            fs::create_dir(&var).map_err(|e| io_err(&var, e))?;
        }
        self.install_kernel(os, dir)
    }

    /// Copies the deployment's kernel and initramfs to
    /// `boot/ostree/<os>-<bootcsum>/`; returns the bootcsum.
    fn install_kernel(&self, os: &str, dir: &Path) -> Result<String> {
        let modules = dir.join("usr/lib/modules");
        let mut found = None;
        if let Ok(rd) = fs::read_dir(&modules) {
            let mut kvers: Vec<String> = rd
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            kvers.sort();
            for k in kvers {
                if modules.join(&k).join("vmlinuz").is_file() {
                    found = Some(k);
                    break;
                }
            }
        }
        let kver = found.ok_or_else(|| {
            msg(format!(
                "Failed to find kernel in {}: no usr/lib/modules/<kver>/vmlinuz",
                dir.display()
            ))
        })?;
        let kdir = modules.join(&kver);
        let kernel =
            fs::read(kdir.join("vmlinuz")).map_err(|e| io_err(&kdir.join("vmlinuz"), e))?;
        let initramfs = match fs::read(kdir.join("initramfs.img")) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(&kdir.join("initramfs.img"), e)),
        };
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(&kernel);
        if let Some(i) = &initramfs {
            ctx.update(i);
        }
        let bootcsum: String = ctx
            .finish()
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let bootdir = self.path.join(format!("boot/ostree/{os}-{bootcsum}"));
        if !bootdir.is_dir() {
            let tmp = self.path.join(format!("boot/ostree/.tmp-{os}-{bootcsum}"));
            let _ = fs::remove_dir_all(&tmp);
            fs::create_dir_all(&tmp).map_err(|e| io_err(&tmp, e))?;
            fs::write(tmp.join(format!("vmlinuz-{kver}")), &kernel).map_err(|e| io_err(&tmp, e))?;
            if let Some(i) = &initramfs {
                fs::write(tmp.join(format!("initramfs-{kver}.img")), i)
                    .map_err(|e| io_err(&tmp, e))?;
            }
            fs::rename(&tmp, &bootdir).map_err(|e| io_err(&bootdir, e))?;
        }
        Ok(bootcsum)
    }

    fn os_pretty_name(&self, d: &Deployment) -> String {
        let dir = self.path.join(d.rel_dir());
        for p in ["usr/lib/os-release", "etc/os-release", "usr/etc/os-release"] {
            if let Ok(text) = fs::read_to_string(dir.join(p)) {
                let get = |k: &str| {
                    text.lines()
                        .find_map(|l| l.strip_prefix(&format!("{k}=")))
                        .map(|v| v.trim().trim_matches('"').trim_matches('\'').to_string())
                };
                if let Some(n) = get("PRETTY_NAME").or_else(|| get("ID")) {
                    return n;
                }
            }
        }
        d.os.clone()
    }

    fn kernel_files(&self, d: &Deployment) -> Result<(String, Option<String>)> {
        let dir = self
            .path
            .join(format!("boot/ostree/{}-{}", d.os, d.bootcsum));
        let mut linux = None;
        let mut initrd = None;
        for e in fs::read_dir(&dir).map_err(|e| io_err(&dir, e))? {
            let n = e
                .map_err(|e| io_err(&dir, e))?
                .file_name()
                .to_string_lossy()
                .into_owned();
            if n.starts_with("vmlinuz-") {
                linux = Some(format!("/ostree/{}-{}/{n}", d.os, d.bootcsum));
            } else if n.starts_with("initramfs-") {
                initrd = Some(format!("/ostree/{}-{}/{n}", d.os, d.bootcsum));
            }
        }
        Ok((
            linux.ok_or_else(|| msg(format!("{}: no kernel", dir.display())))?,
            initrd,
        ))
    }

    /// Makes `list` the boot configuration, default first: writes the
    /// other `loader.N` and `boot.N.M` and GC refs, syncs, switches with
    /// one rename, then removes what the old configuration used.
    pub fn write_deployments(&self, list: &[Deployment]) -> Result<()> {
        let _sysroot_lock = self.lock()?;
        let _lock = self.repo.lock(false)?;
        let (old_bv, _) = self.readable_bootversion()?;
        for d in list {
            self.check_whole(d)?;
        }
        let new_bv = 1 - old_bv;
        let new_sub = 1 - self.subbootversion(new_bv)?;
        // Leftovers of an interrupted switch to this boot version.
        for stale in [
            self.path.join(format!("boot/loader.{new_bv}")),
            self.path.join(format!("ostree/boot.{new_bv}.{new_sub}")),
        ] {
            remove_tree(&stale)?;
        }
        let mut list = list.to_vec();
        let mut seen: Vec<(String, String)> = Vec::new();
        for d in &mut list {
            let key = (d.os.clone(), d.bootcsum.clone());
            d.bootserial = seen.iter().filter(|k| **k == key).count() as u32;
            seen.push(key);
        }
        // The link farm.
        let farm = self.path.join(format!("ostree/boot.{new_bv}.{new_sub}"));
        for d in &list {
            let dir = farm.join(&d.os).join(&d.bootcsum);
            fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
            let link = dir.join(d.bootserial.to_string());
            let target = format!("../../../deploy/{}/deploy/{}", d.os, d.name());
            std::os::unix::fs::symlink(&target, &link).map_err(|e| io_err(&link, e))?;
        }
        if list.is_empty() {
            fs::create_dir_all(&farm).map_err(|e| io_err(&farm, e))?;
        }
        failpoint("farm-written")?;
        // The entries.
        let entries = self.path.join(format!("boot/loader.{new_bv}/entries"));
        fs::create_dir_all(&entries).map_err(|e| io_err(&entries, e))?;
        let n = list.len();
        for (i, d) in list.iter().enumerate() {
            let mut e = BootEntry::default();
            // As OSTree: the version is added unless the name holds it.
            let name = self.os_pretty_name(d);
            let title = match &d.version {
                Some(v) if !v.is_empty() && !name.contains(v.as_str()) => {
                    format!("{name} {v} (ostree:{i})")
                }
                _ => format!("{name} (ostree:{i})"),
            };
            e.set("title", &title);
            e.set("version", &(n - i).to_string());
            let arg = format!(
                "ostree=/ostree/boot.{new_bv}/{}/{}/{}",
                d.os, d.bootcsum, d.bootserial
            );
            // The `ostree=` argument keeps its place; a new one goes last.
            let mut replaced = false;
            let mut args: Vec<String> = Vec::new();
            for a in d.kargs.split_whitespace() {
                if a.starts_with("ostree=") {
                    if !replaced {
                        args.push(arg.clone());
                        replaced = true;
                    }
                } else {
                    args.push(a.to_string());
                }
            }
            if !replaced {
                args.push(arg);
            }
            let options = args.join(" ");
            e.set("options", &options);
            let (linux, initrd) = self.kernel_files(d)?;
            e.set("linux", &linux);
            if let Some(i) = initrd {
                e.set("initrd", &i);
            }
            let path = entries.join(format!("ostree-{}-{}.conf", n - i, d.os));
            fs::write(&path, e.to_text()).map_err(|e| io_err(&path, e))?;
        }
        failpoint("entries-written")?;
        // GC refs for the new configuration.
        for (i, d) in list.iter().enumerate() {
            self.repo.set_ref(
                None,
                &format!("ostree/{new_bv}/{new_sub}/{i}"),
                Some(&d.checksum),
            )?;
        }
        symlink_atomic(
            &format!("boot.{new_bv}.{new_sub}"),
            &self.path.join(format!("ostree/boot.{new_bv}")),
        )?;
        sync_path(&self.path)?;
        failpoint("before-swap")?;
        // The switch.
        symlink_atomic(&format!("loader.{new_bv}"), &self.path.join("boot/loader"))?;
        sync_path(&self.path)?;
        failpoint("after-swap")?;
        self.remove_stale(new_bv, new_sub)?;
        Ok(())
    }

    /// On a sysroot that was never deployed (no `boot/loader`, no
    /// `boot/loader.N`, nothing under `ostree/deploy`), starts an empty
    /// configuration `boot/loader -> loader.0` before the first deployment
    /// is built. A first deploy killed halfway then leaves a readable
    /// (empty) configuration and an unreferenced directory the next
    /// operation removes, instead of a deployment with no configuration,
    /// which reads like an unmounted `/boot`.
    fn start_boot_config(&self, current: &[Deployment]) -> Result<()> {
        if !current.is_empty() || self.loader_link()?.is_some() {
            return Ok(());
        }
        let entries = self.path.join("boot/loader.0/entries");
        if entries.symlink_metadata().is_ok() {
            return Ok(());
        }
        fs::create_dir_all(&entries).map_err(|e| io_err(&entries, e))?;
        symlink_atomic("loader.0", &self.path.join("boot/loader"))?;
        sync_path(&self.path)
    }

    /// Checks that `d` can be booted: its directory with `usr` and `etc`,
    /// and its kernel under `boot/ostree`.
    fn check_whole(&self, d: &Deployment) -> Result<()> {
        let rel = d.rel_dir();
        let dir = self.path.join(&rel);
        let broken = |why: String| Error::BrokenDeployment {
            dir: rel.clone(),
            why,
        };
        for (p, what) in [
            (dir.clone(), "directory"),
            (dir.join("usr"), "usr/"),
            (dir.join("etc"), "etc/"),
        ] {
            match fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(broken(format!("{what} is not a directory"))),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(broken(format!("no {what}")));
                }
                Err(e) => return Err(io_err(&p, e)),
            }
        }
        self.kernel_files(d)
            .map_err(|e| broken(format!("its kernel: {e}")))?;
        Ok(())
    }

    /// Removes what no current entry uses: the other loader and link farms,
    /// GC refs of other configurations, unreferenced deployments and kernels.
    fn remove_stale(&self, bv: u8, sub: u8) -> Result<()> {
        // Nothing is deleted on the strength of a configuration that
        // cannot be read.
        let (current, _) = self.readable_bootversion()?;
        if current != bv {
            return Err(msg(format!(
                "boot version changed under us ({bv} expected, {current} found)"
            )));
        }
        let other = 1 - bv;
        remove_tree(&self.path.join(format!("boot/loader.{other}")))?;
        let _ = fs::remove_file(self.path.join(format!("ostree/boot.{other}")));
        for (b, s) in [(other, 0), (other, 1), (bv, 1 - sub)] {
            remove_tree(&self.path.join(format!("ostree/boot.{b}.{s}")))?;
        }
        let keep_ref = format!("ostree/{bv}/{sub}/");
        for name in self.repo.list_refs()?.into_keys() {
            if name.starts_with("ostree/") && !name.starts_with(&keep_ref) {
                self.repo.set_ref(None, &name, None)?;
            }
        }
        self.cleanup_deployments()
    }

    fn cleanup_deployments(&self) -> Result<()> {
        let mut current = self.deployments()?;
        // A staged deployment is not in the boot configuration yet.
        current.extend(self.staged()?);
        let live: HashSet<String> = current
            .iter()
            .map(|d| format!("{}/{}", d.os, d.name()))
            .collect();
        let bootdirs: HashSet<String> = current
            .iter()
            .map(|d| format!("{}-{}", d.os, d.bootcsum))
            .collect();
        let deploy = self.path.join("ostree/deploy");
        if let Ok(oses) = fs::read_dir(&deploy) {
            for os in oses.filter_map(|e| e.ok()) {
                let os_name = os.file_name().to_string_lossy().into_owned();
                let dir = os.path().join("deploy");
                let Ok(entries) = fs::read_dir(&dir) else {
                    continue;
                };
                for e in entries.filter_map(|e| e.ok()) {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let base = name.trim_end_matches(".origin");
                    if live.contains(&format!("{os_name}/{base}")) {
                        continue;
                    }
                    if name.ends_with(".origin") {
                        let _ = fs::remove_file(e.path());
                    } else {
                        remove_tree(&e.path())?;
                    }
                }
            }
        }
        let boot = self.path.join("boot/ostree");
        if let Ok(entries) = fs::read_dir(&boot) {
            for e in entries.filter_map(|e| e.ok()) {
                let name = e.file_name().to_string_lossy().into_owned();
                if !bootdirs.contains(&name) {
                    remove_tree(&e.path())?;
                }
            }
        }
        Ok(())
    }

    /// `cleanup`: stale boot configuration and deployments, then prune
    /// the repository of commits no ref (refs, GC refs) reaches.
    pub fn cleanup(&self) -> Result<ostree_store::prune::PruneReport> {
        let _lock = self.lock()?;
        let (bv, _) = self.readable_bootversion()?;
        let sub = self.subbootversion(bv)?;
        self.remove_stale(bv, sub)?;
        Ok(ostree_store::prune::prune(
            &self.repo,
            &ostree_store::prune::PruneOptions {
                refs_only: true,
                depth: Some(0),
                ..Default::default()
            },
        )?)
    }

    /// Deploys `commit` as the new default, as `ostree admin deploy`:
    /// /etc merged from the current default (or booted) deployment unless
    /// `opts.no_merge`; the booted, the merge deployment and pinned ones
    /// are kept, others dropped unless retained.
    pub fn deploy(
        &self,
        os: &str,
        commit: &Checksum,
        origin: KeyFile,
        kargs: Option<String>,
        opts: &DeployOptions,
    ) -> Result<Deployment> {
        let _lock = self.lock()?;
        let current = self.deployments()?;
        self.start_boot_config(&current)?;
        let booted = self.booted_index(&current)?;
        let merge_idx = booted
            .filter(|&b| current[b].os == os)
            .or_else(|| current.iter().position(|d| d.os == os));
        let merge = merge_idx
            .filter(|_| !opts.no_merge)
            .map(|i| current[i].clone());
        let new = self.new_deployment(os, commit, origin, kargs, merge.as_ref())?;
        let mut list = Vec::new();
        if !opts.not_as_default {
            list.push(new.clone());
        }
        for (i, d) in current.into_iter().enumerate() {
            let pending = booted.is_some_and(|b| i < b);
            let rollback = booted.is_none_or(|b| i > b);
            if opts.retain
                || Some(i) == booted
                || Some(i) == merge_idx
                || d.pinned()
                || d.os != os
                || (opts.retain_pending && pending)
                || (opts.retain_rollback && rollback)
            {
                list.push(d);
            }
        }
        if opts.not_as_default {
            list.push(new.clone());
        }
        self.write_deployments(&list)?;
        Ok(new)
    }

    /// Rewrites every deployment's kernel arguments with `edit` and
    /// switches to the result (`ostree admin kargs edit-in-place`).
    pub fn edit_kargs_in_place(&self, edit: impl Fn(&str) -> String) -> Result<()> {
        let _lock = self.lock()?;
        let mut list = self.deployments()?;
        for d in &mut list {
            d.kargs = edit(&d.kargs);
        }
        self.write_deployments(&list)
    }

    /// Removes deployment `index` from the boot configuration.
    pub fn undeploy(&self, index: usize) -> Result<()> {
        let _lock = self.lock()?;
        let mut list = self.deployments()?;
        if index >= list.len() {
            return Err(msg(format!(
                "Out of range deployment index {index}, expected < {}",
                list.len()
            )));
        }
        if self.booted_index(&list)? == Some(index) {
            return Err(msg(format!(
                "Cannot undeploy currently booted deployment {index}"
            )));
        }
        list.remove(index);
        self.write_deployments(&list)
    }

    /// Makes the rollback deployment the default, as `rpm-ostree rollback`:
    /// with the booted deployment first, the next one moves ahead of it;
    /// otherwise the booted one (or the second) moves to the front. Twice
    /// restores the original order.
    pub fn rollback(&self) -> Result<(usize, usize)> {
        let _lock = self.lock()?;
        let mut list = self.deployments()?;
        if list.len() < 2 {
            return Err(msg("No rollback deployment found"));
        }
        let booted = self.booted_index(&list)?;
        let from = match booted {
            Some(0) | None => 1,
            Some(b) => b,
        };
        let d = list.remove(from);
        list.insert(0, d);
        self.write_deployments(&list)?;
        Ok((from, 0))
    }

    /// Pins or unpins deployment `index` (a rewrite of its origin file).
    pub fn set_pinned(&self, index: usize, pinned: bool) -> Result<()> {
        let _lock = self.lock()?;
        let list = self.deployments()?;
        let d = list
            .get(index)
            .ok_or_else(|| msg(format!("Invalid index {index}")))?;
        let mut origin = d.origin.clone();
        if pinned {
            origin.set("libostree-transient", "pinned", "true");
        } else {
            origin.remove_group("libostree-transient");
        }
        self.write_origin(d, &origin)
    }

    /// Replaces deployment `index`'s origin file.
    pub fn write_origin(&self, d: &Deployment, origin: &KeyFile) -> Result<()> {
        let _lock = self.lock()?;
        let path = self
            .path
            .join(format!("ostree/deploy/{}/deploy/{}.origin", d.os, d.name()));
        write_file_atomic(&path, origin.to_string().as_bytes())
    }
}

/// Where a staged deployment is recorded: under `run/`, so a reboot that
/// did not finalize it forgets it (on a host `/run` is a tmpfs).
const STAGED: &str = "run/ostree/staged-deployment";
/// While this exists, finalization refuses (the update agent holds it until
/// its reboot slot).
const STAGED_LOCK: &str = "run/ostree/staged-deployment-locked";

impl Sysroot {
    /// Writes a deployment now and records it to become the default when
    /// [`Sysroot::finalize_staged`] runs (at shutdown), as `ostree admin
    /// deploy --stage`. With `locked`, finalization waits for
    /// [`Sysroot::set_finalization_locked`]`(false)`.
    pub fn stage(
        &self,
        os: &str,
        commit: &Checksum,
        origin: KeyFile,
        kargs: Option<String>,
        locked: bool,
    ) -> Result<Deployment> {
        let _lock = self.lock()?;
        if let Some(old) = self.staged()? {
            // A newer stage replaces the older one.
            self.clear_staged()?;
            remove_tree(&self.path.join(old.rel_dir()))?;
            let _ = fs::remove_file(self.path.join(format!("{}.origin", old.rel_dir())));
        }
        let current = self.deployments()?;
        self.start_boot_config(&current)?;
        let booted = self.booted_index(&current)?;
        let merge = booted
            .filter(|&b| current[b].os == os)
            .or_else(|| current.iter().position(|d| d.os == os))
            .map(|i| current[i].clone());
        let d = self.new_deployment(os, commit, origin, kargs, merge.as_ref())?;
        let mut rec = KeyFile::default();
        rec.set("staged", "os", &d.os);
        rec.set("staged", "checksum", &d.checksum.to_hex());
        rec.set("staged", "serial", &d.serial.to_string());
        rec.set("staged", "bootcsum", &d.bootcsum);
        rec.set("staged", "kargs", &d.kargs);
        let path = self.path.join(STAGED);
        fs::create_dir_all(path.parent().expect("has a parent")).map_err(|e| io_err(&path, e))?;
        self.set_finalization_locked(locked)?;
        write_file_atomic(&path, rec.to_string().as_bytes())?;
        Ok(d)
    }

    /// The staged deployment, if any.
    pub fn staged(&self) -> Result<Option<Deployment>> {
        let path = self.path.join(STAGED);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path, e)),
        };
        let rec = KeyFile::parse(&text).map_err(|e| msg(format!("{}: {e}", path.display())))?;
        let get = |k: &str| {
            rec.get("staged", k)
                .ok_or_else(|| msg(format!("{}: no {k}", path.display())))
        };
        let os = get("os")?.to_string();
        let checksum = Checksum::from_hex(get("checksum")?)
            .map_err(|e| msg(format!("{}: {e}", path.display())))?;
        let serial = get("serial")?
            .parse()
            .map_err(|_| msg(format!("{}: bad serial", path.display())))?;
        let origin_path = self.path.join(format!(
            "ostree/deploy/{os}/deploy/{checksum}.{serial}.origin"
        ));
        let origin = fs::read_to_string(&origin_path)
            .ok()
            .and_then(|t| KeyFile::parse(&t).ok())
            .unwrap_or_default();
        // Finalized already (a crash came before the record was removed).
        if self
            .deployments()?
            .iter()
            .any(|d| d.os == os && d.checksum == checksum && d.serial == serial)
        {
            return Ok(None);
        }
        let version = self
            .repo
            .load_commit(&checksum)
            .ok()
            .and_then(|c| c.version().map(str::to_string));
        Ok(Some(Deployment {
            os,
            checksum,
            serial,
            bootcsum: get("bootcsum")?.to_string(),
            bootserial: 0,
            kargs: rec.get("staged", "kargs").unwrap_or("").to_string(),
            origin,
            version,
        }))
    }

    /// Rebuilds `dir/etc` from `dir/usr/etc` merged with `merge`'s live
    /// /etc, exchanged in with one atomic rename.
    fn remerge_etc(&self, dir: &Path, merge: Option<&Deployment>) -> Result<()> {
        let (etc, usr_etc) = (dir.join("etc"), dir.join("usr/etc"));
        let fresh = dir.join(".etc-finalize");
        remove_tree(&fresh)?;
        let built = (|| {
            if usr_etc.is_dir() {
                let m = fs::symlink_metadata(&usr_etc).map_err(|e| io_err(&usr_etc, e))?;
                etc_merge::copy_entry(&usr_etc, &m, &fresh)?;
            } else {
                fs::create_dir(&fresh).map_err(|e| io_err(&fresh, e))?;
            }
            if let Some(m) = merge {
                let old = self.path.join(m.rel_dir());
                etc_merge::merge(&old.join("usr/etc"), &old.join("etc"), &fresh)?;
            }
            // One atomic exchange: a crash leaves the old or the new /etc.
            rustix::fs::renameat_with(
                rustix::fs::CWD,
                &fresh,
                rustix::fs::CWD,
                &etc,
                rustix::fs::RenameFlags::EXCHANGE,
            )
            .map_err(|e| io_err(&etc, e.into()))
        })();
        // After the exchange `fresh` holds the old /etc; on failure, the
        // half-built new one.
        remove_tree(&fresh)?;
        built
    }

    fn clear_staged(&self) -> Result<()> {
        for p in [STAGED, STAGED_LOCK] {
            match fs::remove_file(self.path.join(p)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&self.path.join(p), e)),
            }
        }
        Ok(())
    }

    /// Whether finalization is held.
    pub fn finalization_locked(&self) -> bool {
        self.path.join(STAGED_LOCK).exists()
    }

    /// Holds or releases finalization of the staged deployment.
    pub fn set_finalization_locked(&self, locked: bool) -> Result<()> {
        let _lock = self.lock()?;
        let path = self.path.join(STAGED_LOCK);
        if locked {
            fs::create_dir_all(path.parent().expect("has a parent"))
                .map_err(|e| io_err(&path, e))?;
            fs::write(&path, b"").map_err(|e| io_err(&path, e))
        } else {
            match fs::remove_file(&path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io_err(&path, e)),
            }
        }
    }

    /// Makes the staged deployment the default, as OSTree does at shutdown:
    /// its `/etc` is merged again from the merge deployment's current
    /// `/etc` (so changes made since staging are kept), then the boot
    /// configuration switches. Returns `None` when nothing is staged; a
    /// locked stage is an error unless `force`.
    pub fn finalize_staged(&self, force: bool) -> Result<Option<Deployment>> {
        let _lock = self.lock()?;
        let Some(staged) = self.staged()? else {
            self.clear_staged()?;
            return Ok(None);
        };
        if self.finalization_locked() && !force {
            return Err(msg(
                "Staged deployment is locked; not finalizing (unlock finalization first)",
            ));
        }
        let current = self.deployments()?;
        let booted = self.booted_index(&current)?;
        let merge_idx = booted
            .filter(|&b| current[b].os == staged.os)
            .or_else(|| current.iter().position(|d| d.os == staged.os));
        let dir = self.path.join(staged.rel_dir());
        // The deployment root is immutable; it is opened up for the /etc
        // swap only.
        set_immutable(&dir, false)?;
        let merged = self.remerge_etc(&dir, merge_idx.map(|i| &current[i]));
        set_immutable(&dir, true)?;
        merged?;
        failpoint("staged-etc-merged")?;
        let mut list = vec![staged.clone()];
        for (i, d) in current.into_iter().enumerate() {
            if Some(i) == booted || Some(i) == merge_idx || d.pinned() || d.os != staged.os {
                list.push(d);
            }
        }
        self.write_deployments(&list)?;
        self.clear_staged()?;
        Ok(Some(staged))
    }
}

/// How [`Sysroot::deploy`] treats existing deployments (`ostree admin
/// deploy`'s options).
#[derive(Debug, Clone, Default)]
pub struct DeployOptions {
    /// Keep every existing deployment (`--retain`).
    pub retain: bool,
    /// Keep deployments queued before the booted one (`--retain-pending`).
    pub retain_pending: bool,
    /// Keep deployments after the booted one (`--retain-rollback`).
    pub retain_rollback: bool,
    /// Add the new deployment last instead of first (`--not-as-default`).
    pub not_as_default: bool,
    /// Start /etc from the new defaults alone (`--no-merge`).
    pub no_merge: bool,
}
