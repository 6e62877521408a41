//! Building a disk image from a release, with Fedora CoreOS's layout:
//!
//! | # | label | type | size | filesystem |
//! |---|---|---|---|---|
//! | 1 | `BIOS-BOOT` | BIOS boot | 1 MiB | GRUB's core image |
//! | 2 | `EFI-SYSTEM` | EFI system | 127 MiB | vfat `EFI-SYSTEM`, GRUB for UEFI |
//! | 3 | `boot` | XBOOTLDR | 384 MiB | ext4 `boot`: kernels, BLS entries, GRUB |
//! | 4 | `root` | x86-64 root | the rest | xfs `root`: the OSTree sysroot |
//!
//! The disk GUID is Fedora CoreOS's sentinel
//! (`00000000-0000-4000-a000-000000000001`). The sysroot is deployed with
//! the sysroot library (the same code the node updates itself with): the
//! release's commit pulled from the release repository, the origin
//! following its stream ref on a remote, kernel arguments
//! `rw $ignition_firstboot ignition.platform.id=<platform>` and the
//! platform's console. `/boot/ignition.firstboot` marks the first boot.
//!
//! GRUB (Debian's `grub-pc-bin` and `grub-efi-amd64-bin`) boots it by BIOS
//! (core image in the BIOS boot partition, boot sector in the MBR, set up
//! here as `grub-bios-setup` does) and by UEFI (`EFI/BOOT/BOOTX64.EFI` on
//! the ESP, written with mtools); both find the `boot` filesystem by its label and read
//! `/grub/grub.cfg` (see `sysroot::grub`). A disk of 4096-byte sectors
//! boots by UEFI only (no BIOS reads such a disk).
//!
//! Everything happens on a loop device over a temporary file, renamed to
//! the output at the end; a failure unmounts, detaches and removes it.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ostree_store::{Checksum, Repo};

use crate::{Result, msg};

/// Fedora CoreOS's disk GUID sentinel (randomized on first boot there).
pub const DISK_GUID: &str = "00000000-0000-4000-a000-000000000001";
/// (number, label, type GUID, size MiB; 0 = the rest).
pub const PARTITIONS: [(u32, &str, &str, u64); 4] = [
    (1, "BIOS-BOOT", "21686148-6449-6E6F-744E-656564454649", 1),
    (2, "EFI-SYSTEM", "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", 127),
    (3, "boot", "BC13C2FF-59E6-4262-A352-B275FD6F7172", 384),
    (4, "root", "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709", 0),
];

/// The modules GRUB's core images carry (the rest load from
/// `/grub/<platform>/` on the boot partition).
const CORE_MODULES: &[&str] = &[
    "part_gpt",
    "ext2",
    "fat",
    "search",
    "search_label",
    "search_fs_uuid",
    "normal",
    "configfile",
    "echo",
    "test",
    "loadenv",
    "serial",
    "terminal",
    "linux",
    "gzio",
    "minicmd",
];

/// What to build.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The repository holding the release's commit.
    pub repo: PathBuf,
    /// The commit.
    pub commit: Checksum,
    /// The ref the node follows (`fedora/x86_64/coreos/stable`).
    pub ref_name: String,
    /// The remote the node pulls updates from: name and URL.
    pub remote: (String, String),
    /// The OS name (`fedora-coreos`).
    pub os: String,
    /// `ignition.platform.id`.
    pub platform: String,
    /// More kernel arguments.
    pub kargs: Vec<String>,
    /// The image's size.
    pub size_mib: u64,
    /// 512 or 4096.
    pub sector_size: u32,
    /// Where GRUB's platform directories are (`/usr/lib/grub`).
    pub grub_dir: PathBuf,
    /// The version, for the aleph file.
    pub version: String,
}

/// Runs a tool, its failure an error naming it.
fn tool(argv: &[&str], limit: Duration) -> Result<String> {
    let o = crate::device::tool_within(argv, limit)?;
    if !o.status.success() {
        return Err(msg(format!(
            "`{}` failed ({}): {}",
            util::cmd::command_line(argv),
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

const MIN: Duration = Duration::from_secs(60);

/// Loop device, mounts and temporary output, undone in reverse order
/// unless the build finished.
struct Work {
    file: PathBuf,
    loopdev: Option<String>,
    mounts: Vec<PathBuf>,
    keep: bool,
}

impl Work {
    fn unmount_all(&mut self) -> Result<()> {
        while let Some(m) = self.mounts.pop() {
            let p = m.to_string_lossy().into_owned();
            tool(&["umount", &p], MIN)?;
        }
        Ok(())
    }

    fn detach(&mut self) -> Result<()> {
        if let Some(l) = self.loopdev.take() {
            let _ = tool(&["partx", "--delete", &l], MIN);
            tool(&["losetup", "--detach", &l], MIN)?;
        }
        Ok(())
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        while let Some(m) = self.mounts.pop() {
            let p = m.to_string_lossy().into_owned();
            let _ = tool(&["umount", "--lazy", &p], MIN);
        }
        let _ = self.detach();
        if !self.keep {
            let _ = fs::remove_file(&self.file);
        }
    }
}

fn mount(work: &mut Work, dev: &str, at: &Path) -> Result<()> {
    fs::create_dir_all(at).map_err(|e| msg(format!("{}: {e}", at.display())))?;
    tool(&["mount", dev, &at.to_string_lossy()], MIN)?;
    work.mounts.push(at.to_path_buf());
    Ok(())
}

fn part(loopdev: &str, n: u32) -> String {
    format!("{loopdev}p{n}")
}

/// Builds the raw image of `spec` at `output` (replaced atomically);
/// `log` gets one line per step with its time.
pub fn build_raw(spec: &Spec, output: &Path, log: &mut dyn Write) -> Result<()> {
    let started = Instant::now();
    let mut step = |what: &str, t: &mut Instant| {
        let _ = writeln!(log, "{what} ({:.1} s)", t.elapsed().as_secs_f64());
        *t = Instant::now();
    };
    let mut t = Instant::now();
    if ![512, 4096].contains(&spec.sector_size) {
        return Err(msg(format!(
            "sector size {}: must be 512 or 4096",
            spec.sector_size
        )));
    }
    let min = 513 + 512;
    if spec.size_mib < min {
        return Err(msg(format!(
            "image size {} MiB: at least {min} MiB (513 MiB before the root partition)",
            spec.size_mib
        )));
    }
    let src = Repo::open(&spec.repo).map_err(|e| msg(format!("{}: {e}", spec.repo.display())))?;
    src.load_commit(&spec.commit).map_err(|e| {
        msg(format!(
            "{}: commit {}: {e}",
            spec.repo.display(),
            spec.commit.to_hex()
        ))
    })?;
    let dir = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| msg(format!("{}: no file name", output.display())))?;
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    // Made before `work`, so that it is removed after the unmounts.
    let mnt = tempfile::tempdir_in(dir).map_err(|e| msg(format!("a mount point: {e}")))?;
    let mut work = Work {
        file: tmp.clone(),
        loopdev: None,
        mounts: Vec::new(),
        keep: false,
    };
    {
        let f = fs::File::create(&tmp).map_err(|e| msg(format!("{}: {e}", tmp.display())))?;
        f.set_len(spec.size_mib << 20)
            .map_err(|e| msg(format!("{}: {e}", tmp.display())))?;
    }
    let ss = spec.sector_size.to_string();
    let l = tool(
        &[
            "losetup",
            "--find",
            "--show",
            "--sector-size",
            &ss,
            &tmp.to_string_lossy(),
        ],
        MIN,
    )?
    .trim()
    .to_string();
    work.loopdev = Some(l.clone());

    // The partition table.
    let mib = (1u64 << 20) / u64::from(spec.sector_size);
    let mut args: Vec<String> = vec![
        "sgdisk".into(),
        "--zap-all".into(),
        format!("--set-alignment={mib}"),
        format!("--disk-guid={DISK_GUID}"),
    ];
    let mut start = mib;
    for (n, label, type_guid, size) in PARTITIONS {
        let end = if size == 0 {
            "0".to_string()
        } else {
            (start + size * mib - 1).to_string()
        };
        args.push(format!("--new={n}:{start}:{end}"));
        args.push(format!("--change-name={n}:{label}"));
        args.push(format!("--typecode={n}:{type_guid}"));
        start += size * mib;
    }
    // The legacy BIOS bootable attribute, as Fedora CoreOS sets it.
    args.push("--attributes=1:set:2".into());
    args.push(l.clone());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    tool(&argv, MIN)?;
    // --update (BLKPG): also replaces what an earlier user of this loop
    // device left registered.
    tool(&["partx", "--update", &l], MIN)?;
    step("partitioned", &mut t);

    tool(&["mkfs.fat", "-n", "EFI-SYSTEM", &part(&l, 2)], MIN)?;
    tool(&["mkfs.ext4", "-q", "-L", "boot", &part(&l, 3)], MIN)?;
    tool(&["mkfs.xfs", "-q", "-f", "-L", "root", &part(&l, 4)], MIN)?;
    step("filesystems made", &mut t);

    let root = mnt.path().join("root");
    mount(&mut work, &part(&l, 4), &root)?;
    let boot = root.join("boot");
    fs::create_dir_all(&boot).map_err(|e| msg(format!("{}: {e}", boot.display())))?;
    mount(&mut work, &part(&l, 3), &boot)?;

    // GRUB's configuration first: the sysroot then writes
    // loader/grub.cfg with every deployment.
    let grub = boot.join("grub");
    fs::create_dir_all(&grub).map_err(|e| msg(format!("{}: {e}", grub.display())))?;
    let write = |p: &Path, data: &[u8]| {
        util::write_atomic(p, data, 0o644, false).map_err(|e| msg(format!("{}: {e}", p.display())))
    };
    write(
        &grub.join("grub.cfg"),
        sysroot::grub::static_config("boot", 1).as_bytes(),
    )?;
    write(
        &grub.join("grubenv"),
        &sysroot::grub::format_env(&[]).map_err(|e| msg(e.to_string()))?,
    )?;

    // The sysroot.
    let sr = sysroot::Sysroot::init_fs(&root).map_err(|e| msg(e.to_string()))?;
    sr.os_init(&spec.os).map_err(|e| msg(e.to_string()))?;
    let (remote, url) = &spec.remote;
    {
        let mut repo = Repo::open(&root.join("ostree/repo")).map_err(|e| msg(e.to_string()))?;
        let cfg = ostree_store::remote::NewRemote {
            name: remote.clone(),
            url: url.clone(),
            branches: vec![spec.ref_name.clone()],
            no_gpg_verify: true,
            sign_verify: None,
            set: Vec::new(),
        };
        ostree_store::remote::Remote::add(&mut repo, &cfg, false)
            .map_err(|e| msg(e.to_string()))?;
        // The commit, under the remote's ref (as a pull from it leaves it).
        ostree_store::pull::pull_local(&repo, &src, &[spec.commit.to_hex()], None)
            .map_err(|e| msg(format!("pulling {}: {e}", spec.commit.to_hex())))?;
        repo.set_ref(Some(remote), &spec.ref_name, Some(&spec.commit))
            .map_err(|e| msg(e.to_string()))?;
    }
    step("release pulled into the sysroot", &mut t);
    let mut kargs = vec![
        "rw".to_string(),
        "$ignition_firstboot".to_string(),
        format!("ignition.platform.id={}", spec.platform),
    ];
    kargs.extend(spec.kargs.iter().cloned());
    let origin = sysroot::origin_for_refspec(&format!("{remote}:{}", spec.ref_name));
    let sr = sysroot::Sysroot::open(&root).map_err(|e| msg(e.to_string()))?;
    sr.deploy(
        &spec.os,
        &spec.commit,
        origin,
        Some(kargs.join(" ")),
        &Default::default(),
    )
    .map_err(|e| msg(format!("deploying: {e}")))?;
    step("deployed", &mut t);

    // First boot, and the build's record (Fedora CoreOS's aleph file).
    write(&boot.join("ignition.firstboot"), b"")?;
    let aleph = serde_json::json!({
        "build": spec.version,
        "ref": spec.ref_name,
        "ostree-commit": spec.commit.to_hex(),
        "imgid": name,
    });
    write(
        &root.join(".coreos-aleph-version.json"),
        format!("{aleph:#}\n").as_bytes(),
    )?;

    // GRUB: modules on the boot partition, core images, boot sector.
    let early = mnt.path().join("early.cfg");
    write(
        &early,
        b"search --no-floppy --label boot --set root\nset prefix=($root)/grub\n",
    )?;
    let platforms: &[&str] = if spec.sector_size == 512 {
        &["i386-pc", "x86_64-efi"]
    } else {
        &["x86_64-efi"]
    };
    for platform in platforms {
        let from = spec.grub_dir.join(platform);
        let to = grub.join(platform);
        copy_modules(&from, &to)?;
        let out = if *platform == "i386-pc" {
            mnt.path().join("core.img")
        } else {
            mnt.path().join("BOOTX64.EFI")
        };
        let mut argv = vec![
            "grub-mkimage".to_string(),
            "--directory".into(),
            from.to_string_lossy().into_owned(),
            "--format".into(),
            (*platform).into(),
            "--prefix".into(),
            "/grub".into(),
            "--config".into(),
            early.to_string_lossy().into_owned(),
            "--output".into(),
            out.to_string_lossy().into_owned(),
        ];
        if *platform == "i386-pc" {
            argv.push("biosdisk".into());
        } else {
            // The firmware's framebuffer for the kernel (else GRUB boots
            // "in blind mode" and a screen stays dark).
            argv.push("all_video".into());
        }
        argv.extend(CORE_MODULES.iter().map(|m| m.to_string()));
        let v: Vec<&str> = argv.iter().map(String::as_str).collect();
        tool(&v, MIN)?;
        if *platform == "i386-pc" {
            let core = fs::read(&out).map_err(|e| msg(format!("{}: {e}", out.display())))?;
            let boot_img = from.join("boot.img");
            let boot_img =
                fs::read(&boot_img).map_err(|e| msg(format!("{}: {e}", boot_img.display())))?;
            bios_setup(&l, &boot_img, &core, mib)?;
        } else {
            // The ESP is written with mtools: no vfat driver needed here.
            let esp = part(&l, 2);
            tool(&["mmd", "-i", &esp, "::/EFI", "::/EFI/BOOT"], MIN)?;
            tool(
                &[
                    "mcopy",
                    "-i",
                    &esp,
                    &out.to_string_lossy(),
                    "::/EFI/BOOT/BOOTX64.EFI",
                ],
                MIN,
            )?;
        }
    }
    step("bootloader installed", &mut t);

    rustix::fs::sync();
    work.unmount_all()?;
    work.detach()?;
    fs::rename(&tmp, output).map_err(|e| msg(format!("{}: {e}", output.display())))?;
    work.keep = true;
    let _ = writeln!(
        log,
        "{}: {} MiB image built in {:.1} s",
        output.display(),
        spec.size_mib,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Copies GRUB's loadable modules and lists (not the debug images).
fn copy_modules(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to).map_err(|e| msg(format!("{}: {e}", to.display())))?;
    let rd = fs::read_dir(from).map_err(|e| {
        msg(format!(
            "{}: {e} (GRUB's modules: apt-get install grub-pc-bin grub-efi-amd64-bin)",
            from.display()
        ))
    })?;
    for e in rd {
        let e = e.map_err(|e| msg(format!("{}: {e}", from.display())))?;
        let n = e.file_name().to_string_lossy().into_owned();
        if n.ends_with(".mod") || n.ends_with(".lst") {
            fs::copy(e.path(), to.join(&n)).map_err(|e| msg(format!("{n}: {e}")))?;
        }
    }
    Ok(())
}

/// Offsets in GRUB's `boot.img` (`include/grub/i386/pc/boot.h`).
const BPB: std::ops::Range<usize> = 0x3..0x5a;
const KERNEL_SECTOR: usize = 0x5c;
const DRIVE_CHECK: usize = 0x66;
const MBR_TABLE: std::ops::Range<usize> = 0x1b8..0x1fe;
/// The first blocklist entry at the end of `diskboot.img`, the core
/// image's first sector: start (u64), length (u16), segment (u16).
const BLOCKLIST_START: usize = 0x200 - 12;

/// Installs GRUB for BIOS as `grub-bios-setup` does for a GPT disk: the
/// core image into the BIOS boot partition (which starts `start` 512-byte
/// sectors in), its blocklist pointing at its own second sector, and
/// `boot.img` in the MBR (keeping the protective MBR's partition table
/// and disk signature) pointing at its first sector.
fn bios_setup(dev: &str, boot_img: &[u8], core: &[u8], start: u64) -> Result<()> {
    let io = |e: std::io::Error| msg(format!("{dev}: {e}"));
    if boot_img.len() != 512 {
        return Err(msg("GRUB's boot.img is not 512 bytes"));
    }
    if core.len() < 512 || core.len() as u64 > (1 << 20) {
        return Err(msg(format!(
            "GRUB's core image is {} bytes: it must fit the 1 MiB BIOS boot partition",
            core.len()
        )));
    }
    let mut core = core.to_vec();
    core.resize(core.len().div_ceil(512) * 512, 0);
    core[BLOCKLIST_START..BLOCKLIST_START + 8].copy_from_slice(&(start + 1).to_le_bytes());
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dev)
        .map_err(io)?;
    let mut mbr = [0u8; 512];
    f.read_exact(&mut mbr).map_err(io)?;
    let mut new = boot_img.to_vec();
    new[BPB].copy_from_slice(&mbr[BPB]);
    new[MBR_TABLE].copy_from_slice(&mbr[MBR_TABLE]);
    new[KERNEL_SECTOR..KERNEL_SECTOR + 8].copy_from_slice(&start.to_le_bytes());
    // Hard disk: skip the check for BIOSes that pass a wrong drive.
    new[DRIVE_CHECK] = 0x90;
    new[DRIVE_CHECK + 1] = 0x90;
    f.seek(SeekFrom::Start(start * 512)).map_err(io)?;
    f.write_all(&core).map_err(io)?;
    f.sync_all().map_err(io)?;
    f.seek(SeekFrom::Start(0)).map_err(io)?;
    f.write_all(&new).map_err(io)?;
    f.sync_all().map_err(io)?;
    Ok(())
}
