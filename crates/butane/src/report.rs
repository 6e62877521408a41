//! Butane's report: findings on YAML paths, printed as upstream prints them.
//!
//! Two forms: the default pretty form (a header with the path, `--> file:L:C`,
//! the surrounding source lines with carets under the offending token, and
//! the message), and `--raw-errors`, one line per finding in
//! ignition-validate's shape (`error at $.path, line L col C: msg`).

use std::fmt::Write as _;

pub(crate) use ignition_config::report::{Path, Seg, Severity};

use crate::yaml::{Kind, Mark, Node, is_null};

/// Builds a path from keys and indices: `p!["storage", "files", 0]`.
macro_rules! p {
    ($($seg:expr),* $(,)?) => {
        $crate::report::Path(vec![$($crate::report::IntoSeg::seg($seg)),*])
    };
}
pub(crate) use p;

/// Conversion of path elements.
pub(crate) trait IntoSeg {
    /// The element.
    fn seg(self) -> Seg;
}

impl IntoSeg for &'static str {
    fn seg(self) -> Seg {
        Seg::Key(self)
    }
}

impl IntoSeg for usize {
    fn seg(self) -> Seg {
        Seg::Index(self)
    }
}

impl IntoSeg for Seg {
    fn seg(self) -> Seg {
        self
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Error or warning.
    pub severity: Severity,
    /// YAML path (snake_case keys).
    pub path: Path,
    /// Position in the source.
    pub mark: Option<Mark>,
    /// Upstream's message.
    pub message: String,
}

/// All findings, in upstream's order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// Findings.
    pub entries: Vec<Entry>,
}

impl Report {
    /// Whether any finding is an error.
    pub(crate) fn is_fatal(&self) -> bool {
        self.entries.iter().any(|e| e.severity == Severity::Error)
    }

    /// Adds a finding; its position is filled in by [`Report::correlate`].
    pub(crate) fn add(&mut self, severity: Severity, path: Path, message: impl Into<String>) {
        self.entries.push(Entry {
            severity,
            path,
            mark: None,
            message: message.into(),
        });
    }

    /// Adds an error.
    pub(crate) fn error(&mut self, path: Path, message: impl Into<String>) {
        self.add(Severity::Error, path, message);
    }

    /// Adds a warning.
    pub(crate) fn warn(&mut self, path: Path, message: impl Into<String>) {
        self.add(Severity::Warning, path, message);
    }

    /// Sets missing positions from the YAML tree: the deepest node on each
    /// entry's path, the key's position for an unknown key.
    pub(crate) fn correlate(&mut self, root: Option<&Node>) {
        for e in &mut self.entries {
            if e.mark.is_none() {
                e.mark = root.map(|r| locate(r, &e.path));
            }
        }
    }

    /// The `--raw-errors` form.
    pub fn render_raw(&self) -> String {
        let mut out = String::new();
        for e in &self.entries {
            out.push_str(&raw_line(e));
            out.push('\n');
        }
        out
    }

    /// The default form, against the source text and its display name.
    pub fn render_pretty(&self, source: &str, name: &str, color: bool) -> String {
        if self.entries.is_empty() {
            return String::new();
        }
        let lines: Vec<&str> = source.split('\n').collect();
        let mut out = String::new();
        for (i, e) in self.entries.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            pretty_entry(e, &lines, name, color, &mut out);
        }
        out
    }
}

fn raw_line(e: &Entry) -> String {
    // The same line ignition-validate prints.
    ignition_config::Entry {
        severity: e.severity,
        path: Some(e.path.clone()),
        position: e.mark.map(|m| ignition_config::Position {
            line: m.line,
            col: m.col,
        }),
        message: e.message.clone(),
    }
    .to_string()
}

/// Source lines longer than this are not quoted: a finding on such a line
/// is printed in the raw form. Upstream quotes the lines around every
/// finding, so a one-line document of many findings would print the
/// whole document once per finding.
pub(crate) const MAX_QUOTED_LINE: usize = 4096;

fn pretty_entry(e: &Entry, lines: &[&str], name: &str, color: bool, out: &mut String) {
    let raw = |out: &mut String| {
        out.push_str(&raw_line(e));
        out.push('\n');
    };
    let Some(m) = e.mark else {
        return raw(out);
    };
    let (l, c) = (m.line, m.col);
    if l < 1 || l > lines.len() || c < 1 || c > lines[l - 1].len() {
        return raw(out);
    }
    let first = l.saturating_sub(2).max(1);
    let last = (l + 2).min(lines.len());
    if lines[first - 1..last]
        .iter()
        .any(|line| line.len() > MAX_QUOTED_LINE)
    {
        return raw(out);
    }
    let paint = |out: &mut String, code: &str, text: std::fmt::Arguments<'_>| {
        if color {
            let _ = write!(out, "\x1b[{code}m{text}\x1b[0m");
        } else {
            let _ = out.write_fmt(text);
        }
    };
    let kind_color = match e.severity {
        Severity::Error => "1;31",
        Severity::Warning => "1;33",
        Severity::Info => "1;36",
    };
    let width = last.to_string().len();
    let gutter = " ".repeat(width);
    paint(out, kind_color, format_args!("{}", e.severity));
    if !e.path.is_root() {
        let _ = write!(out, "[{}]", e.path);
    }
    out.push_str(":\n  ");
    paint(out, "1;34", format_args!("-->"));
    let _ = writeln!(out, " {name}:{l}:{c}");
    let _ = writeln!(out, " {gutter} |");
    for n in first..=last {
        out.push(' ');
        paint(out, "1;34", format_args!("{n:>width$}"));
        let _ = writeln!(out, " | {}", lines[n - 1]);
        if n == l {
            // Upstream treats the column as a byte offset, and underlines
            // up to the next whitespace of the line read as UTF-8 (bad
            // bytes as U+FFFD).
            let start = c - 1;
            let mut len = 0;
            'scan: for chunk in lines[n - 1].as_bytes()[start..].utf8_chunks() {
                for ch in chunk.valid().chars() {
                    if ch.is_whitespace() {
                        break 'scan;
                    }
                    len += ch.len_utf8();
                }
                if !chunk.invalid().is_empty() {
                    len += char::REPLACEMENT_CHARACTER.len_utf8();
                }
            }
            let _ = write!(out, " {gutter} | ");
            out.extend(std::iter::repeat_n(' ', start));
            paint(out, "1;34", format_args!("{}", "^".repeat(len)));
            let _ = writeln!(out, " {}", e.message);
        }
    }
    let _ = writeln!(out, " {gutter} |");
}

/// The deepest node on `path` that the tree has, whether it is the node at
/// the whole path, and where it is: below an alias, everything is located
/// at the alias (upstream's position tree has a leaf there). Each step is
/// a constant-time lookup (mappings of many keys are indexed).
fn walk<'n>(root: &'n Node, path: &Path) -> (&'n Node, bool, Mark) {
    let mut node = root;
    let mut at = if root.alias { Some(root.mark) } else { None };
    for seg in &path.0 {
        let next = match (&node.kind, seg) {
            (Kind::Seq(items), Seg::Index(n)) => items.get(*n),
            (Kind::Map(m), seg) => seg.key().and_then(|want| m.get(want)),
            _ => None,
        };
        match next {
            Some(n) => {
                node = n;
                if at.is_none() && n.alias {
                    at = Some(n.mark);
                }
            }
            None => return (node, false, at.unwrap_or(node.mark)),
        }
    }
    (node, true, at.unwrap_or(node.mark))
}

/// The position of a path in the YAML tree: the deepest node that exists.
/// (Unused keys carry their key's position from the decoder.)
pub(crate) fn locate(root: &Node, path: &Path) -> Mark {
    walk(root, path).2
}

/// Whether every element of `path` is in the YAML tree with a value that
/// is not empty (upstream records translations only for non-zero values).
pub(crate) fn exists(root: &Node, path: &Path) -> bool {
    match node_at(root, path).map(|n| &n.kind) {
        Some(Kind::Map(e)) => !e.is_empty(),
        Some(Kind::Seq(items)) => !items.is_empty(),
        Some(Kind::Scalar(_)) => !node_at(root, path).is_some_and(is_null),
        Some(Kind::Cycle(_)) => true,
        None => false,
    }
}

fn node_at<'n>(root: &'n Node, path: &Path) -> Option<&'n Node> {
    match walk(root, path) {
        (n, true, _) => Some(n),
        _ => None,
    }
}

/// Whether the path is in the YAML tree (any value, even null).
pub(crate) fn exists_at_all(root: &Node, path: &Path) -> bool {
    node_at(root, path).is_some()
}

/// Whether the path holds a mapping (not null).
pub(crate) fn mapping_at(root: &Node, path: &Path) -> bool {
    node_at(root, path).is_some_and(|n| matches!(n.kind, Kind::Map(_)))
}

/// The text of a scalar at the path.
pub(crate) fn scalar_at(root: &Node, path: &Path) -> Option<String> {
    match &node_at(root, path)?.kind {
        Kind::Scalar(s) => Some(s.text.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warning_at(line: usize, col: usize) -> Report {
        Report {
            entries: vec![Entry {
                severity: Severity::Warning,
                path: Path(vec![Seg::Name("k".into())]),
                mark: Some(Mark { line, col }),
                message: "unused key k".into(),
            }],
        }
    }

    #[test]
    fn quotes_lines_and_underlines_the_token() {
        let text = "variant: fcos\nk: vé lue\n";
        let out = warning_at(2, 4).render_pretty(text, "c.bu", false);
        assert!(
            out.contains(" 2 | k: vé lue\n   |    ^^^ unused key k\n"),
            "{out}"
        );
    }

    #[test]
    fn long_lines_are_not_quoted() {
        // One finding per key of a one-line document would otherwise print
        // the whole document each time.
        let text = format!("{{{}}}", "k: 1, ".repeat(1000));
        let out = warning_at(1, 2).render_pretty(&text, "c.bu", false);
        assert_eq!(out, "warning at $.k, line 1 col 2: unused key k\n");
    }
}
