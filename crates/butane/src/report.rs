//! Butane's report: findings on YAML paths, printed as upstream prints them.
//!
//! Two forms: the default pretty form (a header with the path, `--> file:L:C`,
//! the surrounding source lines with carets under the offending token, and
//! the message), and `--raw-errors`, one line per finding in
//! ignition-validate's shape (`error at $.path, line L col C: msg`).

use std::fmt::Write as _;

pub use ignition_config::report::{Path, Seg, Severity};

use crate::yaml::{Kind, Mark, Node};

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
    pub fn is_fatal(&self) -> bool {
        self.entries.iter().any(|e| e.severity == Severity::Error)
    }

    /// Adds a finding; its position is filled in by [`Report::correlate`].
    pub fn add(&mut self, severity: Severity, path: Path, message: impl Into<String>) {
        self.entries.push(Entry {
            severity,
            path,
            mark: None,
            message: message.into(),
        });
    }

    /// Adds an error.
    pub fn error(&mut self, path: Path, message: impl Into<String>) {
        self.add(Severity::Error, path, message);
    }

    /// Adds a warning.
    pub fn warn(&mut self, path: Path, message: impl Into<String>) {
        self.add(Severity::Warning, path, message);
    }

    /// Sets missing positions from the YAML tree: the deepest node on each
    /// entry's path, the key's position for an unknown key.
    pub fn correlate(&mut self, root: Option<&Node>) {
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
            out.push_str(&pretty_entry(e, &lines, name, color));
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

fn pretty_entry(e: &Entry, lines: &[&str], name: &str, color: bool) -> String {
    let Some(m) = e.mark else {
        return raw_line(e) + "\n";
    };
    let (l, c) = (m.line, m.col);
    if l < 1 || l > lines.len() || c < 1 || c > lines[l - 1].len() {
        return raw_line(e) + "\n";
    }
    let paint = |code: &str, text: &str| {
        if color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    };
    let kind_color = match e.severity {
        Severity::Error => "1;31",
        Severity::Warning => "1;33",
        Severity::Info => "1;36",
    };
    let first = l.saturating_sub(2).max(1);
    let last = (l + 2).min(lines.len());
    let width = last.to_string().len();
    let gutter = " ".repeat(width);
    let mut out = paint(kind_color, &e.severity.to_string());
    if !e.path.is_root() {
        let _ = write!(out, "[{}]", e.path);
    }
    out.push_str(":\n");
    let _ = writeln!(out, "  {} {name}:{l}:{c}", paint("1;34", "-->"));
    let _ = writeln!(out, " {gutter} |");
    for n in first..=last {
        let num = paint("1;34", &format!("{n:>width$}"));
        let _ = writeln!(out, " {num} | {}", lines[n - 1]);
        if n == l {
            // Upstream treats the column as a byte offset.
            let line = lines[n - 1].as_bytes();
            let start = c - 1;
            let text = String::from_utf8_lossy(&line[start..]);
            let len = text.find(char::is_whitespace).unwrap_or(text.len());
            let carets = paint("1;34", &"^".repeat(len));
            let _ = writeln!(
                out,
                " {gutter} | {}{carets} {}",
                " ".repeat(start),
                e.message
            );
        }
    }
    let _ = writeln!(out, " {gutter} |");
    out
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
pub fn locate(root: &Node, path: &Path) -> Mark {
    walk(root, path).2
}

/// Whether every element of `path` is in the YAML tree with a value that
/// is not empty (upstream records translations only for non-zero values).
pub fn exists(root: &Node, path: &Path) -> bool {
    match node_at(root, path).map(|n| &n.kind) {
        Some(Kind::Map(e)) => !e.is_empty(),
        Some(Kind::Seq(items)) => !items.is_empty(),
        Some(Kind::Scalar(_)) => !node_at(root, path).is_some_and(crate::decode::is_null),
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
pub fn exists_at_all(root: &Node, path: &Path) -> bool {
    node_at(root, path).is_some()
}

/// Whether the path holds a mapping (not null).
pub fn mapping_at(root: &Node, path: &Path) -> bool {
    node_at(root, path).is_some_and(|n| matches!(n.kind, Kind::Map(_)))
}

/// The text of a scalar at the path.
pub fn scalar_at(root: &Node, path: &Path) -> Option<String> {
    match &node_at(root, path)?.kind {
        Kind::Scalar(s) => Some(s.text.clone()),
        _ => None,
    }
}
