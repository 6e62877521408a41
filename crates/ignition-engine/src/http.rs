//! A small HTTP/1.1 client for `http://` and `https://` resources, with
//! upstream's retry
//! rules: connection errors and 5xx answers are retried with a backoff that
//! starts at 100 ms and doubles up to 5 s, forever unless
//! `timeouts.httpTotal` bounds it; other 4xx answers are final. Each try
//! waits `timeouts.httpResponseHeaders` (default 10 s) for the headers.
//! Redirects are followed (up to 10); `httpHeaders` are sent; an
//! `ignition.proxy.httpProxy` (for `http`) or `httpsProxy` (for `https`,
//! through a `CONNECT` tunnel) is used unless the host is in `noProxy`.
//!
//! TLS (1.2 and 1.3, rustls) trusts the system's CA bundle (the first of
//! the files Go looks at that exists) and the config's
//! `security.tls.certificateAuthorities`, as upstream adds them to the
//! system pool; the server's name is checked against its certificate.
//! [`request`] sends other methods (the cloud providers' `PUT`) and
//! [`request_retrying`] also retries chosen 4xx statuses.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6, TcpStream, ToSocketAddrs};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use ignition_config::types::{HttpHeader, Proxy, Timeouts};

/// Why an HTTP fetch failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The server answered with a final status.
    Status(u16),
    /// The total time ran out (the last error is kept).
    TimedOut(String),
    /// The URL is not usable.
    Url(String),
    /// The server's certificate was refused (only with
    /// [`Options::fail_fast_on_certificates`]; otherwise retried as
    /// upstream Ignition does).
    Certificate(String),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::Status(s) => write!(f, "server responded with status {s}"),
            HttpError::TimedOut(last) => write!(f, "timed out (last error: {last})"),
            HttpError::Url(m) => write!(f, "{m}"),
            HttpError::Certificate(m) => write!(f, "{m}"),
        }
    }
}

/// Decodes `%XX` escapes (as Go's `url.URL.Path` holds a path); a `%`
/// not followed by two hex digits stays as it is.
pub(crate) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = s
            .get(i + 1..i + 3)
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(c)) => {
                out.push(c);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

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

/// More for [`request_retrying`]: statuses to retry and extra CAs.
#[derive(Debug, Clone, Default)]
pub struct Options<'a> {
    /// 4xx statuses retried like 5xx (upstream's `RetryCodes`).
    pub retry_codes: &'a [u16],
    /// PEM certificates trusted besides the system's, for `https`.
    pub cas: &'a [Vec<u8>],
    /// Fail at once when the server's certificate is refused, as libcurl
    /// (OSTree's pulls) does, instead of retrying until the total timeout.
    pub fail_fast_on_certificates: bool,
}

struct Target {
    tls: bool,
    host: String,
    port: u16,
    path: String,
}

fn parse(url: &str) -> Result<Target, HttpError> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else {
        return Err(HttpError::Url(format!("not an http(s) URL: {url}")));
    };
    let default_port = if tls { 443 } else { 80 };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_string()),
    };
    let path = path.split('#').next().unwrap_or("/").to_string();
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let bad_port = || HttpError::Url(format!("bad port in {url}"));
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, rest) = v6
            .split_once(']')
            .ok_or_else(|| HttpError::Url(format!("bad host in {url}")))?;
        let port = match rest.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad_port())?,
            None => default_port,
        };
        (h.to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().map_err(|_| bad_port())?),
            None => (authority.to_string(), default_port),
        }
    };
    if host.is_empty() {
        return Err(HttpError::Url(format!("no host in {url}")));
    }
    Ok(Target {
        tls,
        host,
        port,
        path,
    })
}

fn no_proxy(host: &str, list: &[String]) -> bool {
    list.iter().any(|n| {
        let n = n.trim().trim_start_matches('.');
        n == "*" || host == n || host.ends_with(&format!(".{n}"))
    })
}

/// What one request got.
enum Answer {
    Body(Vec<u8>),
    Redirect(String, u16),
    Status(u16),
}

/// The address to connect to. A link-local IPv6 host may carry a zone
/// (`fe80::1%eth0`, or `%25eth0` as written in URLs), which becomes the
/// scope of the socket address.
fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    if let Some((addr, zone)) = host.split_once('%') {
        let zone = zone
            .strip_prefix("25")
            .filter(|_| zone.len() > 2)
            .unwrap_or(zone);
        let ip: Ipv6Addr = addr
            .parse()
            .map_err(|_| format!("bad IPv6 address {addr:?}"))?;
        let scope = match zone.parse::<u32>() {
            Ok(n) => n,
            Err(_) => std::fs::read_to_string(format!("/sys/class/net/{zone}/ifindex"))
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .ok_or_else(|| format!("no network interface {zone:?}"))?,
        };
        return Ok(SocketAddr::V6(SocketAddrV6::new(ip, port, 0, scope)));
    }
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("resolving {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("no address for {host}"))
}

/// A request header with a value.
pub(crate) fn header(name: &str, value: &str) -> HttpHeader {
    HttpHeader {
        name: name.into(),
        value: Some(value.into()),
    }
}

/// The `Host` header this client sends for `url` (what a signature over
/// the host must cover).
pub(crate) fn host_header_of(url: &str) -> Result<String, HttpError> {
    parse(url).map(|t| host_header(&t))
}

/// A host as written in a URL: IPv6 addresses in brackets, without their
/// zone (as Go sends it).
fn bracketed(host: &str) -> String {
    if host.contains(':') {
        format!("[{}]", host.split('%').next().unwrap_or(host))
    } else {
        host.to_string()
    }
}

/// The `Host` header for a target: the host, then the port unless it is
/// the scheme's default.
fn host_header(t: &Target) -> String {
    let host = bracketed(&t.host);
    if t.port == if t.tls { 443 } else { 80 } {
        host
    } else {
        format!("{host}:{}", t.port)
    }
}

/// The system's CA bundle, read once: the first of the files Go's
/// `crypto/x509` looks at on Linux that exists.
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        [
            "/etc/ssl/certs/ca-certificates.crt",
            "/etc/pki/tls/certs/ca-bundle.crt",
            "/etc/ssl/ca-bundle.pem",
            "/etc/pki/tls/cacert.pem",
            "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
            "/etc/ssl/cert.pem",
        ]
        .iter()
        .find_map(|f| std::fs::read(f).ok())
        .map(|pem| {
            CertificateDer::pem_slice_iter(&pem)
                .filter_map(Result::ok)
                .collect()
        })
        .unwrap_or_default()
    })
}

/// A client configuration trusting the system's CAs and `cas`.
fn tls_config(cas: &[Vec<u8>]) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(system_roots().iter().cloned());
    for (i, pem) in cas.iter().enumerate() {
        let certs: Vec<_> = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("certificate authority {i}: {e}"))?;
        if certs.is_empty() {
            return Err(format!(
                "certificate authority {i}: no PEM certificate found"
            ));
        }
        for c in certs {
            roots
                .add(c)
                .map_err(|e| format!("certificate authority {i}: {e}"))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A connection, plain or through TLS.
enum Conn {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

/// Asks an HTTP proxy for a tunnel to `host:port`.
fn tunnel(s: &mut TcpStream, t: &Target) -> Result<(), String> {
    let authority = format!("{}:{}", bracketed(&t.host), t.port);
    s.write_all(format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes())
        .map_err(|e| format!("proxy: {e}"))?;
    // Read the proxy's answer byte by byte, so that nothing of the tunnel
    // is taken into a buffer.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            Ok(_) => return Err("proxy: connection closed during CONNECT".into()),
            Err(e) => return Err(format!("proxy: {e}")),
        }
        if head.len() > 16 * 1024 {
            return Err("proxy: answer to CONNECT too long".into());
        }
    }
    let head = String::from_utf8_lossy(&head);
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        return Err(format!(
            "proxy refused CONNECT: {}",
            head.lines().next().unwrap_or("").trim()
        ));
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)] // one request's every part; private
fn once(
    method: &str,
    url: &str,
    headers: &[HttpHeader],
    body: Option<&[u8]>,
    proxy: &Proxy,
    header_timeout: Duration,
    cas: &[Vec<u8>],
    response_headers: &mut Vec<(String, String)>,
) -> Result<Answer, String> {
    let t = parse(url).map_err(|e| e.to_string())?;
    let via = if t.tls {
        &proxy.https_proxy
    } else {
        &proxy.http_proxy
    }
    .as_deref()
    .filter(|p| !p.is_empty() && !no_proxy(&t.host, &proxy.no_proxy));
    let (connect_host, connect_port, request_target) = match via {
        Some(p) => {
            let pt = parse(p).map_err(|e| format!("proxy: {e}"))?;
            if pt.tls {
                return Err(format!("proxy: https proxies are not supported: {p}"));
            }
            // Plain requests go to the proxy whole; TLS ones go through a
            // tunnel and name only the path.
            let target = if t.tls {
                t.path.clone()
            } else {
                url.to_string()
            };
            (pt.host, pt.port, target)
        }
        None => (t.host.clone(), t.port, t.path.clone()),
    };
    let addr = resolve(&connect_host, connect_port)?;
    let mut tcp = TcpStream::connect_timeout(&addr, header_timeout)
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    tcp.set_read_timeout(Some(header_timeout))
        .map_err(|e| e.to_string())?;
    let mut s = if t.tls {
        if via.is_some() {
            tunnel(&mut tcp, &t)?;
        }
        let name = t.host.split('%').next().unwrap_or(&t.host).to_string();
        let name = ServerName::try_from(name).map_err(|e| format!("TLS server name: {e}"))?;
        let mut conn = rustls::ClientConnection::new(tls_config(cas)?, name)
            .map_err(|e| format!("TLS: {e}"))?;
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp).map_err(|e| {
                format!("TLS handshake with {}:{}: {e}", bracketed(&t.host), t.port)
            })?;
        }
        Conn::Tls(Box::new(rustls::StreamOwned::new(conn, tcp)))
    } else {
        Conn::Plain(tcp)
    };
    let host_header = host_header(&t);
    let mut req = format!(
        "{method} {request_target} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: Ignition/oxcore-{}\r\nAccept-Encoding: identity\r\nConnection: close\r\n",
        env!("CARGO_PKG_VERSION")
    );
    // Go sends a length for a body, and `Content-Length: 0` for methods
    // that expect one.
    match body {
        Some(b) => req.push_str(&format!("Content-Length: {}\r\n", b.len())),
        None if matches!(method, "POST" | "PUT" | "PATCH") => req.push_str("Content-Length: 0\r\n"),
        None => {}
    }
    for h in headers {
        if let Some(v) = &h.value {
            req.push_str(&format!("{}: {v}\r\n", h.name));
        }
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body.unwrap_or_default());
    s.write_all(&bytes)
        .map_err(|e| format!("sending request: {e}"))?;
    let mut r = BufReader::new(s);
    let mut status_line = String::new();
    r.read_line(&mut status_line)
        .map_err(|e| format!("reading response: {e}"))?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("malformed status line {:?}", status_line.trim()))?;
    let mut length = None;
    let mut chunked = false;
    let mut location = None;
    loop {
        let mut line = String::new();
        r.read_line(&mut line)
            .map_err(|e| format!("reading headers: {e}"))?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            let v = v.trim();
            response_headers.push((k.trim().to_string(), v.to_string()));
            match k.to_ascii_lowercase().as_str() {
                "content-length" => length = v.parse::<usize>().ok(),
                "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
                "location" => location = Some(v.to_string()),
                _ => {}
            }
        }
    }
    if (300..400).contains(&status)
        && let Some(l) = location
    {
        let next = if l.starts_with("http://") || l.starts_with("https://") {
            l
        } else {
            format!(
                "{}://{host_header}{}{l}",
                if t.tls { "https" } else { "http" },
                if l.starts_with('/') { "" } else { "/" }
            )
        };
        return Ok(Answer::Redirect(next, status));
    }
    if !(200..300).contains(&status) {
        return Ok(Answer::Status(status));
    }
    let mut body = Vec::new();
    if status == 204 || method == "HEAD" {
        // No body, whatever the headers say.
    } else if chunked {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)
                .map_err(|e| format!("reading body: {e}"))?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .map_err(|_| "malformed chunk size".to_string())?;
            if n == 0 {
                break;
            }
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk)
                .map_err(|e| format!("reading body: {e}"))?;
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = length {
        body.resize(n, 0);
        r.read_exact(&mut body)
            .map_err(|e| format!("reading body: {e}"))?;
    } else {
        r.read_to_end(&mut body)
            .map_err(|e| format!("reading body: {e}"))?;
    }
    Ok(Answer::Body(body))
}

/// Sends one `HEAD` request (no retries, no redirects) and returns the
/// value of the response header `name`, whatever the status: S3 names a
/// bucket's region in `x-amz-bucket-region` even when it refuses access.
pub fn head_header(
    url: &str,
    name: &str,
    proxy: &Proxy,
    timeouts: &Timeouts,
    cas: &[Vec<u8>],
) -> Result<Option<String>, String> {
    let header_timeout = Duration::from_secs(
        timeouts
            .http_response_headers
            .filter(|&t| t > 0)
            .unwrap_or(10) as u64,
    );
    let mut headers = Vec::new();
    once(
        "HEAD",
        url,
        &[],
        None,
        proxy,
        header_timeout,
        cas,
        &mut headers,
    )?;
    Ok(headers
        .into_iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v))
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
/// (upstream's `FetchOptions.RetryCodes`; 5xx are always retried) and
/// trusts `opts.cas` for `https`.
pub fn request_retrying(
    method: &str,
    url: &str,
    headers: &[HttpHeader],
    body: Option<&[u8]>,
    proxy: &Proxy,
    timeouts: &Timeouts,
    opts: &Options<'_>,
) -> Result<Vec<u8>, HttpError> {
    let start = Instant::now();
    let total = timeouts
        .http_total
        .filter(|&t| t > 0)
        .map(|t| Duration::from_secs(t as u64));
    let header_timeout = Duration::from_secs(
        timeouts
            .http_response_headers
            .filter(|&t| t > 0)
            .unwrap_or(10) as u64,
    );
    let mut delay = Duration::from_millis(100);
    let mut url = url.to_string();
    let mut method = method.to_string();
    let mut body = body;
    let mut redirects = 0;
    loop {
        let last = match once(
            &method,
            &url,
            headers,
            body,
            proxy,
            header_timeout,
            opts.cas,
            &mut Vec::new(),
        ) {
            Ok(Answer::Body(b)) => return Ok(b),
            Ok(Answer::Redirect(next, status)) if redirects < 10 => {
                redirects += 1;
                url = next;
                // As Go: 301, 302 and 303 turn other methods into a GET
                // without a body; 307 and 308 repeat the request.
                if matches!(status, 301..=303) && method != "GET" && method != "HEAD" {
                    method = "GET".into();
                    body = None;
                }
                continue;
            }
            Ok(Answer::Redirect(..)) => return Err(HttpError::Url("too many redirects".into())),
            Ok(Answer::Status(s)) if !(500..600).contains(&s) && !opts.retry_codes.contains(&s) => {
                return Err(HttpError::Status(s));
            }
            Ok(Answer::Status(s)) => format!("status {s}"),
            Err(e) if opts.fail_fast_on_certificates && e.contains("invalid peer certificate") => {
                return Err(HttpError::Certificate(e));
            }
            Err(e) => e,
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
    fn urls_and_no_proxy() {
        let t = parse("http://example.com:8080/a/b?c=d#frag").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("example.com", 8080, "/a/b?c=d")
        );
        let t = parse("http://[::1]/x").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 80));
        assert!(parse("ftp://x").is_err());
        let t = parse("https://h/p").unwrap();
        assert!(t.tls && t.port == 443 && host_header(&t) == "h");
        let t = parse("https://h:8443/p").unwrap();
        assert!(t.port == 8443 && host_header(&t) == "h:8443");
        assert!(no_proxy("a.example.com", &[".example.com".into()]));
        assert!(!no_proxy("example.org", &["example.com".into()]));
    }

    #[test]
    fn ipv6_hosts_and_zones() {
        let t = parse("http://[fe80::a9fe:a9fe%lo]/openstack/latest/user_data").unwrap();
        assert_eq!(t.host, "fe80::a9fe:a9fe%lo");
        assert_eq!(host_header(&t), "[fe80::a9fe:a9fe]");
        let t = parse("http://[::1]:8080/").unwrap();
        assert_eq!(host_header(&t), "[::1]:8080");
        match resolve("fe80::1%7", 80).unwrap() {
            SocketAddr::V6(a) => assert_eq!((a.scope_id(), a.port()), (7, 80)),
            other => panic!("{other}"),
        }
        match resolve("fe80::1%25lo", 80).unwrap() {
            SocketAddr::V6(a) => assert!(a.scope_id() > 0),
            other => panic!("{other}"),
        }
        assert!(resolve("fe80::1%no-such-interface", 80).is_err());
    }
}
