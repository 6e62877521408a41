//! `gs://BUCKET/OBJECT` resources: Google Cloud Storage objects, as
//! upstream fetches them. On Google Compute Engine, when the instance has
//! a service account, the request carries an OAuth token for the
//! read-only storage scope from the metadata server; anywhere else (or
//! without a service account) it is anonymous, which reads public objects.
//!
//! The object is read from `https://storage.googleapis.com/BUCKET/OBJECT`,
//! or from `STORAGE_EMULATOR_HOST` when set (the variable Google's client
//! libraries honour). The metadata server is `GCE_METADATA_HOST` when set
//! (which also means "on GCE", as for Google's libraries), else
//! `metadata.google.internal` when the DMI product name says Google.

use ignition_config::types::{HttpHeader, Proxy, Timeouts};

use crate::http::{BodyError, HttpError};
use crate::imds;

/// The scope the token is asked for.
const READ_ONLY: &str = "https://www.googleapis.com/auth/devstorage.read_only";

/// Why an object could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum GsError {
    /// Not a `gs://BUCKET/OBJECT` URL (the message names it).
    #[error("{0}")]
    Url(String),
    /// The request failed or was answered with an error status.
    #[error("{error} (from {url})")]
    Http {
        /// The URL requested.
        url: String,
        /// What went wrong.
        error: HttpError,
    },
    /// The object's body could not be read whole.
    #[error(transparent)]
    Body(BodyError),
}

/// Where to read from and whom to ask for a token.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// The storage endpoint (`http(s)://host[:port]`); Google's without.
    pub endpoint: Option<String>,
    /// The metadata server (`host[:port]`) when on GCE.
    pub metadata_host: Option<String>,
}

impl Settings {
    /// From the environment and the machine, as Google's libraries decide.
    pub fn from_env() -> Settings {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let endpoint = var("STORAGE_EMULATOR_HOST").map(|h| {
            if h.contains("://") {
                h
            } else {
                format!("http://{h}")
            }
        });
        let metadata_host = var("GCE_METADATA_HOST")
            .or_else(|| imds::on_gce().then(|| "metadata.google.internal".to_string()));
        Settings {
            endpoint,
            metadata_host,
        }
    }
}

/// Splits `gs://bucket/object`.
pub fn parse(url: &str) -> Result<(String, String), GsError> {
    let rest = url
        .strip_prefix("gs://")
        .ok_or_else(|| GsError::Url(format!("not a gs URL: {url}")))?;
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (bucket, object) = rest
        .split_once('/')
        .map(|(b, o)| (b, o.trim_start_matches('/')))
        .filter(|(b, o)| !b.is_empty() && !o.is_empty())
        .ok_or_else(|| {
            GsError::Url(format!(
                "invalid gs URL {url}: needs a bucket and an object"
            ))
        })?;
    Ok((bucket.to_string(), util::percent_decode(object)))
}

/// The object's path on the endpoint: escaped, `/` kept.
fn object_path(bucket: &str, object: &str) -> String {
    use crate::http::uri_encode;
    format!("/{}/{}", uri_encode(bucket, true), uri_encode(object, true))
}

/// Fetches a `gs://` object into memory (at most
/// [`crate::http::DEFAULT_LIMIT`] bytes).
pub fn get(
    url: &str,
    settings: &Settings,
    proxy: &Proxy,
    timeouts: &Timeouts,
    cas: &[Vec<u8>],
) -> Result<Vec<u8>, GsError> {
    crate::http::read_whole(open(url, settings, proxy, timeouts, cas)?).map_err(GsError::Body)
}

/// Opens a `gs://` object for streaming.
pub fn open(
    url: &str,
    settings: &Settings,
    proxy: &Proxy,
    timeouts: &Timeouts,
    cas: &[Vec<u8>],
) -> Result<http_client::Response, GsError> {
    let (bucket, object) = parse(url)?;
    let endpoint = settings
        .endpoint
        .as_deref()
        .unwrap_or("https://storage.googleapis.com")
        .trim_end_matches('/');
    let target = format!("{endpoint}{}", object_path(&bucket, &object));
    let headers: Vec<HttpHeader> = settings
        .metadata_host
        .as_deref()
        .and_then(|h| imds::gce_token(h, READ_ONLY, proxy))
        .map(|t| crate::http::header("Authorization", &format!("Bearer {t}")))
        .into_iter()
        .collect();
    let opts = crate::http::Options {
        cas,
        ..Default::default()
    };
    crate::http::open_retrying(&target, &headers, proxy, timeouts, &opts)
        .map_err(|error| GsError::Http { url: target, error })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse("gs://bkt/dir/obj%20x.ign").unwrap(),
            ("bkt".into(), "dir/obj x.ign".into())
        );
        for bad in ["gs://bkt", "gs://bkt/", "gs:///obj", "s3://b/o"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(object_path("b", "a b/c+d"), "/b/a%20b/c%2Bd");
    }
}
