//! Validation reports in upstream's shape.
//!
//! Each entry has a severity, an optional JSON path into the config and an
//! optional line:column in the source text, rendered the way
//! `ignition-validate` prints them:
//! `error at $.storage.files.0.path, line 6 col 13: path not absolute`.

use std::fmt;

/// How serious an entry is. Only errors make a config invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The config is invalid.
    Error,
    /// The config is valid but probably not what the author meant.
    Warning,
    /// Informational.
    Info,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        })
    }
}

/// One element of a JSON path: an object key or an array index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Seg {
    /// An object member.
    Key(&'static str),
    /// An object member whose name is not a known field (unused keys).
    Name(String),
    /// An array element.
    Index(usize),
}

impl Seg {
    /// The key as text, or `None` for an index.
    pub fn key(&self) -> Option<&str> {
        match self {
            Seg::Key(k) => Some(k),
            Seg::Name(k) => Some(k),
            Seg::Index(_) => None,
        }
    }
}

impl fmt::Display for Seg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Seg::Key(k) => f.write_str(k),
            Seg::Name(k) => f.write_str(k),
            Seg::Index(i) => write!(f, "{i}"),
        }
    }
}

/// A JSON path from the root of the config, printed as `$.a.0.b`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Path(pub Vec<Seg>);

impl Path {
    /// The root path `$`.
    pub fn root() -> Path {
        Path(Vec::new())
    }

    /// This path with one more key.
    pub fn key(&self, k: &'static str) -> Path {
        let mut p = self.clone();
        p.0.push(Seg::Key(k));
        p
    }

    /// This path with one more index.
    pub fn index(&self, i: usize) -> Path {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }

    /// Whether this is the root.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("$")?;
        for s in &self.0 {
            write!(f, ".{s}")?;
        }
        Ok(())
    }
}

/// A line and column in the source text, both 1-based, the column counted in
/// bytes as upstream counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in bytes.
    pub col: usize,
}

impl Position {
    /// The position of byte offset `index` in `text`. `index` may be one past
    /// the end.
    pub fn of_offset(text: &[u8], index: usize) -> Position {
        let index = index.min(text.len());
        let before = &text[..index];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        Position {
            line,
            col: index - line_start + 1,
        }
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// How serious it is.
    pub severity: Severity,
    /// Where in the config, when it concerns a field.
    pub path: Option<Path>,
    /// Where in the source text, when known.
    pub position: Option<Position>,
    /// What is wrong, in upstream's wording.
    pub message: String,
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.as_ref().filter(|p| !p.is_root());
        write!(f, "{}", self.severity)?;
        match (path, self.position) {
            (Some(p), Some(pos)) => write!(f, " at {p}, line {} col {}", pos.line, pos.col)?,
            (None, Some(pos)) => write!(f, " at line {} col {}", pos.line, pos.col)?,
            (Some(p), None) => write!(f, " at {p}")?,
            (None, None) => {}
        }
        write!(f, ": {}", self.message)
    }
}

/// All findings about one config, in the order upstream reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The findings.
    pub entries: Vec<Entry>,
}

impl Report {
    /// Whether any entry is an error.
    pub fn is_fatal(&self) -> bool {
        self.entries.iter().any(|e| e.severity == Severity::Error)
    }

    /// Whether there are no entries at all.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds an entry at a path; its position is filled in later.
    pub fn push(&mut self, severity: Severity, path: Path, message: impl Into<String>) {
        self.entries.push(Entry {
            severity,
            path: Some(path),
            position: None,
            message: message.into(),
        });
    }

    /// Adds an error at a path.
    pub fn error(&mut self, path: Path, message: impl Into<String>) {
        self.push(Severity::Error, path, message);
    }

    /// Adds a warning at a path.
    pub fn warn(&mut self, path: Path, message: impl Into<String>) {
        self.push(Severity::Warning, path, message);
    }

    /// Appends another report.
    pub fn extend(&mut self, other: Report) {
        self.entries.extend(other.entries);
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.entries {
            writeln!(f, "{e}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_formats_like_upstream() {
        let mut r = Report::default();
        r.error(
            Path::root()
                .key("storage")
                .key("files")
                .index(0)
                .key("path"),
            "path not absolute",
        );
        r.entries[0].position = Some(Position { line: 6, col: 13 });
        assert_eq!(
            r.to_string(),
            "error at $.storage.files.0.path, line 6 col 13: path not absolute\n"
        );
        let e = Entry {
            severity: Severity::Error,
            path: None,
            position: Some(Position { line: 1, col: 2 }),
            message: "x".into(),
        };
        assert_eq!(e.to_string(), "error at line 1 col 2: x");
        let w = Entry {
            severity: Severity::Warning,
            path: Some(Path::root().key("a")),
            position: None,
            message: "y".into(),
        };
        assert_eq!(w.to_string(), "warning at $.a: y");
    }

    #[test]
    fn positions_count_bytes() {
        let t = "ab\nc\u{e9}d".as_bytes();
        assert_eq!(Position::of_offset(t, 0), Position { line: 1, col: 1 });
        assert_eq!(Position::of_offset(t, 3), Position { line: 2, col: 1 });
        assert_eq!(Position::of_offset(t, 6), Position { line: 2, col: 4 });
    }
}
