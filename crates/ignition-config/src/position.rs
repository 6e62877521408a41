//! Mapping JSON paths back to line and column in the source text.
//!
//! Positions are needed only when there is something to report, so the
//! source is parsed a second time, with byte ranges, only then. The
//! conventions are upstream's: a value is located at its first byte, except
//! objects and arrays, which are located just after their opening bracket; an
//! unused key is located at its opening quote; columns count bytes.

use std::cell::RefCell;
use std::collections::HashMap;

use jsonc_parser::ast::{self, ObjectPropName};
use jsonc_parser::common::Ranged;
use jsonc_parser::{CollectOptions, ParseOptions};

use crate::report::{Path, Position, Seg};

/// What to locate for a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Anchor {
    /// The value at the path (objects and arrays: just inside the bracket).
    Value,
    /// The key of the last path element.
    Key,
    /// Where Go's decoder stops on a type error: just inside the bracket of
    /// an object or array, just after a literal.
    DecodeError,
}

/// Resolves paths to positions in one source text. Each lookup costs one
/// step per path element (objects of many keys are indexed on first use)
/// and a binary search for the line, so locating every finding of a large
/// report stays linear.
pub(crate) struct Locator<'a> {
    text: &'a [u8],
    root: Option<ast::Value<'a>>,
    /// Offsets where lines start.
    lines: Vec<usize>,
    /// Key → index of its last property, for large objects (by the
    /// object's start offset).
    keys: RefCell<HashMap<usize, HashMap<String, usize>>>,
}

/// Objects up to this many properties are searched; larger ones indexed.
const INDEX_FROM: usize = 16;

fn prop_name<'p>(p: &'p ast::ObjectProp<'_>) -> &'p str {
    match &p.name {
        ObjectPropName::String(s) => &s.value,
        ObjectPropName::Word(w) => w.value,
    }
}

impl<'a> Locator<'a> {
    /// Parses `text` for ranges. Text that is not UTF-8 or not JSON yields a
    /// locator that finds nothing.
    pub(crate) fn new(text: &'a [u8]) -> Locator<'a> {
        let strict = ParseOptions {
            allow_comments: false,
            allow_loose_object_property_names: false,
            allow_trailing_commas: false,
            allow_missing_commas: false,
            allow_single_quoted_strings: false,
            allow_hexadecimal_numbers: false,
            allow_unary_plus_numbers: false,
            ..ParseOptions::default()
        };
        let root = std::str::from_utf8(text).ok().and_then(|s| {
            jsonc_parser::parse_to_ast(s, &CollectOptions::default(), &strict)
                .ok()
                .and_then(|r| r.value)
        });
        let lines = std::iter::once(0)
            .chain(
                text.iter()
                    .enumerate()
                    .filter(|(_, b)| **b == b'\n')
                    .map(|(i, _)| i + 1),
            )
            .collect();
        Locator {
            text,
            root,
            lines,
            keys: RefCell::new(HashMap::new()),
        }
    }

    /// [`go_position`] by the line index.
    fn position(&self, offset: usize) -> Option<Position> {
        if offset >= self.text.len() {
            return Some(Position { line: 0, col: 0 });
        }
        let line = self.lines.partition_point(|&start| start <= offset);
        Some(Position {
            line,
            col: offset - self.lines[line - 1] + 1,
        })
    }

    /// The position of `path`. A path that is not (entirely) in the text is
    /// located at its deepest ancestor that is, as upstream does.
    pub(crate) fn locate(&self, path: &Path, anchor: Anchor) -> Option<Position> {
        let mut node = self.root.as_ref()?;
        let mut key_start = None;
        let mut found_all = true;
        for seg in &path.0 {
            let next = self.step(node, seg);
            match next {
                Some((n, k)) => {
                    node = n;
                    key_start = k;
                }
                None => {
                    found_all = false;
                    break;
                }
            }
        }
        let anchor = if found_all { anchor } else { Anchor::Value };
        let container = matches!(node, ast::Value::Object(_) | ast::Value::Array(_));
        let offset = match anchor {
            Anchor::Key => key_start?,
            Anchor::Value if container => node.start() + 1,
            Anchor::Value => node.start(),
            Anchor::DecodeError if container => node.start() + 1,
            Anchor::DecodeError => node.end(),
        };
        self.position(offset)
    }

    fn step<'n>(
        &self,
        node: &'n ast::Value<'a>,
        seg: &Seg,
    ) -> Option<(&'n ast::Value<'a>, Option<usize>)> {
        match (seg, node) {
            (Seg::Index(i), ast::Value::Array(a)) => a.elements.get(*i).map(|n| (n, None)),
            (seg, ast::Value::Object(o)) => {
                let want = seg.key()?;
                // The last occurrence wins, as in Go; keys match exactly
                // (upstream's position lookup is case-sensitive even where
                // its decoder was not).
                let i = if o.properties.len() > INDEX_FROM {
                    let mut keys = self.keys.borrow_mut();
                    let index = keys.entry(o.start()).or_insert_with(|| {
                        o.properties
                            .iter()
                            .enumerate()
                            .map(|(i, p)| (prop_name(p).to_string(), i))
                            .collect()
                    });
                    *index.get(want)?
                } else {
                    o.properties.iter().rposition(|p| prop_name(p) == want)?
                };
                let prop = &o.properties[i];
                Some((&prop.value, Some(prop.name.start())))
            }
            _ => None,
        }
    }
}

/// Nesting kept by [`shallow`]: no finding is deeper (the spec's types
/// nest a few levels; what is below an unknown key is never located).
const KEEP_DEPTH: usize = 64;

/// The text with everything nested deeper than [`KEEP_DEPTH`] blanked out
/// (newlines kept), so that every offset and line stays where it was.
/// The position parser refuses nesting past 512; Go's goes to 10,000.
pub(crate) fn shallow(text: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let mut out: Option<Vec<u8>> = None;
    for (i, &b) in text.iter().enumerate() {
        let deep = depth > KEEP_DEPTH;
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else {
            match b {
                b'"' => in_string = true,
                b'[' | b'{' => depth += 1,
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        // A bracket that opens or closes the last kept level stays.
        if deep && depth > KEEP_DEPTH && !matches!(b, b'\n' | b'\r') {
            out.get_or_insert_with(|| text.to_vec())[i] = b' ';
        }
    }
    match out {
        Some(v) => std::borrow::Cow::Owned(v),
        None => std::borrow::Cow::Borrowed(text),
    }
}

/// Line and column of a byte offset the way upstream computes them: an
/// offset at or past the end of the text is never reached by upstream's
/// scan, which then prints `line 0 col 0`.
pub(crate) fn go_position(text: &[u8], offset: usize) -> Option<Position> {
    Some(if offset < text.len() {
        Position::of_offset(text, offset)
    } else {
        Position { line: 0, col: 0 }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_values_keys_and_decode_errors() {
        let text = b"{\"a\": {\"b\": [1, {\"c\": \"x\"}]},\n \"d\": 1.5}";
        let l = Locator::new(text);
        let p = Path::root().key("a").key("b").index(1).key("c");
        assert_eq!(
            l.locate(&p, Anchor::Value),
            Some(Position { line: 1, col: 23 })
        );
        assert_eq!(
            l.locate(&p, Anchor::Key),
            Some(Position { line: 1, col: 18 })
        );
        let obj = Path::root().key("a").key("b").index(1);
        assert_eq!(
            l.locate(&obj, Anchor::Value),
            Some(Position { line: 1, col: 18 })
        );
        let d = Path::root().key("d");
        assert_eq!(
            l.locate(&d, Anchor::DecodeError),
            Some(Position { line: 2, col: 10 })
        );
        // Missing paths fall back to the deepest ancestor present.
        assert_eq!(
            l.locate(&Path::root().key("a").key("zz"), Anchor::Value),
            Some(Position { line: 1, col: 8 })
        );
    }
}
