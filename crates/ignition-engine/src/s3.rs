//! `s3://` and `arn:` resources: objects fetched from Amazon S3 with a
//! GET signed by AWS Signature Version 4, or anonymously when no
//! credentials are there (as upstream falls back to anonymous access).
//!
//! Forms, as upstream accepts them: `s3://BUCKET/KEY`,
//! `arn:aws:s3:::BUCKET/KEY` and the access point
//! `arn:aws:s3:REGION:ACCOUNT:accesspoint/NAME/object/KEY`, each with an
//! optional `?versionId=`. Credentials come from the environment
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`); the
//! region from `AWS_REGION` or `AWS_DEFAULT_REGION`, else `us-east-1` (an
//! access point ARN names its own). `AWS_ENDPOINT_URL_S3` or
//! `AWS_ENDPOINT_URL` (the SDKs' standard variables) send the request to
//! another endpoint, path-style, e.g. an S3-compatible store.

use ring::hmac;
use sha2::Digest;
use util::{hex, percent_decode};

use crate::http::{BodyError, HttpError, uri_encode};
use crate::imds;

/// Why an object could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// The URL or ARN is not one of the forms upstream accepts (the
    /// message names it).
    #[error("{0}")]
    Url(String),
    /// The URL to request cannot be made (a malformed endpoint).
    #[error(transparent)]
    Target(HttpError),
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

/// Where an object is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// The bucket, or for an access point its name.
    pub bucket: String,
    /// The object's key (decoded).
    pub key: String,
    /// `versionId`, when given.
    pub version_id: Option<String>,
    /// An access point's region and account.
    pub access_point: Option<(String, String)>,
}

/// Parses an `s3://` URL or an S3 `arn:`.
pub fn parse(url: &str) -> Result<Object, S3Error> {
    let (rest, query) = match url.split_once('?') {
        Some((r, q)) => (r, q),
        None => (url, ""),
    };
    let version_id = query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == "versionId").then(|| percent_decode(v))
    });
    if let Some(r) = rest.strip_prefix("s3://") {
        let (bucket, key) = r
            .split_once('/')
            .ok_or_else(|| S3Error::Url(format!("no object key in {url}")))?;
        if bucket.is_empty() || key.is_empty() {
            return Err(S3Error::Url(format!("invalid S3 URL {url}")));
        }
        return Ok(Object {
            bucket: bucket.to_string(),
            key: percent_decode(key),
            version_id,
            access_point: None,
        });
    }
    // arn:PARTITION:s3:REGION:ACCOUNT:RESOURCE
    let parts: Vec<&str> = rest.splitn(6, ':').collect();
    if parts.len() != 6 || parts[0] != "arn" || parts[2] != "s3" {
        return Err(S3Error::Url(format!("not an S3 URL or ARN: {url}")));
    }
    let (region, account, resource) = (parts[3], parts[4], parts[5]);
    if let Some(ap) = resource.strip_prefix("accesspoint/") {
        let (name, key) = ap
            .split_once("/object/")
            .ok_or_else(|| S3Error::Url(format!("no object in access point ARN {url}")))?;
        if name.is_empty() || key.is_empty() || region.is_empty() || account.is_empty() {
            return Err(S3Error::Url(format!("invalid access point ARN {url}")));
        }
        return Ok(Object {
            bucket: name.to_string(),
            key: key.to_string(),
            version_id,
            access_point: Some((region.to_string(), account.to_string())),
        });
    }
    let (bucket, key) = resource
        .split_once('/')
        .filter(|(b, k)| !b.is_empty() && !k.is_empty())
        .ok_or_else(|| S3Error::Url(format!("invalid S3 ARN {url}")))?;
    Ok(Object {
        bucket: bucket.to_string(),
        key: key.to_string(),
        version_id,
        access_point: None,
    })
}

pub use crate::imds::Credentials;

/// Credentials, region and endpoint.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Credentials; anonymous without.
    pub credentials: Option<Credentials>,
    /// The region to sign for; `us-east-1` without.
    pub region: Option<String>,
    /// Another endpoint (`http(s)://host[:port]`), used path-style.
    pub endpoint: Option<String>,
    /// The EC2 instance metadata service (`http://host[:port]`), asked for
    /// the instance role's credentials (and the region) when there are no
    /// credentials otherwise.
    pub imds: Option<String>,
}

impl Settings {
    /// From the environment as the AWS SDKs read it.
    pub fn from_env() -> Settings {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let credentials = match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
            (Some(access_key_id), Some(secret_access_key)) => Some(Credentials {
                access_key_id,
                secret_access_key,
                session_token: var("AWS_SESSION_TOKEN"),
            }),
            _ => None,
        };
        let service =
            if var("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
                None
            } else {
                var("AWS_EC2_METADATA_SERVICE_ENDPOINT")
                    .or_else(|| imds::on_ec2().then(|| imds::METADATA_BASE.to_string()))
            };
        Settings {
            credentials,
            region: var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")),
            endpoint: var("AWS_ENDPOINT_URL_S3").or_else(|| var("AWS_ENDPOINT_URL")),
            imds: service,
        }
    }
}

/// A request to sign: the method, host, canonical (encoded) path, query
/// pairs and the headers besides `host` to sign.
pub struct Request<'a> {
    /// The HTTP method.
    pub method: &'a str,
    /// The `Host` header's value.
    pub host: &'a str,
    /// The path as sent, already encoded.
    pub path: &'a str,
    /// Query parameters, unencoded.
    pub query: &'a [(String, String)],
    /// Other headers to sign (names in any case).
    pub headers: &'a [(String, String)],
}

/// The `Authorization` header for `req` at `amz_date` (`YYYYMMDDTHHMMSSZ`)
/// in `region`, for the S3 service, over an empty payload whose hash is in
/// the `x-amz-content-sha256` header the caller signs too.
pub fn authorization(
    req: &Request<'_>,
    creds: &Credentials,
    region: &str,
    amz_date: &str,
) -> String {
    let mut headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_string()))
        .chain([("host".to_string(), req.host.to_string())])
        .collect();
    headers.sort();
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
    let signed = signed.join(";");
    let mut query: Vec<(String, String)> = req
        .query
        .iter()
        .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
        .collect();
    query.sort();
    let query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let payload = headers
        .iter()
        .find(|(k, _)| k == "x-amz-content-sha256")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| hex(&sha2::Sha256::digest(b"")));
    let canonical = format!(
        "{}\n{}\n{}\n{canonical_headers}\n{signed}\n{payload}",
        req.method,
        req.path,
        query.join("&")
    );
    let date = &amz_date[..8.min(amz_date.len())];
    let scope = format!("{date}/{region}/s3/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(&sha2::Sha256::digest(canonical.as_bytes()))
    );
    let mac = |key: &[u8], data: &str| {
        hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes())
            .as_ref()
            .to_vec()
    };
    let k = mac(format!("AWS4{}", creds.secret_access_key).as_bytes(), date);
    let k = mac(&k, region);
    let k = mac(&k, "s3");
    let k = mac(&k, "aws4_request");
    let signature = hex(&mac(&k, &to_sign));
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}",
        creds.access_key_id
    )
}

/// `YYYYMMDDTHHMMSSZ` for seconds since the epoch (UTC).
pub fn amz_date(secs: u64) -> String {
    let t = civil_time::utc(secs as i64);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

/// The URL to GET and the region to sign for.
fn locate(o: &Object, settings: &Settings) -> (String, String, String) {
    let region = match &o.access_point {
        Some((r, _)) => r.clone(),
        None => settings
            .region
            .clone()
            .unwrap_or_else(|| "us-east-1".into()),
    };
    let key = uri_encode(&o.key, true);
    if let Some(endpoint) = &settings.endpoint {
        let endpoint = endpoint.trim_end_matches('/');
        let path = format!("/{}/{key}", uri_encode(&o.bucket, false));
        return (format!("{endpoint}{path}"), path, region);
    }
    let host = match &o.access_point {
        Some((r, account)) => format!("{}-{account}.s3-accesspoint.{r}.amazonaws.com", o.bucket),
        // Virtual-hosted style unless the bucket name would break TLS.
        None if !o.bucket.contains('.') => format!("{}.s3.{region}.amazonaws.com", o.bucket),
        None => format!("s3.{region}.amazonaws.com"),
    };
    let path = if o.access_point.is_none() && o.bucket.contains('.') {
        format!("/{}/{key}", uri_encode(&o.bucket, false))
    } else {
        format!("/{key}")
    };
    (format!("https://{host}{path}"), path, region)
}

/// Fetches an object: signed when `settings` has credentials (or the
/// instance role gives some), else anonymously.
pub fn get(
    url: &str,
    settings: &Settings,
    proxy: &ignition_config::types::Proxy,
    timeouts: &ignition_config::types::Timeouts,
    cas: &[Vec<u8>],
) -> Result<Vec<u8>, S3Error> {
    crate::http::read_whole(open(url, settings, proxy, timeouts, cas)?).map_err(S3Error::Body)
}

/// [`get`], opened for streaming.
pub fn open(
    url: &str,
    settings: &Settings,
    proxy: &ignition_config::types::Proxy,
    timeouts: &ignition_config::types::Timeouts,
    cas: &[Vec<u8>],
) -> Result<http_client::Response, S3Error> {
    let o = parse(url)?;
    let mut settings = settings.clone();
    if settings.credentials.is_none()
        && let Some(service) = settings.imds.clone()
    {
        let (creds, region) = imds::aws_instance_role(&service, proxy);
        settings.credentials = creds;
        settings.region = settings.region.or(region);
    }
    // As upstream (GetBucketRegion): ask S3 where the bucket lives, from
    // the region known so far; keep that region if S3 does not say.
    if o.access_point.is_none() {
        let probe = Object {
            key: String::new(),
            version_id: None,
            ..o.clone()
        };
        let (bucket_url, _, _) = locate(&probe, &settings);
        if let Ok(Some(region)) =
            crate::http::head_header(&bucket_url, "x-amz-bucket-region", proxy, timeouts, cas)
            && !region.is_empty()
        {
            settings.region = Some(region);
        }
    }
    let settings = &settings;
    let (mut target, path, region) = locate(&o, settings);
    let query: Vec<(String, String)> = o
        .version_id
        .iter()
        .map(|v| ("versionId".to_string(), v.clone()))
        .collect();
    if let Some(v) = &o.version_id {
        target.push_str(&format!("?versionId={}", uri_encode(v, false)));
    }
    let mut headers = Vec::new();
    if let Some(creds) = &settings.credentials {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let date = amz_date(secs);
        let mut signed = vec![
            (
                "x-amz-content-sha256".to_string(),
                hex(&sha2::Sha256::digest(b"")),
            ),
            ("x-amz-date".to_string(), date.clone()),
        ];
        if let Some(t) = &creds.session_token {
            signed.push(("x-amz-security-token".to_string(), t.clone()));
        }
        let host = crate::http::host_header_of(&target).map_err(S3Error::Target)?;
        let auth = authorization(
            &Request {
                method: "GET",
                host: &host,
                path: &path,
                query: &query,
                headers: &signed,
            },
            creds,
            &region,
            &date,
        );
        signed.push(("Authorization".to_string(), auth));
        headers = signed
            .iter()
            .map(|(name, value)| crate::http::header(name, value))
            .collect();
    }
    let opts = crate::http::Options {
        cas,
        ..Default::default()
    };
    crate::http::open_retrying(&target, &headers, proxy, timeouts, &opts)
        .map_err(|error| S3Error::Http { url: target, error })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The GET Object example of the AWS SigV4 documentation.
    #[test]
    fn signs_the_documented_example() {
        let creds = Credentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        };
        let headers = [
            ("Range".to_string(), "bytes=0-9".to_string()),
            (
                "x-amz-content-sha256".to_string(),
                hex(&sha2::Sha256::digest(b"")),
            ),
            ("x-amz-date".to_string(), "20130524T000000Z".to_string()),
        ];
        let auth = authorization(
            &Request {
                method: "GET",
                host: "examplebucket.s3.amazonaws.com",
                path: "/test.txt",
                query: &[],
                headers: &headers,
            },
            &creds,
            "us-east-1",
            "20130524T000000Z",
        );
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
        assert!(!format!("{creds:?}").contains("EXAMPLEKEY"));
    }

    #[test]
    fn dates() {
        assert_eq!(amz_date(0), "19700101T000000Z");
        assert_eq!(amz_date(1_369_353_600), "20130524T000000Z");
        assert_eq!(amz_date(951_782_400 + 86_399), "20000229T235959Z");
    }

    #[test]
    fn urls_and_arns() {
        let o = parse("s3://bkt/a/b%20c?versionId=v1").unwrap();
        assert_eq!((o.bucket.as_str(), o.key.as_str()), ("bkt", "a/b c"));
        assert_eq!(o.version_id.as_deref(), Some("v1"));
        let o = parse("arn:aws:s3:::bkt/k").unwrap();
        assert_eq!((o.bucket.as_str(), o.key.as_str()), ("bkt", "k"));
        let o = parse("arn:aws:s3:us-west-2:123456789012:accesspoint/ap/object/x/y").unwrap();
        assert_eq!((o.bucket.as_str(), o.key.as_str()), ("ap", "x/y"));
        assert_eq!(
            o.access_point,
            Some(("us-west-2".into(), "123456789012".into()))
        );
        let (url, path, region) = locate(&o, &Settings::default());
        assert_eq!(
            url,
            "https://ap-123456789012.s3-accesspoint.us-west-2.amazonaws.com/x/y"
        );
        assert_eq!((path.as_str(), region.as_str()), ("/x/y", "us-west-2"));
        for bad in [
            "s3://bkt",
            "s3:///k",
            "arn:aws:s3:::bkt",
            "arn:aws:iam:::x/y",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let host = |u| crate::http::host_header_of(u).unwrap();
        assert_eq!(host("http://127.0.0.1:9000/b/k"), "127.0.0.1:9000");
        assert_eq!(
            host("https://b.s3.x.amazonaws.com/k"),
            "b.s3.x.amazonaws.com"
        );
        assert_eq!(host("https://h:443/k"), "h");
    }
}
