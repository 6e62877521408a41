//! GVariant serialization, the byte format of every OSTree metadata object.
//!
//! This is the normal form of the GVariant specification
//! (<https://developer.gnome.org/documentation/specifications/gvariant-specification-1.0.html>):
//! little-endian integers aligned to their size, strings with a trailing
//! NUL, containers of variable-sized children followed by framing offsets
//! whose width (1, 2, 4 or 8 bytes) is the smallest that can address the
//! container. OSTree stores some integers big-endian *inside* the variant;
//! that is the object layer's business (see [`Be32`]).
//!
//! Parsing is strict: data that is not in normal form is an error rather
//! than the default value GLib would substitute, because every OSTree
//! object is written in normal form and anything else is corruption.

use std::fmt;

/// A GVariant type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Type {
    /// `b`
    Bool,
    /// `y`
    Byte,
    /// `n`
    I16,
    /// `q`
    U16,
    /// `i`
    I32,
    /// `u`
    U32,
    /// `x`
    I64,
    /// `t`
    U64,
    /// `d`
    F64,
    /// `s`
    Str,
    /// `o`
    ObjectPath,
    /// `g`
    Signature,
    /// `v`
    Variant,
    /// `aT`
    Array(Box<Type>),
    /// `mT`
    Maybe(Box<Type>),
    /// `(…)`
    Tuple(Vec<Type>),
    /// `{kv}`
    DictEntry(Box<Type>, Box<Type>),
}

/// A malformed type string or serialized value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Error(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, Error> {
    Err(Error(msg.into()))
}

impl Type {
    /// Parses one complete type string such as `(a{sv}aya(say)sstayay)`.
    pub fn parse(s: &str) -> Result<Type, Error> {
        let (ty, rest) = Type::parse_one(s.as_bytes())?;
        if !rest.is_empty() {
            return err(format!("trailing characters in type string {s:?}"));
        }
        Ok(ty)
    }

    fn parse_one(s: &[u8]) -> Result<(Type, &[u8]), Error> {
        let Some((&c, rest)) = s.split_first() else {
            return err("incomplete type string");
        };
        let basic = match c {
            b'b' => Type::Bool,
            b'y' => Type::Byte,
            b'n' => Type::I16,
            b'q' => Type::U16,
            b'i' => Type::I32,
            b'u' => Type::U32,
            b'x' => Type::I64,
            b't' => Type::U64,
            b'd' => Type::F64,
            b's' => Type::Str,
            b'o' => Type::ObjectPath,
            b'g' => Type::Signature,
            b'v' => Type::Variant,
            b'a' => {
                let (elem, rest) = Type::parse_one(rest)?;
                return Ok((Type::Array(Box::new(elem)), rest));
            }
            b'm' => {
                let (elem, rest) = Type::parse_one(rest)?;
                return Ok((Type::Maybe(Box::new(elem)), rest));
            }
            b'(' => {
                let mut items = Vec::new();
                let mut rest = rest;
                loop {
                    match rest.first() {
                        Some(b')') => return Ok((Type::Tuple(items), &rest[1..])),
                        Some(_) => {
                            let (item, r) = Type::parse_one(rest)?;
                            items.push(item);
                            rest = r;
                        }
                        None => return err("unterminated tuple in type string"),
                    }
                }
            }
            b'{' => {
                let (k, rest) = Type::parse_one(rest)?;
                if !k.is_basic() {
                    return err("dictionary key must be a basic type");
                }
                let (v, rest) = Type::parse_one(rest)?;
                if rest.first() != Some(&b'}') {
                    return err("dictionary entry must have exactly two types");
                }
                return Ok((Type::DictEntry(Box::new(k), Box::new(v)), &rest[1..]));
            }
            other => return err(format!("unknown type character {:?}", other as char)),
        };
        Ok((basic, rest))
    }

    fn is_basic(&self) -> bool {
        !matches!(
            self,
            Type::Variant | Type::Array(_) | Type::Maybe(_) | Type::Tuple(_) | Type::DictEntry(..)
        )
    }

    /// The alignment of the type's serialized form.
    pub fn alignment(&self) -> usize {
        match self {
            Type::Bool | Type::Byte | Type::Str | Type::ObjectPath | Type::Signature => 1,
            Type::I16 | Type::U16 => 2,
            Type::I32 | Type::U32 => 4,
            Type::I64 | Type::U64 | Type::F64 | Type::Variant => 8,
            Type::Array(t) | Type::Maybe(t) => t.alignment(),
            Type::Tuple(items) => items.iter().map(Type::alignment).max().unwrap_or(1),
            Type::DictEntry(k, v) => k.alignment().max(v.alignment()),
        }
    }

    /// The size of every value of the type, if it is fixed.
    pub fn fixed_size(&self) -> Option<usize> {
        match self {
            Type::Bool | Type::Byte => Some(1),
            Type::I16 | Type::U16 => Some(2),
            Type::I32 | Type::U32 => Some(4),
            Type::I64 | Type::U64 | Type::F64 => Some(8),
            Type::Str
            | Type::ObjectPath
            | Type::Signature
            | Type::Variant
            | Type::Array(_)
            | Type::Maybe(_) => None,
            Type::Tuple(items) => fixed_tuple_size(items.iter()),
            Type::DictEntry(k, v) => fixed_tuple_size([k.as_ref(), v.as_ref()].into_iter()),
        }
    }
}

fn fixed_tuple_size<'a>(items: impl Iterator<Item = &'a Type>) -> Option<usize> {
    let mut size: usize = 0;
    let mut align: usize = 1;
    let mut any = false;
    for item in items {
        any = true;
        let a = item.alignment();
        align = align.max(a);
        size = size.next_multiple_of(a) + item.fixed_size()?;
    }
    if !any {
        return Some(1);
    }
    Some(size.next_multiple_of(align))
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = match self {
            Type::Bool => "b",
            Type::Byte => "y",
            Type::I16 => "n",
            Type::U16 => "q",
            Type::I32 => "i",
            Type::U32 => "u",
            Type::I64 => "x",
            Type::U64 => "t",
            Type::F64 => "d",
            Type::Str => "s",
            Type::ObjectPath => "o",
            Type::Signature => "g",
            Type::Variant => "v",
            Type::Array(t) => return write!(f, "a{t}"),
            Type::Maybe(t) => return write!(f, "m{t}"),
            Type::Tuple(items) => {
                f.write_str("(")?;
                for i in items {
                    write!(f, "{i}")?;
                }
                return f.write_str(")");
            }
            Type::DictEntry(k, v) => return write!(f, "{{{k}{v}}}"),
        };
        f.write_str(c)
    }
}

/// A GVariant value. Integers hold the value GVariant itself sees; OSTree's
/// big-endian fields are read and written through the typed layer's
/// [`Be32`] and [`Be64`] (or `Value::be64` and [`Value::as_be64`] in
/// dynamic metadata).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `b`
    Bool(bool),
    /// `y`
    Byte(u8),
    /// `n`
    I16(i16),
    /// `q`
    U16(u16),
    /// `i`
    I32(i32),
    /// `u`
    U32(u32),
    /// `x`
    I64(i64),
    /// `t`
    U64(u64),
    /// `d`
    F64(f64),
    /// `s`
    Str(String),
    /// `o`
    ObjectPath(String),
    /// `g`
    Signature(String),
    /// `v`: a value that carries its own type.
    Variant(Box<Value>),
    /// `ay`, kept as bytes because OSTree uses it everywhere.
    Bytes(Vec<u8>),
    /// `aT` with its element type (needed when it is empty).
    Array(Type, Vec<Value>),
    /// `mT`
    Maybe(Type, Option<Box<Value>>),
    /// `(…)`
    Tuple(Vec<Value>),
    /// `{kv}`
    DictEntry(Box<Value>, Box<Value>),
}

impl Value {
    /// A value in GVariant's text format, for the common cases `ostree
    /// commit --add-metadata=KEY=VALUE` takes: quoted strings, booleans,
    /// integers (`uint64 N`, `int64 N`, `uint32 N`, or plain `int32`).
    pub fn parse_text(s: &str) -> Result<Value, Error> {
        let t = s.trim();
        if (t.starts_with('\'') && t.ends_with('\'') || t.starts_with('"') && t.ends_with('"'))
            && t.len() >= 2
        {
            return Ok(Value::Str(
                t[1..t.len() - 1].replace("\\'", "'").replace("\\\"", "\""),
            ));
        }
        match t {
            "true" => return Ok(Value::Bool(true)),
            "false" => return Ok(Value::Bool(false)),
            _ => {}
        }
        type Number = fn(&str) -> Option<Value>;
        let typed: [(&str, Number); 4] = [
            ("uint64 ", |n| n.parse().ok().map(Value::U64)),
            ("int64 ", |n| n.parse().ok().map(Value::I64)),
            ("uint32 ", |n| n.parse().ok().map(Value::U32)),
            ("", |n| n.parse().ok().map(Value::I32)),
        ];
        for (prefix, f) in typed {
            if let Some(n) = t.strip_prefix(prefix)
                && let Some(v) = f(n.trim())
            {
                return Ok(v);
            }
        }
        err(format!(
            "Unsupported GVariant text '{s}' (use --add-metadata-string for strings)"
        ))
    }

    /// A `t` that OSTree stores big-endian.
    pub(crate) fn be64(v: u64) -> Value {
        Value::U64(v.swap_bytes())
    }

    /// Reads a big-endian `t`.
    pub fn as_be64(&self) -> Option<u64> {
        match self {
            Value::U64(v) => Some(v.swap_bytes()),
            _ => None,
        }
    }

    /// The string of an `s`, `o` or `g`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) | Value::ObjectPath(s) | Value::Signature(s) => Some(s),
            _ => None,
        }
    }

    /// The bytes of an `ay`.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The elements of an array (not `ay`).
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(_, items) => Some(items),
            _ => None,
        }
    }

    /// An `a{sv}` dictionary from its entries, in the order given.
    pub(crate) fn vardict(entries: Vec<(String, Value)>) -> Value {
        Value::Array(
            Type::DictEntry(Box::new(Type::Str), Box::new(Type::Variant)),
            entries
                .into_iter()
                .map(|(k, v)| {
                    Value::DictEntry(
                        Box::new(Value::Str(k)),
                        Box::new(Value::Variant(Box::new(v))),
                    )
                })
                .collect(),
        )
    }

    /// The value's type.
    pub(crate) fn type_of(&self) -> Type {
        match self {
            Value::Bool(_) => Type::Bool,
            Value::Byte(_) => Type::Byte,
            Value::I16(_) => Type::I16,
            Value::U16(_) => Type::U16,
            Value::I32(_) => Type::I32,
            Value::U32(_) => Type::U32,
            Value::I64(_) => Type::I64,
            Value::U64(_) => Type::U64,
            Value::F64(_) => Type::F64,
            Value::Str(_) => Type::Str,
            Value::ObjectPath(_) => Type::ObjectPath,
            Value::Signature(_) => Type::Signature,
            Value::Variant(_) => Type::Variant,
            Value::Bytes(_) => Type::Array(Box::new(Type::Byte)),
            Value::Array(t, _) => Type::Array(Box::new(t.clone())),
            Value::Maybe(t, _) => Type::Maybe(Box::new(t.clone())),
            Value::Tuple(items) => Type::Tuple(items.iter().map(Value::type_of).collect()),
            Value::DictEntry(k, v) => Type::DictEntry(Box::new(k.type_of()), Box::new(v.type_of())),
        }
    }

    /// Serializes the value in normal form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write(&mut out);
        out
    }

    /// Appends the value to `out`. Alignment is relative to the start of
    /// `out`, so `out` must start where the outermost value starts.
    pub fn write(&self, out: &mut Vec<u8>) {
        match self {
            Value::Bool(b) => out.push(u8::from(*b)),
            Value::Byte(b) => out.push(*b),
            Value::I16(v) => put(out, 2, &v.to_le_bytes()),
            Value::U16(v) => put(out, 2, &v.to_le_bytes()),
            Value::I32(v) => put(out, 4, &v.to_le_bytes()),
            Value::U32(v) => put(out, 4, &v.to_le_bytes()),
            Value::I64(v) => put(out, 8, &v.to_le_bytes()),
            Value::U64(v) => put(out, 8, &v.to_le_bytes()),
            Value::F64(v) => put(out, 8, &v.to_le_bytes()),
            Value::Str(s) | Value::ObjectPath(s) | Value::Signature(s) => {
                out.extend_from_slice(s.as_bytes());
                out.push(0);
            }
            Value::Bytes(b) => out.extend_from_slice(b),
            Value::Variant(inner) => {
                pad(out, 8);
                inner.write(out);
                out.push(0);
                out.extend_from_slice(inner.type_of().to_string().as_bytes());
            }
            Value::Maybe(t, v) => {
                if let Some(v) = v {
                    pad(out, t.alignment());
                    v.write(out);
                    if t.fixed_size().is_none() {
                        out.push(0);
                    }
                }
            }
            Value::Array(t, items) => {
                pad(out, t.alignment());
                let start = out.len();
                if t.fixed_size().is_some() {
                    for item in items {
                        item.write(out);
                    }
                } else {
                    let mut ends = Vec::with_capacity(items.len());
                    for item in items {
                        pad(out, t.alignment());
                        item.write(out);
                        ends.push(out.len() - start);
                    }
                    write_offsets(out, start, &ends);
                }
            }
            Value::Tuple(items) => {
                let refs: Vec<&Value> = items.iter().collect();
                write_tuple(out, &refs, &self.type_of());
            }
            Value::DictEntry(k, v) => {
                write_tuple(out, &[k, v], &self.type_of());
            }
        }
    }

    /// Parses `data` as a value of type `ty`.
    pub fn parse(ty: &Type, data: &[u8]) -> Result<Value, Error> {
        parse(ty, data, 0)
    }
}

fn pad(out: &mut Vec<u8>, align: usize) {
    let len = out.len().next_multiple_of(align);
    out.resize(len, 0);
}

fn put(out: &mut Vec<u8>, align: usize, bytes: &[u8]) {
    pad(out, align);
    out.extend_from_slice(bytes);
}

fn write_tuple(out: &mut Vec<u8>, items: &[&Value], ty: &Type) {
    pad(out, ty.alignment());
    let start = out.len();
    let mut ends = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let t = item.type_of();
        pad(out, t.alignment());
        item.write(out);
        if t.fixed_size().is_none() && i + 1 != items.len() {
            ends.push(out.len() - start);
        }
    }
    if let Some(size) = ty.fixed_size() {
        out.resize(start + size, 0);
    } else {
        ends.reverse();
        write_offsets(out, start, &ends);
    }
}

/// The width of framing offsets in a container of `size` bytes.
fn offset_size(size: usize) -> usize {
    match size {
        0 => 0,
        1..=0xff => 1,
        0x100..=0xffff => 2,
        0x1_0000..=0xffff_ffff => 4,
        _ => 8,
    }
}

fn write_offsets(out: &mut Vec<u8>, start: usize, ends: &[usize]) {
    let body = out.len() - start;
    let n = ends.len();
    let width = [1usize, 2, 4, 8]
        .into_iter()
        .find(|w| offset_size(body + n * w) <= *w)
        .unwrap_or(8);
    if body + n == 0 {
        return;
    }
    for &end in ends {
        out.extend_from_slice(&(end as u64).to_le_bytes()[..width]);
    }
}

fn read_offset(data: &[u8], at: usize, width: usize) -> usize {
    let mut buf = [0u8; 8];
    buf[..width].copy_from_slice(&data[at..at + width]);
    u64::from_le_bytes(buf) as usize
}

const MAX_DEPTH: usize = 64;

fn fixed<const N: usize>(ty: &Type, data: &[u8]) -> Result<[u8; N], Error> {
    data.try_into()
        .or_else(|_| err(format!("{ty} needs {N} bytes, has {}", data.len())))
}

fn parse(ty: &Type, data: &[u8], depth: usize) -> Result<Value, Error> {
    if depth > MAX_DEPTH {
        return err("nesting too deep");
    }
    Ok(match ty {
        Type::Bool => match fixed::<1>(ty, data)? {
            [0] => Value::Bool(false),
            [1] => Value::Bool(true),
            _ => return err("boolean is neither 0 nor 1"),
        },
        Type::Byte => Value::Byte(fixed::<1>(ty, data)?[0]),
        Type::I16 => Value::I16(i16::from_le_bytes(fixed(ty, data)?)),
        Type::U16 => Value::U16(u16::from_le_bytes(fixed(ty, data)?)),
        Type::I32 => Value::I32(i32::from_le_bytes(fixed(ty, data)?)),
        Type::U32 => Value::U32(u32::from_le_bytes(fixed(ty, data)?)),
        Type::I64 => Value::I64(i64::from_le_bytes(fixed(ty, data)?)),
        Type::U64 => Value::U64(u64::from_le_bytes(fixed(ty, data)?)),
        Type::F64 => Value::F64(f64::from_le_bytes(fixed(ty, data)?)),
        Type::Str | Type::ObjectPath | Type::Signature => {
            let s = parse_str(data)?;
            match ty {
                Type::Str => Value::Str(s),
                Type::ObjectPath => Value::ObjectPath(s),
                _ => Value::Signature(s),
            }
        }
        Type::Variant => {
            let Some(nul) = data.iter().rposition(|&b| b == 0) else {
                return err("variant without a type string");
            };
            let sig = std::str::from_utf8(&data[nul + 1..])
                .or_else(|_| err("variant type string is not UTF-8"))?;
            let inner_ty = Type::parse(sig)?;
            Value::Variant(Box::new(parse(&inner_ty, &data[..nul], depth + 1)?))
        }
        Type::Maybe(t) => {
            if data.is_empty() {
                Value::Maybe((**t).clone(), None)
            } else if t.fixed_size().is_some() {
                Value::Maybe((**t).clone(), Some(Box::new(parse(t, data, depth + 1)?)))
            } else {
                let (last, body) = data.split_last().expect("not empty");
                if *last != 0 {
                    return err("maybe value not terminated by a zero byte");
                }
                Value::Maybe((**t).clone(), Some(Box::new(parse(t, body, depth + 1)?)))
            }
        }
        Type::Array(t) if **t == Type::Byte => Value::Bytes(data.to_vec()),
        Type::Array(t) => {
            let mut items = Vec::new();
            if let Some(size) = t.fixed_size() {
                if !data.len().is_multiple_of(size) {
                    return err(format!(
                        "array of {t} has {} bytes, not a multiple of {size}",
                        data.len()
                    ));
                }
                for chunk in data.chunks(size) {
                    items.push(parse(t, chunk, depth + 1)?);
                }
            } else if !data.is_empty() {
                let width = offset_size(data.len());
                if data.len() < width {
                    return err("array too short for its framing offset");
                }
                let table = read_offset(data, data.len() - width, width);
                if table > data.len() || !(data.len() - table).is_multiple_of(width) {
                    return err("array framing offsets out of range");
                }
                let n = (data.len() - table) / width;
                let mut pos: usize = 0;
                for i in 0..n {
                    let end = read_offset(data, table + i * width, width);
                    pos = pos.next_multiple_of(t.alignment());
                    if end < pos || end > table {
                        return err("array element out of range");
                    }
                    items.push(parse(t, &data[pos..end], depth + 1)?);
                    pos = end;
                }
            }
            Value::Array((**t).clone(), items)
        }
        Type::Tuple(items) => Value::Tuple(parse_tuple(
            ty,
            &items.iter().collect::<Vec<_>>(),
            data,
            depth,
        )?),
        Type::DictEntry(k, v) => {
            let mut parts = parse_tuple(ty, &[k.as_ref(), v.as_ref()], data, depth)?;
            let v = parts.pop().expect("two items");
            let k = parts.pop().expect("two items");
            Value::DictEntry(Box::new(k), Box::new(v))
        }
    })
}

fn parse_str(data: &[u8]) -> Result<String, Error> {
    let Some((0, body)) = data.split_last() else {
        return err("string not terminated by a zero byte");
    };
    if body.contains(&0) {
        return err("string contains a zero byte");
    }
    String::from_utf8(body.to_vec()).or_else(|_| err("string is not UTF-8"))
}

fn parse_tuple(ty: &Type, items: &[&Type], data: &[u8], depth: usize) -> Result<Vec<Value>, Error> {
    if let Some(size) = ty.fixed_size()
        && data.len() != size
    {
        return err(format!("{ty} needs {size} bytes, has {}", data.len()));
    }
    let width = offset_size(data.len());
    let mut offsets_used = 0;
    let mut pos: usize = 0;
    let mut out = Vec::with_capacity(items.len());
    for (i, t) in items.iter().enumerate() {
        pos = pos.next_multiple_of(t.alignment());
        let end = if let Some(size) = t.fixed_size() {
            pos + size
        } else if i + 1 == items.len() {
            let n_offsets = items[..i]
                .iter()
                .filter(|t| t.fixed_size().is_none())
                .count();
            data.len()
                .checked_sub(n_offsets * width)
                .ok_or_else(|| Error("tuple too short for its framing offsets".into()))?
        } else {
            offsets_used += 1;
            let at = data
                .len()
                .checked_sub(offsets_used * width)
                .ok_or_else(|| Error("tuple too short for its framing offsets".into()))?;
            read_offset(data, at, width)
        };
        if end < pos || end > data.len() {
            return err(format!("member {i} of {ty} out of range"));
        }
        out.push(parse(t, &data[pos..end], depth + 1)?);
        pos = end;
    }
    Ok(out)
}

/// Prints a value in GVariant text format, as `g_variant_print` with type
/// annotations does (used by `show --raw`-style output).
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        print(self, f, true)
    }
}

fn quote(s: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let q = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    write!(f, "{q}")?;
    for c in s.chars() {
        match c {
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\t' => f.write_str("\\t")?,
            c if c == q => write!(f, "\\{c}")?,
            c => write!(f, "{c}")?,
        }
    }
    write!(f, "{q}")
}

fn print(v: &Value, f: &mut fmt::Formatter<'_>, annotate: bool) -> fmt::Result {
    match v {
        Value::Bool(b) => write!(f, "{b}"),
        Value::Byte(b) => write!(f, "byte 0x{b:02x}"),
        Value::I16(x) => write!(f, "{}{x}", if annotate { "int16 " } else { "" }),
        Value::U16(x) => write!(f, "{}{x}", if annotate { "uint16 " } else { "" }),
        Value::I32(x) => write!(f, "{x}"),
        Value::U32(x) => write!(f, "{}{x}", if annotate { "uint32 " } else { "" }),
        Value::I64(x) => write!(f, "{}{x}", if annotate { "int64 " } else { "" }),
        Value::U64(x) => write!(f, "{}{x}", if annotate { "uint64 " } else { "" }),
        Value::F64(x) => write!(f, "{x:?}"),
        Value::Str(s) => quote(s, f),
        Value::ObjectPath(s) => {
            f.write_str("objectpath ")?;
            quote(s, f)
        }
        Value::Signature(s) => {
            f.write_str("signature ")?;
            quote(s, f)
        }
        Value::Variant(inner) => {
            f.write_str("<")?;
            print(inner, f, true)?;
            f.write_str(">")
        }
        Value::Bytes(b) => {
            if b.is_empty() {
                return f.write_str(if annotate { "@ay []" } else { "[]" });
            }
            if let Some((0, body)) = b.split_last()
                && !body.is_empty()
                && body.iter().all(|c| c.is_ascii_graphic() || *c == b' ')
            {
                f.write_str("b")?;
                return quote(&String::from_utf8_lossy(body), f);
            }
            f.write_str("[")?;
            for (i, x) in b.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                if i == 0 {
                    write!(f, "byte 0x{x:02x}")?;
                } else {
                    write!(f, "0x{x:02x}")?;
                }
            }
            f.write_str("]")
        }
        Value::Array(t, items) => {
            let dict = matches!(t, Type::DictEntry(..));
            if items.is_empty() {
                let empty = if dict { "{}" } else { "[]" };
                return if annotate {
                    write!(f, "@a{t} {empty}")
                } else {
                    f.write_str(empty)
                };
            }
            f.write_str(if dict { "{" } else { "[" })?;
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                print(item, f, annotate && i == 0)?;
            }
            f.write_str(if dict { "}" } else { "]" })
        }
        Value::Maybe(t, v) => match v {
            None => {
                if annotate {
                    write!(f, "@m{t} ")?;
                }
                f.write_str("nothing")
            }
            Some(v) => {
                f.write_str("just ")?;
                print(v, f, annotate)
            }
        },
        Value::Tuple(items) => {
            f.write_str("(")?;
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                print(item, f, annotate)?;
            }
            if items.len() == 1 {
                f.write_str(",")?;
            }
            f.write_str(")")
        }
        Value::DictEntry(k, v) => {
            print(k, f, annotate)?;
            f.write_str(": ")?;
            print(v, f, annotate)
        }
    }
}

/// Rust types with a GVariant type: the typed access layer. An object's
/// shape is written once as a Rust type, whose GVariant type string is
/// derived from it, so the type parsed and the fields read cannot
/// disagree; [`decode`] still parses through [`Value::parse`] and its
/// normal-form checks, then moves the parts out by position and type
/// instead of looking them up and unwrapping them one by one.
pub trait Typed: Sized {
    /// Appends this type's GVariant type string to `out`.
    fn type_string(out: &mut String);
    /// Takes the value apart; `None` if it is not of this type.
    fn from_value(v: Value) -> Option<Self>;
    /// Builds the value.
    fn into_value(self) -> Value;
}

/// The GVariant type of `T`.
pub fn type_of<T: Typed>() -> Type {
    let mut s = String::new();
    T::type_string(&mut s);
    Type::parse(&s).expect("a Typed type has a valid type string")
}

/// Parses `data` (normal form, strictly) as a `T`.
pub fn decode<T: Typed>(data: &[u8]) -> Result<T, Error> {
    let v = Value::parse(&type_of::<T>(), data)?;
    T::from_value(v).ok_or_else(|| Error("value does not have its type's shape".into()))
}

/// Serializes `t` in normal form.
pub fn encode<T: Typed>(t: T) -> Vec<u8> {
    t.into_value().to_bytes()
}

/// `ay`: bytes (a checksum, an xattr, a name with its NUL).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bytes(pub Vec<u8>);

/// A `u` that OSTree stores big-endian (owners, modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Be32(pub u32);

/// A `t` that OSTree stores big-endian (sizes, times).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Be64(pub u64);

/// `a{sv}`: named values of any type, in stored order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VarDict(pub Vec<(String, Value)>);

impl Typed for String {
    fn type_string(out: &mut String) {
        out.push('s');
    }
    fn from_value(v: Value) -> Option<Self> {
        match v {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    fn into_value(self) -> Value {
        Value::Str(self)
    }
}

impl Typed for bool {
    fn type_string(out: &mut String) {
        out.push('b');
    }
    fn from_value(v: Value) -> Option<Self> {
        match v {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }
    fn into_value(self) -> Value {
        Value::Bool(self)
    }
}

impl Typed for u64 {
    fn type_string(out: &mut String) {
        out.push('t');
    }
    fn from_value(v: Value) -> Option<Self> {
        match v {
            Value::U64(n) => Some(n),
            _ => None,
        }
    }
    fn into_value(self) -> Value {
        Value::U64(self)
    }
}

impl Typed for Bytes {
    fn type_string(out: &mut String) {
        out.push_str("ay");
    }
    fn from_value(v: Value) -> Option<Self> {
        match v {
            Value::Bytes(b) => Some(Bytes(b)),
            _ => None,
        }
    }
    fn into_value(self) -> Value {
        Value::Bytes(self.0)
    }
}

impl Typed for Be32 {
    fn type_string(out: &mut String) {
        out.push('u');
    }
    fn from_value(v: Value) -> Option<Self> {
        match v {
            Value::U32(n) => Some(Be32(n.swap_bytes())),
            _ => None,
        }
    }
    fn into_value(self) -> Value {
        Value::U32(self.0.swap_bytes())
    }
}

impl Typed for Be64 {
    fn type_string(out: &mut String) {
        out.push('t');
    }
    fn from_value(v: Value) -> Option<Self> {
        match v {
            Value::U64(n) => Some(Be64(n.swap_bytes())),
            _ => None,
        }
    }
    fn into_value(self) -> Value {
        Value::U64(self.0.swap_bytes())
    }
}

impl Typed for VarDict {
    fn type_string(out: &mut String) {
        out.push_str("a{sv}");
    }
    fn from_value(v: Value) -> Option<Self> {
        let Value::Array(_, entries) = v else {
            return None;
        };
        entries
            .into_iter()
            .map(|e| match e {
                Value::DictEntry(k, v) => match (*k, *v) {
                    (Value::Str(k), Value::Variant(inner)) => Some((k, *inner)),
                    _ => None,
                },
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
            .map(VarDict)
    }
    fn into_value(self) -> Value {
        Value::vardict(self.0)
    }
}

impl<T: Typed> Typed for Vec<T> {
    fn type_string(out: &mut String) {
        out.push('a');
        T::type_string(out);
    }
    fn from_value(v: Value) -> Option<Self> {
        match v {
            Value::Array(_, items) => items.into_iter().map(T::from_value).collect(),
            _ => None,
        }
    }
    fn into_value(self) -> Value {
        Value::Array(
            type_of::<T>(),
            self.into_iter().map(Typed::into_value).collect(),
        )
    }
}

macro_rules! typed_tuple {
    ($($t:ident),+) => {
        impl<$($t: Typed),+> Typed for ($($t,)+) {
            fn type_string(out: &mut String) {
                out.push('(');
                $($t::type_string(out);)+
                out.push(')');
            }
            #[allow(non_snake_case)]
            fn from_value(v: Value) -> Option<Self> {
                let Value::Tuple(items) = v else {
                    return None;
                };
                let mut items = items.into_iter();
                $(let $t = $t::from_value(items.next()?)?;)+
                if items.next().is_some() {
                    return None;
                }
                Some(($($t,)+))
            }
            #[allow(non_snake_case)]
            fn into_value(self) -> Value {
                let ($($t,)+) = self;
                Value::Tuple(vec![$($t.into_value()),+])
            }
        }
    };
}

typed_tuple!(A, B);
typed_tuple!(A, B, C);
typed_tuple!(A, B, C, D);
typed_tuple!(A, B, C, D, E);
typed_tuple!(A, B, C, D, E, F);
typed_tuple!(A, B, C, D, E, F, G);
typed_tuple!(A, B, C, D, E, F, G, H);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_shapes_name_their_types_and_round_trip() {
        let mut t = String::new();
        <(
            VarDict,
            Bytes,
            Vec<(String, Bytes)>,
            String,
            String,
            Be64,
            Bytes,
            Bytes,
        )>::type_string(&mut t);
        assert_eq!(t, "(a{sv}aya(say)sstayay)");
        assert_eq!(
            type_of::<(Vec<(String, Bytes)>, Vec<(String, Bytes, Bytes)>)>(),
            Type::parse("(a(say)a(sayay))").unwrap()
        );
        let v = (
            Be32(0x0102_0304),
            Be64(7),
            vec![(String::from("n"), Bytes(vec![1, 2]))],
            VarDict(vec![("k".into(), Value::Bool(true))]),
        );
        let bytes = encode(v.clone());
        // Big-endian inside the variant, as OSTree stores them.
        assert_eq!(&bytes[..4], &[1, 2, 3, 4]);
        let back: (Be32, Be64, Vec<(String, Bytes)>, VarDict) = decode(&bytes).unwrap();
        assert_eq!(back, v);
        // Bytes of another shape are refused, not read as defaults.
        assert!(decode::<(String, Be64)>(&bytes).is_err());
    }

    #[test]
    fn gvariant_text() {
        assert_eq!(Value::parse_text("'x'").unwrap(), Value::Str("x".into()));
        assert_eq!(Value::parse_text("uint64 5").unwrap(), Value::U64(5));
        assert_eq!(Value::parse_text("true").unwrap(), Value::Bool(true));
        assert_eq!(Value::parse_text("-3").unwrap(), Value::I32(-3));
        assert!(Value::parse_text("[1, 2]").is_err());
    }

    fn roundtrip(v: &Value) {
        let bytes = v.to_bytes();
        let back = Value::parse(&v.type_of(), &bytes).unwrap();
        assert_eq!(&back, v, "bytes {bytes:02x?}");
    }

    #[test]
    fn specification_examples() {
        // Examples from the GVariant specification, section 4.
        assert_eq!(
            Value::Str("hello world".into()).to_bytes(),
            b"hello world\0"
        );
        let mb = Value::Maybe(Type::Str, Some(Box::new(Value::Str("hello world".into()))));
        assert_eq!(mb.to_bytes(), b"hello world\0\0");
        let arr = Value::Array(
            Type::Str,
            vec![
                Value::Str("i".into()),
                Value::Str("can".into()),
                Value::Str("has".into()),
            ],
        );
        assert_eq!(arr.to_bytes(), b"i\0can\0has\0\x02\x06\x0a");
        let t = Value::Tuple(vec![Value::Str("foo".into()), Value::I32(-1)]);
        assert_eq!(t.to_bytes(), b"foo\0\xff\xff\xff\xff\x04");
        let d = Value::DictEntry(
            Box::new(Value::Str("a key".into())),
            Box::new(Value::I32(514)),
        );
        assert_eq!(d.to_bytes(), b"a key\0\0\0\x02\x02\0\0\x06");
        let v = Value::Variant(Box::new(Value::Tuple(vec![
            Value::I16(-1),
            Value::Str("hello".into()),
        ])));
        // (ns) variant: int16 ffff, "hello\0", then 0 separator and "(ns)".
        assert_eq!(v.to_bytes(), b"\xff\xffhello\0\0(ns)");
        let empty = Value::Array(Type::Str, vec![]);
        assert_eq!(empty.to_bytes(), b"");
        assert_eq!(Value::Tuple(vec![]).to_bytes(), b"\0");
        for v in [mb, arr, t, d, v, empty] {
            roundtrip(&v);
        }
    }

    #[test]
    fn wide_offsets() {
        let big = Value::Array(
            Type::Str,
            (0..100)
                .map(|i| Value::Str(format!("entry number {i}")))
                .collect(),
        );
        let bytes = big.to_bytes();
        assert!(bytes.len() > 0xff);
        roundtrip(&big);
    }

    #[test]
    fn types_print_and_parse() {
        for s in [
            "(a{sv}aya(say)sstayay)",
            "(uuuusa(ayay))",
            "a(s(taya{sv}))",
            "mv",
            "aay",
        ] {
            assert_eq!(Type::parse(s).unwrap().to_string(), s);
        }
        assert!(Type::parse("{vs}").is_err());
        assert!(Type::parse("(s").is_err());
        assert!(Type::parse("ss").is_err());
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        let ty = Type::parse("(a{sv}aya(say)sstayay)").unwrap();
        for data in [
            &b""[..],
            b"\xff",
            b"\0\0\0\0\0\0\0\0\xff\xff",
            b"abc\0\x10\x20",
        ] {
            assert!(Value::parse(&ty, data).is_err());
        }
    }

    proptest::proptest! {
        #[test]
        fn string_arrays_roundtrip(items in proptest::collection::vec("[a-z]{0,300}", 0..40)) {
            let v = Value::Array(Type::Str, items.into_iter().map(Value::Str).collect());
            roundtrip(&v);
        }

        #[test]
        fn vardicts_roundtrip(entries in proptest::collection::vec(("[a-z.]{1,20}", proptest::num::u64::ANY, proptest::collection::vec(proptest::num::u8::ANY, 0..600)), 0..10)) {
            let v = Value::vardict(entries.into_iter().map(|(k, n, b)| {
                (k, Value::Tuple(vec![Value::U64(n), Value::Bytes(b)]))
            }).collect());
            roundtrip(&v);
        }
    }
}
