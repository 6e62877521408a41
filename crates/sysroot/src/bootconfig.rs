//! The boot configuration: which `boot/loader.N` is current (read as
//! OSTree reads it, refusing a configuration that cannot be read while
//! deployments exist), the deployments its entries name, and writing a new
//! configuration with one atomic switch of `boot/loader`.

use std::fs;
use std::io;

use ostree_store::Checksum;
use ostree_store::keyfile::KeyFile;

use crate::bls::{self, BootEntry};
use crate::{
    Deployment, Error, Result, Sysroot, failpoint, io_err, msg, read_link_name, remove_tree,
    symlink_atomic, sync_path,
};

impl Sysroot {
    /// What `boot/loader` names: `Some(N)` for `loader.N`, `None` when the
    /// link does not exist. Anything else is an error, as in OSTree.
    pub(crate) fn loader_link(&self) -> Result<Option<u8>> {
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

    /// The deployment directories on disk (`<os>/<checksum>.<serial>`),
    /// whatever the boot configuration says.
    pub(crate) fn deployment_dirs(&self) -> Result<Vec<String>> {
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
    pub(crate) fn readable_bootversion(&self) -> Result<(u8, bool)> {
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

    pub(crate) fn subbootversion(&self, bootversion: u8) -> Result<u8> {
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
        entries.sort_by_key(|(_, e)| std::cmp::Reverse(e.version_number()));
        // Under GRUB, the tries a trial has used are in grubenv.
        let boot = self.path.join("boot");
        let grubenv = if crate::grub::in_use(&boot) {
            crate::grub::read_env(&boot)?
        } else {
            Vec::new()
        };
        let mut out = Vec::new();
        for (path, entry) in entries {
            let file = path.file_name().map(|f| f.to_string_lossy().into_owned());
            let arg = entry
                .ostree_arg()
                .ok_or_else(|| msg(format!("{}: no ostree= kernel argument", path.display())))?;
            let (_, os, bootcsum, bootserial) = bls::parse_ostree_arg(arg)
                .ok_or_else(|| msg(format!("{}: invalid ostree={arg}", path.display())))?;
            // `+N` that belongs to the OS name (`ostree-1-os+3.conf` for an
            // OS `os+3`) is not a counter.
            let boot_counter = file.and_then(|f| {
                let (name, counter) = bls::BootCounter::split_file_name(&f);
                let c = counter.filter(|_| name.ends_with(&format!("-{os}")))?;
                Some(match crate::grub::tries_left(&grubenv, &f) {
                    Some(left) if left < c.left => bls::BootCounter {
                        left,
                        done: c.done + (c.left - left),
                    },
                    _ => c,
                })
            });
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
                boot_counter,
            });
        }
        Ok(out)
    }

    /// The booted deployment's index: the one named by `ostree=` in
    /// `<sysroot>/proc/cmdline` when `<sysroot>/run/ostree-booted` exists
    /// (on a booted host both are the real ones).
    pub(crate) fn booted_index(&self, deployments: &[Deployment]) -> Result<Option<usize>> {
        if !self.path.join("run/ostree-booted").exists() {
            return Ok(None);
        }
        // On the booted system itself, the deployment is the directory `/`
        // is (as OSTree finds it): exact even when boot serials were
        // renumbered since boot.
        if self.path == std::path::Path::new("/")
            && let Ok(root) = fs::metadata("/")
        {
            use std::os::unix::fs::MetadataExt;
            for (i, d) in deployments.iter().enumerate() {
                if let Ok(m) = fs::metadata(self.path.join(d.rel_dir()))
                    && (m.dev(), m.ino()) == (root.dev(), root.ino())
                {
                    return Ok(Some(i));
                }
            }
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

    /// Makes `list` the boot configuration, default first: writes the
    /// other `loader.N` and `boot.N.M` and GC refs, syncs, switches with
    /// one rename, then removes what the old configuration used.
    pub(crate) fn write_deployments(&self, list: &[Deployment]) -> Result<()> {
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
            let counter = d.boot_counter.map(|c| c.suffix()).unwrap_or_default();
            let path = entries.join(format!("ostree-{}-{}{counter}.conf", n - i, d.os));
            fs::write(&path, e.to_text()).map_err(|e| io_err(&path, e))?;
        }
        let boot = self.path.join("boot");
        let grub = crate::grub::in_use(&boot);
        if grub {
            crate::grub::write_config(&self.path.join(format!("boot/loader.{new_bv}")))?;
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
        if grub {
            crate::grub::clear_trial(&boot)?;
        }
        self.remove_stale(new_bv, new_sub)?;
        Ok(())
    }

    /// The entry file of deployment `d` in the current configuration.
    fn entry_file(&self, d: &Deployment) -> Result<std::path::PathBuf> {
        let (bv, _) = self.readable_bootversion()?;
        let dir = self.path.join(format!("boot/loader.{bv}/entries"));
        for e in fs::read_dir(&dir).map_err(|e| io_err(&dir, e))? {
            let p = e.map_err(|e| io_err(&dir, e))?.path();
            if p.extension().is_none_or(|x| x != "conf") {
                continue;
            }
            let text = fs::read_to_string(&p).map_err(|e| io_err(&p, e))?;
            let entry = BootEntry::parse(&text);
            if let Some((_, os, bootcsum, serial)) =
                entry.ostree_arg().and_then(bls::parse_ostree_arg)
                && os == d.os
                && bootcsum == d.bootcsum
                && serial == d.bootserial
            {
                return Ok(p);
            }
        }
        Err(msg(format!(
            "{}: no boot entry for deployment {}",
            dir.display(),
            d.name()
        )))
    }

    /// Sets or removes the boot counter of deployment `index`'s entry by
    /// renaming the entry in place, as the bootloader and
    /// `systemd-bless-boot` do (`None` marks the boot good). The rename is
    /// atomic and synced; the rest of the configuration is not touched.
    pub fn set_boot_counter(&self, index: usize, counter: Option<bls::BootCounter>) -> Result<()> {
        let _lock = self.lock()?;
        let list = self.deployments()?;
        let d = list
            .get(index)
            .ok_or_else(|| msg(format!("Invalid index {index}")))?;
        let from = self.entry_file(d)?;
        let file = from
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (name, _) = bls::BootCounter::split_file_name(&file);
        let suffix = counter.map(|c| c.suffix()).unwrap_or_default();
        let to = from.with_file_name(format!("{name}{suffix}.conf"));
        if to != from {
            fs::rename(&from, &to).map_err(|e| io_err(&to, e))?;
            let boot = self.path.join("boot");
            if crate::grub::in_use(&boot) {
                let (bv, _) = self.readable_bootversion()?;
                crate::grub::write_config(&boot.join(format!("loader.{bv}")))?;
                crate::grub::clear_trial(&boot)?;
            }
            sync_path(&self.path)?;
        }
        Ok(())
    }

    /// On a sysroot that was never deployed (no `boot/loader`, no
    /// `boot/loader.N`, nothing under `ostree/deploy`), starts an empty
    /// configuration `boot/loader -> loader.0` before the first deployment
    /// is built. A first deploy killed halfway then leaves a readable
    /// (empty) configuration and an unreferenced directory the next
    /// operation removes, instead of a deployment with no configuration,
    /// which reads like an unmounted `/boot`.
    pub(crate) fn start_boot_config(&self, current: &[Deployment]) -> Result<()> {
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
    pub(crate) fn check_whole(&self, d: &Deployment) -> Result<()> {
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

    pub(crate) fn os_pretty_name(&self, d: &Deployment) -> String {
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

    pub(crate) fn kernel_files(&self, d: &Deployment) -> Result<(String, Option<String>)> {
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
}
