//! The one HTTP client of oxcore: every outbound fetch (Ignition resources
//! and providers, OSTree pulls, the graph server's metadata, the agent)
//! goes through a [`Client`] built once per process (or once per trust
//! configuration) and shared, so connections are pooled and kept alive and
//! TLS roots are loaded once.
//!
//! Built on `reqwest`'s blocking client with rustls (ring). What it adds:
//!
//! - **Trust:** the system's CA bundle (the file Go reads) plus extra PEM
//!   authorities; a server certificate that is itself a trusted root is
//!   accepted as Go accepts it ([`tls`]).
//! - **Redirects are followed here, not in reqwest:** at most 10 (Go's
//!   limit), `Location` resolved against the request URL (a relative path,
//!   `//host/x` and `../x` as RFC 3986 says), only to `http` and `https`
//!   (a `file:`, `tftp:` or other location is an error naming it), 301-303
//!   turning other methods into a body-less GET. Credentials
//!   (`Authorization`, `Proxy-Authorization`, `Cookie`, `Cookie2`,
//!   `WWW-Authenticate`, `X-Amz-Security-Token`) are never sent to another
//!   host than the first request's (or its subdomains), as Go's client
//!   rules; [`Request::drop_headers_on_redirect`] drops every caller header
//!   on any redirect, as Ignition's fetcher does.
//! - **Header checks:** names and values are validated before anything is
//!   sent (a CR or LF in a configured header is an error naming it).
//! - **Bounded bodies:** [`Response::read_to_vec`] takes the most the
//!   caller expects and refuses more; a `Content-Length` is a claim,
//!   never an allocation size. [`Response`] is a [`Read`] for streaming.
//! - **Deadlines:** every connect, send and body read waits at most the
//!   request's timeout (30 s unless set).
//! - **IPv6 zones:** `http://[fe80::1%25eth0]/` (link-local metadata
//!   services) works although URL parsers refuse zones.

pub mod tls;

use std::collections::HashMap;
use std::io::Read;
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6, ToSocketAddrs};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URL cannot be requested.
    #[error("{url}: {msg}")]
    Url {
        /// The URL, as given.
        url: String,
        /// Why.
        msg: String,
    },
    /// The TLS configuration (an extra authority) is unusable.
    #[error("{0}")]
    Tls(String),
    /// A request header is invalid.
    #[error("{url}: invalid HTTP header {name:?}: {why}")]
    Header {
        /// The URL.
        url: String,
        /// The header's name.
        name: String,
        /// Why.
        why: String,
    },
    /// A redirect that is not followed.
    #[error("{url}: {msg}")]
    Redirect {
        /// The URL that answered with the redirect.
        url: String,
        /// Why.
        msg: String,
    },
    /// The server's certificate was refused.
    #[error("{url}: certificate refused: {msg}")]
    Certificate {
        /// The URL.
        url: String,
        /// Why.
        msg: String,
    },
    /// A connect, send or read waited longer than the timeout.
    #[error("{url}: timed out ({msg})")]
    Timeout {
        /// The URL.
        url: String,
        /// What was awaited.
        msg: String,
    },
    /// Connecting, sending or receiving failed (refused, reset, closed).
    #[error("{url}: {msg}")]
    Transport {
        /// The URL.
        url: String,
        /// Why.
        msg: String,
    },
    /// The body is longer than the caller accepts.
    #[error("{url}: response body larger than {limit} bytes")]
    TooLarge {
        /// The URL.
        url: String,
        /// The most the caller accepts.
        limit: u64,
    },
}

impl Error {
    /// What went wrong, without the URL (for callers that name it).
    pub fn reason(&self) -> String {
        match self {
            Error::Url { msg, .. } | Error::Redirect { msg, .. } | Error::Transport { msg, .. } => {
                msg.clone()
            }
            Error::Tls(m) => m.clone(),
            Error::Header { name, why, .. } => format!("invalid HTTP header {name:?}: {why}"),
            Error::Certificate { msg, .. } => format!("certificate refused: {msg}"),
            Error::Timeout { msg, .. } => format!("timed out ({msg})"),
            Error::TooLarge { limit, .. } => format!("response body larger than {limit} bytes"),
        }
    }

    /// Whether trying again may help (a timeout or a broken connection).
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Timeout { .. } | Error::Transport { .. })
    }

    /// Whether the server's certificate was refused.
    pub fn is_certificate(&self) -> bool {
        matches!(self, Error::Certificate { .. })
    }
}

/// Proxies, as Ignition's `ignition.proxy` gives them.
#[derive(Debug, Clone, Default)]
pub struct Proxy {
    /// For `http://` URLs.
    pub http: Option<String>,
    /// For `https://` URLs (through `CONNECT`).
    pub https: Option<String>,
    /// Hosts, domains (`.example.com`), addresses, CIDRs or `*` that go
    /// direct.
    pub no_proxy: Vec<String>,
}

/// Builds a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    cas: Vec<Vec<u8>>,
    system_roots: bool,
    proxy: Option<Proxy>,
    user_agent: Option<String>,
    title_case: bool,
    timeout: Duration,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            cas: Vec::new(),
            system_roots: true,
            proxy: None,
            user_agent: Some(format!("oxcore/{}", env!("CARGO_PKG_VERSION"))),
            title_case: true,
            timeout: Duration::from_secs(30),
        }
    }
}

impl ClientBuilder {
    /// Also trusts the certificates of this PEM authority.
    pub fn trust_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.cas.push(pem.into());
        self
    }

    /// Whether to trust the system's CA bundle (default yes).
    pub fn system_roots(mut self, on: bool) -> Self {
        self.system_roots = on;
        self
    }

    /// Sends requests through these proxies (none by default; the
    /// environment's `*_proxy` variables are not read).
    pub fn proxy(mut self, proxy: Proxy) -> Self {
        self.proxy = Some(proxy);
        self
    }

    /// The `User-Agent` header.
    pub fn user_agent(mut self, ua: impl Into<String>) -> Self {
        self.user_agent = Some(ua.into());
        self
    }

    /// Sends requests as a Rust client with hyper's defaults does
    /// (Zincati's): no `User-Agent`, header names in lower case.
    pub fn plain_headers(mut self) -> Self {
        self.user_agent = None;
        self.title_case = false;
        self
    }

    /// The default bound on each connect, send and body read.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// Builds the client.
    pub fn build(self) -> Result<Client, Error> {
        let mut extra = Vec::new();
        for (i, pem) in self.cas.iter().enumerate() {
            extra.extend(tls::parse_pem(&format!("certificate authority {i}"), pem)?);
        }
        let tls = tls::client_config(self.system_roots, extra)?;
        let zones = Arc::new(Resolver::default());
        let mut b = reqwest::blocking::Client::builder()
            .tls_backend_preconfigured(tls)
            .redirect(reqwest::redirect::Policy::none())
            .referer(false)
            .timeout(self.timeout)
            .connect_timeout(self.timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .dns_resolver(zones.clone())
            .no_proxy();
        if self.title_case {
            b = b.http1_title_case_headers();
        }
        if let Some(ua) = self.user_agent {
            b = b.user_agent(ua);
        }
        if let Some(p) = &self.proxy {
            let no = reqwest::NoProxy::from_string(&p.no_proxy.join(","));
            let bad = |e: reqwest::Error| Error::Url {
                url: "proxy".into(),
                msg: e.to_string(),
            };
            if let Some(h) = p.http.as_deref().filter(|s| !s.is_empty()) {
                b = b.proxy(reqwest::Proxy::http(h).map_err(bad)?.no_proxy(no.clone()));
            }
            if let Some(h) = p.https.as_deref().filter(|s| !s.is_empty()) {
                b = b.proxy(reqwest::Proxy::https(h).map_err(bad)?.no_proxy(no));
            }
        }
        let inner = b.build().map_err(|e| Error::Tls(chain(&e)))?;
        Ok(Client {
            inner,
            zones,
            timeout: self.timeout,
        })
    }
}

/// A configured client; cheap to clone (the pool is shared).
#[derive(Clone, Debug)]
pub struct Client {
    inner: reqwest::blocking::Client,
    zones: Arc<Resolver>,
    timeout: Duration,
}

/// One request.
#[derive(Debug, Clone)]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    timeout: Option<Duration>,
    drop_on_redirect: bool,
}

impl Request {
    /// A request with `method` (`GET`, `PUT`, `HEAD`, …) for `url`.
    pub fn new(method: &str, url: &str) -> Request {
        Request {
            method: method.to_string(),
            url: url.to_string(),
            headers: Vec::new(),
            body: None,
            timeout: None,
            drop_on_redirect: false,
        }
    }

    /// A `GET` of `url`.
    pub fn get(url: &str) -> Request {
        Request::new("GET", url)
    }

    /// Adds a header (a later one with the same name replaces it).
    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// The body to send.
    pub fn body(mut self, body: Vec<u8>) -> Request {
        self.body = Some(body);
        self
    }

    /// Bounds each connect, send and read of this request.
    pub fn timeout(mut self, t: Duration) -> Request {
        self.timeout = Some(t);
        self
    }

    /// Sends none of this request's headers to a redirect's target
    /// (Ignition's fetcher does this on every redirect).
    pub fn drop_headers_on_redirect(mut self) -> Request {
        self.drop_on_redirect = true;
        self
    }

    /// The URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// Headers that carry credentials, never sent to another host.
const CREDENTIALS: [&str; 6] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "cookie2",
    "www-authenticate",
    "x-amz-security-token",
];

/// Go's rule: a header is kept on a redirect to `host` or its subdomains.
fn same_domain(initial: &str, next: &str) -> bool {
    let (i, n) = (initial.to_ascii_lowercase(), next.to_ascii_lowercase());
    n == i || n.ends_with(&format!(".{i}"))
}

/// The error an error wraps: its source, or for an `io::Error` the error
/// inside it (whose own source `io::Error::source` would skip).
fn cause<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a (dyn std::error::Error + 'static)> {
    if let Some(inner) = e.downcast_ref::<std::io::Error>().and_then(|i| i.get_ref()) {
        return Some(inner);
    }
    e.source()
}

/// The messages of an error and its causes, each once (a cause whose
/// text its wrapper already shows is not repeated).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    chain(e)
}

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let mut m = err.to_string();
        // reqwest names the URL, which callers name already (cut short).
        if let Some(u) = err.downcast_ref::<reqwest::Error>().and_then(|r| r.url()) {
            m = m.replace(&format!(" for url ({u})"), "");
        }
        // reqwest's own layer repeats the URL we print anyway.
        let generic = m.starts_with("error sending request")
            || m.starts_with("error decoding response body")
            || m.starts_with("request or response body error")
            || m == "client error (Connect)"
            || m == "client error (SendRequest)";
        if !generic && !parts.iter().any(|p| p.contains(&m)) {
            parts.push(m);
        }
        cur = cause(err);
    }
    if parts.is_empty() {
        e.to_string()
    } else {
        parts.join(": ")
    }
}

/// Sorts a transport error into the kinds callers branch on.
fn classify(e: &reqwest::Error, url: &str) -> Error {
    let url = &shorten(url);
    let msg = chain(e);
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let io = err.downcast_ref::<std::io::Error>();
        if let Some(rustls::Error::InvalidCertificate(_)) = err.downcast_ref::<rustls::Error>() {
            return Error::Certificate {
                url: url.to_string(),
                msg,
            };
        }
        if io.is_some_and(|i| i.kind() == std::io::ErrorKind::TimedOut) {
            return Error::Timeout {
                url: url.to_string(),
                msg,
            };
        }
        cur = cause(err);
    }
    if e.is_builder() {
        return Error::Url {
            url: url.to_string(),
            msg,
        };
    }
    if e.is_timeout() {
        Error::Timeout {
            url: url.to_string(),
            msg,
        }
    } else {
        Error::Transport {
            url: url.to_string(),
            msg,
        }
    }
}

impl Client {
    /// A builder with the defaults.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// Sends `req`, following redirects; any status is an `Ok` answer.
    pub fn send(&self, req: &Request) -> Result<Response, Error> {
        let mut method = req.method.clone();
        let mut body = req.body.clone();
        let mut headers = req.headers.clone();
        let mut target = self.target(&req.url)?;
        let initial_host = target.host.clone();
        let mut redirects = 0;
        loop {
            let resp = self.once(&method, &target, &headers, body.clone(), req.timeout)?;
            let status = resp.status().as_u16();
            let location = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .map(|l| String::from_utf8_lossy(l.as_bytes()).into_owned());
            let (true, Some(location)) = (matches!(status, 301 | 302 | 303 | 307 | 308), location)
            else {
                return Ok(Response {
                    status,
                    url: target.full.clone(),
                    inner: resp,
                });
            };
            if redirects == 10 {
                return Err(Error::Redirect {
                    url: target.display,
                    msg: "stopped after 10 redirects".into(),
                });
            }
            redirects += 1;
            let next = target
                .url
                .join(location.trim())
                .map_err(|e| Error::Redirect {
                    url: target.display.clone(),
                    msg: format!("bad redirect location {:?}: {e}", shorten(&location)),
                })?;
            if !matches!(next.scheme(), "http" | "https") {
                return Err(Error::Redirect {
                    url: target.display.clone(),
                    msg: format!(
                        "refusing to follow a redirect to a {}: URL ({})",
                        next.scheme(),
                        shorten(next.as_str())
                    ),
                });
            }
            if matches!(status, 301..=303) && method != "GET" && method != "HEAD" {
                method = "GET".into();
                body = None;
            }
            let next_host = next.host_str().unwrap_or_default().to_string();
            if req.drop_on_redirect {
                headers.clear();
            } else if !same_domain(&initial_host, &next_host) {
                headers.retain(|(n, _)| !CREDENTIALS.contains(&n.to_ascii_lowercase().as_str()));
            }
            target = Target {
                display: shorten(next.as_str()),
                full: next.to_string(),
                host: next_host,
                url: next,
                host_header: None,
            };
        }
    }

    /// [`Client::send`] of a `GET` of `url`.
    pub fn get(&self, url: &str) -> Result<Response, Error> {
        self.send(&Request::get(url))
    }

    fn once(
        &self,
        method: &str,
        t: &Target,
        headers: &[(String, String)],
        body: Option<Vec<u8>>,
        timeout: Option<Duration>,
    ) -> Result<reqwest::blocking::Response, Error> {
        let m = reqwest::Method::from_bytes(method.as_bytes()).map_err(|_| Error::Url {
            url: t.display.clone(),
            msg: format!("invalid method {method:?}"),
        })?;
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            let bad = |why: &str| Error::Header {
                url: t.display.clone(),
                name: shorten(name),
                why: why.to_string(),
            };
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| bad("not a valid header name"))?;
            if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                return Err(bad("its value contains CR, LF or NUL"));
            }
            let v = HeaderValue::from_str(value).map_err(|_| bad("invalid value"))?;
            map.insert(n, v);
        }
        if let Some(h) = &t.host_header {
            map.insert(
                reqwest::header::HOST,
                HeaderValue::from_str(h).map_err(|_| Error::Url {
                    url: t.display.clone(),
                    msg: "bad host".into(),
                })?,
            );
        }
        let mut rb = self
            .inner
            .request(m, t.url.clone())
            .headers(map)
            .timeout(timeout.unwrap_or(self.timeout));
        if let Some(b) = body {
            rb = rb.body(b);
        } else if matches!(method, "POST" | "PUT" | "PATCH") {
            // As Go: a length for methods that expect a body.
            rb = rb.header(reqwest::header::CONTENT_LENGTH, "0");
        }
        rb.send().map_err(|e| classify(&e, &t.display))
    }

    /// Parses `url`, mapping an IPv6 zone to a name our resolver knows.
    fn target(&self, url: &str) -> Result<Target, Error> {
        let bad = |msg: String| Error::Url {
            url: shorten(url),
            msg,
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("not an absolute URL".into()))?;
        if !matches!(scheme, "http" | "https") {
            return Err(bad(format!("unsupported scheme {scheme:?}")));
        }
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        let hostport = authority.rsplit('@').next().unwrap_or(authority);
        if let Some(v6) = hostport.strip_prefix('[')
            && let Some((inside, after)) = v6.split_once(']')
            && let Some((addr, zone)) = inside.split_once('%')
        {
            let zone = zone
                .strip_prefix("25")
                .filter(|_| zone.len() > 2)
                .unwrap_or(zone);
            let ip: Ipv6Addr = addr
                .parse()
                .map_err(|_| bad(format!("bad IPv6 address {addr:?}")))?;
            let scope = match zone.parse::<u32>() {
                Ok(n) => n,
                Err(_) => std::fs::read_to_string(format!("/sys/class/net/{zone}/ifindex"))
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                    .ok_or_else(|| bad(format!("no network interface {zone:?}")))?,
            };
            let name = self
                .zones
                .name_for(SocketAddr::V6(SocketAddrV6::new(ip, 0, 0, scope)));
            let rewritten = format!("{scheme}://{name}{after}{}", &rest[authority_end..]);
            let parsed = url::Url::parse(&rewritten).map_err(|e| bad(e.to_string()))?;
            let host_header = format!("[{ip}]{after}");
            return Ok(Target {
                url: parsed,
                display: shorten(url),
                full: url.to_string(),
                host: ip.to_string(),
                host_header: Some(host_header),
            });
        }
        let parsed = url::Url::parse(url).map_err(|e| bad(e.to_string()))?;
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(bad("no host".into()));
        }
        Ok(Target {
            display: shorten(url),
            full: url.to_string(),
            host: parsed.host_str().unwrap_or_default().to_string(),
            url: parsed,
            host_header: None,
        })
    }
}

struct Target {
    url: url::Url,
    /// How to name it in messages (as the caller wrote it, cut short).
    display: String,
    /// As the caller wrote it.
    full: String,
    /// The host credentials belong to.
    host: String,
    /// An explicit `Host` header (zoned IPv6 hosts).
    host_header: Option<String>,
}

/// A string cut to a length fit for a message.
pub fn shorten(s: &str) -> String {
    const MAX: usize = 200;
    let clean: String = s
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(MAX + 1)
        .collect();
    if clean.chars().count() > MAX {
        let cut: String = clean.chars().take(MAX).collect();
        format!("{cut}… ({} bytes)", s.len())
    } else {
        clean
    }
}

/// Names for zoned IPv6 addresses, and the system resolver for the rest.
#[derive(Debug, Default)]
struct Resolver {
    zones: Mutex<HashMap<String, SocketAddr>>,
}

impl Resolver {
    fn name_for(&self, addr: SocketAddr) -> String {
        let mut z = self.zones.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((n, _)) = z.iter().find(|(_, a)| **a == addr) {
            return n.clone();
        }
        let name = format!("ipv6-zone-{}.oxcore.invalid", z.len());
        z.insert(name.clone(), addr);
        name
    }
}

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        let zoned = self
            .zones
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&host)
            .copied();
        Box::pin(async move {
            if let Some(a) = zoned {
                let addrs: reqwest::dns::Addrs = Box::new(std::iter::once(a));
                return Ok(addrs);
            }
            // getaddrinfo blocks: off the client's runtime thread.
            let found = tokio::task::spawn_blocking(move || {
                (host.as_str(), 0)
                    .to_socket_addrs()
                    .map(|i| i.collect::<Vec<_>>())
            })
            .await
            .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)??;
            let addrs: reqwest::dns::Addrs = Box::new(found.into_iter());
            Ok(addrs)
        })
    }
}

/// An answer: status and headers read, the body still to come.
#[derive(Debug)]
pub struct Response {
    status: u16,
    url: String,
    inner: reqwest::blocking::Response,
}

impl Response {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The URL that answered (after redirects).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A response header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.inner.headers().get(name).and_then(|v| v.to_str().ok())
    }

    /// The `Content-Length` the server claims.
    pub fn content_length(&self) -> Option<u64> {
        self.inner.content_length()
    }

    /// The whole body, refusing more than `limit` bytes (whatever length
    /// the server announces).
    pub fn read_to_vec(mut self, limit: u64) -> Result<Vec<u8>, Error> {
        let too_large = |url: &str| Error::TooLarge {
            url: shorten(url),
            limit,
        };
        if self.content_length().is_some_and(|n| n > limit) {
            return Err(too_large(&self.url));
        }
        let cap = self.content_length().unwrap_or(0).min(limit).min(1 << 20);
        let mut out = Vec::with_capacity(cap as usize);
        let url = self.url.clone();
        (&mut self)
            .take(limit + 1)
            .read_to_end(&mut out)
            .map_err(|e| io_error(&url, &e))?;
        if out.len() as u64 > limit {
            return Err(too_large(&url));
        }
        Ok(out)
    }
}

/// An error while reading a body, sorted as [`classify`] sorts.
pub fn io_error(url: &str, e: &std::io::Error) -> Error {
    let url = &shorten(url);
    if let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<reqwest::Error>()) {
        return classify(inner, url);
    }
    if e.kind() == std::io::ErrorKind::TimedOut {
        return Error::Timeout {
            url: url.to_string(),
            msg: chain(e),
        };
    }
    Error::Transport {
        url: url.to_string(),
        msg: chain(e),
    }
}

impl Read for Response {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zoned_ipv6_hosts_resolve_through_our_resolver() {
        let c = Client::builder().build().unwrap();
        // `lo` always exists; its index is its scope.
        let lo: u32 = std::fs::read_to_string("/sys/class/net/lo/ifindex")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        for url in [
            "http://[fe80::a9fe:a9fe%lo]/openstack/latest/user_data",
            "http://[fe80::a9fe:a9fe%25lo]/openstack/latest/user_data",
        ] {
            let t = c.target(url).unwrap();
            assert_eq!(t.host_header.as_deref(), Some("[fe80::a9fe:a9fe]"));
            assert_eq!(t.url.path(), "/openstack/latest/user_data");
            let name = t.url.host_str().unwrap().to_string();
            let zones = c.zones.zones.lock().unwrap();
            match zones.get(&name) {
                Some(SocketAddr::V6(a)) => assert_eq!(a.scope_id(), lo),
                other => panic!("{name}: {other:?}"),
            }
        }
        let t = c.target("http://[fe80::1%7]:8080/x").unwrap();
        assert_eq!(t.host_header.as_deref(), Some("[fe80::1]:8080"));
        assert_eq!(t.url.port(), Some(8080));
        assert!(c.target("http://[fe80::1%no-such-interface]/").is_err());
        assert!(c.target("ftp://example.com/").is_err());
        assert!(c.target("http://:80/").is_err());
    }

    #[test]
    fn names_are_cut_short_with_their_length() {
        assert_eq!(shorten("plain"), "plain");
        assert_eq!(shorten("a\nb\tc"), "a?b?c");
        let long = "x".repeat(500);
        let s = shorten(&long);
        assert!(s.ends_with("… (500 bytes)"), "{s}");
        assert_eq!(s.chars().filter(|&c| c == 'x').count(), 200);
    }
}
