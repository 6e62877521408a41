//! After the image is written: the `boot` partition gets the Ignition
//! config at `ignition/config.ign` (directory 0700, file 0600), and the
//! boot entry its kernel arguments (the platform, appended and deleted
//! arguments), as coreos-installer does it: only the last of the sorted
//! `loader/entries/*.conf`, which must have exactly one `options` line.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

use crate::device::Device;
use crate::{Result, msg, shown};

/// Kernel argument edits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BootEdit {
    /// `ignition.platform.id=metal` becomes this (unless `metal`).
    pub platform: Option<String>,
    /// Arguments added at the end.
    pub append: Vec<String>,
    /// Arguments removed (exact `KEY` or `KEY=VALUE` matches).
    pub delete: Vec<String>,
}

impl BootEdit {
    fn is_empty(&self) -> bool {
        self.platform.as_deref().is_none_or(|p| p == "metal")
            && self.append.is_empty()
            && self.delete.is_empty()
    }
}

/// Edits a boot entry's text.
pub fn edit_entry(text: &str, edit: &BootEdit) -> Result<String> {
    let options: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.starts_with("options ") || *l == "options")
        .map(|(i, _)| i)
        .collect();
    let line = match options.as_slice() {
        [one] => *one,
        [] => return Err(msg("Couldn't locate 'options' line")),
        _ => return Err(msg("Multiple 'options' lines found")),
    };
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mut args: Vec<String> = lines[line]
        .trim_start_matches("options")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    if let Some(p) = edit.platform.as_deref().filter(|p| *p != "metal") {
        let slot = args
            .iter_mut()
            .find(|a| *a == "ignition.platform.id=metal")
            .ok_or_else(|| msg("couldn't locate platform ID"))?;
        *slot = format!("ignition.platform.id={p}");
    }
    args.retain(|a| !edit.delete.contains(a));
    args.extend(edit.append.iter().cloned());
    lines[line] = format!("options {}", args.join(" "));
    let mut out = lines.join("\n");
    if text.ends_with('\n') {
        out.push('\n');
    }
    Ok(out)
}

/// The number of the GPT partition named `name` on `dev`.
fn partition_named(dev: &Device, name: &str) -> Result<u32> {
    let sector = u64::from(dev.sector_size()?);
    let mut f =
        std::fs::File::open(dev.path()).map_err(|e| msg(format!("{}: {e}", shown(dev.path()))))?;
    let io = |e: std::io::Error| {
        msg(format!(
            "{}: reading the partition table: {e}",
            shown(dev.path())
        ))
    };
    let mut h = vec![0u8; 512];
    f.seek(SeekFrom::Start(sector)).map_err(io)?;
    f.read_exact(&mut h).map_err(io)?;
    if &h[..8] != b"EFI PART" {
        return Err(msg(format!("{}: no GPT", shown(dev.path()))));
    }
    let u64_at = |o: usize| u64::from_le_bytes(h[o..o + 8].try_into().expect("8 bytes"));
    let u32_at = |o: usize| u32::from_le_bytes(h[o..o + 4].try_into().expect("4 bytes"));
    let (start, count, size) = (u64_at(72), u32_at(80).min(1024), u32_at(84));
    if !(128..=4096).contains(&size) {
        return Err(msg(format!(
            "{}: bad GPT entry size {size}",
            shown(dev.path())
        )));
    }
    let mut entries = vec![0u8; count as usize * size as usize];
    f.seek(SeekFrom::Start(start * sector)).map_err(io)?;
    f.read_exact(&mut entries).map_err(io)?;
    for (i, e) in entries.chunks(size as usize).enumerate() {
        if e[..16].iter().all(|&b| b == 0) {
            continue;
        }
        let units: Vec<u16> = e[56..128]
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&u| u != 0)
            .collect();
        if String::from_utf16_lossy(&units) == name {
            return Ok(i as u32 + 1);
        }
    }
    Err(msg(format!(
        "{}: no partition named `{name}`",
        shown(dev.path())
    )))
}

/// Unmounts when dropped.
struct Mounted<'a>(&'a Path);

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        let argv = vec!["umount".to_string(), shown(self.0)];
        let _ = util::cmd::run_with(&argv, None, Duration::from_secs(120));
    }
}

/// Places the Ignition config and edits the kernel arguments on the
/// `boot` partition of `dev`.
pub fn post_process(
    dev: &Device,
    ignition: Option<&[u8]>,
    edit: &BootEdit,
    out: &mut dyn Write,
) -> Result<()> {
    if ignition.is_none() && edit.is_empty() {
        return Ok(());
    }
    let part = dev.partition(partition_named(dev, "boot")?);
    let dir = tempfile::tempdir().map_err(|e| msg(format!("a mount point: {e}")))?;
    let argv: Vec<String> = ["mount", "-t", "ext4"]
        .iter()
        .map(|s| s.to_string())
        .chain([shown(&part), shown(dir.path())])
        .collect();
    let o = util::cmd::run_with(&argv, None, Duration::from_secs(120))
        .map_err(|e| msg(e.to_string()))?;
    if !o.status.success() {
        return Err(msg(format!(
            "mounting {}: {}",
            shown(&part),
            String::from_utf8_lossy(&o.stderr).trim()
        )));
    }
    let mounted = Mounted(dir.path());
    let root = mounted.0;
    if let Some(config) = ignition {
        let _ = writeln!(out, "Writing Ignition config");
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let d = root.join("ignition");
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&d)
            .map_err(|e| msg(format!("creating /boot/ignition: {e}")))?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(d.join("config.ign"))
            .map_err(|e| msg(format!("creating /boot/ignition/config.ign: {e}")))?;
        f.write_all(config)
            .and_then(|()| f.sync_all())
            .map_err(|e| msg(format!("writing /boot/ignition/config.ign: {e}")))?;
    }
    if !edit.is_empty() {
        if let Some(p) = edit.platform.as_deref().filter(|p| *p != "metal") {
            let _ = writeln!(out, "Setting platform to {p}");
        }
        if !edit.append.is_empty() || !edit.delete.is_empty() {
            let _ = writeln!(out, "Modifying kernel arguments");
        }
        let entries = root.join("loader/entries");
        let mut names: Vec<String> = std::fs::read_dir(&entries)
            .map_err(|e| msg(format!("Found no BLS entries in /boot/loader/entries: {e}")))?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".conf"))
            .collect();
        names.sort();
        let last = names
            .last()
            .ok_or_else(|| msg("Found no BLS entries in /boot/loader/entries"))?;
        let path = entries.join(last);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| msg(format!("/boot/loader/entries/{last}: {e}")))?;
        let new = edit_entry(&text, edit)?;
        util::write_atomic(&path, new.as_bytes(), 0o644, true)
            .map_err(|e| msg(format!("/boot/loader/entries/{last}: {e}")))?;
        // GRUB boots the script generated from the entries: regenerate it.
        if sysroot::grub::in_use(root) {
            sysroot::grub::write_config(&root.join("loader"))
                .map_err(|e| msg(format!("/boot/loader/grub.cfg: {e}")))?;
        }
    }
    drop(mounted);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_edited_as_coreos_installer_does() {
        let text = "title Fedora CoreOS\nversion 1\noptions root=LABEL=root rw ignition.platform.id=metal console=tty0\nlinux /x\n";
        let e = BootEdit {
            platform: Some("qemu".into()),
            append: vec!["foo=bar".into()],
            delete: vec!["console=tty0".into()],
        };
        assert_eq!(
            edit_entry(text, &e).unwrap(),
            "title Fedora CoreOS\nversion 1\noptions root=LABEL=root rw ignition.platform.id=qemu foo=bar\nlinux /x\n"
        );
        let no_platform = text.replace(" ignition.platform.id=metal", "");
        assert_eq!(
            edit_entry(&no_platform, &e).unwrap_err().to_string(),
            "couldn't locate platform ID"
        );
        assert_eq!(
            edit_entry("options a\noptions b\n", &e)
                .unwrap_err()
                .to_string(),
            "Multiple 'options' lines found"
        );
        assert_eq!(
            edit_entry("title x\n", &BootEdit::default())
                .unwrap_err()
                .to_string(),
            "Couldn't locate 'options' line"
        );
    }
}
