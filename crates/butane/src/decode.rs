//! Decoding the YAML tree into Butane's types, with yaml.v3's rules.
//!
//! Upstream decodes with Go's yaml.v3 and then walks the result against the
//! YAML tree. The visible rules: keys match struct fields exactly; a string
//! field takes any scalar's source text; an int field takes Go's
//! `ParseInt(base 0)` forms (so `0644` is octal) and truncates floats; a
//! bool field also takes the YAML 1.1 words (`yes`, `off`, ...); null leaves
//! a field unset and null list elements are dropped. Type mismatches are
//! all collected, as `line L: cannot unmarshal !!str `abc` into int`. Keys
//! that are not fields of the version are `unused key` warnings, reported
//! in walk order (struct before fields, fields in declaration order).
//!
//! Aliases are expanded only where this walk goes through them, and every
//! step is counted as yaml.v3 counts its `unmarshal` calls: once
//! `aliasCount > 100 && decodeCount > 1000` and the share of steps taken
//! under an alias exceeds [`allowed_alias_ratio`], decoding stops with
//! yaml.v3's `document contains excessive aliasing`. That bounds the work
//! to a multiple of the document's size, whatever it aliases. On top of
//! it oxcore bounds the scalar text that aliases copy ([`ALIAS_TEXT_LIMIT`]),
//! which yaml.v3 shares instead of copying.

use std::collections::HashMap;
use std::rc::Rc;

use crate::report::{Path, Seg};
use crate::yaml::{Kind, Mark, Node, Resolved, Scalar, is_null};

/// Scalar text (bytes) that alias expansion may copy into the decoded
/// config. yaml.v3 shares the text and has no such bound; without one, a
/// megabyte anchored once and aliased 100,000 times is 100 GB.
pub(crate) const ALIAS_TEXT_LIMIT: usize = 64 << 20;

/// Duplicate-key errors listed for one mapping; yaml.v3 lists every pair,
/// which is quadratic in the number of copies of a key.
pub(crate) const MAX_DUPLICATE_ERRORS: usize = 1000;

/// yaml.v3's `allowedAliasRatio`: the share of decode steps that may come
/// from alias expansion, 99% for documents up to 400,000 steps, scaled
/// down to 10% at 4,000,000.
pub(crate) fn allowed_alias_ratio(decode_count: u64) -> f64 {
    const LOW: u64 = 400_000;
    const HIGH: u64 = 4_000_000;
    if decode_count <= LOW {
        0.99
    } else if decode_count >= HIGH {
        0.10
    } else {
        0.99 - 0.89 * ((decode_count - LOW) as f64 / (HIGH - LOW) as f64)
    }
}

/// The Butane base schema versions (the sugar shared by all variants).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Base {
    /// v0_1 (fcos 1.0)
    V0_1,
    /// v0_2 (fcos 1.1)
    V0_2,
    /// v0_3 (fcos 1.2, 1.3)
    V0_3,
    /// v0_4 (fcos 1.4, flatcar 1.0, r4e 1.0)
    V0_4,
    /// v0_5 (fcos 1.5, flatcar 1.1, r4e 1.1, fiot 1.0)
    V0_5,
    /// v0_6 (fcos 1.6)
    V0_6,
    /// v0_7 (fcos 1.7)
    V0_7,
    /// v0_8_exp (the experimental versions)
    V0_8,
}

impl Base {
    /// The Go package name upstream's messages use.
    pub(crate) fn pkg(self) -> &'static str {
        match self {
            Base::V0_1 => "v0_1",
            Base::V0_2 => "v0_2",
            Base::V0_3 => "v0_3",
            Base::V0_4 => "v0_4",
            Base::V0_5 => "v0_5",
            Base::V0_6 => "v0_6",
            Base::V0_7 => "v0_7",
            Base::V0_8 => "v0_8_exp",
        }
    }
}

/// Which Go package declares a type, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pkg {
    /// A base type (`v0_5.File`).
    Base,
    /// An fcos type (`v1_5.BootDevice`).
    Fcos,
    /// An openshift type (`v4_14.Metadata`).
    Openshift,
    /// A builtin (`string`, `int`).
    Builtin,
}

/// A key that is not a field, or a struct whose YAML is not a mapping.
#[derive(Debug, Clone)]
pub(crate) struct Unused {
    /// Walk order (see the Ignition library's decoder).
    pub order: Vec<u32>,
    /// Path of the key (last element is the key) or of the struct.
    pub path: Path,
    /// Position of the key or of the value.
    pub mark: Mark,
    /// True for a struct given as something other than a mapping.
    pub mismatch: bool,
}

/// Decoding state.
pub(crate) struct Decoder {
    /// The base schema version: newer fields are unused keys.
    pub base: Base,
    /// A version number for variant-specific fields, compared against
    /// their `since` (fcos minor version, or the openshift's fcos minor).
    pub fcos_minor: u32,
    /// Whether this is the openshift variant.
    pub openshift: bool,
    /// Package names for messages.
    pub pkgs: [String; 3],
    path: Vec<Seg>,
    order: Vec<u32>,
    /// Depth of merged values: below them upstream checks no keys.
    quiet: usize,
    /// Collected yaml.v3 type errors, in document order.
    pub errors: Vec<String>,
    /// Unused keys and mismatched structs.
    pub unused: Vec<Unused>,
    /// yaml.v3's `decodeCount`: every node decoded, aliases and their
    /// targets each once. The work of a decode is proportional to it.
    pub decode_count: u64,
    /// yaml.v3's `aliasCount`: the steps taken under an alias.
    alias_count: u64,
    alias_depth: usize,
    /// Aliases being expanded (by position): an anchor that contains its
    /// own alias is refused when the walk comes back to that alias.
    expanding: Vec<Mark>,
    /// Scalar bytes copied through aliases.
    alias_text: usize,
    /// Duplicate-key errors of each mapping decoded so far (by address).
    duplicates: HashMap<usize, Rc<Vec<String>>>,
    /// The error that stopped decoding (yaml.v3 panics out with it):
    /// printed alone, after `yaml: `.
    pub fatal: Option<String>,
}

/// When a field appeared.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Since {
    /// In a base version.
    Base(Base),
    /// In an fcos minor version (1.N), for fcos-only sugar.
    Fcos(u32),
    /// Only in the openshift variant.
    Openshift,
    /// A resource field that v0_1 had only in file contents, not in config
    /// and CA references (`inline`, `compression`).
    Contents,
}

impl Decoder {
    /// A decoder for one variant version.
    pub(crate) fn new(base: Base, fcos_minor: u32, fcos_pkg: &str, os_pkg: &str) -> Decoder {
        Decoder {
            base,
            fcos_minor,
            openshift: !os_pkg.is_empty(),
            pkgs: [
                base.pkg().to_string(),
                fcos_pkg.to_string(),
                os_pkg.to_string(),
            ],
            path: Vec::with_capacity(16),
            order: Vec::with_capacity(16),
            quiet: 0,
            errors: Vec::new(),
            unused: Vec::new(),
            decode_count: 0,
            alias_count: 0,
            alias_depth: 0,
            expanding: Vec::new(),
            alias_text: 0,
            duplicates: HashMap::new(),
            fatal: None,
        }
    }

    /// Stops decoding with `message` (the first such error wins).
    pub(crate) fn fail(&mut self, message: impl Into<String>) {
        if self.fatal.is_none() {
            self.fatal = Some(message.into());
        }
    }

    /// One step of yaml.v3's `unmarshal`, with its check against
    /// excessive aliasing. False once decoding has stopped.
    fn step(&mut self) -> bool {
        if self.fatal.is_some() {
            return false;
        }
        self.decode_count += 1;
        if self.alias_depth > 0 {
            self.alias_count += 1;
        }
        if self.alias_count > 100
            && self.decode_count > 1000
            && self.alias_count as f64 / self.decode_count as f64
                > allowed_alias_ratio(self.decode_count)
        {
            self.fail("document contains excessive aliasing");
            return false;
        }
        true
    }

    /// yaml.v3's document node: one step before the root.
    pub(crate) fn document(&mut self) {
        self.step();
    }

    /// Decodes `node` with `f`, as yaml.v3's `unmarshal`: one step for the
    /// node and, for an alias, one more for its anchored node, decoded
    /// under the alias. `f` gets the node with its contents resolved (an
    /// alias keeps its own position and `alias` flag). `None` once
    /// decoding has stopped.
    pub(crate) fn visit<R>(
        &mut self,
        node: &Node,
        f: impl FnOnce(&mut Decoder, &Node) -> R,
    ) -> Option<R> {
        if !self.step() {
            return None;
        }
        if !node.alias {
            return Some(f(self, node));
        }
        if self.expanding.contains(&node.mark) {
            let name = match &node.kind {
                Kind::Cycle(c) => c.name.clone(),
                _ => String::new(),
            };
            self.fail(format!("anchor '{name}' value contains itself"));
            return None;
        }
        let resolved;
        let node = match &node.kind {
            Kind::Cycle(c) => {
                resolved = Node {
                    kind: c.target()?.kind,
                    mark: node.mark,
                    alias: true,
                    origin: node.origin,
                };
                &resolved
            }
            _ => node,
        };
        self.expanding.push(node.mark);
        self.alias_depth += 1;
        let r = if self.step() {
            Some(f(self, node))
        } else {
            None
        };
        self.alias_depth -= 1;
        self.expanding.pop();
        r
    }

    /// Accounts for scalar text about to be copied; false (and decoding
    /// stops) past [`ALIAS_TEXT_LIMIT`] of text copied through aliases.
    fn copy_text(&mut self, node: &Node, len: usize) -> bool {
        if self.alias_depth == 0 {
            return true;
        }
        self.alias_text = self.alias_text.saturating_add(len);
        if self.alias_text > ALIAS_TEXT_LIMIT {
            self.fail(format!(
                "line {}: aliases expand to more than {} MiB of text (oxcore's limit)",
                node.mark.line,
                ALIAS_TEXT_LIMIT >> 20
            ));
            return false;
        }
        true
    }

    /// Whether unused keys and struct mismatches go unreported at `node`:
    /// below a merge, or below an alias other than `node` itself (upstream's
    /// position tree has a leaf at an alias).
    fn silent(&self, node: &Node) -> bool {
        self.quiet > 0 || self.alias_depth > usize::from(node.alias)
    }

    /// yaml.v3's check for duplicate keys, run on every mapping it decodes:
    /// every pair of equal keys, in order. True when there were some.
    pub(crate) fn map_duplicates(&mut self, map: &Rc<crate::yaml::Mapping>) -> bool {
        self.duplicate_keys(map)
    }

    fn duplicate_keys(&mut self, map: &Rc<crate::yaml::Mapping>) -> bool {
        // Small mappings (most of them) are compared pairwise.
        if map.len() <= 16 {
            let distinct = map.iter().enumerate().all(|(i, (k, _))| {
                let id = key_id(k);
                map[..i].iter().all(|(p, _)| key_id(p) != id)
            });
            if distinct {
                return false;
            }
        }
        let id = Rc::as_ptr(map) as usize;
        let errors = match self.duplicates.get(&id) {
            Some(e) => e.clone(),
            None => {
                let e = Rc::new(duplicate_errors(map));
                self.duplicates.insert(id, e.clone());
                e
            }
        };
        self.errors.extend(errors.iter().cloned());
        !errors.is_empty()
    }

    fn available(&self, since: Since) -> bool {
        match since {
            Since::Base(b) => b <= self.base,
            Since::Fcos(m) => m <= self.fcos_minor,
            Since::Openshift => self.openshift,
            Since::Contents => {
                self.base > Base::V0_1 || self.path.first() != Some(&Seg::Key("ignition"))
            }
        }
    }

    /// The Go name of a type in a package.
    pub(crate) fn go_name(&self, pkg: Pkg, name: &str) -> String {
        match pkg {
            Pkg::Base => format!("{}.{name}", self.pkgs[0]),
            Pkg::Fcos => format!("{}.{name}", self.pkgs[1]),
            Pkg::Openshift => format!("{}.{name}", self.pkgs[2]),
            Pkg::Builtin => name.to_string(),
        }
    }

    /// Records yaml.v3's type error for `node` decoded into `go_type`
    /// (for a mapping with duplicate keys, those errors instead).
    pub(crate) fn mismatch(&mut self, node: &Node, go_type: &str) {
        let what = match &node.kind {
            Kind::Seq(_) | Kind::Cycle(_) => "!!seq".to_string(),
            Kind::Map(m) => {
                if self.duplicate_keys(m) {
                    return;
                }
                "!!map".to_string()
            }
            Kind::Scalar(s) => {
                let tag = if s.plain && s.tag.is_none() && looks_like_timestamp(&s.text) {
                    "!!timestamp"
                } else {
                    s.short_tag()
                };
                let shown = if s.text.len() > 10 {
                    let mut end = 7;
                    while !s.text.is_char_boundary(end) {
                        end -= 1;
                    }
                    format!("{}...", &s.text[..end])
                } else {
                    s.text.clone()
                };
                format!("{tag} `{shown}`")
            }
        };
        self.errors.push(format!(
            "line {}: cannot unmarshal {what} into {go_type}",
            node.origin.line
        ));
    }

    /// Decodes a mapping into a struct (yaml.v3's `mappingStruct`):
    /// `fields` are the YAML keys with when each appeared; `set` receives
    /// each matched key and value.
    pub(crate) fn object<T>(
        &mut self,
        node: &Node,
        go_type: &str,
        fields: &[(&'static str, Since)],
        out: &mut T,
        mut set: impl FnMut(&mut T, &'static str, &Node, &mut Decoder),
    ) {
        let map = match &node.kind {
            Kind::Map(m) => {
                if node.alias {
                    // Upstream's position tree has an alias here, not a mapping.
                    self.struct_mismatch(node);
                }
                m
            }
            Kind::Scalar(s) if s.resolve() == Resolved::Null => {
                // In v0_3 `clevis` and `custom` were pointers: null is unset.
                let pointer = self.base == Base::V0_3
                    && matches!(
                        self.path.last().and_then(Seg::key),
                        Some("clevis" | "custom")
                    );
                if !pointer {
                    self.struct_mismatch(node);
                }
                return;
            }
            _ => {
                self.struct_mismatch(node);
                self.mismatch(node, go_type);
                return;
            }
        };
        if self.duplicate_keys(map) {
            return;
        }
        self.fields(map, fields, out, &mut set, None);
    }

    /// The entries of one mapping, in yaml.v3's order: each key is a step,
    /// known fields are decoded, then the merge key (`<<`) supplies the
    /// fields not yet set. `merged` holds the keys already set when this
    /// mapping is itself merged in (yaml.v3's `mergedFields`).
    fn fields<T>(
        &mut self,
        map: &crate::yaml::Mapping,
        fields: &[(&'static str, Since)],
        out: &mut T,
        set: &mut impl FnMut(&mut T, &'static str, &Node, &mut Decoder),
        mut merged: Option<&mut std::collections::HashSet<String>>,
    ) {
        let report_unused = merged.is_none() && self.quiet == 0 && self.alias_depth == 0;
        let mut merge_value = None;
        for (n, (k, v)) in map.iter().enumerate() {
            let name = key_text(k);
            let found = fields
                .iter()
                .position(|&(f, since)| f == name && self.available(since));
            if found.is_none() && report_unused {
                let mut order = self.order.clone();
                order.extend([0, n as u32]);
                let mut path = Path(self.path.clone());
                path.0.push(Seg::Name(name.to_string()));
                self.unused.push(Unused {
                    order,
                    path,
                    mark: k.mark,
                    mismatch: false,
                });
            }
            if is_merge_key(k) {
                merge_value = Some(v);
                continue;
            }
            if self.visit(k, |_, _| ()).is_none() {
                return;
            }
            if let Some(m) = merged.as_deref_mut()
                && !m.insert(name.to_string())
            {
                continue;
            }
            if let Some(i) = found {
                let key = fields[i].0;
                self.path.push(Seg::Key(key));
                self.order.push(i as u32 + 1);
                set(out, key, v, self);
                self.order.pop();
                self.path.pop();
            }
            if self.fatal.is_some() {
                return;
            }
        }
        if let Some(value) = merge_value {
            self.merge(map, value, fields, out, set, merged);
        }
    }

    /// yaml.v3's `merge`: the parent's keys are taken (each a step, unless
    /// already merging), then the merged mapping or list of mappings fills
    /// the fields still unset. Values merged in are not checked for
    /// unused keys.
    fn merge<T>(
        &mut self,
        parent: &crate::yaml::Mapping,
        value: &Node,
        fields: &[(&'static str, Since)],
        out: &mut T,
        set: &mut impl FnMut(&mut T, &'static str, &Node, &mut Decoder),
        merged: Option<&mut std::collections::HashSet<String>>,
    ) {
        let mut own = std::collections::HashSet::new();
        let merged = match merged {
            Some(m) => m,
            None => {
                for (k, _) in parent.iter() {
                    if self.visit(k, |_, _| ()).is_none() {
                        return;
                    }
                    own.insert(key_text(k).to_string());
                }
                &mut own
            }
        };
        const WANT_MAP: &str = "map merge requires map or sequence of maps as the value";
        let is_map = |n: &Node| match &n.kind {
            Kind::Map(_) => true,
            Kind::Cycle(c) => c.target().is_some_and(|t| matches!(t.kind, Kind::Map(_))),
            _ => false,
        };
        let items: Vec<&Node> = match &value.kind {
            _ if value.alias && !is_map(value) => return self.fail(WANT_MAP),
            _ if value.alias => vec![value],
            Kind::Map(_) => vec![value],
            Kind::Seq(items) => items.iter().collect(),
            _ => return self.fail(WANT_MAP),
        };
        for item in items {
            if !is_map(item) {
                return self.fail(WANT_MAP);
            }
            self.visit(item, |d, n| {
                let Kind::Map(m) = &n.kind else { return };
                if d.duplicate_keys(m) {
                    return;
                }
                d.quiet += 1;
                d.fields(m, fields, out, set, Some(&mut *merged));
                d.quiet -= 1;
            });
            if self.fatal.is_some() {
                return;
            }
        }
    }

    fn struct_mismatch(&mut self, node: &Node) {
        if self.silent(node) {
            return;
        }
        let mut order = self.order.clone();
        order.push(0);
        self.unused.push(Unused {
            order,
            path: Path(self.path.clone()),
            mark: node.mark,
            mismatch: true,
        });
    }

    /// Decodes a sequence; null elements are dropped, as yaml.v3 does.
    pub(crate) fn list<T: Decode>(&mut self, node: &Node) -> Vec<T> {
        match &node.kind {
            Kind::Seq(items) => {
                let mut out = Vec::with_capacity(items.len());
                let mut dropped = 0;
                for (i, item) in items.iter().enumerate() {
                    if self.fatal.is_some() {
                        break;
                    }
                    if is_null(item) {
                        dropped += 1;
                        self.visit(item, |_, _| ());
                        continue;
                    }
                    // yaml.v3 drops null elements, but upstream walks the
                    // decoded list against the source's elements by index:
                    // after a null, entry k is compared with source node k.
                    let k = i - dropped;
                    self.path.push(Seg::Index(k));
                    self.order.push(k as u32);
                    let misaligned = dropped > 0;
                    if misaligned && T::STRUCT && is_null(&items[k]) {
                        self.struct_mismatch(&items[k]);
                    }
                    self.quiet += usize::from(misaligned);
                    if let Some(v) = T::decode(item, self) {
                        out.push(v);
                    }
                    self.quiet -= usize::from(misaligned);
                    self.order.pop();
                    self.path.pop();
                }
                out
            }
            _ if is_null(node) => Vec::new(),
            _ => {
                let ty = format!("[]{}", T::go_type(self));
                self.mismatch(node, &ty);
                Vec::new()
            }
        }
    }
}

/// yaml.v3's merge key: a plain (or `!!merge`) `<<`.
fn is_merge_key(k: &Node) -> bool {
    matches!(&k.kind, Kind::Scalar(s) if s.text == "<<"
    && match s.tag.as_deref() {
        None => s.plain,
        Some(t) => t == "!" || t == "tag:yaml.org,2002:merge",
    })
}

/// What yaml.v3 compares to find duplicate keys: the node's kind and its
/// value (an alias's value is its anchor's name: here, the anchored
/// node's position stands for it).
#[derive(PartialEq, Eq, Hash)]
enum KeyId<'a> {
    Scalar(&'a str),
    Alias(Mark),
    Seq,
    Map,
}

fn key_id(k: &Node) -> KeyId<'_> {
    match &k.kind {
        _ if k.alias => KeyId::Alias(k.origin),
        Kind::Scalar(s) => KeyId::Scalar(&s.text),
        Kind::Seq(_) | Kind::Cycle(_) => KeyId::Seq,
        Kind::Map(_) => KeyId::Map,
    }
}

/// yaml.v3's duplicate-key errors for a mapping: for each key, every
/// later key equal to it, in order (capped at [`MAX_DUPLICATE_ERRORS`]).
/// Linear in the mapping and the number of errors.
fn duplicate_errors(map: &crate::yaml::Mapping) -> Vec<String> {
    let mut groups: HashMap<KeyId<'_>, Vec<usize>> = HashMap::new();
    let mut place = Vec::with_capacity(map.len());
    for (i, (k, _)) in map.iter().enumerate() {
        let g = groups.entry(key_id(k)).or_default();
        place.push(g.len());
        g.push(i);
    }
    if groups.len() == map.len() {
        return Vec::new();
    }
    let mut errors = Vec::new();
    let mut total = 0usize;
    for (i, (k, _)) in map.iter().enumerate() {
        let later = &groups[&key_id(k)][place[i] + 1..];
        for &j in later {
            if errors.len() < MAX_DUPLICATE_ERRORS {
                let (kj, ki) = (&map[j].0, k);
                errors.push(format!(
                    "line {}: mapping key {} already defined at line {}",
                    kj.mark.line,
                    ignition_config::go_quote(key_value(kj)),
                    ki.mark.line
                ));
            }
            total += 1;
        }
    }
    if total > errors.len() {
        errors.push(format!(
            "and {} more duplicate keys in this mapping (oxcore lists {MAX_DUPLICATE_ERRORS})",
            total - errors.len()
        ));
    }
    errors
}

/// A key's value as yaml.v3 prints it in duplicate-key errors.
fn key_value(k: &Node) -> &str {
    match &k.kind {
        Kind::Cycle(c) => &c.name,
        Kind::Scalar(s) if !k.alias => &s.text,
        _ => "",
    }
}

fn key_text(k: &Node) -> &str {
    match &k.kind {
        Kind::Scalar(s) => &s.text,
        _ => "",
    }
}

fn looks_like_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 10
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5..7].iter().all(u8::is_ascii_digit)
        && b[7] == b'-'
        && b[8..10].iter().all(u8::is_ascii_digit)
}

/// A Butane type decodable from YAML.
pub(crate) trait Decode: Sized {
    /// Whether this is a struct (upstream's walker visits structs only).
    const STRUCT: bool = false;
    /// The Go type name in messages.
    fn go_type(d: &Decoder) -> String;
    /// Decodes a node whose alias, if any, is resolved; `None` after a
    /// type error (recorded in the decoder) or for null.
    fn decode_node(node: &Node, d: &mut Decoder) -> Option<Self>;
    /// Decodes `node`: one yaml.v3 step (two through an alias).
    fn decode(node: &Node, d: &mut Decoder) -> Option<Self> {
        d.visit(node, |d, n| Self::decode_node(n, d)).flatten()
    }
}

fn scalar(node: &Node) -> Option<&Scalar> {
    match &node.kind {
        Kind::Scalar(s) => Some(s),
        _ => None,
    }
}

impl Decode for String {
    fn go_type(_: &Decoder) -> String {
        "string".into()
    }
    fn decode_node(node: &Node, d: &mut Decoder) -> Option<Self> {
        match scalar(node) {
            Some(s) if s.resolve() == Resolved::Null => None,
            Some(s) if !d.copy_text(node, s.text.len()) => None,
            Some(s) if s.tag.as_deref() == Some("tag:yaml.org,2002:binary") => {
                // yaml.v3 decodes `!!binary` into the string's bytes.
                let clean: String = s
                    .text
                    .chars()
                    .filter(|c| !c.is_ascii_whitespace())
                    .collect();
                match ignition_config::url::decode_base64(clean.as_bytes()) {
                    Ok(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
                    Err(_) => {
                        d.errors.push(format!(
                            "line {}: cannot decode !!binary: invalid base64 data",
                            node.origin.line
                        ));
                        None
                    }
                }
            }
            Some(s) => Some(s.text.clone()),
            None => {
                d.mismatch(node, "string");
                None
            }
        }
    }
}

impl Decode for i64 {
    fn go_type(_: &Decoder) -> String {
        "int".into()
    }
    fn decode_node(node: &Node, d: &mut Decoder) -> Option<Self> {
        let ok = match scalar(node).map(|s| (s, s.resolve())) {
            Some((_, Resolved::Null)) => return None,
            Some((_, Resolved::Int(i))) => Some(i),
            Some((_, Resolved::Float(f)))
                if f.is_finite() && f >= i64::MIN as f64 && f < i64::MAX as f64 =>
            {
                Some(f.trunc() as i64)
            }
            _ => None,
        };
        if ok.is_none() {
            d.mismatch(node, "int");
        }
        ok
    }
}

impl Decode for bool {
    fn go_type(_: &Decoder) -> String {
        "bool".into()
    }
    fn decode_node(node: &Node, d: &mut Decoder) -> Option<Self> {
        let ok = match scalar(node).map(|s| (s, s.resolve())) {
            Some((_, Resolved::Null)) => return None,
            Some((_, Resolved::Bool(b))) => Some(b),
            Some((s, Resolved::Str)) => match s.text.as_str() {
                "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => Some(true),
                "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => Some(false),
                _ => None,
            },
            _ => None,
        };
        if ok.is_none() {
            d.mismatch(node, "bool");
        }
        ok
    }
}

impl<T: Decode> Decode for Vec<T> {
    fn go_type(d: &Decoder) -> String {
        format!("[]{}", T::go_type(d))
    }
    /// A list; `None` for null (Go's nil slice), `Some` for `[]`.
    fn decode_node(node: &Node, d: &mut Decoder) -> Option<Self> {
        if is_null(node) {
            return None;
        }
        Some(d.list(node))
    }
}

/// Field slots: how a decoded value lands in a struct field.
pub(crate) trait Slot {
    /// Decodes `node` into the slot.
    fn fill(&mut self, node: &Node, d: &mut Decoder);
}

impl<T: Decode> Slot for Option<T> {
    fn fill(&mut self, node: &Node, d: &mut Decoder) {
        *self = T::decode(node, d);
    }
}

impl<T: Decode> Slot for Vec<T> {
    fn fill(&mut self, node: &Node, d: &mut Decoder) {
        *self = <Vec<T>>::decode(node, d).unwrap_or_default();
    }
}

impl Slot for String {
    fn fill(&mut self, node: &Node, d: &mut Decoder) {
        if let Some(s) = String::decode(node, d) {
            *self = s;
        }
    }
}

impl Slot for i64 {
    fn fill(&mut self, node: &Node, d: &mut Decoder) {
        if let Some(v) = i64::decode(node, d) {
            *self = v;
        }
    }
}

impl Slot for bool {
    fn fill(&mut self, node: &Node, d: &mut Decoder) {
        if let Some(v) = bool::decode(node, d) {
            *self = v;
        }
    }
}

/// Defines a Butane struct and its decoder.
macro_rules! bu_struct {
    (
        $(#[$sm:meta])*
        $name:ident ($pkg:ident $(, $goname:literal)?) {
            $(
                $(#[$fm:meta])*
                $field:ident : $ty:ty = $key:literal @ $since:expr
            ),* $(,)?
        }
    ) => {
        $(#[$sm])*
        #[derive(Debug, Clone, Default, PartialEq)]
        pub(crate) struct $name {
            $(
                $(#[$fm])*
                pub $field: $ty,
            )*
        }

        impl $name {
            /// YAML keys and when each appeared.
            pub(crate) const FIELDS: &'static [(&'static str, $crate::decode::Since)] = &[$(($key, $since)),*];
            const GO: &'static str = bu_struct!(@go $name $($goname)?);
        }

        impl $crate::decode::Decode for $name {
            const STRUCT: bool = true;
            fn go_type(d: &$crate::decode::Decoder) -> String {
                d.go_name($crate::decode::Pkg::$pkg, Self::GO)
            }
            fn decode_node(node: &$crate::yaml::Node, d: &mut $crate::decode::Decoder) -> Option<Self> {
                let mut out = Self::default();
                let ty = Self::go_type(d);
                d.object(node, &ty, Self::FIELDS, &mut out, |out, key, v, d| {
                    $(
                        if key == $key {
                            $crate::decode::Slot::fill(&mut out.$field, v, d);
                            return;
                        }
                    )*
                    let _ = (out, v, d);
                });
                Some(out)
            }
        }

        impl $crate::decode::Slot for $name {
            fn fill(&mut self, node: &$crate::yaml::Node, d: &mut $crate::decode::Decoder) {
                if let Some(v) = <Self as $crate::decode::Decode>::decode(node, d) {
                    *self = v;
                }
            }
        }
    };
    (@go $name:ident) => { stringify!($name) };
    (@go $name:ident $go:literal) => { $go };
}

pub(crate) use bu_struct;
