//! Where the image comes from, and checking it before anything is
//! written: the stream metadata's signature, the image's SHA-256 against
//! it, the image's own signature (of its SHA-256 digest).

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use release::meta::{Artifact, StreamDoc};

use crate::{Result, msg, shown};

/// Fedora CoreOS's stream metadata base (coreos-installer's default).
pub const DEFAULT_STREAM_BASE: &str = "https://builds.coreos.fedoraproject.org/streams/";
/// The most of a stream document or signature read.
const MAX_DOC: u64 = 16 << 20;
/// How much of the image is read before writing (the first MiB).
pub const MIB: usize = 1 << 20;

/// Where the image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// A local file (signature at `<file>.sig`).
    File(PathBuf),
    /// A URL (signature at `<url>.sig`).
    Url(String),
    /// The metal image of a stream's newest release.
    Stream {
        /// Where `<stream>.json` lives.
        base_url: String,
        /// `stable`, …
        stream: String,
        /// `x86_64`, …
        arch: String,
    },
}

impl Default for ImageSource {
    fn default() -> Self {
        ImageSource::Stream {
            base_url: DEFAULT_STREAM_BASE.into(),
            stream: "stable".into(),
            arch: std::env::consts::ARCH.into(),
        }
    }
}

/// An image fetched and checked.
#[derive(Debug)]
pub struct Fetched {
    path: PathBuf,
    _tmp: Option<tempfile::TempPath>,
    gz: bool,
    size: u64,
}

impl Fetched {
    /// The image's decompressed bytes.
    pub fn open(&self) -> Result<Box<dyn Read>> {
        let f = File::open(&self.path).map_err(|e| msg(format!("{}: {e}", shown(&self.path))))?;
        let f = std::io::BufReader::with_capacity(1 << 20, f);
        Ok(if self.gz {
            Box::new(flate2::read::GzDecoder::new(f))
        } else {
            Box::new(f)
        })
    }

    /// The decompressed size, when known.
    pub fn size_hint(&self) -> Option<u64> {
        (!self.gz).then_some(self.size)
    }
}

fn http() -> Result<http_client::Client> {
    http_client::Client::builder()
        .timeout(std::time::Duration::from_secs(4 * 3600))
        .build()
        .map_err(|e| msg(e.to_string()))
}

/// A small document at `url`; `None` for a 404.
fn get_small(client: &http_client::Client, url: &str) -> Result<Option<Vec<u8>>> {
    let r = client.get(url).map_err(|e| msg(format!("{url}: {e}")))?;
    match r.status() {
        200..=299 => Ok(Some(
            r.read_to_vec(MAX_DOC)
                .map_err(|e| msg(format!("{url}: {e}")))?,
        )),
        404 => Ok(None),
        s => Err(msg(format!("{url}: server answered {s}"))),
    }
}

/// Copies `from` to `to` (if any), returning the SHA-256 digest and size.
fn digest_copy(
    from: &mut dyn Read,
    to: Option<&mut dyn Write>,
    what: &str,
) -> Result<(Vec<u8>, u64)> {
    let (digest, n) = util::sha256_copy(from, to).map_err(|e| match e {
        util::CopyError::Read(e) | util::CopyError::Write(e) => msg(format!("{what}: {e}")),
    })?;
    Ok((digest.to_vec(), n))
}

/// Checks `signature` (base64 text, if any) of `data` with `keys`.
fn check_signature(
    what: &str,
    data: &[u8],
    signature: Option<&[u8]>,
    keys: &[Vec<u8>],
    insecure: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let Some(sig) = signature else {
        if insecure {
            let _ = writeln!(
                out,
                "Signature not found; skipping verification as requested"
            );
            return Ok(());
        }
        return Err(msg(format!(
            "{what}: --insecure not specified and signature not found"
        )));
    };
    if keys.is_empty() {
        if insecure {
            let _ = writeln!(out, "No key given; skipping verification as requested");
            return Ok(());
        }
        return Err(msg(format!(
            "{what}: no --signing-key to check its signature with (or --insecure)"
        )));
    }
    let raw = ostree_store::sign::base64_decode(String::from_utf8_lossy(sig).trim())
        .ok_or_else(|| msg(format!("{what}: the signature is not base64")))?;
    ostree_store::sign::verify(data, &[raw], keys)
        .map_err(|e| msg(format!("{what}: signature verification failure: {e}")))
}

/// Fetches the image named by `source` (into `tmpdir` when remote) and
/// checks it; nothing is returned that did not pass.
pub fn fetch(
    source: &ImageSource,
    sector: u32,
    keys: &[Vec<u8>],
    insecure: bool,
    tmpdir: &Path,
    cap: u64,
    out: &mut dyn Write,
) -> Result<Fetched> {
    match source {
        ImageSource::File(path) => {
            let what = shown(path);
            let mut f = File::open(path).map_err(|e| msg(format!("{what}: {e}")))?;
            let (digest, size) = digest_copy(&mut f, None, &what)?;
            let sig_path = PathBuf::from(format!("{what}.sig"));
            let sig = match std::fs::read(&sig_path) {
                Ok(s) => Some(s),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(msg(format!("{}: {e}", shown(&sig_path)))),
            };
            check_signature(&what, &digest, sig.as_deref(), keys, insecure, out)?;
            Ok(Fetched {
                gz: what.ends_with(".gz"),
                path: path.clone(),
                _tmp: None,
                size,
            })
        }
        ImageSource::Url(url) => {
            let client = http()?;
            let _ = writeln!(out, "Downloading image from {url} and signature");
            let sig = get_small(&client, &format!("{url}.sig"))?;
            let (tmp, digest, size) = download(&client, url, tmpdir, cap)?;
            check_signature(url, &digest, sig.as_deref(), keys, insecure, out)?;
            Ok(Fetched {
                gz: url.split(['?', '#']).next().unwrap_or(url).ends_with(".gz"),
                path: tmp.to_path_buf(),
                _tmp: Some(tmp),
                size,
            })
        }
        ImageSource::Stream {
            base_url,
            stream,
            arch,
        } => {
            let client = http()?;
            let base = if base_url.ends_with('/') {
                base_url.clone()
            } else {
                format!("{base_url}/")
            };
            let doc_url = format!("{base}{stream}.json");
            let doc = get_small(&client, &doc_url)?
                .ok_or_else(|| msg(format!("{doc_url}: no such stream (404)")))?;
            let doc_sig = get_small(&client, &format!("{doc_url}.sig"))?;
            check_signature(&doc_url, &doc, doc_sig.as_deref(), keys, insecure, out)?;
            let parsed: StreamDoc =
                serde_json::from_slice(&doc).map_err(|e| msg(format!("{doc_url}: {e}")))?;
            let (format, artifact) = pick(&parsed, arch, sector, &doc_url)?;
            let _ = writeln!(
                out,
                "Downloading Fedora CoreOS {stream} {arch} metal {format} image ({format}) and signature"
            );
            let sig = match &artifact.signature {
                Some(s) => get_small(&client, s)?,
                None => None,
            };
            let (tmp, digest, size) = download(&client, &artifact.location, tmpdir, cap)?;
            let got = util::hex(&digest);
            if !got.eq_ignore_ascii_case(&artifact.sha256) {
                return Err(msg(format!(
                    "{}: SHA-256 is {got}, the stream metadata says {}",
                    artifact.location, artifact.sha256
                )));
            }
            check_signature(
                &artifact.location,
                &digest,
                sig.as_deref(),
                keys,
                insecure,
                out,
            )?;
            Ok(Fetched {
                gz: format.ends_with(".gz"),
                path: tmp.to_path_buf(),
                _tmp: Some(tmp),
                size,
            })
        }
    }
}

/// The metal disk image of `arch` for a disk of `sector`-byte sectors.
fn pick(doc: &StreamDoc, arch: &str, sector: u32, url: &str) -> Result<(String, Artifact)> {
    let a = doc
        .architectures
        .get(arch)
        .ok_or_else(|| msg(format!("{url}: no architecture {arch}")))?;
    let metal = a
        .artifacts
        .get("metal")
        .ok_or_else(|| msg(format!("{url}: no metal artifacts for {arch}")))?;
    let prefix = if sector == 4096 { "4k." } else { "" };
    for f in ["raw", "raw.gz"] {
        let name = format!("{prefix}{f}");
        if let Some(disk) = metal.formats.get(&name).and_then(|m| m.get("disk")) {
            return Ok((name, disk.clone()));
        }
    }
    Err(msg(format!(
        "{url}: no metal {prefix}raw or {prefix}raw.gz disk image for {arch} (formats: {})",
        metal.formats.keys().cloned().collect::<Vec<_>>().join(", ")
    )))
}

/// Downloads `url` into a temporary file in `dir`, at most `cap` bytes:
/// (file, SHA-256, size).
fn download(
    client: &http_client::Client,
    url: &str,
    dir: &Path,
    cap: u64,
) -> Result<(tempfile::TempPath, Vec<u8>, u64)> {
    let r = client.get(url).map_err(|e| msg(format!("{url}: {e}")))?;
    if !(200..300).contains(&r.status()) {
        return Err(msg(format!("{url}: server answered {}", r.status())));
    }
    if r.content_length().is_some_and(|n| n > cap) {
        return Err(msg(format!(
            "{url}: the image is larger than the disk ({cap} bytes)"
        )));
    }
    let mut r = r.take(cap + 1);
    let tmp =
        tempfile::NamedTempFile::new_in(dir).map_err(|e| msg(format!("{}: {e}", shown(dir))))?;
    let (file, path) = tmp.into_parts();
    let mut w = std::io::BufWriter::new(file);
    let (digest, size) = digest_copy(&mut r, Some(&mut w), url)?;
    if size > cap {
        return Err(msg(format!(
            "{url}: the image is larger than the disk ({cap} bytes)"
        )));
    }
    w.flush().map_err(|e| msg(format!("{url}: {e}")))?;
    Ok((path, digest, size))
}

/// Reads the first MiB (or all of a smaller image).
pub fn read_first_mib(r: &mut dyn Read) -> Result<Vec<u8>> {
    let mut first = Vec::with_capacity(MIB);
    r.take(MIB as u64)
        .read_to_end(&mut first)
        .map_err(|e| msg(format!("reading the image: {e}")))?;
    if first.len() < MIB {
        return Err(msg("the image is smaller than 1 MiB: not a disk image"));
    }
    Ok(first)
}

/// The sector size a GPT image was made for: its header's `EFI PART` at
/// byte 512 or 4096.
pub fn gpt_sector_size(first: &[u8]) -> Option<u32> {
    [512u32, 4096]
        .into_iter()
        .find(|&s| first.get(s as usize..s as usize + 8) == Some(b"EFI PART"))
}
