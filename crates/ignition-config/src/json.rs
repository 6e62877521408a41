//! Decoding JSON values into spec types, the way upstream's Go decoder does.
//!
//! Upstream unmarshals with Go's `encoding/json`, whose behaviour users see:
//! object keys match struct fields exactly or, failing that, ASCII
//! case-insensitively; `null` leaves a field unset; the first type mismatch
//! in document order is the error, named after the Go struct and field
//! (`json: cannot unmarshal number into Go struct field PasswdUser.passwd.users.name
//! of type string`). On top of that, every key that is not exactly a field of
//! the config's spec version is reported as `unused key NAME`.

use serde_json::{Map, Value};

use crate::report::{Path, Seg};
use crate::version::Version;

/// A type mismatch, as Go's decoder reports it. The position is resolved
/// later from `path` and `at_start`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeError {
    /// Path of the offending value.
    pub path: Path,
    /// Whether the value is an object or array (Go reports the offset just
    /// after its opening bracket) or a literal (the offset just after it).
    pub container: bool,
    /// Name of the innermost Go struct, or `None` at the top level.
    pub go_struct: Option<&'static str>,
    /// Dotted JSON field path, as Go prints it (indices left out).
    pub go_field: String,
    /// What kind of JSON value was found (`number`, `string`, ...).
    pub found: &'static str,
    /// The literal, for numbers that do not fit an integer (`number 1.5`).
    pub literal: Option<String>,
    /// The Go type that was expected.
    pub go_type: String,
}

impl TypeError {
    /// The message in Go's words.
    pub fn message(&self) -> String {
        let found = match &self.literal {
            Some(l) => format!("{} {l}", self.found),
            None => self.found.to_string(),
        };
        match self.go_struct {
            Some(s) => format!(
                "json: cannot unmarshal {found} into Go struct field {s}.{} of type {}",
                self.go_field, self.go_type
            ),
            None => format!(
                "json: cannot unmarshal {found} into Go value of type {}",
                self.go_type
            ),
        }
    }
}

impl std::fmt::Display for TypeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for TypeError {}

/// Walk state shared by all [`Decode`] implementations.
pub struct Decoder {
    /// The spec version being decoded: fields newer than it are unused keys.
    pub version: Version,
    path: Vec<Seg>,
    go_struct: Option<&'static str>,
    /// Go's field path: JSON keys, with embedded struct names before the
    /// fields they promote (`FileEmbedded1.mode`).
    go_path: Vec<&'static str>,
    /// Upstream's walk order of the current value: struct field positions
    /// and array indices (see [`Unused`]).
    order: Vec<u32>,
    /// Depth of keys matched only case-insensitively: below them upstream
    /// reports no unused keys.
    quiet: usize,
    /// Keys that are not fields of this version, and null structs.
    pub unused: Vec<Unused>,
}

/// A finding of upstream's unused-key pass: a key that is not a field of
/// the config's version, or a struct given as `null`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unused {
    /// Upstream walks structs in pre-order and fields in spec order; this
    /// key sorts findings that way (document order within one object).
    pub order: Vec<u32>,
    /// The key's path, or the null struct's path.
    pub path: Path,
    /// True for a null struct.
    pub null_struct: bool,
}

impl Decoder {
    /// A decoder for the given spec version.
    pub fn new(version: Version) -> Decoder {
        Decoder {
            version,
            path: Vec::with_capacity(16),
            go_struct: None,
            go_path: Vec::with_capacity(16),
            order: Vec::with_capacity(16),
            quiet: 0,
            unused: Vec::new(),
        }
    }

    fn current_path(&self) -> Path {
        Path(self.path.clone())
    }

    /// The error for `v` found where a `go_type` was expected.
    pub fn mismatch(&self, v: &Value, go_type: String) -> Box<TypeError> {
        let (found, container) = match v {
            Value::Null => ("null", false),
            Value::Bool(_) => ("bool", false),
            Value::Number(_) => ("number", false),
            Value::String(_) => ("string", false),
            Value::Array(_) => ("array", true),
            Value::Object(_) => ("object", true),
        };
        Box::new(TypeError {
            path: self.current_path(),
            container,
            go_struct: self.go_struct,
            go_field: self.go_path.join("."),
            found,
            literal: None,
            go_type,
        })
    }

    /// Decodes the members of an object into a struct. `fields` lists the
    /// struct's JSON keys with the version that introduced each and the name
    /// Go's messages use for it; `set` is called with the matched key for
    /// every member that is a field.
    pub fn object<T>(
        &mut self,
        v: Value,
        go_name: &'static str,
        fields: &[(&'static str, Version, &'static str)],
        out: &mut T,
        mut set: impl FnMut(&mut T, &'static str, Value, &mut Decoder) -> Result<(), Box<TypeError>>,
    ) -> Result<(), Box<TypeError>> {
        let obj: Map<String, Value> = match v {
            Value::Object(o) => o,
            Value::Null => {
                if self.quiet == 0 {
                    let mut order = self.order.clone();
                    order.push(0);
                    self.unused.push(Unused {
                        order,
                        path: self.current_path(),
                        null_struct: true,
                    });
                }
                return Ok(());
            }
            other => return Err(self.mismatch(&other, format!("types.{go_name}"))),
        };
        let saved = self.go_struct.replace(go_name);
        let version = self.version;
        for (n, (k, val)) in obj.into_iter().enumerate() {
            let exact = fields
                .iter()
                .position(|&(f, since, _)| since <= version && f == k);
            let matched = exact.or_else(|| {
                fields
                    .iter()
                    .position(|&(f, since, _)| since <= version && f.eq_ignore_ascii_case(&k))
            });
            if exact.is_none() && self.quiet == 0 {
                let mut path = self.current_path();
                path.0.push(Seg::Name(k));
                let mut order = self.order.clone();
                order.extend([0, n as u32]);
                self.unused.push(Unused {
                    order,
                    path,
                    null_struct: false,
                });
            }
            if let Some(i) = matched {
                let (key, _, go_field) = fields[i];
                let folded = exact.is_none();
                self.quiet += usize::from(folded);
                self.path.push(Seg::Key(key));
                self.go_path.push(go_field);
                self.order.push(i as u32 + 1);
                let r = set(out, key, val, self);
                self.order.pop();
                self.go_path.pop();
                self.path.pop();
                self.quiet -= usize::from(folded);
                r?;
            }
        }
        self.go_struct = saved;
        Ok(())
    }
}

/// A spec type that can be decoded from JSON.
pub trait Decode: Sized {
    /// The Go type name upstream's messages use for this type.
    fn go_type() -> String;
    /// Decodes `v`, or returns the first type mismatch.
    fn decode(v: Value, d: &mut Decoder) -> Result<Self, Box<TypeError>>;
    /// Decodes into an existing value, so that `null` keeps it (as Go does).
    fn decode_into(slot: &mut Self, v: Value, d: &mut Decoder) -> Result<(), Box<TypeError>> {
        if !v.is_null() {
            *slot = Self::decode(v, d)?;
        }
        Ok(())
    }
}

impl Decode for String {
    fn go_type() -> String {
        "string".into()
    }
    fn decode(v: Value, d: &mut Decoder) -> Result<Self, Box<TypeError>> {
        match v {
            Value::String(s) => Ok(s),
            Value::Null => Ok(String::new()),
            other => Err(d.mismatch(&other, Self::go_type())),
        }
    }
}

impl Decode for bool {
    fn go_type() -> String {
        "bool".into()
    }
    fn decode(v: Value, d: &mut Decoder) -> Result<Self, Box<TypeError>> {
        match v {
            Value::Bool(b) => Ok(b),
            Value::Null => Ok(false),
            other => Err(d.mismatch(&other, Self::go_type())),
        }
    }
}

impl Decode for i64 {
    fn go_type() -> String {
        "int".into()
    }
    fn decode(v: Value, d: &mut Decoder) -> Result<Self, Box<TypeError>> {
        match v {
            Value::Number(ref n) => match n.as_i64() {
                Some(i) => Ok(i),
                None => {
                    let mut e = d.mismatch(&v, Self::go_type());
                    e.literal = Some(n.to_string());
                    Err(e)
                }
            },
            Value::Null => Ok(0),
            other => Err(d.mismatch(&other, Self::go_type())),
        }
    }
}

impl<T: Decode> Decode for Option<T> {
    fn go_type() -> String {
        T::go_type()
    }
    fn decode(v: Value, d: &mut Decoder) -> Result<Self, Box<TypeError>> {
        match v {
            Value::Null => Ok(None),
            v => T::decode(v, d).map(Some),
        }
    }
    fn decode_into(slot: &mut Self, v: Value, d: &mut Decoder) -> Result<(), Box<TypeError>> {
        // Go sets a pointer to nil on null.
        *slot = Self::decode(v, d)?;
        Ok(())
    }
}

impl<T: Decode> Decode for Vec<T> {
    fn go_type() -> String {
        format!("[]{}", T::go_type())
    }
    fn decode(v: Value, d: &mut Decoder) -> Result<Self, Box<TypeError>> {
        match v {
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    d.path.push(Seg::Index(i));
                    d.order.push(i as u32);
                    let r = T::decode(item, d);
                    d.order.pop();
                    d.path.pop();
                    out.push(r?);
                }
                Ok(out)
            }
            Value::Null => Ok(Vec::new()),
            other => Err(d.mismatch(&other, Self::go_type())),
        }
    }
    fn decode_into(slot: &mut Self, v: Value, d: &mut Decoder) -> Result<(), Box<TypeError>> {
        *slot = Self::decode(v, d)?;
        Ok(())
    }
}

/// Whether a field is left out when serializing: upstream omits unset
/// pointers, empty lists and empty structs, and always writes plain strings.
pub trait Skip {
    /// True when the field is omitted.
    fn skip(&self) -> bool;
}

impl Skip for String {
    fn skip(&self) -> bool {
        false
    }
}

impl<T> Skip for Option<T> {
    fn skip(&self) -> bool {
        self.is_none()
    }
}

impl<T> Skip for Vec<T> {
    fn skip(&self) -> bool {
        self.is_empty()
    }
}

/// Defines a spec struct: the Rust type (with serde serialization in
/// upstream's field order and omission rules), its decoder with per-version
/// fields, and its Go name for messages.
macro_rules! spec_struct {
    (
        $(#[$sm:meta])*
        $name:ident $(as $go:literal)? {
            $(
                $(#[$fm:meta])*
                $field:ident : $ty:ty = $key:literal @ $since:ident $(in $embed:literal)? $(as $gofield:literal)?
            ),* $(,)?
        }
    ) => {
        $(#[$sm])*
        #[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
        pub struct $name {
            $(
                $(#[$fm])*
                #[doc = concat!("\n\nJSON key `", $key, "`, since spec ", stringify!($since), ".")]
                #[serde(rename = $key, skip_serializing_if = "crate::json::Skip::skip")]
                pub $field: $ty,
            )*
        }

        impl $name {
            /// JSON keys of this struct, the spec version that introduced
            /// each, and the field path Go's messages use for each.
            pub const FIELDS: &'static [(&'static str, $crate::version::Version, &'static str)] =
                &[$(($key, $crate::version::Version::$since, spec_struct!(@gofield $key $($embed)?))),*];
            #[allow(unused)]
            const GO_NAME: &'static str = spec_struct!(@go $name $($go)?);
        }

        impl $crate::json::Skip for $name {
            fn skip(&self) -> bool {
                true $(&& $crate::json::Skip::skip(&self.$field))*
            }
        }

        impl $crate::json::Zero for $name {
            fn is_zero(&self) -> bool {
                true $(&& $crate::json::Zero::is_zero(&self.$field))*
            }
        }

        impl $crate::json::Decode for $name {
            fn go_type() -> String {
                format!("types.{}", Self::GO_NAME)
            }
            fn decode(
                v: serde_json::Value,
                d: &mut $crate::json::Decoder,
            ) -> Result<Self, Box<$crate::json::TypeError>> {
                let mut out = Self::default();
                d.object(v, Self::GO_NAME, Self::FIELDS, &mut out, |out, key, val, d| {
                    $(
                        if key == $key {
                            return spec_struct!(@decode out.$field, $ty, val, d $(, $gofield)?);
                        }
                    )*
                    let _ = (out, val, d);
                    Ok(())
                })?;
                Ok(out)
            }
            fn decode_into(
                slot: &mut Self,
                v: serde_json::Value,
                d: &mut $crate::json::Decoder,
            ) -> Result<(), Box<$crate::json::TypeError>> {
                // A null struct is still visited (upstream warns about it).
                if v.is_null() {
                    Self::decode(v, d)?;
                } else {
                    *slot = Self::decode(v, d)?;
                }
                Ok(())
            }
        }
    };
    (@gofield $key:literal) => { $key };
    (@gofield $key:literal $embed:literal) => { concat!($embed, ".", $key) };
    (@go $name:ident) => { stringify!($name) };
    (@go $name:ident $go:literal) => { $go };
    (@decode $slot:expr, $ty:ty, $val:expr, $d:expr) => {
        <$ty as $crate::json::Decode>::decode_into(&mut $slot, $val, $d)
    };
    (@decode $slot:expr, $ty:ty, $val:expr, $d:expr, $gofield:literal) => {
        <$ty as $crate::json::Decode>::decode_into(&mut $slot, $val, $d).map_err(|mut e| {
            if e.go_type == <$ty as $crate::json::Decode>::go_type() {
                e.go_type = $gofield.to_string();
            } else if e.go_type == <$ty as $crate::json::Decode>::go_type().trim_start_matches("[]") {
                e.go_type = $gofield.trim_start_matches("[]").to_string();
            }
            e
        })
    };
}

pub(crate) use spec_struct;

impl Skip for i64 {
    fn skip(&self) -> bool {
        *self == 0
    }
}

/// Go's notion of a zero value, which decides whether merge keeps a whole
/// struct from one side.
pub trait Zero {
    /// True for `""`, `0`, `false`, unset, empty, or a struct of zeros.
    fn is_zero(&self) -> bool;
}

impl Zero for String {
    fn is_zero(&self) -> bool {
        self.is_empty()
    }
}

impl Zero for i64 {
    fn is_zero(&self) -> bool {
        *self == 0
    }
}

impl<T> Zero for Option<T> {
    fn is_zero(&self) -> bool {
        self.is_none()
    }
}

impl<T> Zero for Vec<T> {
    fn is_zero(&self) -> bool {
        self.is_empty()
    }
}
