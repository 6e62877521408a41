//! `http://` and `https://` fetches with upstream Ignition's rules, on the
//! process's shared [`http_client::Client`] (one per trust and proxy
//! configuration, kept alive and pooled):
//!
//! - connection errors and 5xx answers are retried with a backoff that
//!   starts at 100 ms and doubles up to 5 s, forever unless
//!   `timeouts.httpTotal` bounds it; other 4xx answers are final; each
//!   try waits `timeouts.httpResponseHeaders` (default 10 s) for the
//!   headers, and the body may not stall longer than that either;
//! - a refused server certificate fails at once (retrying cannot mend it;
//!   upstream retries until the total timeout);
//! - every request carries Ignition's `Accept` (the newest spec version it
//!   speaks) and `Accept-Encoding: identity`, then the config's
//!   `httpHeaders`; on a redirect no header is sent again, as upstream's
//!   fetcher clears them (so credentials never follow a redirect);
//! - an `ignition.proxy.httpProxy` (for `http`) or `httpsProxy` (for
//!   `https`, through `CONNECT`) is used unless the host is in `noProxy`;
//! - TLS trusts the system's CA bundle and the config's
//!   `security.tls.certificateAuthorities`, as upstream adds them to the
//!   system pool;
//! - bodies read into memory are bounded ([`Options::limit`]); resources
//!   written to files are streamed ([`open_retrying`]).

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use http_client::{Client, Request, Response};
use ignition_config::types::{HttpHeader, Proxy, Timeouts};

/// Why an HTTP fetch failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The server answered with a final status.
    #[error("server responded with status {0}")]
    Status(u16),
    /// The total time ran out (the last error is kept).
    #[error("timed out (last error: {0})")]
    TimedOut(String),
    /// The URL, a header or a redirect is not usable, or the request
    /// failed where it is not retried.
    #[error("{0}")]
    Url(String),
    /// The server's certificate was refused.
    #[error("{0}")]
    Certificate(String),
    /// The body is larger than the caller accepts.
    #[error("{0}")]
    TooLarge(String),
}

/// An answer whose body could not be read whole ([`DEFAULT_LIMIT`] at
/// most): what went wrong, and the URL that answered.
#[derive(Debug, thiserror::Error)]
#[error("{} (from {from})", .error.reason())]
pub struct BodyError {
    /// The URL that answered (after redirects), shortened for messages.
    pub from: String,
    /// What went wrong.
    pub error: http_client::Error,
}

/// The `Accept` header upstream Ignition sends (the newest spec it reads).
pub const ACCEPT: &str = "application/vnd.coreos.ignition+json;version=3.6.0, */*;q=0.1";

/// The most a body read into memory may hold unless the caller says.
pub const DEFAULT_LIMIT: u64 = 64 << 20;

/// Escapes all but RFC 3986's unreserved characters as `%XX` (upper
/// case), and `/` too unless `keep_slash`: the encoding AWS SigV4 and the
/// cloud storage paths want.
pub(crate) fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for &c in s.as_bytes() {
        if c.is_ascii_alphanumeric() || b"-_.~".contains(&c) || (keep_slash && c == b'/') {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

/// More for [`request_retrying`]: statuses to retry, extra CAs, a bound.
#[derive(Debug, Clone, Default)]
pub struct Options<'a> {
    /// 4xx statuses retried like 5xx (upstream's `RetryCodes`).
    pub retry_codes: &'a [u16],
    /// PEM certificates trusted besides the system's, for `https`.
    pub cas: &'a [Vec<u8>],
    /// The most bytes of body accepted ([`DEFAULT_LIMIT`] when `None`).
    pub limit: Option<u64>,
}

/// A request header with a value.
pub(crate) fn header(name: &str, value: &str) -> HttpHeader {
    HttpHeader {
        name: name.into(),
        value: Some(value.into()),
    }
}

/// The `Host` header the client sends for `url` (what a signature over
/// the host must cover): the host, then the port unless it is the
/// scheme's default.
pub(crate) fn host_header_of(url: &str) -> Result<String, HttpError> {
    let u = url::Url::parse(url).map_err(|e| HttpError::Url(format!("{url}: {e}")))?;
    let host = match u.host() {
        Some(url::Host::Ipv6(a)) => format!("[{a}]"),
        Some(h) => h.to_string(),
        None => return Err(HttpError::Url(format!("{url}: no host"))),
    };
    Ok(match u.port() {
        Some(p) => format!("{host}:{p}"),
        None => host,
    })
}

/// The client for a trust and proxy configuration: built once per process
/// and reused by every later fetch with the same settings.
fn client(cas: &[Vec<u8>], proxy: &Proxy) -> Result<Client, HttpError> {
    type Key = (Vec<Vec<u8>>, Option<String>, Option<String>, Vec<String>);
    static CLIENTS: Mutex<Vec<(Key, Client)>> = Mutex::new(Vec::new());
    let key: Key = (
        cas.to_vec(),
        proxy.http_proxy.clone(),
        proxy.https_proxy.clone(),
        proxy.no_proxy.clone(),
    );
    let mut clients = CLIENTS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, c)) = clients.iter().find(|(k, _)| *k == key) {
        return Ok(c.clone());
    }
    let mut b = Client::builder()
        .user_agent(format!("Ignition/oxcore-{}", env!("CARGO_PKG_VERSION")))
        .proxy(http_client::Proxy {
            http: proxy.http_proxy.clone(),
            https: proxy.https_proxy.clone(),
            no_proxy: proxy.no_proxy.clone(),
        });
    // Errors name an authority by its index, as the config does.
    for pem in cas {
        b = b.trust_pem(pem.clone());
    }
    let c = b.build().map_err(|e| HttpError::Url(e.to_string()))?;
    clients.push((key, c.clone()));
    Ok(c)
}

fn header_timeout(timeouts: &Timeouts) -> Duration {
    Duration::from_secs(
        timeouts
            .http_response_headers
            .filter(|&t| t > 0)
            .unwrap_or(10) as u64,
    )
}

/// Sends one `HEAD` request (no retries, no redirects followed for
/// credentials' sake) and returns the value of the response header
/// `name`, whatever the status: S3 names a bucket's region in
/// `x-amz-bucket-region` even when it refuses access.
pub fn head_header(
    url: &str,
    name: &str,
    proxy: &Proxy,
    timeouts: &Timeouts,
    cas: &[Vec<u8>],
) -> Result<Option<String>, HttpError> {
    let c = client(cas, proxy)?;
    let req = Request::new("HEAD", url).timeout(header_timeout(timeouts));
    let r = c.send(&req).map_err(final_error)?;
    Ok(r.header(name).map(str::to_string))
}

/// [`get`] that also trusts `cas` (PEM) for `https`, as every resource
/// fetch does with the config's `security.tls.certificateAuthorities`.
pub fn get_trusting(
    url: &str,
    headers: &[HttpHeader],
    proxy: &Proxy,
    timeouts: &Timeouts,
    cas: &[Vec<u8>],
) -> Result<Vec<u8>, HttpError> {
    let opts = Options {
        cas,
        ..Options::default()
    };
    request_retrying("GET", url, headers, None, proxy, timeouts, &opts)
}

/// Fetches an `http://` URL with upstream's retries.
pub fn get(
    url: &str,
    headers: &[HttpHeader],
    proxy: &Proxy,
    timeouts: &Timeouts,
) -> Result<Vec<u8>, HttpError> {
    request("GET", url, headers, None, proxy, timeouts)
}

/// Sends a request (`GET`, `PUT`, ...) with an optional body to an
/// `http://` URL, with upstream's retries, and returns the body of a 2xx
/// answer. Any other final status is [`HttpError::Status`].
pub fn request(
    method: &str,
    url: &str,
    headers: &[HttpHeader],
    body: Option<&[u8]>,
    proxy: &Proxy,
    timeouts: &Timeouts,
) -> Result<Vec<u8>, HttpError> {
    request_retrying(
        method,
        url,
        headers,
        body,
        proxy,
        timeouts,
        &Options::default(),
    )
}

/// [`request`] that also retries the statuses in `opts.retry_codes`
/// (upstream's `FetchOptions.RetryCodes`; 5xx are always retried), trusts
/// `opts.cas` for `https`, and bounds the body by `opts.limit`. A body
/// that breaks off is fetched again, within the same total time.
pub fn request_retrying(
    method: &str,
    url: &str,
    headers: &[HttpHeader],
    body: Option<&[u8]>,
    proxy: &Proxy,
    timeouts: &Timeouts,
    opts: &Options<'_>,
) -> Result<Vec<u8>, HttpError> {
    let limit = opts.limit.unwrap_or(DEFAULT_LIMIT);
    retrying(method, url, headers, body, proxy, timeouts, opts, |r| {
        r.read_to_vec(limit)
    })
}

/// An answer of [`open_retrying`] read whole, at most [`DEFAULT_LIMIT`]
/// bytes (an object fetched into memory).
pub(crate) fn read_whole(r: Response) -> Result<Vec<u8>, BodyError> {
    let from = http_client::shorten(r.url());
    r.read_to_vec(DEFAULT_LIMIT)
        .map_err(|error| BodyError { from, error })
}

/// A client error that ends the request (not retried).
fn final_error(e: http_client::Error) -> HttpError {
    match e {
        e if e.is_certificate() => HttpError::Certificate(e.to_string()),
        http_client::Error::TooLarge { .. } => HttpError::TooLarge(e.to_string()),
        e => HttpError::Url(e.to_string()),
    }
}

/// Opens a `GET` of `url` with upstream's retries and returns the answer
/// of a 2xx status for the caller to stream (a resource written to a file
/// as it arrives).
pub fn open_retrying(
    url: &str,
    headers: &[HttpHeader],
    proxy: &Proxy,
    timeouts: &Timeouts,
    opts: &Options<'_>,
) -> Result<Response, HttpError> {
    retrying("GET", url, headers, None, proxy, timeouts, opts, Ok)
}

#[allow(clippy::too_many_arguments)] // one request's every part; private
fn retrying<T>(
    method: &str,
    url: &str,
    headers: &[HttpHeader],
    body: Option<&[u8]>,
    proxy: &Proxy,
    timeouts: &Timeouts,
    opts: &Options<'_>,
    mut take: impl FnMut(Response) -> Result<T, http_client::Error>,
) -> Result<T, HttpError> {
    let c = client(opts.cas, proxy)?;
    let start = Instant::now();
    let total = timeouts
        .http_total
        .filter(|&t| t > 0)
        .map(|t| Duration::from_secs(t as u64));
    let mut req = Request::new(method, url)
        .timeout(header_timeout(timeouts))
        .header("Accept-Encoding", "identity")
        .header("Accept", ACCEPT)
        .drop_headers_on_redirect();
    for h in headers {
        if let Some(v) = &h.value {
            req = req.header(&h.name, v);
        }
    }
    if let Some(b) = body {
        req = req.body(b.to_vec());
    }
    let mut delay = Duration::from_millis(100);
    loop {
        let last = match c.send(&req) {
            Ok(r) if (200..300).contains(&r.status()) => match take(r) {
                Ok(v) => return Ok(v),
                Err(e) if e.is_transient() => e.to_string(),
                Err(e) => return Err(final_error(e)),
            },
            Ok(r)
                if !(500..600).contains(&r.status()) && !opts.retry_codes.contains(&r.status()) =>
            {
                return Err(HttpError::Status(r.status()));
            }
            Ok(r) => format!("status {}", r.status()),
            Err(e) if e.is_transient() => e.to_string(),
            Err(e) => return Err(final_error(e)),
        };
        if total.is_some_and(|t| start.elapsed() + delay > t) {
            return Err(HttpError::TimedOut(last));
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_headers_omit_default_ports() {
        assert_eq!(
            host_header_of("http://example.com/a").unwrap(),
            "example.com"
        );
        assert_eq!(host_header_of("https://h:8443/p").unwrap(), "h:8443");
        assert_eq!(host_header_of("https://h:443/p").unwrap(), "h");
        assert_eq!(host_header_of("http://[::1]:8080/").unwrap(), "[::1]:8080");
        assert!(host_header_of("no url").is_err());
    }
}
