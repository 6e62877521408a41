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
