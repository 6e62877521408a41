//! YAML with positions: a small tree built from saphyr's event parser,
//! resolved the way Go's yaml.v3 (which upstream Butane uses) resolves plain
//! scalars.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

/// A position in the source: 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Mark {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub col: usize,
}

/// A YAML node with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// What it is.
    pub kind: Kind,
    /// Where it starts.
    pub mark: Mark,
    /// Whether it was written as an alias (`*name`) to an anchored node.
    pub alias: bool,
}

/// The shape of a node.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// A scalar: its text, and how it was written.
    Scalar(Scalar),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in document order.
    Map(Vec<(Node, Node)>),
}

/// A scalar as written.
#[derive(Debug, Clone, PartialEq)]
pub struct Scalar {
    /// The text, escapes resolved.
    pub text: String,
    /// Plain scalars are resolved to null, bool, int or float.
    pub plain: bool,
    /// An explicit tag (`!!str`), if any.
    pub tag: Option<String>,
}

/// A plain scalar's resolved value, per the YAML 1.2 core schema as yaml.v3
/// applies it (with its leading-zero octal and underscores).
#[derive(Debug, Clone, PartialEq)]
pub enum Resolved {
    /// `null`, `~` or empty.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// Anything else, and every quoted or block scalar.
    Str,
}

impl Scalar {
    /// Resolves the scalar as yaml.v3 does.
    pub fn resolve(&self) -> Resolved {
        if let Some(tag) = &self.tag {
            return match tag.as_str() {
                "tag:yaml.org,2002:str" | "!!str" => Resolved::Str,
                "tag:yaml.org,2002:null" | "!!null" => Resolved::Null,
                _ => resolve_plain(&self.text),
            };
        }
        if !self.plain {
            return Resolved::Str;
        }
        resolve_plain(&self.text)
    }

    /// yaml.v3's short tag of the resolved value, for messages.
    pub fn short_tag(&self) -> &'static str {
        match self.resolve() {
            Resolved::Null => "!!null",
            Resolved::Bool(_) => "!!bool",
            Resolved::Int(_) => "!!int",
            Resolved::Float(_) => "!!float",
            Resolved::Str => "!!str",
        }
    }
}

fn resolve_plain(s: &str) -> Resolved {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Resolved::Null,
        "true" | "True" | "TRUE" => return Resolved::Bool(true),
        "false" | "False" | "FALSE" => return Resolved::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Resolved::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Resolved::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Resolved::Float(f64::NAN),
        _ => {}
    }
    let first = s.as_bytes()[0];
    if !(first.is_ascii_digit() || matches!(first, b'-' | b'+' | b'.')) {
        return Resolved::Str;
    }
    if let Some(i) = go_parse_int(s) {
        return Resolved::Int(i);
    }
    // yaml.v3 also accepts 0o and 0b prefixes.
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let radix = if let Some(b) = body.strip_prefix("0o") {
        Some((b, 8))
    } else {
        body.strip_prefix("0b").map(|b| (b, 2))
    };
    if let Some((digits, r)) = radix
        && let Ok(v) = i64::from_str_radix(digits, r)
    {
        return Resolved::Int(if neg { -v } else { v });
    }
    if is_yaml_float(s)
        && let Ok(f) = s.replace('_', "").parse::<f64>()
    {
        return Resolved::Float(f);
    }
    Resolved::Str
}

/// Go's `strconv.ParseInt(s, 0, 64)`: sign, `0x`/`0o`/`0b`/leading-zero
/// octal prefixes, underscores only between digits with a prefix.
fn go_parse_int(s: &str) -> Option<i64> {
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if body.is_empty() {
        return None;
    }
    let lower = body.to_ascii_lowercase();
    let (digits, radix, prefixed) = if let Some(d) = lower.strip_prefix("0x") {
        (d.to_string(), 16, true)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (d.to_string(), 8, true)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (d.to_string(), 2, true)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (lower[1..].to_string(), 8, true)
    } else {
        (lower.clone(), 10, false)
    };
    if digits.contains('_') {
        // Underscores must separate digits, and need a base prefix.
        if !prefixed && radix == 10 {
            return None;
        }
        let b = digits.as_bytes();
        if b.first() == Some(&b'_') && !prefixed || b.last() == Some(&b'_') || digits.contains("__")
        {
            return None;
        }
    }
    let clean: String = digits.chars().filter(|&c| c != '_').collect();
    if clean.is_empty() {
        return None;
    }
    let v = u64::from_str_radix(&clean, radix).ok()?;
    if neg {
        if v > i64::MAX as u64 + 1 {
            return None;
        }
        Some((v as i64).wrapping_neg())
    } else {
        i64::try_from(v).ok()
    }
}

fn is_yaml_float(s: &str) -> bool {
    // [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?
    let b = s.replace('_', "");
    let b = b.strip_prefix(['-', '+']).unwrap_or(&b);
    let (mant, exp) = match b.find(['e', 'E']) {
        Some(i) => (&b[..i], Some(&b[i + 1..])),
        None => (b, None),
    };
    let mant_ok = match mant.split_once('.') {
        Some((a, f)) => {
            (!a.is_empty() || !f.is_empty())
                && a.bytes().all(|c| c.is_ascii_digit())
                && f.bytes().all(|c| c.is_ascii_digit())
                && !(a.is_empty() && f.is_empty())
        }
        None => !mant.is_empty() && mant.bytes().all(|c| c.is_ascii_digit()),
    };
    let exp_ok = exp.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && e.bytes().all(|c| c.is_ascii_digit())
    });
    mant_ok && exp_ok
}

/// A YAML syntax error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// Where.
    pub mark: Mark,
    /// What, in the parser's words.
    pub message: String,
}

fn mark(span: &Span) -> Mark {
    Mark {
        line: span.start.line(),
        col: span.start.col() + 1,
    }
}

fn remark(node: &mut Node, at: Mark) {
    node.mark = at;
    match &mut node.kind {
        Kind::Seq(items) => items.iter_mut().for_each(|n| remark(n, at)),
        Kind::Map(entries) => entries.iter_mut().for_each(|(k, v)| {
            remark(k, at);
            remark(v, at);
        }),
        Kind::Scalar(_) => {}
    }
}

/// The position of the block scalar indicator before char index `index`.
fn block_indicator(text: &str, index: usize) -> Option<Mark> {
    let chars: Vec<char> = text.chars().take(index + 1).collect();
    let at = chars.iter().rposition(|&c| c == '|' || c == '>')?;
    let line = chars[..at].iter().filter(|&&c| c == '\n').count() + 1;
    let line_start = chars[..at]
        .iter()
        .rposition(|&c| c == '\n')
        .map_or(0, |i| i + 1);
    Some(Mark {
        line,
        col: at - line_start + 1,
    })
}

/// Parses the first document of `text`. An empty document is `None`.
pub fn parse(text: &str) -> Result<Option<Node>, SyntaxError> {
    let mut parser = Parser::new_from_str(text);
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    // A stack of partly built containers: (node, pending key for maps, anchor).
    enum Open {
        Seq(Node, usize),
        Map(Node, Option<Node>, usize),
    }
    let mut stack: Vec<Open> = Vec::new();
    let mut root: Option<Node> = None;
    let mut done = false;
    while let Some(ev) = parser.next_event() {
        let (event, span) = match ev {
            Ok(x) => x,
            Err(e) => {
                // yaml.v3 prints libyaml's context mark: for parser errors
                // the 0-based line where the enclosing collection (or the
                // offending node) starts, for scanner errors the 1-based
                // line of the problem.
                let problem = e.marker().line();
                let info = e.info();
                let open = |want_map: bool| {
                    stack.iter().rev().find_map(|o| match (o, want_map) {
                        (Open::Map(n, _, _), true) | (Open::Seq(n, _), false) => Some(n.mark.line),
                        _ => None,
                    })
                };
                if info.contains("unknown anchor") {
                    // yaml.v3 names the anchor and gives no line.
                    let name: String = text
                        .lines()
                        .nth(problem.saturating_sub(1))
                        .and_then(|l| l.get(e.marker().col()..))
                        .map(|rest| {
                            rest.trim_start_matches('*')
                                .chars()
                                .take_while(|c| !c.is_whitespace() && !",[]{}".contains(*c))
                                .collect()
                        })
                        .unwrap_or_default();
                    return Err(SyntaxError {
                        mark: Mark { line: 0, col: 0 },
                        message: format!("unknown anchor '{name}' referenced"),
                    });
                }
                let parser_error = info.starts_with("while parsing");
                let line = if parser_error {
                    let context = if info.contains("block mapping") || info.contains("flow mapping")
                    {
                        open(true).map(|l| l.saturating_sub(1))
                    } else if info.contains("block collection") || info.contains("flow sequence") {
                        open(false).map(|l| l.saturating_sub(1))
                    } else {
                        Some(problem.saturating_sub(1))
                    };
                    match context {
                        Some(l) if l != 0 => l,
                        _ => problem.saturating_sub(1),
                    }
                } else if problem > 1 {
                    problem
                } else {
                    0
                };
                return Err(SyntaxError {
                    mark: Mark {
                        line,
                        col: e.marker().col() + 1,
                    },
                    message: info.to_string(),
                });
            }
        };
        let complete: Option<(Node, usize)> = match event {
            Event::StreamStart | Event::DocumentStart(_) | Event::Nothing => None,
            Event::DocumentEnd => {
                done = true;
                None
            }
            Event::StreamEnd => break,
            Event::Alias(id) => {
                let mut node = anchors.get(&id).cloned().ok_or_else(|| SyntaxError {
                    mark: mark(&span),
                    message: "unknown anchor".into(),
                })?;
                // Upstream's position tree has a leaf here: everything under
                // the alias is located at it.
                remark(&mut node, mark(&span));
                node.alias = true;
                Some((node, 0))
            }
            Event::Scalar(value, style, anchor, tag) => {
                let tag = tag.map(|t| {
                    if t.handle == "!!" {
                        format!("tag:yaml.org,2002:{}", t.suffix)
                    } else {
                        format!("{}{}", t.handle, t.suffix)
                    }
                });
                let plain = style == ScalarStyle::Plain;
                let mut at = mark(&span);
                if matches!(style, ScalarStyle::Literal | ScalarStyle::Folded) {
                    // yaml.v3 places a block scalar at its `|` or `>`.
                    at = block_indicator(text, span.start.index()).unwrap_or(at);
                }
                if plain && value.is_empty() && tag.is_none() {
                    // An implied empty value: libyaml places it just after
                    // the indicator.
                    at.col += 1;
                }
                Some((
                    Node {
                        kind: Kind::Scalar(Scalar {
                            text: value.into_owned(),
                            plain,
                            tag,
                        }),
                        mark: at,
                        alias: false,
                    },
                    anchor,
                ))
            }
            Event::SequenceStart(anchor, _) => {
                stack.push(Open::Seq(
                    Node {
                        kind: Kind::Seq(Vec::new()),
                        mark: mark(&span),
                        alias: false,
                    },
                    anchor,
                ));
                None
            }
            Event::MappingStart(anchor, _) => {
                stack.push(Open::Map(
                    Node {
                        kind: Kind::Map(Vec::new()),
                        mark: mark(&span),
                        alias: false,
                    },
                    None,
                    anchor,
                ));
                None
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Open::Seq(n, a)) => Some((n, a)),
                _ => None,
            },
            Event::MappingEnd => match stack.pop() {
                Some(Open::Map(n, _, a)) => Some((n, a)),
                _ => None,
            },
        };
        if done {
            break;
        }
        if let Some((node, anchor)) = complete {
            if anchor != 0 {
                anchors.insert(anchor, node.clone());
            }
            match stack.last_mut() {
                None => root = Some(node),
                Some(Open::Seq(
                    Node {
                        kind: Kind::Seq(items),
                        ..
                    },
                    _,
                )) => items.push(node),
                Some(Open::Map(
                    Node {
                        kind: Kind::Map(entries),
                        ..
                    },
                    pending,
                    _,
                )) => match pending.take() {
                    None => *pending = Some(node),
                    Some(key) => entries.push((key, node)),
                },
                Some(_) => {}
            }
        }
    }
    Ok(root)
}

/// libyaml's wording for a parser error message (yaml.v3 wraps libyaml;
/// saphyr's messages descend from the same source and mostly agree).
pub fn libyaml_message(m: &str) -> String {
    // saphyr prefixes libyaml's problem with its context.
    let m = match m.split_once(", ") {
        Some((ctx, rest)) if ctx.starts_with("while ") => rest,
        _ => m,
    };
    match m {
        "expected ',' or ']'" => "did not find expected ',' or ']'".into(),
        "found a tab" => "found a tab character that violates indentation".into(),
        m if m.starts_with("tabs disallowed") => {
            "found character that cannot start any token".into()
        }
        _ => m.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(s: &str) -> Resolved {
        Scalar {
            text: s.into(),
            plain: true,
            tag: None,
        }
        .resolve()
    }

    #[test]
    fn resolves_like_yaml_v3() {
        assert_eq!(scalar("0644"), Resolved::Int(0o644));
        assert_eq!(scalar("0o644"), Resolved::Int(0o644));
        assert_eq!(scalar("420"), Resolved::Int(420));
        assert_eq!(scalar("0x1F"), Resolved::Int(31));
        assert_eq!(scalar("-5"), Resolved::Int(-5));
        assert_eq!(scalar("true"), Resolved::Bool(true));
        assert_eq!(scalar("yes"), Resolved::Str);
        assert_eq!(scalar("~"), Resolved::Null);
        assert_eq!(scalar(""), Resolved::Null);
        assert_eq!(scalar("1.5"), Resolved::Float(1.5));
        assert_eq!(scalar("1e3"), Resolved::Float(1000.0));
        assert_eq!(scalar("3.4.0"), Resolved::Str);
        assert_eq!(scalar("0999"), Resolved::Float(999.0));
        assert_eq!(scalar("/etc/x"), Resolved::Str);
    }

    #[test]
    fn builds_tree_with_positions() {
        let text =
            "variant: fcos\nversion: 1.5.0\nstorage:\n  files:\n    - path: /a\n      mode: 0644\n";
        let root = parse(text).unwrap().unwrap();
        let Kind::Map(entries) = &root.kind else {
            panic!()
        };
        assert_eq!(entries.len(), 3);
        let (k, v) = &entries[2];
        assert_eq!(k.mark, Mark { line: 3, col: 1 });
        let Kind::Map(storage) = &v.kind else {
            panic!()
        };
        let Kind::Seq(files) = &storage[0].1.kind else {
            panic!()
        };
        assert_eq!(files[0].mark, Mark { line: 5, col: 7 });
    }

    #[test]
    fn anchors_and_aliases() {
        let root = parse("a: &x {b: 1}\nc: *x\n").unwrap().unwrap();
        let Kind::Map(e) = &root.kind else { panic!() };
        let (Kind::Map(x), Kind::Map(y)) = (&e[0].1.kind, &e[1].1.kind) else {
            panic!()
        };
        assert_eq!(x.len(), y.len());
        assert!(!e[0].1.alias && e[1].1.alias);
        // Everything under an alias is located at the alias.
        assert_eq!(y[0].1.mark, Mark { line: 2, col: 4 });
    }

    #[test]
    fn syntax_errors_have_positions() {
        // yaml.v3 gives no line for a scanner error on the first line.
        let e = parse("a: b: c\n").unwrap_err();
        assert_eq!(e.mark.line, 0);
        assert_eq!(
            libyaml_message(&e.message),
            "mapping values are not allowed in this context"
        );
        let e = parse("x: 1\ny: 2\nz: a: b\n").unwrap_err();
        assert_eq!(e.mark.line, 3);
        assert!(parse("").unwrap().is_none());
    }
}
