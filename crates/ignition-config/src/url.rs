//! URL checks as upstream performs them: Go's `net/url` acceptance, the
//! schemes each spec version allows, S3 and ARN rules, and `data:` URLs.

use crate::version::Version;

/// The parts of a URL that validation looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Url<'a> {
    /// Lower-cased scheme, or empty.
    pub scheme: String,
    /// Everything after `scheme:` when it does not start with `/`.
    pub opaque: &'a str,
    /// The query, without `?`.
    pub query: &'a str,
}

fn valid_escapes(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if i + 2 >= b.len() || !(b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit()) {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

/// Parses like Go's `url.Parse`: `None` where Go fails.
pub(crate) fn parse(s: &str) -> Option<Url<'_>> {
    if s.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return None;
    }
    let (rest, frag) = match s.find('#') {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, ""),
    };
    if !frag.is_empty() && !valid_escapes(frag) {
        return None;
    }
    let mut scheme = String::new();
    let mut rest = rest;
    if let Some(first) = rest.bytes().next() {
        if first == b':' {
            return None;
        }
        if first.is_ascii_alphabetic()
            && let Some(end) = rest
                .bytes()
                .position(|b| !(b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.'))
            && rest.as_bytes()[end] == b':'
        {
            scheme = rest[..end].to_ascii_lowercase();
            rest = &rest[end + 1..];
        }
    }
    let (rest, query) = match rest.find('?') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    if !rest.starts_with('/') {
        if !scheme.is_empty() {
            return Some(Url {
                scheme,
                opaque: rest,
                query,
            });
        }
        let first_seg = rest.split('/').next().unwrap_or("");
        if first_seg.contains(':') {
            return None;
        }
    }
    let mut path = rest;
    if (!scheme.is_empty() || !rest.starts_with("///")) && rest.starts_with("//") {
        let after = &rest[2..];
        let end = after.find('/').unwrap_or(after.len());
        let authority = &after[..end];
        path = &after[end..];
        let host = match authority.rfind('@') {
            Some(i) => {
                let user = &authority[..i];
                let ok = user
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._:~!$&'()*+,;=%@".contains(&b));
                if !ok || !valid_escapes(user) {
                    return None;
                }
                &authority[i + 1..]
            }
            None => authority,
        };
        if !valid_host(host) {
            return None;
        }
    }
    if !valid_escapes(path) {
        return None;
    }
    Some(Url {
        scheme,
        opaque: "",
        query,
    })
}

fn valid_host(host: &str) -> bool {
    let port_ok = |p: &str| {
        p.is_empty()
            || p.strip_prefix(':')
                .is_some_and(|d| d.bytes().all(|b| b.is_ascii_digit()))
    };
    let name = if let Some(stripped) = host.strip_prefix('[') {
        let Some(close) = host.rfind(']') else {
            return false;
        };
        if !port_ok(&host[close + 1..]) {
            return false;
        }
        let _ = stripped;
        &host[1..close]
    } else if let Some(i) = host.rfind(':') {
        if !port_ok(&host[i..]) {
            return false;
        }
        &host[..i]
    } else {
        host
    };
    let b = name.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                if i + 2 >= b.len()
                    || !b[i + 1].is_ascii_hexdigit()
                    || !b[i + 2].is_ascii_hexdigit()
                {
                    return false;
                }
                let hi = (b[i + 1] as char).to_digit(16).unwrap_or(0);
                if hi < 8 && &name[i..i + 3] != "%25" {
                    return false;
                }
                i += 3;
            }
            c if c.is_ascii_alphanumeric()
                || b"-._~!$&'()*+,;=:[]<>\"".contains(&c)
                || c >= 0x80 =>
            {
                i += 1
            }
            _ => return false,
        }
    }
    true
}

/// Decodes a query component as Go's `url.QueryUnescape`.
fn query_unescape(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let h = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// The first value of a query parameter, as Go's `url.Query()[key]`.
fn query_first(query: &str, key: &str) -> Option<String> {
    for piece in query.split('&') {
        if piece.is_empty() || piece.contains(';') {
            continue;
        }
        let (k, v) = piece.split_once('=').unwrap_or((piece, ""));
        let (Some(k), Some(v)) = (query_unescape(k), query_unescape(v)) else {
            continue;
        };
        if k == key {
            return Some(v);
        }
    }
    None
}

/// Why a resource URL is refused; the text is upstream's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not a URL.
    #[error("unable to parse url")]
    Unparsable,
    /// A scheme Ignition does not fetch, or not in this spec version.
    #[error("invalid url scheme")]
    Scheme,
    /// An `arn:` URL that names no S3 object.
    #[error("invalid S3 ARN format")]
    S3Arn,
    /// An `s3:` or `arn:` URL with an empty `versionId`.
    #[error("invalid S3 object VersionId")]
    S3VersionId,
    /// A `data:` URL upstream's decoder refuses.
    #[error(transparent)]
    DataUrl(#[from] DataUrlError),
}

/// Why a `data:` URL is refused (RFC 2397 as upstream's decoder reads
/// it); the text is upstream's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataUrlError {
    /// The URL's syntax: what is wrong where.
    #[error("{0}")]
    Syntax(&'static str),
    /// A parameter without a value other than `base64`.
    #[error("expected base64, got {0}")]
    NotBase64(String),
    /// The base64 payload.
    #[error(transparent)]
    Base64(#[from] Base64Error),
}

/// Base64 that Go's `StdEncoding` refuses, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("illegal base64 data at input byte {offset}")]
pub struct Base64Error {
    /// The offset of the first byte in error.
    pub offset: usize,
}

/// Upstream's `validateURL`: the message for a source URL that is not
/// acceptable in this spec version.
pub fn validate(s: &str, version: Version) -> Result<(), UrlError> {
    let Some(u) = parse(s) else {
        return Err(UrlError::Unparsable);
    };
    let version_id = |u: &Url<'_>| match query_first(u.query, "versionId") {
        Some(v) if v.is_empty() => Err(UrlError::S3VersionId),
        _ => Ok(()),
    };
    match u.scheme.as_str() {
        "http" | "https" | "tftp" => Ok(()),
        "gs" if version >= Version::V3_2 => Ok(()),
        "s3" => version_id(&u),
        "arn" if version >= Version::V3_4 => {
            let full = format!("arn:{}", u.opaque);
            let sections: Vec<&str> = full.splitn(6, ':').collect();
            let bad = || Err(UrlError::S3Arn);
            if sections.len() < 6 || sections[2] != "s3" {
                return bad();
            }
            let parts = full.split('/').count();
            if sections[5].starts_with("accesspoint/") {
                if parts < 3 {
                    return bad();
                }
            } else if parts < 2 {
                return bad();
            }
            version_id(&u)
        }
        "data" => Ok(data_url(s)?),
        _ => Err(UrlError::Scheme),
    }
}

fn is_token(c: u8) -> bool {
    c.is_ascii() && !c.is_ascii_control() && c != b' ' && !b"()<>@,;:\\\"/[]?=".contains(&c)
}

fn percent_unescape(s: &[u8]) -> Result<(), DataUrlError> {
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            if i + 2 >= s.len() {
                return Err(DataUrlError::Syntax(
                    "rfc2396: unexpected end of unescape sequence",
                ));
            }
            if !s[i + 1].is_ascii_hexdigit() || !s[i + 2].is_ascii_hexdigit() {
                return Err(DataUrlError::Syntax(
                    "rfc2396: invalid char 0x25 in unescape sequence",
                ));
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    Ok(())
}

/// Validates a `data:` URL as upstream's data URL decoder does (RFC 2397),
/// with its error messages.
pub(crate) fn data_url(s: &str) -> Result<(), DataUrlError> {
    decode_data_url(s).map(|_| ())
}

/// Decodes a `data:` URL into its bytes.
pub fn decode_data_url(s: &str) -> Result<Vec<u8>, DataUrlError> {
    let Some(rest) = s.strip_prefix("data:") else {
        return Err(DataUrlError::Syntax("missing data prefix"));
    };
    let b = rest.as_bytes();
    let mut i = 0;
    let mut base64 = false;
    // Optional media type.
    match b.first() {
        None => return Err(DataUrlError::Syntax("missing comma before data")),
        Some(b';') | Some(b',') => {}
        Some(&c) if is_token(c) => {
            let x_token = (c == b'x' || c == b'X') && b.get(1) == Some(&b'-');
            let start = i;
            while i < b.len() && b[i] != b'/' {
                if !is_token(b[i]) {
                    return Err(DataUrlError::Syntax("invalid character for media type"));
                }
                i += 1;
            }
            if i >= b.len() {
                return Err(DataUrlError::Syntax("missing media type slash"));
            }
            let ty = &rest[start..i];
            let known = [
                "text",
                "image",
                "audio",
                "video",
                "application",
                "message",
                "multipart",
            ];
            if !x_token && !known.iter().any(|k| ty.starts_with(k)) {
                return Err(DataUrlError::Syntax("invalid media type"));
            }
            i += 1;
            while i < b.len() && b[i] != b';' && b[i] != b',' {
                if !is_token(b[i]) {
                    return Err(DataUrlError::Syntax("invalid character for media subtype"));
                }
                i += 1;
            }
            if i >= b.len() {
                return Err(DataUrlError::Syntax("incomplete media type"));
            }
        }
        Some(_) => return Err(DataUrlError::Syntax("invalid character after data prefix")),
    }
    // Parameters.
    while i < b.len() && b[i] == b';' {
        i += 1;
        match b.get(i) {
            None | Some(b'=') | Some(b',') => {
                return Err(DataUrlError::Syntax("unterminated parameter sequence"));
            }
            Some(&c) if !is_token(c) => {
                return Err(DataUrlError::Syntax(
                    "invalid character for parameter attribute",
                ));
            }
            _ => {}
        }
        let start = i;
        while i < b.len() && b[i] != b'=' && b[i] != b',' {
            if !is_token(b[i]) {
                return Err(DataUrlError::Syntax(
                    "invalid character for parameter attribute",
                ));
            }
            i += 1;
        }
        if i >= b.len() {
            return Err(DataUrlError::Syntax("unterminated parameter sequence"));
        }
        if b[i] == b',' {
            let attr = &rest[start..i];
            if attr != "base64" {
                return Err(DataUrlError::NotBase64(attr.to_string()));
            }
            base64 = true;
            break;
        }
        i += 1; // '='
        match b.get(i) {
            None => return Err(DataUrlError::Syntax("missing comma before data")),
            Some(b'"') => {
                i += 1;
                loop {
                    match b.get(i) {
                        None => return Err(DataUrlError::Syntax("unclosed quoted string")),
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(b'\\') => match b.get(i + 1) {
                            Some(c) if c.is_ascii() => i += 2,
                            _ => return Err(DataUrlError::Syntax("invalid escaped character")),
                        },
                        Some(c) if c.is_ascii() => i += 1,
                        Some(_) => {
                            return Err(DataUrlError::Syntax(
                                "invalid character for parameter value",
                            ));
                        }
                    }
                }
            }
            Some(&c) if is_token(c) => {
                let vs = i;
                while i < b.len() && b[i] != b';' && b[i] != b',' {
                    if !is_token(b[i]) {
                        return Err(DataUrlError::Syntax(
                            "invalid character for parameter value",
                        ));
                    }
                    i += 1;
                }
                if i >= b.len() {
                    return Err(DataUrlError::Syntax("missing comma before data"));
                }
                percent_unescape(&b[vs..i])?;
            }
            Some(_) => {
                return Err(DataUrlError::Syntax(
                    "invalid character for parameter value",
                ));
            }
        }
        match b.get(i) {
            Some(b';') | Some(b',') => {}
            None => return Err(DataUrlError::Syntax("missing comma before data")),
            Some(_) => return Err(DataUrlError::Syntax("expected semicolon or comma")),
        }
    }
    match b.get(i) {
        Some(b',') => i += 1,
        None => return Err(DataUrlError::Syntax("missing comma before data")),
        Some(_) => return Err(DataUrlError::Syntax("expected semicolon or comma")),
    }
    let data = &b[i..];
    if base64 {
        if data
            .iter()
            .any(|&c| !(c.is_ascii_alphanumeric() || b"+/=\n".contains(&c)))
        {
            return Err(DataUrlError::Syntax("invalid data character"));
        }
        let clean: Vec<u8> = data.iter().copied().filter(|&c| c != b'\n').collect();
        Ok(decode_base64(&clean)?)
    } else {
        if data
            .iter()
            .any(|&c| !c.is_ascii() || c.is_ascii_control() || b" <>#\"{}|\\^[]`".contains(&c))
        {
            return Err(DataUrlError::Syntax("invalid data character"));
        }
        percent_unescape(data)?;
        let mut out = Vec::with_capacity(data.len());
        let mut j = 0;
        while j < data.len() {
            if data[j] == b'%' {
                // Two hex digits: percent_unescape checked them.
                let digit = |k: usize| util::hex_digit(data[k]).unwrap_or(0);
                out.push(digit(j + 1) << 4 | digit(j + 2));
                j += 3;
            } else {
                out.push(data[j]);
                j += 1;
            }
        }
        Ok(out)
    }
}

/// Standard base64 with required padding, as Go's `StdEncoding`, with its
/// error message (`illegal base64 data at input byte N`).
pub fn decode_base64(data: &[u8]) -> Result<Vec<u8>, Base64Error> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(data.len() / 4 * 3);
    let mut chunks = data.chunks(4).enumerate().peekable();
    while let Some((n, chunk)) = chunks.next() {
        let at = n * 4;
        let last = chunks.peek().is_none();
        if chunk.len() < 4 {
            // Go reports an incomplete last quantum at its start.
            return Err(Base64Error { offset: at });
        }
        let pads = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pads > 2 || (pads > 0 && !last) {
            let first_pad = chunk.iter().position(|&c| c == b'=').unwrap_or(0);
            return Err(Base64Error {
                offset: at + first_pad,
            });
        }
        let mut acc = 0u32;
        for (k, &c) in chunk[..4 - pads].iter().enumerate() {
            match val(c) {
                Some(v) => acc |= v << (18 - 6 * k),
                None => {
                    return Err(Base64Error { offset: at + k });
                }
            }
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..4 - pads]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_url_acceptance() {
        assert!(parse("http://example.com/x").is_some());
        assert!(parse("https://user:pw@[::1]:8080/a?b#c").is_some());
        assert!(parse("http://a b/").is_none());
        assert!(parse(":foo").is_none());
        assert!(parse("a:b/c").is_some());
        assert!(parse("foo:bar").is_some());
        assert!(parse("x/y:z").is_some());
        assert!(parse("y:z/").is_some());
        assert!(parse("/a%zz").is_none());
        assert!(parse("http://h:port/").is_none());
        assert_eq!(parse("HTTP://x").unwrap().scheme, "http");
    }

    #[test]
    fn schemes_per_version() {
        assert_eq!(validate("gs://b/o", Version::V3_1), Err(UrlError::Scheme));
        assert_eq!(validate("gs://b/o", Version::V3_2), Ok(()));
        assert_eq!(
            validate("arn:aws:s3:::bucket/key", Version::V3_3),
            Err(UrlError::Scheme)
        );
        assert_eq!(validate("arn:aws:s3:::bucket/key", Version::V3_4), Ok(()));
        assert_eq!(
            validate("arn:aws:s3:::bucket", Version::V3_4),
            Err(UrlError::S3Arn)
        );
        assert_eq!(
            validate("arn:aws:ec2:::bucket/k", Version::V3_4),
            Err(UrlError::S3Arn)
        );
        assert_eq!(
            validate("arn:aws:s3:us-east-1:1:accesspoint/x", Version::V3_4),
            Err(UrlError::S3Arn)
        );
        assert_eq!(
            validate("s3://b/k?versionId=", Version::V3_0),
            Err(UrlError::S3VersionId)
        );
        assert_eq!(validate("s3://b/k?versionId=x", Version::V3_0), Ok(()));
        assert_eq!(validate("ftp://x", Version::V3_0), Err(UrlError::Scheme));
        assert_eq!(validate("", Version::V3_0), Err(UrlError::Scheme));
    }

    #[test]
    fn data_urls() {
        assert_eq!(
            decode_data_url("data:,hello%20world").unwrap(),
            b"hello world"
        );
        assert_eq!(decode_data_url("data:;base64,aGk=").unwrap(), b"hi");
        assert_eq!(
            decode_data_url("data:text/plain;charset=utf-8;base64,aGk=").unwrap(),
            b"hi"
        );
        assert_eq!(
            data_url("data:"),
            Err(DataUrlError::Syntax("missing comma before data"))
        );
        assert_eq!(
            data_url("DATA:,x"),
            Err(DataUrlError::Syntax("missing data prefix"))
        );
        assert_eq!(
            data_url("data:,a b"),
            Err(DataUrlError::Syntax("invalid data character"))
        );
        assert_eq!(
            data_url("data:foo/bar,x"),
            Err(DataUrlError::Syntax("invalid media type"))
        );
        assert_eq!(
            data_url("data:;base64,aGk"),
            Err(DataUrlError::Base64(Base64Error { offset: 0 }))
        );
        assert_eq!(
            data_url("data:,%zz"),
            Err(DataUrlError::Syntax(
                "rfc2396: invalid char 0x25 in unescape sequence"
            ))
        );
        assert_eq!(
            data_url("data:;foo,x"),
            Err(DataUrlError::NotBase64("foo".into()))
        );
    }
}
