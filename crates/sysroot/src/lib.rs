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

//! Modules: [`bls`] (boot entries, kernel arguments), `bootconfig` (the
//! current configuration and the atomic switch), `deploy` (making and
//! changing deployments), `cleanup`, `staging` (staged deployments and
//! their finalization), [`etc_merge`] (the three-way `/etc` merge),
//! `lock` (the sysroot lock), `policy` (upgrade, deploy-revision, rebase,
//! set-origin), `status` (the typed status and rpm-ostree's JSON) and
//! [`prepare`] (the initramfs's prepare-root).

pub mod bls;
mod bootconfig;
mod cleanup;
mod deploy;
pub mod etc_merge;
pub mod grub;
mod lock;
mod policy;
pub mod prepare;
mod staging;
mod status;

pub use deploy::DeployOptions;
pub use lock::SysrootLock;
pub use policy::{Puller, UpdateOptions, Upgrade};

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use ostree_store::keyfile::KeyFile;
use ostree_store::{Checksum, Repo, RepoMode};

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
    /// The boot counter its entry's file name carries: only deployments
    /// the update agent finalized on trial have one (`ostree admin`
    /// writes none, so its entries stay byte-identical).
    pub boot_counter: Option<bls::BootCounter>,
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

    /// Takes the sysroot lock (see [`SysrootLock`]) until the guard is dropped;
    /// every change below takes it too, so a command that reads, decides
    /// and writes holds it across all three.
    pub fn lock(&self) -> Result<SysrootLock> {
        lock::lock(&self.path, &mut || {})
    }

    /// [`Sysroot::lock`], calling `on_wait` if another holder makes it wait.
    pub fn lock_with(&self, mut on_wait: impl FnMut()) -> Result<SysrootLock> {
        lock::lock(&self.path, &mut on_wait)
    }
}
