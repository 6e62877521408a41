//! Fetching resources: the contents behind a `source` URL, decompressed and
//! verified against `verification.hash` before anything uses them.

use std::io::{Read, Write};

use ignition_config::types::Resource;
use sha2::Digest;

/// Why a resource could not be had.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URL is malformed or its data cannot be decoded.
    #[error("unable to fetch {url}: {reason}")]
    Bad {
        /// The source URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// A scheme this engine does not fetch (yet), or a remote one offline.
    #[error(
        "unable to fetch {url}: fetching {scheme}: URLs is not possible here (offline, or not supported by this engine yet)"
    )]
    Unsupported {
        /// The source URL.
        url: String,
        /// Its scheme.
        scheme: String,
    },
    /// The contents do not match `verification.hash`.
    #[error("contents of {url} do not match the expected hash: got {got}, want {want}")]
    HashMismatch {
        /// The source URL.
        url: String,
        /// What the contents hash to.
        got: String,
        /// What the config expects.
        want: String,
    },
}

/// How to reach remote resources: the config's proxy and timeouts.
#[derive(Debug, Clone, Default)]
pub struct Fetcher {
    /// `ignition.proxy`.
    pub proxy: ignition_config::types::Proxy,
    /// `ignition.timeouts`.
    pub timeouts: ignition_config::types::Timeouts,
    /// No network: remote resources are refused (`fetch-offline`).
    pub offline: bool,
    /// `ignition.security.tls.certificateAuthorities`, trusted for
    /// `https` besides the system's CAs.
    pub certificate_authorities: Vec<Resource>,
    /// A cache: those CAs once fetched (on the first `https` fetch), or
    /// why not. Start it empty (`Default`).
    pub cas: std::sync::OnceLock<Result<Vec<Vec<u8>>, String>>,
}

/// Fetches a resource without network settings; `None` when it has no
/// source.
pub fn fetch(r: &Resource) -> Result<Option<Vec<u8>>, FetchError> {
    Fetcher {
        offline: true,
        ..Fetcher::default()
    }
    .fetch(r)
}

impl Fetcher {
    /// Settings from a config's `ignition` section.
    pub fn for_config(c: &ignition_config::Config, offline: bool) -> Fetcher {
        Fetcher {
            proxy: c.ignition.proxy.clone(),
            timeouts: c.ignition.timeouts.clone(),
            offline,
            certificate_authorities: c.ignition.security.tls.certificate_authorities.clone(),
            cas: std::sync::OnceLock::new(),
        }
    }

    /// The extra CAs' PEM data, fetched (and checked against their hashes)
    /// the first time they are needed, with the system's CAs only.
    fn cas(&self) -> Result<&[Vec<u8>], String> {
        self.cas
            .get_or_init(|| {
                let plain = Fetcher {
                    proxy: self.proxy.clone(),
                    timeouts: self.timeouts.clone(),
                    offline: self.offline,
                    ..Fetcher::default()
                };
                self.certificate_authorities
                    .iter()
                    .enumerate()
                    .filter_map(|(i, r)| match plain.fetch(r) {
                        Ok(d) => d.map(Ok),
                        Err(e) => Some(Err(format!(
                            "fetching certificate authority {i} ($.ignition.security.tls.certificateAuthorities.{i}): {e}"
                        ))),
                    })
                    .collect()
            })
            .as_deref()
            .map_err(Clone::clone)
    }

    /// Fetches a resource into memory (decompressed and verified, at most
    /// [`crate::http::DEFAULT_LIMIT`] bytes: configs, keys, CAs); `None`
    /// when it has no source. Files are streamed with [`Fetcher::fetch_to`].
    pub fn fetch(&self, r: &Resource) -> Result<Option<Vec<u8>>, FetchError> {
        let limit = crate::http::DEFAULT_LIMIT;
        let mut out = Bounded {
            buf: Vec::new(),
            limit,
        };
        Ok(fetch_with(self, r, &mut out, Some(limit))?.then_some(out.buf))
    }

    /// Streams a resource into `out` in one pass: fetched, decompressed,
    /// hashed and written as it arrives, so memory stays small whatever
    /// its size. `Ok(false)` when it has no source. The hash is known only
    /// at the end: on an error, what was written must be thrown away (the
    /// files stage writes into a temporary file it renames on success).
    pub fn fetch_to(&self, r: &Resource, out: &mut dyn Write) -> Result<bool, FetchError> {
        fetch_with(self, r, out, None)
    }
}

/// A `Write` into memory that refuses more than `limit` bytes.
struct Bounded {
    buf: Vec<u8>,
    limit: u64,
}

impl Write for Bounded {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if (self.buf.len() + data.len()) as u64 > self.limit {
            return Err(std::io::Error::other(format!(
                "contents larger than {} bytes (the most read into memory)",
                self.limit
            )));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The digest a `verification.hash` names.
enum Hasher {
    None,
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

/// Writes what `r` names into `out`; with `limit`, a server's announced
/// length beyond it is refused before any of the body is read.
fn fetch_with(
    f: &Fetcher,
    r: &Resource,
    out: &mut dyn Write,
    limit: Option<u64>,
) -> Result<bool, FetchError> {
    let Some(url) = r.source.as_deref() else {
        return Ok(false);
    };
    let bad = |reason: String| FetchError::Bad {
        url: url.to_string(),
        reason,
    };
    let scheme = url
        .split_once(':')
        .map(|(s, _)| s.to_ascii_lowercase())
        .unwrap_or_default();
    // What to expect is checked before anything is fetched.
    let (mut hasher, want) = match r.verification.hash.as_deref() {
        None => (Hasher::None, ""),
        Some(hash) => {
            let (function, want) = hash
                .split_once('-')
                .ok_or_else(|| bad("malformed hash specifier".into()))?;
            match function {
                "sha512" => (Hasher::Sha512(sha2::Sha512::new()), want),
                "sha256" => (Hasher::Sha256(sha2::Sha256::new()), want),
                other => return Err(bad(format!("unrecognized hash function {other:?}"))),
            }
        }
    };
    if !matches!(r.compression.as_deref(), None | Some("") | Some("gzip")) {
        return Err(bad(format!(
            "unsupported compression {:?}",
            r.compression.as_deref().unwrap_or_default()
        )));
    }
    let http_opts = |cas| crate::http::Options {
        cas,
        ..Default::default()
    };
    let raw: Box<dyn Read> = match scheme.as_str() {
        "data" => Box::new(std::io::Cursor::new(
            ignition_config::url::decode_data_url(url).map_err(|e| bad(e.to_string()))?,
        )),
        "http" | "https" if !f.offline => {
            // For http too: a redirect may lead to https, and upstream's
            // client trusts the config's CAs for every request.
            let cas = f.cas().map_err(bad)?;
            let resp = crate::http::open_retrying(
                url,
                &r.http_headers,
                &f.proxy,
                &f.timeouts,
                &http_opts(cas),
            )
            .map_err(|e| bad(e.to_string()))?;
            if let (Some(limit), Some(n)) = (limit, resp.content_length())
                && n > limit
            {
                return Err(bad(format!(
                    "the server announces {n} bytes, more than the {limit} read into memory"
                )));
            }
            Box::new(resp)
        }
        "s3" | "arn" if !f.offline => Box::new(
            crate::s3::open(
                url,
                &crate::s3::Settings::from_env(),
                &f.proxy,
                &f.timeouts,
                f.cas().map_err(bad)?,
            )
            .map_err(|e| bad(e.to_string()))?,
        ),
        "gs" if !f.offline => Box::new(
            crate::gs::open(
                url,
                &crate::gs::Settings::from_env(),
                &f.proxy,
                &f.timeouts,
                f.cas().map_err(bad)?,
            )
            .map_err(|e| bad(e.to_string()))?,
        ),
        "tftp" if !f.offline => Box::new(std::io::Cursor::new(
            crate::tftp::get(url, crate::tftp::TIMEOUT).map_err(|e| bad(e.to_string()))?,
        )),
        _ => {
            return Err(FetchError::Unsupported {
                url: url.to_string(),
                scheme,
            });
        }
    };
    let gzip = r.compression.as_deref() == Some("gzip");
    // As Go's gzip reader: every member of a multi-member stream.
    let mut input: Box<dyn Read> = if gzip {
        Box::new(flate2::read::MultiGzDecoder::new(raw))
    } else {
        raw
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let corrupt = matches!(
                    e.kind(),
                    std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput
                );
                let why = if gzip && corrupt {
                    format!("gzip: {e}")
                } else {
                    http_client::error_chain(&e)
                };
                return Err(bad(format!("reading: {why}")));
            }
        };
        match &mut hasher {
            Hasher::None => {}
            Hasher::Sha256(h) => h.update(&buf[..n]),
            Hasher::Sha512(h) => h.update(&buf[..n]),
        }
        out.write_all(&buf[..n])
            .map_err(|e| bad(format!("writing: {e}")))?;
    }
    let (function, got) = match hasher {
        Hasher::None => return Ok(true),
        Hasher::Sha256(h) => ("sha256", util::hex(&h.finalize())),
        Hasher::Sha512(h) => ("sha512", util::hex(&h.finalize())),
    };
    if !got.eq_ignore_ascii_case(want) {
        return Err(FetchError::HashMismatch {
            url: url.to_string(),
            got: format!("{function}-{got}"),
            want: r.verification.hash.clone().unwrap_or_default(),
        });
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(source: &str) -> Resource {
        Resource {
            source: Some(source.into()),
            ..Resource::default()
        }
    }

    #[test]
    fn data_urls_gzip_and_hashes() {
        assert_eq!(
            fetch(&res("data:,hello%20world")).unwrap().unwrap(),
            b"hello world"
        );
        assert_eq!(fetch(&Resource::default()).unwrap(), None);
        // gzip of "hi\n".
        let mut r = res("data:;base64,H4sIAAAAAAACA8vI5AIAenpv7QMAAAA=");
        r.compression = Some("gzip".into());
        assert_eq!(fetch(&r).unwrap().unwrap(), b"hi\n");
        // The hash is over the decompressed data.
        r.verification.hash =
            Some("sha256-98ea6e4f216f2fb4b69fff9b3a44842c38686ca685f3f55dc48c5d3fb1107be4".into());
        assert_eq!(fetch(&r).unwrap().unwrap(), b"hi\n");
        r.verification.hash = Some(format!("sha256-{}", "0".repeat(64)));
        assert!(matches!(fetch(&r), Err(FetchError::HashMismatch { .. })));
        assert!(matches!(
            fetch(&res("ftp://x/y")),
            Err(FetchError::Unsupported { .. })
        ));
    }
}
