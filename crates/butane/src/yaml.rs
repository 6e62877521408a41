//! YAML with positions: a small tree built from saphyr's event parser,
//! resolved the way Go's yaml.v3 (which upstream Butane uses) resolves plain
//! scalars.
//!
//! The tree is linear in the size of the text, whatever the text: an alias
//! (`*name`) shares its anchored node (`Rc`) instead of copying it, so a
//! "billion laughs" document stays as small as it is written. Aliases are
//! expanded only where the decoder walks through them, and there yaml.v3's
//! rule against excessive aliasing applies (see [`crate::decode`]). An
//! alias to an anchor that is still open where the alias stands (the
//! anchored node contains its own alias) is a [`Kind::Cycle`], resolved
//! only when walked, as yaml.v3 does.
//!
//! Every position is computed from the parser's marks and a cursor that
//! only moves forward through the text, so building the tree costs one
//! pass over the text.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use saphyr_parser::{Event, Marker, Parser, ScalarStyle};

/// yaml.v3's limit on nested block collections (`max_indents`).
pub(crate) const MAX_DEPTH: usize = 10_000;

/// saphyr's limit on nested flow collections (its flow level is a byte);
/// yaml.v3 allows 10,000.
pub(crate) const MAX_FLOW_DEPTH: usize = 255;

/// A position in the source: 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Mark {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub col: usize,
}

/// A YAML node with its position. Cloning is cheap: the contents are
/// shared.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    /// What it is. For an alias: the anchored node's contents.
    pub kind: Kind,
    /// Where it starts (for an alias: where the alias is written).
    pub mark: Mark,
    /// Whether it was written as an alias (`*name`) to an anchored node.
    pub alias: bool,
    /// Where the node's contents were written: its own position, or for an
    /// alias the anchored node's (yaml.v3's type errors name that line).
    pub origin: Mark,
}

/// The shape of a node.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    /// A scalar: its text, and how it was written.
    Scalar(Rc<Scalar>),
    /// A sequence.
    Seq(Rc<Vec<Node>>),
    /// A mapping, in document order.
    Map(Rc<Mapping>),
    /// An alias to an anchor that encloses it; see [`Cycle::target`].
    Cycle(Rc<Cycle>),
}

/// A mapping's entries in document order, with an index by key text for
/// mappings large enough to need one.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Mapping {
    entries: Vec<(Node, Node)>,
    /// Key text → index of its last entry (only for scalar keys).
    index: Option<HashMap<String, usize>>,
}

/// Mappings up to this size are searched; larger ones are indexed.
const INDEX_FROM: usize = 16;

impl Mapping {
    /// A mapping of these entries.
    pub(crate) fn new(entries: Vec<(Node, Node)>) -> Mapping {
        let index = (entries.len() > INDEX_FROM).then(|| {
            let mut m = HashMap::with_capacity(entries.len());
            for (i, (k, _)) in entries.iter().enumerate() {
                if let Kind::Scalar(s) = &k.kind {
                    m.insert(s.text.clone(), i);
                }
            }
            m
        });
        Mapping { entries, index }
    }

    /// The value of the last entry whose key is the scalar `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&Node> {
        match &self.index {
            Some(m) => m.get(key).map(|&i| &self.entries[i].1),
            None => self
                .entries
                .iter()
                .rev()
                .find(|(k, _)| matches!(&k.kind, Kind::Scalar(s) if s.text == key))
                .map(|(_, v)| v),
        }
    }
}

impl std::ops::Deref for Mapping {
    type Target = [(Node, Node)];
    fn deref(&self) -> &[(Node, Node)] {
        &self.entries
    }
}

/// An alias written inside the node it refers to (`&a [*a]`).
#[derive(Debug)]
pub(crate) struct Cycle {
    /// The anchor's name.
    pub name: String,
    target: Rc<CycleTarget>,
}

#[derive(Debug)]
struct CycleTarget {
    /// Set when the anchored node is complete; emptied when the document
    /// is dropped (breaking the reference cycle).
    node: RefCell<Option<Node>>,
}

impl Cycle {
    /// The anchored node (a cheap clone), once the document is parsed.
    pub(crate) fn target(&self) -> Option<Node> {
        self.target.node.borrow().clone()
    }
}

impl PartialEq for Cycle {
    fn eq(&self, other: &Cycle) -> bool {
        Rc::ptr_eq(&self.target, &other.target)
    }
}

/// A scalar as written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Scalar {
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
pub(crate) enum Resolved {
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
    pub(crate) fn resolve(&self) -> Resolved {
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
    pub(crate) fn short_tag(&self) -> &'static str {
        match self.resolve() {
            Resolved::Null => "!!null",
            Resolved::Bool(_) => "!!bool",
            Resolved::Int(_) => "!!int",
            Resolved::Float(_) => "!!float",
            Resolved::Str => "!!str",
        }
    }
}

/// Whether a node is YAML null.
pub(crate) fn is_null(n: &Node) -> bool {
    matches!(&n.kind, Kind::Scalar(s) if s.resolve() == Resolved::Null)
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
pub(crate) struct SyntaxError {
    /// Where.
    pub mark: Mark,
    /// What, in the parser's words.
    pub message: String,
}

/// A parsed document: its root node (`None` when empty).
#[derive(Debug, Default)]
pub(crate) struct Document {
    root: Option<Node>,
    /// Anchors that contain their own alias: emptied on drop.
    cycles: Vec<Rc<CycleTarget>>,
}

impl Document {
    /// The root node.
    pub(crate) fn root(&self) -> Option<&Node> {
        self.root.as_ref()
    }
}

impl Drop for Document {
    fn drop(&mut self) {
        for c in &self.cycles {
            let n = c.node.borrow_mut().take();
            dismantle(n);
        }
        dismantle(self.root.take());
    }
}

/// Drops trees without recursion: a document may nest 10,000 levels deep.
fn dismantle(nodes: impl IntoIterator<Item = Node>) {
    let mut stack: Vec<Node> = nodes.into_iter().collect();
    while let Some(n) = stack.pop() {
        match n.kind {
            Kind::Seq(items) => {
                if let Ok(items) = Rc::try_unwrap(items) {
                    stack.extend(items);
                }
            }
            Kind::Map(m) => {
                if let Ok(m) = Rc::try_unwrap(m) {
                    for (k, v) in m.entries {
                        stack.push(k);
                        stack.push(v);
                    }
                }
            }
            Kind::Scalar(_) | Kind::Cycle(_) => {}
        }
    }
}

fn mark(m: &Marker) -> Mark {
    Mark {
        line: m.line(),
        col: m.col() + 1,
    }
}

fn plain_node(kind: Kind, at: Mark) -> Node {
    Node {
        kind,
        mark: at,
        alias: false,
        origin: at,
    }
}

/// Maps the parser's character indices to byte offsets. Events arrive in
/// text order, so the cursor moves forward and the whole parse walks the
/// text once.
struct Cursor<'t> {
    text: &'t str,
    ch: usize,
    byte: usize,
}

impl Cursor<'_> {
    /// The byte offset of character index `ch`.
    fn seek(&mut self, ch: usize) -> usize {
        let bytes = self.text.as_bytes();
        while self.ch < ch && self.byte < bytes.len() {
            // The width of a UTF-8 sequence from its first byte.
            self.byte += match bytes[self.byte] {
                b if b < 0x80 => 1,
                b if b >= 0xF0 => 4,
                b if b >= 0xE0 => 3,
                _ => 2,
            };
            self.ch += 1;
        }
        self.byte = self.byte.min(bytes.len());
        while self.ch > ch && self.byte > 0 {
            let mut b = self.byte - 1;
            while !self.text.is_char_boundary(b) {
                b -= 1;
            }
            self.byte = b;
            self.ch -= 1;
        }
        self.byte
    }

    /// The text from character index `ch` on.
    fn rest(&mut self, ch: usize) -> &str {
        let b = self.seek(ch);
        &self.text[b..]
    }

    /// Where the `|` or `>` of a block scalar without properties stands:
    /// the first one after `from` (the end of the previous event) that is
    /// not in a comment. saphyr places the scalar at its first content
    /// line; yaml.v3 at the indicator.
    fn block_indicator(&mut self, from: &Marker, to: usize) -> Option<Mark> {
        let (mut line, mut col) = (from.line(), from.col());
        let mut ch = from.index();
        let mut in_comment = false;
        let mut after_space = true;
        for c in self.rest(from.index()).chars() {
            if ch >= to {
                break;
            }
            match c {
                '\n' => {
                    line += 1;
                    col = 0;
                    ch += 1;
                    in_comment = false;
                    after_space = true;
                    continue;
                }
                '#' if after_space => in_comment = true,
                '|' | '>' if !in_comment => return Some(Mark { line, col: col + 1 }),
                _ => {}
            }
            after_space = c == ' ' || c == '\t';
            col += 1;
            ch += 1;
        }
        None
    }
}

/// A container being built.
struct Open {
    seq: bool,
    /// Block (not flow) style.
    block: bool,
    mark: Mark,
    /// A sequence's items.
    items: Vec<Node>,
    /// A mapping's entries.
    entries: Vec<(Node, Node)>,
    /// A mapping's key waiting for its value.
    pending: Option<Node>,
    anchor: usize,
    /// Set when an alias inside refers to this container's anchor.
    cycle: Option<Rc<CycleTarget>>,
}

/// Parses the first document of `text`.
pub(crate) fn parse(text: &str) -> Result<Document, SyntaxError> {
    let mut doc = Document::default();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut stack: Vec<Open> = Vec::new();
    let result = build(text, &mut doc, &mut anchors, &mut stack);
    // Drop the shared handles first, then the trees, without recursion.
    dismantle(anchors.into_values());
    for o in stack {
        dismantle(
            o.items
                .into_iter()
                .chain(o.entries.into_iter().flat_map(|(k, v)| [k, v]))
                .chain(o.pending),
        );
    }
    result.map(|root| {
        doc.root = root;
        doc
    })
}

fn build(
    text: &str,
    doc: &mut Document,
    anchors: &mut HashMap<usize, Node>,
    stack: &mut Vec<Open>,
) -> Result<Option<Node>, SyntaxError> {
    let mut parser = Parser::new_from_str(text);
    let mut cursor = Cursor {
        text,
        ch: 0,
        byte: 0,
    };
    let mut root: Option<Node> = None;
    let mut prev_end = Marker::new(0, 1, 0);
    // libyaml's context for depth errors: the last possible simple key.
    let mut last_key_line = 0;
    let mut block_depth = 0usize;
    let mut flow_depth = 0usize;
    // Anchors of open containers → their place on the stack.
    let mut open_anchors: HashMap<usize, usize> = HashMap::new();
    while let Some(ev) = parser.next_event() {
        let (event, span) = match ev {
            Ok(x) => x,
            Err(e) => return Err(scan_error(text, &e, stack)),
        };
        let at = mark(&span.start);
        let complete: Option<(Node, usize, Option<Rc<CycleTarget>>)> = match event {
            Event::StreamStart | Event::DocumentStart(_) | Event::Nothing => None,
            Event::DocumentEnd | Event::StreamEnd => break,
            Event::Alias(id) => {
                if flow_depth == 0 {
                    last_key_line = at.line;
                }
                if let Some(target) = anchors.get(&id) {
                    Some((
                        Node {
                            kind: target.kind.clone(),
                            mark: at,
                            alias: true,
                            origin: target.origin,
                        },
                        0,
                        None,
                    ))
                } else if let Some(open) = open_anchors.get(&id).and_then(|&i| stack.get_mut(i)) {
                    let target = match &open.cycle {
                        Some(t) => t.clone(),
                        None => {
                            let t = Rc::new(CycleTarget {
                                node: RefCell::new(None),
                            });
                            open.cycle = Some(t.clone());
                            doc.cycles.push(t.clone());
                            t
                        }
                    };
                    let name = alias_name(cursor.rest(span.start.index()));
                    Some((
                        Node {
                            kind: Kind::Cycle(Rc::new(Cycle { name, target })),
                            mark: at,
                            alias: true,
                            origin: open.mark,
                        },
                        0,
                        None,
                    ))
                } else {
                    return Err(SyntaxError {
                        mark: at,
                        message: "unknown anchor".into(),
                    });
                }
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
                let mut at = at;
                if matches!(style, ScalarStyle::Literal | ScalarStyle::Folded)
                    && anchor == 0
                    && tag.is_none()
                {
                    // yaml.v3 places a block scalar at its `|` or `>` (or
                    // at its anchor or tag, where saphyr places it too).
                    at = cursor
                        .block_indicator(&prev_end, span.start.index())
                        .unwrap_or(at);
                } else if flow_depth == 0 {
                    last_key_line = at.line;
                }
                if plain && value.is_empty() && tag.is_none() {
                    // An implied empty value: libyaml places it just after
                    // the indicator.
                    at.col += 1;
                }
                let scalar = Scalar {
                    text: value.into_owned(),
                    plain,
                    tag,
                };
                Some((plain_node(Kind::Scalar(Rc::new(scalar)), at), anchor, None))
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                let seq = matches!(event, Event::SequenceStart(..));
                let block =
                    flow_depth == 0 && !cursor.rest(span.start.index()).starts_with(['[', '{']);
                if block {
                    block_depth += 1;
                    if block_depth > MAX_DEPTH {
                        let context = if seq { last_key_line } else { at.line };
                        let line = if context > 1 {
                            context
                        } else if at.line > 1 {
                            at.line
                        } else {
                            0
                        };
                        return Err(SyntaxError {
                            mark: Mark { line, col: at.col },
                            message: format!("exceeded max depth of {MAX_DEPTH}"),
                        });
                    }
                } else {
                    if flow_depth == 0 {
                        last_key_line = at.line;
                    }
                    flow_depth += 1;
                }
                if anchor != 0 {
                    open_anchors.insert(anchor, stack.len());
                }
                stack.push(Open {
                    seq,
                    block,
                    mark: at,
                    items: Vec::new(),
                    entries: Vec::new(),
                    pending: None,
                    anchor,
                    cycle: None,
                });
                None
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some(o) => {
                    if o.anchor != 0 {
                        open_anchors.remove(&o.anchor);
                    }
                    if o.block {
                        block_depth -= 1;
                    } else {
                        flow_depth -= 1;
                    }
                    let kind = if o.seq {
                        Kind::Seq(Rc::new(o.items))
                    } else {
                        Kind::Map(Rc::new(Mapping::new(o.entries)))
                    };
                    Some((plain_node(kind, o.mark), o.anchor, o.cycle))
                }
                None => None,
            },
        };
        prev_end = span.end;
        if let Some((node, anchor, cycle)) = complete {
            if let Some(c) = cycle {
                *c.node.borrow_mut() = Some(node.clone());
            }
            if anchor != 0 {
                anchors.insert(anchor, node.clone());
            }
            match stack.last_mut() {
                None => root = Some(node),
                Some(o) if o.seq => o.items.push(node),
                Some(o) => match o.pending.take() {
                    None => o.pending = Some(node),
                    Some(key) => o.entries.push((key, node)),
                },
            }
        }
    }
    Ok(root)
}

/// An alias's name, from its `*`.
fn alias_name(rest: &str) -> String {
    rest.trim_start_matches('*')
        .chars()
        .take_while(|c| !c.is_whitespace() && !",[]{}".contains(*c))
        .collect()
}

/// A parser error as yaml.v3 reports it: libyaml's context mark, for
/// parser errors the 0-based line where the enclosing collection (or the
/// offending node) starts, for scanner errors the 1-based line of the
/// problem.
fn scan_error(text: &str, e: &saphyr_parser::ScanError, stack: &[Open]) -> SyntaxError {
    let problem = e.marker().line();
    let info = e.info();
    let open = |want_map: bool| {
        stack
            .iter()
            .rev()
            .find(|o| o.seq != want_map)
            .map(|o| o.mark.line)
    };
    if info.contains("unknown anchor") {
        // yaml.v3 names the anchor and gives no line.
        let name = text
            .lines()
            .nth(problem.saturating_sub(1))
            .and_then(|l| l.get(e.marker().col()..))
            .map(alias_name)
            .unwrap_or_default();
        return SyntaxError {
            mark: Mark { line: 0, col: 0 },
            message: format!("unknown anchor '{name}' referenced"),
        };
    }
    if info.contains("recursion limit exceeded") {
        // saphyr counts flow levels in a byte; yaml.v3 would go on to
        // 10,000. Say what the limit is, and where.
        return SyntaxError {
            mark: Mark {
                line: problem,
                col: e.marker().col() + 1,
            },
            message: format!(
                "flow collections nested deeper than {MAX_FLOW_DEPTH} levels at column {} (oxcore's limit)",
                e.marker().col() + 1
            ),
        };
    }
    // saphyr's scanner words two of its errors like parser errors.
    let parser_error = info.starts_with("while parsing")
        && !info.starts_with("while parsing a quoted scalar")
        && !info.starts_with("while parsing a tag directive");
    let line = if parser_error {
        let context = if info.contains("block mapping") || info.contains("flow mapping") {
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
    SyntaxError {
        mark: Mark {
            line,
            col: e.marker().col() + 1,
        },
        message: info.to_string(),
    }
}

/// libyaml's wording for a parser error message (yaml.v3 wraps libyaml;
/// saphyr's messages descend from the same source and mostly agree).
pub(crate) fn libyaml_message(m: &str) -> String {
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
        let doc = parse(text).unwrap();
        let root = doc.root().unwrap();
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
        let doc = parse("a: &x {b: 1}\nc: *x\n").unwrap();
        let Kind::Map(e) = &doc.root().unwrap().kind else {
            panic!()
        };
        let (Kind::Map(x), Kind::Map(y)) = (&e[0].1.kind, &e[1].1.kind) else {
            panic!()
        };
        // The alias shares the anchored mapping instead of copying it.
        assert!(Rc::ptr_eq(x, y));
        assert!(!e[0].1.alias && e[1].1.alias);
        assert_eq!(e[1].1.mark, Mark { line: 2, col: 4 });
        assert_eq!(e[1].1.origin, Mark { line: 1, col: 4 });
    }

    #[test]
    fn alias_bomb_stays_small() {
        // Nine levels of nine aliases: 387 million nodes if copied.
        let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x]\n");
        let mut prev = 'a';
        for c in 'b'..='i' {
            text.push_str(&format!(
                "{c}: &{c} [{}]\n",
                vec![format!("*{prev}"); 9].join(", ")
            ));
            prev = c;
        }
        let doc = parse(&text).unwrap();
        let Kind::Map(e) = &doc.root().unwrap().kind else {
            panic!()
        };
        let (Kind::Seq(h), Kind::Seq(i)) = (&e[7].1.kind, &e[8].1.kind) else {
            panic!()
        };
        for item in i.iter() {
            let Kind::Seq(shared) = &item.kind else {
                panic!()
            };
            assert!(Rc::ptr_eq(shared, h));
        }
    }

    #[test]
    fn self_alias_is_a_cycle() {
        let doc = parse("x: &a [1, *a]\n").unwrap();
        let Kind::Map(e) = &doc.root().unwrap().kind else {
            panic!()
        };
        let Kind::Seq(items) = &e[0].1.kind else {
            panic!()
        };
        let Kind::Cycle(c) = &items[1].kind else {
            panic!()
        };
        assert_eq!(c.name, "a");
        let target = c.target().unwrap();
        let Kind::Seq(again) = &target.kind else {
            panic!()
        };
        assert!(Rc::ptr_eq(again, items));
    }

    #[test]
    fn block_scalars_sit_at_their_indicator() {
        let text = "a: |\n  x\nb: !!str |\n  y\nc: |-  # not > this\n  z\n";
        let doc = parse(text).unwrap();
        let Kind::Map(e) = &doc.root().unwrap().kind else {
            panic!()
        };
        assert_eq!(e[0].1.mark, Mark { line: 1, col: 4 });
        assert_eq!(e[1].1.mark, Mark { line: 3, col: 4 });
        assert_eq!(e[2].1.mark, Mark { line: 5, col: 4 });
    }

    #[test]
    fn nesting_limits() {
        let deep = format!("x: {}{}\n", "[".repeat(300), "]".repeat(300));
        let e = parse(&deep).unwrap_err();
        assert!(e.message.contains("nested deeper than 255"), "{e:?}");
        let nested = |n: usize| {
            let mut block = String::from("v: 1\nx:\n");
            for i in 1..=n {
                block.push_str(&" ".repeat(i));
                block.push_str("-\n");
            }
            block
        };
        // The root mapping is the first level, as in libyaml.
        let e = parse(&nested(MAX_DEPTH)).unwrap_err();
        assert_eq!(e.message, "exceeded max depth of 10000");
        assert_eq!(e.mark.line, 2);
        // 10,000 levels are fine, and dropping them does not recurse.
        let block = nested(MAX_DEPTH - 1);
        assert!(parse(&block).is_ok());
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
        assert!(parse("").unwrap().root().is_none());
    }
}
