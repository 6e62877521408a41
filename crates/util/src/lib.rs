//! Small helpers every oxcore crate shares, so that each exists once:
//! hexadecimal, percent-decoding (URL paths and form-encoded queries),
//! atomic file writes, CRC-32 (IEEE, as gzip and GPT use it), and running
//! a program with a deadline ([`cmd`]).

pub mod cmd;

use std::io::Write;
use std::path::Path;

/// Lower-case hexadecimal of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// The value of one hexadecimal digit, either case.
pub fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Bytes from hexadecimal (either case); `None` unless every pair is hex.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return None;
    }
    b.chunks(2)
        .map(|p| Some(hex_digit(p[0])? << 4 | hex_digit(p[1])?))
        .collect()
}

fn decode(s: &str, plus_is_space: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' if plus_is_space => out.push(b' '),
            b'%' => match (
                b.get(i + 1).and_then(|&c| hex_digit(c)),
                b.get(i + 2).and_then(|&c| hex_digit(c)),
            ) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Decodes `%XX` escapes as in a URL's path (as Go's `url.URL.Path` holds
/// it); a `%` not followed by two hex digits stays, `+` stays; invalid
/// UTF-8 is replaced.
pub fn percent_decode(s: &str) -> String {
    decode(s, false)
}

/// `application/x-www-form-urlencoded` decoding (a query's keys and
/// values): as [`percent_decode`], and `+` is a space.
pub fn form_decode(s: &str) -> String {
    decode(s, true)
}

/// CRC-32 (IEEE 802.3, reflected: gzip's, GPT's).
pub fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

/// Go's `%q` of a string: the quotes, Go's escapes for the quote, the
/// backslash and control characters, the rest as is.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\x7f' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => {
                if (c as u32) <= 0xffff {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `encoding/json` escapes `<`, `>`, `&`, U+2028 and U+2029 in
/// strings; in JSON text they can only occur inside strings, so the whole
/// text is escaped at once.
pub fn go_html_escape(json: &str) -> String {
    json.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

/// Raises the soft limit on open descriptors to the hard one, as Go's
/// runtime does for servers: each connection needs one, and the soft
/// default (1024) is below what a server accepts. Returns the limit now
/// in force (`None`: unlimited or unknown).
pub fn raise_descriptor_limit() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut l = getrlimit(Resource::Nofile);
    if l.current < l.maximum {
        l.current = l.maximum;
        let _ = setrlimit(Resource::Nofile, l);
    }
    getrlimit(Resource::Nofile).current
}

/// Why [`sha256_copy`] stopped: reading its source or writing its copy.
#[derive(Debug)]
pub enum CopyError {
    /// Reading failed.
    Read(std::io::Error),
    /// Writing failed.
    Write(std::io::Error),
}

/// Reads `from` to its end, writing every byte to `to` when given:
/// (SHA-256 digest, bytes read). Memory stays at one 64 KiB buffer
/// whatever the size.
pub fn sha256_copy(
    from: &mut dyn std::io::Read,
    mut to: Option<&mut dyn Write>,
) -> Result<([u8; 32], u64), CopyError> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = from.read(&mut buf).map_err(CopyError::Read)?;
        if n == 0 {
            let mut digest = [0u8; 32];
            digest.copy_from_slice(ctx.finish().as_ref());
            return Ok((digest, total));
        }
        ctx.update(&buf[..n]);
        total += n as u64;
        if let Some(w) = to.as_deref_mut() {
            w.write_all(&buf[..n]).map_err(CopyError::Write)?;
        }
    }
}

/// Writes `data` to `path` through a temporary file in the same directory
/// (created 0600, then given `mode`), synced to disk when `sync`, and
/// renamed over `path` (the directory synced too when `sync`): a reader
/// sees the old file or the new one, never a part; a failure leaves the
/// old file and no temporary one.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32, sync: bool) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        if sync {
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        if sync {
            // The rename itself reaches the disk with the directory.
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_and_escapes_like_go() {
        assert_eq!(go_quote("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\x01\"");
        assert_eq!(go_quote("héllo"), "\"héllo\"");
        assert_eq!(go_quote("\u{85}"), "\"\\u0085\"");
        assert_eq!(
            go_html_escape("{\"a\":\"<b>&\u{2028}\"}"),
            r#"{"a":"\u003cb\u003e\u0026\u2028"}"#
        );
    }

    #[test]
    fn hex_both_ways() {
        assert_eq!(hex(&[0, 0xab, 0x1f]), "00ab1f");
        assert_eq!(unhex("00AB1f"), Some(vec![0, 0xab, 0x1f]));
        assert_eq!(unhex("0"), None);
        assert_eq!(unhex("zz"), None);
    }

    #[test]
    fn percent_and_form_decoding() {
        assert_eq!(percent_decode("a%20b+c%2"), "a b+c%2");
        assert_eq!(form_decode("a%20b+c%zz"), "a b c%zz");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
    }

    #[test]
    fn crc32_known_answer() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn atomic_writes_replace_whole_and_leave_nothing_on_failure() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        write_atomic(&p, b"one", 0o644, true).unwrap();
        write_atomic(&p, b"two", 0o600, false).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // Into a directory that is not there: an error, nothing left.
        assert!(write_atomic(&d.path().join("no/f"), b"x", 0o644, true).is_err());
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }
}
