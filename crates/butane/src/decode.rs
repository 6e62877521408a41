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

use crate::report::{Path, Seg};
use crate::yaml::{Kind, Mark, Node, Resolved, Scalar};

/// The Butane base schema versions (the sugar shared by all variants).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Base {
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
    pub fn pkg(self) -> &'static str {
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
pub enum Pkg {
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
pub struct Unused {
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
pub struct Decoder {
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
    /// Depth of aliased nodes: below them upstream checks no keys.
    quiet: usize,
    /// Collected yaml.v3 type errors, in document order.
    pub errors: Vec<String>,
    /// Unused keys and mismatched structs.
    pub unused: Vec<Unused>,
}

/// When a field appeared.
#[derive(Debug, Clone, Copy)]
pub enum Since {
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
    pub fn new(base: Base, fcos_minor: u32, fcos_pkg: &str, os_pkg: &str) -> Decoder {
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
        }
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
    pub fn go_name(&self, pkg: Pkg, name: &str) -> String {
        match pkg {
            Pkg::Base => format!("{}.{name}", self.pkgs[0]),
            Pkg::Fcos => format!("{}.{name}", self.pkgs[1]),
            Pkg::Openshift => format!("{}.{name}", self.pkgs[2]),
            Pkg::Builtin => name.to_string(),
        }
    }

    /// Records yaml.v3's type error for `node` decoded into `go_type`.
    pub fn mismatch(&mut self, node: &Node, go_type: &str) {
        let what = match &node.kind {
            Kind::Seq(_) => "!!seq".to_string(),
            Kind::Map(_) => "!!map".to_string(),
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
            node.mark.line
        ));
    }

    /// Decodes a mapping into a struct: `fields` are the YAML keys with
    /// when each appeared; `set` receives each matched key and value.
    pub fn object<T>(
        &mut self,
        node: &Node,
        go_type: &str,
        fields: &[(&'static str, Since)],
        out: &mut T,
        mut set: impl FnMut(&mut T, &'static str, &Node, &mut Decoder),
    ) {
        let entries = match &node.kind {
            Kind::Map(e) if node.alias => {
                // Upstream's position tree has an alias here, not a mapping.
                self.struct_mismatch(node);
                e
            }
            Kind::Map(e) => e,
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
        // yaml.v3 refuses duplicate keys in a mapping.
        for (i, (k, _)) in entries.iter().enumerate() {
            let name = key_text(k);
            if let Some((prev, _)) = entries[..i].iter().find(|(p, _)| key_text(p) == name) {
                self.errors.push(format!(
                    "line {}: mapping key {:?} already defined at line {}",
                    k.mark.line, name, prev.mark.line
                ));
                return;
            }
        }
        self.quiet += usize::from(node.alias);
        // yaml.v3 merge keys (`<<: *base`, or a list of them) supply the
        // keys the mapping does not write itself; they are not checked for
        // unused keys, while `<<` itself is one.
        let written = |name: &str| entries.iter().any(|(k, _)| key_text(k) == name);
        let mut merged: Vec<&(Node, Node)> = Vec::new();
        for (k, v) in entries {
            if key_text(k) != "<<" {
                continue;
            }
            match &v.kind {
                Kind::Map(e) => merged.extend(e.iter()),
                Kind::Seq(items) => {
                    for item in items {
                        if let Kind::Map(e) = &item.kind {
                            merged.extend(e.iter());
                        }
                    }
                }
                _ => {}
            }
        }
        for (k, v) in merged {
            let name = key_text(k);
            if written(name) {
                continue;
            }
            if let Some(i) = fields
                .iter()
                .position(|&(f, since)| f == name && self.available(since))
            {
                let key = fields[i].0;
                self.quiet += 1;
                self.path.push(Seg::Key(key));
                self.order.push(i as u32 + 1);
                set(out, key, v, self);
                self.order.pop();
                self.path.pop();
                self.quiet -= 1;
            }
        }
        for (n, (k, v)) in entries.iter().enumerate() {
            let name = key_text(k);
            let found = fields
                .iter()
                .position(|&(f, since)| f == name && self.available(since));
            match found {
                Some(i) => {
                    let key = fields[i].0;
                    self.path.push(Seg::Key(key));
                    self.order.push(i as u32 + 1);
                    set(out, key, v, self);
                    self.order.pop();
                    self.path.pop();
                }
                None if self.quiet > 0 => {}
                None => {
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
            }
        }
        self.quiet -= usize::from(node.alias);
    }

    fn struct_mismatch(&mut self, node: &Node) {
        if self.quiet > 0 {
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
    pub fn list<T: Decode>(&mut self, node: &Node) -> Vec<T> {
        match &node.kind {
            Kind::Seq(items) => {
                let mut out = Vec::with_capacity(items.len());
                let mut dropped = 0;
                for (i, item) in items.iter().enumerate() {
                    if is_null(item) {
                        dropped += 1;
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

fn key_text(k: &Node) -> &str {
    match &k.kind {
        Kind::Scalar(s) => &s.text,
        _ => "",
    }
}

/// Whether a node is YAML null.
pub fn is_null(n: &Node) -> bool {
    matches!(&n.kind, Kind::Scalar(s) if s.resolve() == Resolved::Null)
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
pub trait Decode: Sized {
    /// Whether this is a struct (upstream's walker visits structs only).
    const STRUCT: bool = false;
    /// The Go type name in messages.
    fn go_type(d: &Decoder) -> String;
    /// Decodes; `None` after a type error (recorded in the decoder) or for
    /// null.
    fn decode(node: &Node, d: &mut Decoder) -> Option<Self>;
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
    fn decode(node: &Node, d: &mut Decoder) -> Option<Self> {
        match scalar(node) {
            Some(s) if s.resolve() == Resolved::Null => None,
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
                            node.mark.line
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
    fn decode(node: &Node, d: &mut Decoder) -> Option<Self> {
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
    fn decode(node: &Node, d: &mut Decoder) -> Option<Self> {
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
    fn decode(node: &Node, d: &mut Decoder) -> Option<Self> {
        if is_null(node) {
            return None;
        }
        Some(d.list(node))
    }
}

/// Field slots: how a decoded value lands in a struct field.
pub trait Slot {
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
        *self = d.list(node);
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
        pub struct $name {
            $(
                $(#[$fm])*
                pub $field: $ty,
            )*
        }

        impl $name {
            /// YAML keys and when each appeared.
            pub const FIELDS: &'static [(&'static str, $crate::decode::Since)] = &[$(($key, $since)),*];
            const GO: &'static str = bu_struct!(@go $name $($goname)?);
        }

        impl $crate::decode::Decode for $name {
            const STRUCT: bool = true;
            fn go_type(d: &$crate::decode::Decoder) -> String {
                d.go_name($crate::decode::Pkg::$pkg, Self::GO)
            }
            fn decode(node: &$crate::yaml::Node, d: &mut $crate::decode::Decoder) -> Option<Self> {
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
