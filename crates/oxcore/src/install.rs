//! `oxcore install DEVICE`: coreos-installer's `install`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use installer::{BootEdit, ImageSource, Install};

/// Install an OS disk image to a block device (coreos-installer install).
#[derive(Debug, Args)]
pub struct InstallCli {
    /// The destination block device.
    device: PathBuf,
    /// The image, a local file (`raw` or `raw.gz`; signature at FILE.sig).
    #[arg(short = 'f', long, value_name = "PATH")]
    image_file: Option<PathBuf>,
    /// The image, from a URL (signature at URL.sig).
    #[arg(short = 'u', long, value_name = "URL", conflicts_with = "image_file")]
    image_url: Option<String>,
    /// The stream whose newest metal image to install (without --image-*).
    #[arg(short = 's', long, default_value = "stable")]
    stream: String,
    /// Where the stream metadata lives (`<stream>.json` under it).
    #[arg(long, value_name = "URL", default_value = installer::image::DEFAULT_STREAM_BASE)]
    stream_base_url: String,
    /// The architecture of the image (default: this machine's).
    #[arg(short = 'a', long, value_name = "ARCH")]
    architecture: Option<String>,
    /// Embed this Ignition config.
    #[arg(short = 'i', long, value_name = "PATH")]
    ignition_file: Option<PathBuf>,
    /// Embed the Ignition config at this URL.
    #[arg(
        short = 'I',
        long,
        value_name = "URL",
        conflicts_with = "ignition_file"
    )]
    ignition_url: Option<String>,
    /// The digest of the Ignition config (`sha256-HEX` or `sha512-HEX`).
    #[arg(long, value_name = "DIGEST")]
    ignition_hash: Option<String>,
    /// Fetch an Ignition config over plain HTTP without a digest.
    #[arg(long)]
    insecure_ignition: bool,
    /// Set the platform (`ignition.platform.id=`; the image's is `metal`).
    #[arg(short = 'p', long, value_name = "NAME")]
    platform: Option<String>,
    /// Append a kernel argument (repeatable).
    #[arg(long, value_name = "ARG")]
    append_karg: Vec<String>,
    /// Delete a kernel argument (repeatable).
    #[arg(long, value_name = "ARG")]
    delete_karg: Vec<String>,
    /// Trusted ed25519 public key for the signatures (base64, or a file
    /// of them, e.g. `oxcore ostree generate-key` output; repeatable).
    #[arg(long, value_name = "KEY|FILE")]
    signing_key: Vec<String>,
    /// Skip signature checks (the SHA-256 from stream metadata is still
    /// checked).
    #[arg(long)]
    insecure: bool,
    /// Keep what was written when a later step fails (default: reset the
    /// partition table).
    #[arg(long)]
    preserve_on_error: bool,
}

/// The Ignition config to embed, checked.
fn ignition(cli: &InstallCli) -> Result<Option<Vec<u8>>> {
    let bytes = match (&cli.ignition_file, &cli.ignition_url) {
        (Some(f), _) => std::fs::read(f).with_context(|| f.display().to_string())?,
        (None, Some(url)) => {
            if url.starts_with("http://") && cli.ignition_hash.is_none() && !cli.insecure_ignition {
                bail!(
                    "refusing to fetch Ignition config over HTTP without --ignition-hash or --insecure-ignition"
                );
            }
            let client = http_client::Client::builder().build()?;
            let r = client.get(url).with_context(|| url.clone())?;
            if !(200..300).contains(&r.status()) {
                bail!("{url}: server answered {}", r.status());
            }
            r.read_to_vec(64 << 20).with_context(|| url.clone())?
        }
        (None, None) => return Ok(None),
    };
    if let Some(h) = &cli.ignition_hash {
        let (alg, want) = h.split_once('-').ok_or_else(|| {
            anyhow!("invalid --ignition-hash '{h}': expected sha256-HEX or sha512-HEX")
        })?;
        let alg = match alg {
            "sha256" => &ring::digest::SHA256,
            "sha512" => &ring::digest::SHA512,
            _ => bail!("invalid --ignition-hash '{h}': unknown algorithm {alg}"),
        };
        let got = util::hex(ring::digest::digest(alg, &bytes).as_ref());
        if !got.eq_ignore_ascii_case(want) {
            bail!("Ignition config digest mismatch: expected {want}, got {got}");
        }
    }
    serde_json::from_slice::<serde_json::Value>(&bytes)
        .context("parsing specified Ignition config")?;
    Ok(Some(bytes))
}

fn key_text(arg: &str) -> Result<String> {
    if std::path::Path::new(arg).is_file() {
        std::fs::read_to_string(arg).with_context(|| arg.to_string())
    } else {
        Ok(arg.to_string())
    }
}

/// Runs `oxcore install`.
pub fn run(cli: InstallCli) -> Result<ExitCode> {
    let mut keys = Vec::new();
    for k in &cli.signing_key {
        keys.extend(installer::parse_keys(&key_text(k)?)?);
    }
    let source = match (&cli.image_file, &cli.image_url) {
        (Some(f), _) => ImageSource::File(f.clone()),
        (None, Some(u)) => ImageSource::Url(u.clone()),
        (None, None) => ImageSource::Stream {
            base_url: cli.stream_base_url.clone(),
            stream: cli.stream.clone(),
            arch: cli
                .architecture
                .clone()
                .unwrap_or_else(|| std::env::consts::ARCH.to_string()),
        },
    };
    let ignition = ignition(&cli)?;
    let i = Install {
        device: cli.device.clone(),
        source,
        keys,
        insecure: cli.insecure,
        ignition,
        edit: BootEdit {
            platform: cli.platform.clone(),
            append: cli.append_karg.clone(),
            delete: cli.delete_karg.clone(),
        },
        preserve_on_error: cli.preserve_on_error,
        tmpdir: None,
    };
    installer::install(&i, &mut std::io::stderr())?;
    Ok(ExitCode::SUCCESS)
}
