//! Reading `local` files under `--files-dir`, and data URLs.
//!
//! A local path is joined to the files directory and cleaned; it must stay
//! inside it (`local file path traverses outside the files directory`).
//! Upstream checks only the path's text, so a symlink inside the directory
//! can lead out of it; oxcore also resolves symlinks and refuses any file
//! whose real location is outside the real files directory.

use std::io::Read;
use std::path::{Path, PathBuf};

use ignition_config::validate::clean_path;

/// No `-d/--files-dir` was given.
pub(crate) const NO_FILES_DIR: &str =
    "local file paths are relative to a files directory that must be specified with -d/--files-dir";
/// The path leaves the files directory.
pub(crate) const TRAVERSAL: &str = "local file path traverses outside the files directory";

/// Joins a slash-separated `local` path to the files directory as Go's
/// `filepath.Join` does, and checks that it stays inside.
pub(crate) fn resolve(files_dir: Option<&Path>, local: &str) -> Result<PathBuf, String> {
    let Some(dir) = files_dir else {
        return Err(NO_FILES_DIR.into());
    };
    let dir_s = dir.to_string_lossy();
    let joined = clean_path(&format!("{dir_s}/{local}"));
    let base_abs = absolute(&clean_path(&dir_s));
    let path_abs = absolute(&joined);
    if path_abs != base_abs
        && !path_abs.starts_with(&format!("{}/", base_abs.trim_end_matches('/')))
    {
        return Err(TRAVERSAL.into());
    }
    // Better than upstream: symlinks may not lead out either.
    if let (Ok(real_base), Ok(real)) = (std::fs::canonicalize(dir), std::fs::canonicalize(&joined))
        && !real.starts_with(&real_base)
    {
        return Err(TRAVERSAL.into());
    }
    Ok(PathBuf::from(joined))
}

fn absolute(p: &str) -> String {
    if p.starts_with('/') {
        p.to_string()
    } else {
        let cwd = std::env::current_dir()
            .map(|d| d.to_string_lossy().into_owned())
            .unwrap_or_default();
        clean_path(&format!("{cwd}/{p}"))
    }
}

/// Reads a local file, with Go's error wording (`open fd/x: no such file or
/// directory`).
pub(crate) fn read_local(files_dir: Option<&Path>, local: &str) -> Result<Vec<u8>, String> {
    let path = resolve(files_dir, local)?;
    read_go(&path)
}

/// Reads a file, wording errors as Go's `os` package.
pub(crate) fn read_go(path: &Path) -> Result<Vec<u8>, String> {
    let mut f = std::fs::File::open(path).map_err(|e| go_error("open", path, &e))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)
        .map_err(|e| go_error("read", path, &e))?;
    Ok(buf)
}

/// An I/O error as Go's `os` package words it: `open /x: no such file or
/// directory`.
pub fn go_error(op: &str, path: &Path, err: &std::io::Error) -> String {
    format!("{op} {}: {}", path.display(), errno_text(err))
}

/// The lower-case strerror text Go uses, without Rust's `(os error N)`.
pub fn errno_text(err: &std::io::Error) -> String {
    let s = err.to_string();
    let s = match err.raw_os_error() {
        Some(_) => s.split(" (os error").next().unwrap_or(&s).to_string(),
        None => s,
    };
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
        None => s,
    }
}

/// RFC 2396 escaping as upstream's data URL library does: unreserved bytes
/// stay, every other byte becomes `%XX` (upper-case hex).
pub(crate) fn escape(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len() * 3 / 2);
    for &b in data {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Standard base64 with padding.
pub(crate) fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

/// Upstream's choice of data URL: percent-escaped, base64, or (when the user
/// set no compression and compression is allowed) gzip+base64, whichever is
/// shortest (gzip counting the four bytes of `"gzip"`). Returns the URL and
/// the compression to record (`None`: keep the user's).
pub(crate) fn make_data_url(
    contents: &[u8],
    user_compression: Option<&str>,
    allow_compression: bool,
) -> (String, Option<String>) {
    let user_set = user_compression.is_some_and(|c| !c.is_empty());
    let mut compression = if user_set { None } else { Some(String::new()) };
    let mut opaque = format!(",{}", escape(contents));
    let b64 = format!(";base64,{}", base64(contents));
    if b64.len() < opaque.len() {
        opaque = b64;
    }
    // A gzip stream is at least 23 bytes (header, the closing empty stored
    // block, trailer): 32 in base64. Shorter URLs cannot lose to it, so
    // small contents are not compressed only to be compared.
    const MIN_GZIP_URL: usize = ";base64,".len() + 32;
    if !user_set && allow_compression && opaque.len() > MIN_GZIP_URL + 4 {
        let gz = format!(";base64,{}", base64(&crate::goflate::gzip_best(contents)));
        if gz.len() + 4 < opaque.len() {
            opaque = gz;
            compression = Some("gzip".into());
        }
    }
    (format!("data:{opaque}"), compression)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_never_shorter_than_its_bound() {
        // The bound make_data_url relies on to skip compressing.
        for data in [
            &b""[..],
            b"a",
            b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            &[0u8; 4096],
        ] {
            assert!(crate::goflate::gzip_best(data).len() >= 23);
        }
    }

    #[test]
    fn data_urls_as_upstream() {
        assert_eq!(
            make_data_url(b"hello world\n", None, true),
            ("data:,hello%20world%0A".into(), Some(String::new()))
        );
        assert_eq!(
            make_data_url(b"", None, true),
            ("data:,".into(), Some(String::new()))
        );
        let (url, c) = make_data_url(&[b'a'; 121], None, true);
        assert!(url.starts_with("data:;base64,H4sI"), "{url}");
        assert_eq!(c.as_deref(), Some("gzip"));
        // Compression set by the user: no gzip, and the user's value stays.
        let (url, c) = make_data_url(&[b'a'; 121], Some("gzip"), true);
        assert!(url.starts_with("data:,aaa"));
        assert_eq!(c, None);
        // Binary data is shorter in base64.
        let (url, _) = make_data_url(&[0xff, 0xfe, 0x00], None, false);
        assert_eq!(url, "data:,%FF%FE%00");
        let (url, _) = make_data_url(&[0xff; 6], None, false);
        assert_eq!(url, "data:;base64,////////");
    }

    #[test]
    fn base64_round_trip() {
        use ignition_config::url::decode_base64;
        for data in [&b""[..], b"a", b"ab", b"abc", b"\x00\xff\x10hello"] {
            assert_eq!(decode_base64(base64(data).as_bytes()).unwrap(), data);
        }
    }

    #[test]
    fn local_paths_stay_inside() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), "x").unwrap();
        assert_eq!(read_local(Some(dir.path()), "a").unwrap(), b"x");
        assert_eq!(read_local(Some(dir.path()), "/a").unwrap(), b"x");
        assert_eq!(read_local(Some(dir.path()), "../a").unwrap_err(), TRAVERSAL);
        assert_eq!(read_local(None, "a").unwrap_err(), NO_FILES_DIR);
        std::os::unix::fs::symlink("/etc/hostname", dir.path().join("out")).unwrap();
        assert_eq!(read_local(Some(dir.path()), "out").unwrap_err(), TRAVERSAL);
        let e = go_error(
            "read",
            std::path::Path::new("/tmp"),
            &std::io::Error::from_raw_os_error(21),
        );
        assert_eq!(e, "read /tmp: is a directory");
        let e = read_local(Some(dir.path()), "missing").unwrap_err();
        assert!(
            e.starts_with("open ") && e.ends_with("/missing: no such file or directory"),
            "{e}"
        );
    }
}
