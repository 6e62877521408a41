//! Fetching resources: the contents behind a `source` URL, decompressed and
//! verified against `verification.hash` before anything uses them.

use std::io::Read;

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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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

    /// Fetches a resource; `None` when it has no source.
    pub fn fetch(&self, r: &Resource) -> Result<Option<Vec<u8>>, FetchError> {
        fetch_with(self, r)
    }
}

fn fetch_with(f: &Fetcher, r: &Resource) -> Result<Option<Vec<u8>>, FetchError> {
    let Some(url) = r.source.as_deref() else {
        return Ok(None);
    };
    let bad = |reason: String| FetchError::Bad {
        url: url.to_string(),
        reason,
    };
    let scheme = url
        .split_once(':')
        .map(|(s, _)| s.to_ascii_lowercase())
        .unwrap_or_default();
    let raw = match scheme.as_str() {
        "data" => ignition_config::url::decode_data_url(url).map_err(bad)?,
        "http" | "https" if !f.offline => {
            // For http too: a redirect may lead to https, and upstream's
            // client trusts the config's CAs for every request.
            let cas = f.cas().map_err(bad)?;
            crate::http::get_trusting(url, &r.http_headers, &f.proxy, &f.timeouts, cas)
                .map_err(|e| bad(e.to_string()))?
        }
        "s3" | "arn" if !f.offline => crate::s3::get(
            url,
            &crate::s3::Settings::from_env(),
            &f.proxy,
            &f.timeouts,
            f.cas().map_err(bad)?,
        )
        .map_err(bad)?,
        "gs" if !f.offline => crate::gs::get(
            url,
            &crate::gs::Settings::from_env(),
            &f.proxy,
            &f.timeouts,
            f.cas().map_err(bad)?,
        )
        .map_err(bad)?,
        "tftp" if !f.offline => {
            crate::tftp::get(url, crate::tftp::TIMEOUT).map_err(|e| bad(e.to_string()))?
        }
        _ => {
            return Err(FetchError::Unsupported {
                url: url.to_string(),
                scheme,
            });
        }
    };
    let data = match r.compression.as_deref() {
        None | Some("") => raw,
        Some("gzip") => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&raw[..])
                .read_to_end(&mut out)
                .map_err(|e| bad(format!("gzip: {e}")))?;
            out
        }
        Some(other) => return Err(bad(format!("unsupported compression {other:?}"))),
    };
    if let Some(hash) = r.verification.hash.as_deref() {
        let (function, want) = hash
            .split_once('-')
            .ok_or_else(|| bad("malformed hash specifier".into()))?;
        let got = match function {
            "sha512" => hex(&sha2::Sha512::digest(&data)),
            "sha256" => hex(&sha2::Sha256::digest(&data)),
            other => return Err(bad(format!("unrecognized hash function {other:?}"))),
        };
        if !got.eq_ignore_ascii_case(want) {
            return Err(FetchError::HashMismatch {
                url: url.to_string(),
                got: format!("{function}-{got}"),
                want: hash.to_string(),
            });
        }
    }
    Ok(Some(data))
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
