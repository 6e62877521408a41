//! `oxcore image`: the OS's initramfs and disk images.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use ostree_store::Checksum;

use crate::release::Common;

/// The OS's initramfs and disk images.
#[derive(Debug, Args)]
pub struct ImageCli {
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Debug, Subcommand)]
enum Verb {
    /// Build the initramfs of an OS tree: the tree's static oxcore as
    /// /init, the kernel modules the first boot needs and the tools
    /// Ignition runs, with their libraries, all from the tree.
    Initramfs {
        /// The OS tree (with usr/bin/oxcore and usr/lib/modules/KVER).
        #[arg(long, value_name = "DIR")]
        tree: PathBuf,
        /// The kernel version (default: the only one in the tree).
        #[arg(long, value_name = "KVER")]
        kver: Option<String>,
        /// Where to write it (gzip-compressed cpio).
        #[arg(long, value_name = "FILE")]
        output: PathBuf,
        /// Load this module too (repeatable).
        #[arg(long, value_name = "NAME")]
        module: Vec<String>,
        /// Copy this tool too, from the tree's PATH (repeatable).
        #[arg(long, value_name = "NAME")]
        tool: Vec<String>,
    },
    /// Build disk images of a release (Fedora CoreOS's partition layout,
    /// the sysroot deployed, GRUB for BIOS and UEFI) and record them,
    /// with sha256 and signatures, in the release metadata.
    #[command(
        override_usage = "oxcore image build --repo <REPO> --metadata <DIR> --stream <STREAM>\n       --output-dir <DIR> [OPTIONS]"
    )]
    Build(Box<BuildArgs>),
}

#[derive(Debug, Args)]
struct BuildArgs {
    #[command(flatten)]
    common: Common,
    /// The release repository (where `oxcore release compose` committed).
    #[arg(long)]
    repo: PathBuf,
    /// The stream.
    #[arg(long)]
    stream: String,
    /// The release (default: the stream's newest).
    #[arg(long)]
    version: Option<String>,
    /// Architecture.
    #[arg(long, default_value = "x86_64")]
    arch: String,
    /// Ref prefix of the stream ref `<prefix>/<arch>/coreos/<stream>`.
    #[arg(long, default_value = "fedora")]
    ref_prefix: String,
    /// Where the images go.
    #[arg(long, value_name = "DIR")]
    output_dir: PathBuf,
    /// Formats: `raw` (metal), `4k.raw` (metal, 4096-byte sectors),
    /// `qcow2` (qemu) (repeatable; default raw and qcow2).
    #[arg(long, value_name = "FORMAT")]
    format: Vec<String>,
    /// The OS name of the deployment.
    #[arg(long, default_value = "fedora-coreos")]
    os: String,
    /// The remote the node updates from: `NAME=URL`.
    #[arg(
        long,
        value_name = "NAME=URL",
        default_value = "fedora=https://ostree.example.invalid/repo"
    )]
    remote: String,
    /// An extra kernel argument (repeatable).
    #[arg(long, value_name = "ARG")]
    karg: Vec<String>,
    /// Image size in MiB.
    #[arg(long, default_value_t = 3072)]
    size_mib: u64,
    /// GRUB's module directories (i386-pc, x86_64-efi).
    #[arg(long, value_name = "DIR", default_value = "/usr/lib/grub")]
    grub_dir: PathBuf,
    /// Only build; do not record the images in the release metadata.
    #[arg(long)]
    no_record: bool,
}

/// The kernel arguments of a platform's image, as Fedora CoreOS's
/// `platforms.yaml` gives them.
fn platform_kargs(platform: &str) -> Vec<String> {
    match platform {
        "qemu" => vec!["console=tty0".into(), "console=ttyS0,115200n8".into()],
        _ => Vec::new(),
    }
}

/// Runs `oxcore image`.
pub fn run(cli: ImageCli) -> Result<ExitCode> {
    match cli.verb {
        Verb::Initramfs {
            tree,
            kver,
            output,
            module,
            tool,
        } => {
            let mut spec = initrd::build::Spec::new(&tree);
            spec.kver = kver;
            spec.modules.extend(module);
            spec.extra_tools = tool;
            if let Some(t) = std::env::var("SOURCE_DATE_EPOCH")
                .ok()
                .and_then(|v| v.parse().ok())
            {
                spec.mtime = t;
            }
            let s = initrd::build::build(&spec, &output)?;
            let size = std::fs::metadata(&output).map(|m| m.len()).unwrap_or(0);
            println!(
                "{}: kernel {}, {} modules, {} tools, {} entries, {:.1} MiB ({:.1} MiB uncompressed)",
                output.display(),
                s.kver,
                s.modules.len(),
                s.tools.len(),
                s.entries,
                size as f64 / 1048576.0,
                s.bytes as f64 / 1048576.0
            );
            if !s.missing_modules.is_empty() {
                println!(
                    "not in this kernel (skipped): {}",
                    s.missing_modules.join(", ")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Verb::Build(a) => build(*a),
    }
}

fn build(a: BuildArgs) -> Result<ExitCode> {
    let formats = if a.format.is_empty() {
        vec!["raw".to_string(), "qcow2".to_string()]
    } else {
        a.format.clone()
    };
    for f in &formats {
        if !["raw", "4k.raw", "qcow2"].contains(&f.as_str()) {
            bail!("--format {f}: expected raw, 4k.raw or qcow2");
        }
    }
    let (remote, url) = a
        .remote
        .split_once('=')
        .filter(|(n, u)| !n.is_empty() && !u.is_empty())
        .ok_or_else(|| anyhow!("--remote {}: expected NAME=URL", a.remote))?;
    let meta = release::publish::Metadata::new(&a.common.metadata, "");
    let index = meta.index(&a.stream)?;
    let version = match &a.version {
        Some(v) => v.clone(),
        None => index
            .releases
            .last()
            .map(|r| r.version.clone())
            .ok_or_else(|| anyhow!("stream {} has no release", a.stream))?,
    };
    let doc = meta.release(&a.stream, &version)?;
    let commit = doc
        .architectures
        .get(&a.arch)
        .map(|x| x.commit.clone())
        .ok_or_else(|| anyhow!("release {version} has no {} commit", a.arch))?;
    let commit = Checksum::from_hex(&commit).map_err(|e| anyhow!("{commit}: {e}"))?;
    std::fs::create_dir_all(&a.output_dir).with_context(|| a.output_dir.display().to_string())?;
    let base = format!("oxcore-{version}");
    let spec = |platform: &str, sector_size: u32| installer::build::Spec {
        repo: a.repo.clone(),
        commit,
        ref_name: crate::release::stream_ref(&a.ref_prefix, &a.arch, &a.stream),
        remote: (remote.to_string(), url.to_string()),
        os: a.os.clone(),
        platform: platform.to_string(),
        kargs: platform_kargs(platform)
            .into_iter()
            .chain(a.karg.iter().cloned())
            .collect(),
        size_mib: a.size_mib,
        sector_size,
        grub_dir: a.grub_dir.clone(),
        version: version.clone(),
    };
    let mut out = std::io::stdout();
    let mut artifacts = Vec::new();
    for f in &formats {
        let (platform, sector, file) = match f.as_str() {
            "raw" => ("metal", 512, format!("{base}-metal.{}.raw", a.arch)),
            "4k.raw" => ("metal", 4096, format!("{base}-metal4k.{}.raw", a.arch)),
            _ => ("qemu", 512, format!("{base}-qemu.{}.qcow2", a.arch)),
        };
        let path = a.output_dir.join(&file);
        println!("Building {file} ({platform}, {sector}-byte sectors)");
        if f == "qcow2" {
            let raw = a.output_dir.join(format!(".{file}.raw"));
            let r = installer::build::build_raw(&spec(platform, sector), &raw, &mut out)
                .map_err(anyhow::Error::from)
                .and_then(|()| qcow2(&raw, &path));
            let _ = std::fs::remove_file(&raw);
            r?;
        } else {
            installer::build::build_raw(&spec(platform, sector), &path, &mut out)?;
        }
        artifacts.push((platform.to_string(), f.clone(), "disk".to_string(), path));
    }
    if !a.no_record {
        let (stream, arch) = (a.stream.clone(), a.arch.clone());
        crate::release::signed(&a.common, |meta, sign| {
            let media = crate::release::publish_artifacts(
                &a.common, &stream, &version, &arch, &artifacts, sign,
            )?;
            meta.add_artifacts(
                &stream,
                &version,
                &arch,
                &media,
                crate::release::now(),
                sign,
            )?;
            Ok(())
        })?;
        println!(
            "Recorded {} artifact(s) in release {version} of stream {}",
            artifacts.len(),
            a.stream
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Converts a raw image to qcow2 with `qemu-img`, through a temporary
/// name.
fn qcow2(raw: &std::path::Path, out: &std::path::Path) -> Result<()> {
    let tmp = out.with_file_name(format!(
        ".{}.tmp",
        out.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    let argv: Vec<String> = ["qemu-img", "convert", "-f", "raw", "-O", "qcow2"]
        .iter()
        .map(|s| s.to_string())
        .chain([
            raw.to_string_lossy().into_owned(),
            tmp.to_string_lossy().into_owned(),
        ])
        .collect();
    let o = util::cmd::run_with(&argv, None, std::time::Duration::from_secs(1800))?;
    if !o.status.success() {
        let _ = std::fs::remove_file(&tmp);
        bail!(
            "qemu-img convert: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    std::fs::rename(&tmp, out).with_context(|| out.display().to_string())?;
    Ok(())
}
