//! The clouds' instance metadata services, as both the resources that
//! need credentials (`s3:`, `gs:`) and the platform providers ask them.
//!
//! - AWS EC2's IMDS: an IMDSv2 session token (`PUT /latest/api/token`
//!   with a TTL of 21600 s; 404 means IMDSv1 only), and with it the
//!   instance's region and its role's credentials
//!   (`/latest/meta-data/placement/region`,
//!   `/latest/meta-data/iam/security-credentials/ROLE`), as the AWS SDKs
//!   read them.
//! - Google Compute Engine's metadata server: every request carries
//!   `Metadata-Flavor: Google`; a service account's OAuth token comes
//!   from `/computeMetadata/v1/instance/service-accounts/default/token`.
//!
//! Whether the machine is on EC2 or GCE at all is read from the DMI
//! tables, as the SDKs and Google's libraries decide it on Linux.

use ignition_config::types::{HttpHeader, Proxy, Timeouts};

use crate::http::{self, HttpError, header, uri_encode};

/// The metadata services' address (link-local; upstream uses it for
/// every provider, GCP included).
pub(crate) const METADATA_BASE: &str = "http://169.254.169.254";

/// AWS credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The access key ID.
    pub access_key_id: String,
    /// The secret key (never printed).
    pub secret_access_key: String,
    /// A session token for temporary credentials.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// A metadata service request that failed.
#[derive(Debug, thiserror::Error)]
#[error("fetching {url}: {error}")]
pub(crate) struct ImdsError {
    /// The request's URL.
    pub(crate) url: String,
    /// What went wrong.
    pub(crate) error: HttpError,
}

fn dmi(field: &str) -> String {
    std::fs::read_to_string(format!("/sys/class/dmi/id/{field}")).unwrap_or_default()
}

/// Whether the DMI tables say this is an EC2 instance (what the AWS SDKs'
/// instance-metadata checks amount to on Linux).
pub(crate) fn on_ec2() -> bool {
    dmi("sys_vendor").trim() == "Amazon EC2"
        || dmi("board_vendor").trim() == "Amazon EC2"
        || dmi("product_uuid").to_ascii_lowercase().starts_with("ec2")
}

/// Whether the DMI product name says Google (Google's libraries' check
/// for Compute Engine).
pub(crate) fn on_gce() -> bool {
    dmi("product_name").trim().starts_with("Google")
}

const AWS_TOKEN_PATH: &str = "/latest/api/token";
const AWS_TOKEN_TTL: &str = "X-Aws-Ec2-Metadata-Token-Ttl-Seconds";

/// The header that carries an IMDSv2 session token.
pub(crate) fn aws_token_header(token: &str) -> HttpHeader {
    header("X-Aws-Ec2-Metadata-Token", token)
}

/// Asks the IMDS at `base` (`http://host[:port]`) for an IMDSv2 session
/// token; `None` when the service has none (404: IMDSv1 only).
pub(crate) fn aws_token(
    base: &str,
    proxy: &Proxy,
    timeouts: &Timeouts,
) -> Result<Option<String>, ImdsError> {
    let url = format!("{}{AWS_TOKEN_PATH}", base.trim_end_matches('/'));
    match http::request(
        "PUT",
        &url,
        &[header(AWS_TOKEN_TTL, "21600")],
        None,
        proxy,
        timeouts,
    ) {
        Ok(t) => Ok(Some(String::from_utf8_lossy(&t).trim().to_string())),
        Err(HttpError::Status(404)) => Ok(None),
        Err(error) => Err(ImdsError { url, error }),
    }
}

/// The instance role's credentials and the instance's region from the
/// IMDS at `base` (IMDSv2 token when it has one, as the SDKs do), each
/// request bounded to a few seconds; `None` for credentials when the
/// instance has no role, for the region when it does not say.
pub(crate) fn aws_instance_role(
    base: &str,
    proxy: &Proxy,
) -> (Option<Credentials>, Option<String>) {
    let base = base.trim_end_matches('/');
    let quick = Timeouts {
        http_response_headers: Some(2),
        http_total: Some(5),
    };
    // No token (IMDSv1) on any failure.
    let token = aws_token(base, proxy, &quick).ok().flatten();
    let headers: Vec<HttpHeader> = token.iter().map(|t| aws_token_header(t)).collect();
    let get = |path: &str| {
        http::get(&format!("{base}{path}"), &headers, proxy, &quick)
            .ok()
            .map(|b| String::from_utf8_lossy(&b).trim().to_string())
    };
    let region = get("/latest/meta-data/placement/region").filter(|r| !r.is_empty());
    let role = get("/latest/meta-data/iam/security-credentials/")
        .and_then(|l| l.lines().next().map(str::to_string))
        .filter(|r| !r.is_empty());
    let creds = role.and_then(|role| {
        let doc = get(&format!(
            "/latest/meta-data/iam/security-credentials/{}",
            uri_encode(&role, false)
        ))?;
        let v: serde_json::Value = serde_json::from_str(&doc).ok()?;
        let field = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
        Some(Credentials {
            access_key_id: field("AccessKeyId")?,
            secret_access_key: field("SecretAccessKey")?,
            session_token: field("Token"),
        })
    });
    (creds, region)
}

/// The header every request to GCE's metadata server carries.
pub(crate) fn gce_flavor() -> HttpHeader {
    header("Metadata-Flavor", "Google")
}

/// The instance's OAuth token for `scope` from GCE's metadata server at
/// `host` (`host[:port]`), if the instance has a service account; `None`
/// otherwise, or on any failure (upstream then goes on anonymously).
pub(crate) fn gce_token(host: &str, scope: &str, proxy: &Proxy) -> Option<String> {
    let quick = Timeouts {
        http_response_headers: Some(5),
        http_total: Some(10),
    };
    let base = format!("http://{host}/computeMetadata/v1/instance/service-accounts/default");
    let flavor = [gce_flavor()];
    let get = |url: String| http::get(&url, &flavor, proxy, &quick);
    // Without a service account there are no scopes.
    get(format!("{base}/scopes")).ok()?;
    let body = get(format!("{base}/token?scopes={}", uri_encode(scope, false))).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
    v.get("access_token")?.as_str().map(str::to_string)
}
