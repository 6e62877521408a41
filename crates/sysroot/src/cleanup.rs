//! Removing what no boot entry uses: the other configuration, link farms,
//! GC refs, deployments and kernels; then pruning the repository.

use std::collections::HashSet;
use std::fs;

use crate::{Result, Sysroot, msg, remove_tree};

impl Sysroot {
    /// Removes what no current entry uses: the other loader and link farms,
    /// GC refs of other configurations, unreferenced deployments and kernels.
    pub(crate) fn remove_stale(&self, bv: u8, sub: u8) -> Result<()> {
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

    pub(crate) fn cleanup_deployments(&self) -> Result<()> {
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
}
