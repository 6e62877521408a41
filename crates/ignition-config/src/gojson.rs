//! JSON output byte-for-byte as upstream's Go tools write it.
//!
//! Butane marshals Ignition configs with a fork of Go's `encoding/json`:
//! `<`, `>` and `&` are escaped as `\u003c`, `\u003e`, `\u0026`; U+2028 and
//! U+2029 as `\u2028`, `\u2029`; control characters other than `\n`, `\r`
//! and `\t` as `\u00XX` (lower-case hex, so `\b` is `\u0008`). Indented
//! output uses two spaces, as `json.MarshalIndent(v, "", "  ")`.

use std::io;

use serde::Serialize;
use serde_json::ser::{CharEscape, CompactFormatter, Formatter, PrettyFormatter};

/// A formatter wrapper that escapes strings as Go does.
struct Go<F>(F);

fn write_go_fragment<W: ?Sized + io::Write>(w: &mut W, fragment: &str) -> io::Result<()> {
    let mut start = 0;
    for (i, c) in fragment.char_indices() {
        let esc: Option<&[u8]> = match c {
            '<' => Some(b"\\u003c"),
            '>' => Some(b"\\u003e"),
            '&' => Some(b"\\u0026"),
            '\u{2028}' => Some(b"\\u2028"),
            '\u{2029}' => Some(b"\\u2029"),
            _ => None,
        };
        if let Some(esc) = esc {
            w.write_all(&fragment.as_bytes()[start..i])?;
            w.write_all(esc)?;
            start = i + c.len_utf8();
        }
    }
    w.write_all(&fragment.as_bytes()[start..])
}

fn write_go_escape<W: ?Sized + io::Write>(w: &mut W, e: CharEscape) -> io::Result<()> {
    let s: &[u8] = match e {
        CharEscape::Quote => b"\\\"",
        CharEscape::ReverseSolidus => b"\\\\",
        CharEscape::Solidus => b"/",
        CharEscape::LineFeed => b"\\n",
        CharEscape::CarriageReturn => b"\\r",
        CharEscape::Tab => b"\\t",
        CharEscape::Backspace => b"\\u0008",
        CharEscape::FormFeed => b"\\u000c",
        CharEscape::AsciiControl(b) => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            return w.write_all(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 0xf) as usize],
            ]);
        }
    };
    w.write_all(s)
}

macro_rules! delegate {
    ($($name:ident($($arg:ident: $ty:ty),*)),* $(,)?) => {
        $(
            fn $name<W: ?Sized + io::Write>(&mut self, w: &mut W $(, $arg: $ty)*) -> io::Result<()> {
                self.0.$name(w $(, $arg)*)
            }
        )*
    };
}

impl<F: Formatter> Formatter for Go<F> {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        write_go_fragment(w, fragment)
    }
    fn write_char_escape<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        e: CharEscape,
    ) -> io::Result<()> {
        write_go_escape(w, e)
    }
    delegate! {
        begin_array(),
        end_array(),
        begin_array_value(first: bool),
        end_array_value(),
        begin_object(),
        end_object(),
        begin_object_key(first: bool),
        end_object_key(),
        begin_object_value(),
        end_object_value(),
    }
}

/// Serializes `value` as Go would: compact, or indented by two spaces.
pub fn to_go_json<T: Serialize + ?Sized>(value: &T, pretty: bool) -> String {
    let mut out = Vec::with_capacity(256);
    let r = if pretty {
        let mut ser = serde_json::Serializer::with_formatter(
            &mut out,
            Go(PrettyFormatter::with_indent(b"  ")),
        );
        value.serialize(&mut ser)
    } else {
        let mut ser = serde_json::Serializer::with_formatter(&mut out, Go(CompactFormatter));
        value.serialize(&mut ser)
    };
    // Serializing plain data into memory cannot fail, and serde_json writes
    // UTF-8 only.
    r.expect("serializing to memory");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// Serializes a config the way upstream's types for `version` do. Up to
/// 3.2.0 some fields were plain values that Go always writes: a link's
/// `target` (`""`), a RAID array's `devices` (`null` when empty) and
/// `level`, a custom Clevis pin's `config` and `pin`; in 3.0.0 a config
/// reference's `source` (`null`) and a CA reference's `source` (`""`).
pub fn to_go_json_for(
    config: &crate::types::Config,
    version: crate::Version,
    pretty: bool,
) -> String {
    use crate::Version;
    use serde_json::{Map, Value};
    if version > Version::V3_2 {
        return to_go_json(config, pretty);
    }
    let mut v = serde_json::to_value(config).expect("plain data serializes");
    let each = |v: &mut Value, keys: &[&str], f: &dyn Fn(&mut Map<String, Value>)| {
        let mut cur = Some(v);
        for k in keys {
            cur = cur.and_then(|c| c.get_mut(*k));
        }
        if let Some(Value::Array(items)) = cur {
            for item in items {
                if let Value::Object(m) = item {
                    f(m);
                }
            }
        }
    };
    each(&mut v, &["storage", "links"], &|m| {
        m.entry("target")
            .or_insert_with(|| Value::String(String::new()));
    });
    each(&mut v, &["storage", "raid"], &|m| {
        if !m.contains_key("devices") {
            m.shift_insert(0, "devices".into(), Value::Null);
        }
        if !m.contains_key("level") {
            m.shift_insert(1, "level".into(), Value::String(String::new()));
        }
    });
    each(&mut v, &["storage", "luks"], &|m| {
        if let Some(Value::Object(custom)) = m.get_mut("clevis").and_then(|c| c.get_mut("custom")) {
            if !custom.contains_key("config") {
                custom.shift_insert(0, "config".into(), Value::String(String::new()));
            }
            custom
                .entry("pin")
                .or_insert_with(|| Value::String(String::new()));
        }
    });
    if version == Version::V3_0 {
        each(&mut v, &["ignition", "config", "merge"], &|m| {
            if !m.contains_key("source") {
                m.shift_insert(0, "source".into(), Value::Null);
            }
        });
        if let Some(Value::Object(r)) = v
            .get_mut("ignition")
            .and_then(|i| i.get_mut("config"))
            .and_then(|c| c.get_mut("replace"))
            && !r.contains_key("source")
        {
            r.shift_insert(0, "source".into(), Value::Null);
        }
        each(
            &mut v,
            &["ignition", "security", "tls", "certificateAuthorities"],
            &|m| {
                if !m.contains_key("source") {
                    m.shift_insert(0, "source".into(), Value::String(String::new()));
                }
            },
        );
    }
    to_go_json(&v, pretty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_go() {
        let s = "<a href=\"x\">&amp;</a>\u{8}\u{c}\u{1}\n\t\u{2028}é";
        assert_eq!(
            to_go_json(s, false),
            r#""\u003ca href=\"x\"\u003e\u0026amp;\u003c/a\u003e\u0008\u000c\u0001\n\t\u2028é""#
        );
        let v = serde_json::json!({"a": [1, {"b": "c"}], "d": {}});
        assert_eq!(
            to_go_json(&v, true),
            "{\n  \"a\": [\n    1,\n    {\n      \"b\": \"c\"\n    }\n  ],\n  \"d\": {}\n}"
        );
    }
}
