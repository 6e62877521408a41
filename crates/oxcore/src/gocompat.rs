//! Small pieces of Go behaviour that upstream tools show their users, so that
//! oxcore's drop-in replacements print the same text.

use std::io;
use std::path::Path;

/// An I/O error as Go's `os` package words it: `open /x: no such file or
/// directory`.
pub fn path_error(op: &str, path: &Path, err: &io::Error) -> String {
    format!("{op} {}: {}", path.display(), errno_text(err))
}

/// The lower-case strerror text Go uses for an errno, without Rust's
/// `(os error N)` suffix.
pub fn errno_text(err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(21) => "is a directory".into(),
        Some(_) => {
            let s = err.to_string();
            let s = s.split(" (os error").next().unwrap_or(&s).to_string();
            let mut c = s.chars();
            match c.next() {
                Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
                None => s,
            }
        }
        None => err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_errors_like_go() {
        let e = io::Error::from_raw_os_error(2);
        assert_eq!(
            path_error("open", Path::new("/nonexist"), &e),
            "open /nonexist: no such file or directory"
        );
        let e = io::Error::from_raw_os_error(21);
        assert_eq!(
            path_error("read", Path::new("/tmp"), &e),
            "read /tmp: is a directory"
        );
    }
}
