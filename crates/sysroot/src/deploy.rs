//! Making deployments: the checkout, `/etc` from the new defaults merged
//! with the old deployment's changes, the kernel under `boot/ostree`, the
//! origin; and the changes of the deployment list (deploy, undeploy,
//! rollback, pin, kernel arguments).

use std::fs;
use std::io;
use std::path::Path;

use ostree_store::checkout::{CheckoutOptions, checkout};
use ostree_store::keyfile::KeyFile;
use ostree_store::{Checksum, RepoMode};

use crate::{
    Deployment, Result, Sysroot, etc_merge, failpoint, io_err, msg, remove_tree, set_immutable,
    write_file_atomic,
};

impl Sysroot {
    pub(crate) fn next_serial(&self, os: &str, checksum: &Checksum) -> Result<u32> {
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
    pub(crate) fn new_deployment(
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
            boot_counter: None,
        })
    }

    pub(crate) fn build(
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
    pub(crate) fn install_kernel(&self, os: &str, dir: &Path) -> Result<String> {
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
        check_index(&list, index)?;
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
        let list = self.deployments()?;
        if list.len() < 2 {
            return Err(msg("No rollback deployment found"));
        }
        let booted = self.booted_index(&list)?;
        let from = match booted {
            Some(0) | None => 1,
            Some(b) => b,
        };
        self.make_first(list, from)?;
        Ok((from, 0))
    }

    /// Writes `list` with deployment `index` moved to the front.
    fn make_first(&self, mut list: Vec<Deployment>, index: usize) -> Result<()> {
        if index == 0 {
            return Ok(());
        }
        let d = list.remove(index);
        list.insert(0, d);
        self.write_deployments(&list)
    }

    /// Makes deployment `index` the default (first), keeping the others
    /// in their order.
    pub fn set_default(&self, index: usize) -> Result<()> {
        let _lock = self.lock()?;
        let list = self.deployments()?;
        check_index(&list, index)?;
        self.make_first(list, index)
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
    pub(crate) fn write_origin(&self, d: &Deployment, origin: &KeyFile) -> Result<()> {
        let _lock = self.lock()?;
        let path = self
            .path
            .join(format!("ostree/deploy/{}/deploy/{}.origin", d.os, d.name()));
        write_file_atomic(&path, origin.to_string().as_bytes())
    }
}

/// Refuses an index past the end of `list`, as `ostree admin` words it.
fn check_index(list: &[Deployment], index: usize) -> Result<()> {
    if index >= list.len() {
        return Err(msg(format!(
            "Out of range deployment index {index}, expected < {}",
            list.len()
        )));
    }
    Ok(())
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
