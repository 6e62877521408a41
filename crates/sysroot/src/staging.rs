//! Staged deployments: written now, switched to at shutdown by
//! `finalize-staged` after `/etc` is merged again; finalization can be held
//! back (the update agent holds it until its reboot slot).

use std::fs;
use std::io;
use std::path::Path;

use ostree_store::Checksum;
use ostree_store::keyfile::KeyFile;

use crate::{
    Deployment, Result, Sysroot, etc_merge, failpoint, io_err, msg, remove_tree, set_immutable,
    write_file_atomic,
};

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
        self.stage_with_trial(os, commit, origin, kargs, locked, None)
    }

    /// [`Sysroot::stage`], the deployment to boot on trial once finalized:
    /// its entry carries a boot counter of `boot_tries` tries (see
    /// [`crate::bls::BootCounter`]). The update agent stages this way.
    pub fn stage_with_trial(
        &self,
        os: &str,
        commit: &Checksum,
        origin: KeyFile,
        kargs: Option<String>,
        locked: bool,
        boot_tries: Option<u32>,
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
        if let Some(tries) = boot_tries {
            rec.set("staged", "boot-tries", &tries.to_string());
        }
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
            boot_counter: rec
                .get("staged", "boot-tries")
                .and_then(|t| t.parse().ok())
                .map(crate::bls::BootCounter::new),
        }))
    }

    /// Rebuilds `dir/etc` from `dir/usr/etc` merged with `merge`'s live
    /// /etc, exchanged in with one atomic rename.
    pub(crate) fn remerge_etc(&self, dir: &Path, merge: Option<&Deployment>) -> Result<()> {
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

    pub(crate) fn clear_staged(&self) -> Result<()> {
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
