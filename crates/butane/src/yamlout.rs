//! YAML output for openshift MachineConfigs, as upstream writes it: the
//! JSON document re-encoded by yaml.v3 (keys in its natural sort order,
//! block style, two-space indent, numbers in Go's `%g`, strings plain when
//! they would read back as the same string, else quoted, multi-line strings
//! as literal blocks).

use std::cmp::Ordering;

use serde_json::Value;

/// Emits a document.
pub(crate) fn emit(v: &Value) -> String {
    let mut out = String::new();
    node(v, 0, &mut out, Ctx::Top);
    out
}

#[derive(Clone, Copy, PartialEq)]
enum Ctx {
    Top,
    MapValue,
    SeqItem,
}

fn node(v: &Value, indent: usize, out: &mut String, ctx: Ctx) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            let keys = sorted_keys(m.keys().collect());
            for (i, k) in keys.iter().enumerate() {
                if !(i == 0 && ctx == Ctx::SeqItem) {
                    if ctx != Ctx::Top || i > 0 {
                        out.push('\n');
                    }
                    out.push_str(&" ".repeat(indent));
                }
                out.push_str(&scalar_str(k, indent));
                out.push(':');
                let child = &m[*k];
                match child {
                    Value::Object(cm) if !cm.is_empty() => {
                        node(child, indent + 2, out, Ctx::MapValue)
                    }
                    Value::Array(a) if !a.is_empty() => node(child, indent + 2, out, Ctx::MapValue),
                    _ => {
                        out.push(' ');
                        inline(child, indent + 2, out);
                    }
                }
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for (i, item) in a.iter().enumerate() {
                if !(i == 0 && ctx == Ctx::SeqItem) {
                    if ctx != Ctx::Top || i > 0 {
                        out.push('\n');
                    }
                    out.push_str(&" ".repeat(indent));
                }
                out.push_str("- ");
                match item {
                    Value::Object(m) if !m.is_empty() => node(item, indent + 2, out, Ctx::SeqItem),
                    Value::Array(x) if !x.is_empty() => node(item, indent + 2, out, Ctx::SeqItem),
                    _ => inline(item, indent + 2, out),
                }
            }
        }
        other => inline(other, indent, out),
    }
}

fn inline(v: &Value, indent: usize, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&go_g(n.as_f64().unwrap_or(0.0))),
        Value::String(s) => out.push_str(&scalar_str(s, indent)),
        Value::Object(_) => out.push_str("{}"),
        Value::Array(_) => out.push_str("[]"),
    }
}

/// Go's `strconv.FormatFloat(f, 'g', -1, 64)`.
pub(crate) fn go_g(f: f64) -> String {
    if f == 0.0 {
        return "0".into();
    }
    let exp = f.abs().log10().floor() as i32;
    if (-4..21).contains(&exp) && exp < 6 {
        let s = format!("{f}");
        return s;
    }
    let s = format!("{f:e}");
    let (mant, e) = s.split_once('e').unwrap_or((&s, "0"));
    let e: i32 = e.parse().unwrap_or(0);
    let sign = if e < 0 { '-' } else { '+' };
    format!("{mant}e{sign}{:02}", e.abs())
}

fn resolves_as_non_string(s: &str) -> bool {
    use crate::yaml::{Resolved, Scalar};
    let r = Scalar {
        text: s.to_string(),
        plain: true,
        tag: None,
    }
    .resolve();
    if r != Resolved::Str {
        return true;
    }
    // yaml.v3 also quotes YAML 1.1 booleans, base-60 numbers and
    // timestamps, so that older readers see strings.
    matches!(
        s,
        "y" | "Y"
            | "yes"
            | "Yes"
            | "YES"
            | "n"
            | "N"
            | "no"
            | "No"
            | "NO"
            | "on"
            | "On"
            | "ON"
            | "off"
            | "Off"
            | "OFF"
    ) || is_base60(s)
        || is_timestamp(s)
}

fn is_base60(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() > 1
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_digit() || b == b'.' || b == b'_')
        })
}

fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 8
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && s[5..].contains('-')
        && s[5..]
            .split('-')
            .next()
            .is_some_and(|m| !m.is_empty() && m.len() <= 2 && m.bytes().all(|c| c.is_ascii_digit()))
}

fn plain_allowed(s: &str) -> bool {
    if s.is_empty() || s.starts_with(' ') || s.ends_with(' ') {
        return false;
    }
    let first = s.as_bytes()[0];
    if b"#,[]{}&*!|>'\"%@`".contains(&first) {
        return false;
    }
    if matches!(first, b'-' | b'?' | b':') && (s.len() == 1 || s.as_bytes()[1] == b' ') {
        return false;
    }
    if s.starts_with("---") || s.starts_with("...") {
        return false;
    }
    if s.contains(": ") || s.contains(" #") || s.ends_with(':') || s.contains('\t') {
        return false;
    }
    !s.chars().any(|c| c.is_control())
}

fn scalar_str(s: &str, indent: usize) -> String {
    if s.contains('\n') && literal_ok(s) {
        return literal(s, indent);
    }
    if !resolves_as_non_string(s) && plain_allowed(s) {
        return s.to_string();
    }
    if !resolves_as_non_string(s) && !s.contains('\t') && !s.chars().any(|c| c.is_control()) {
        return format!("'{}'", s.replace('\'', "''"));
    }
    double_quoted(s)
}

fn literal_ok(s: &str) -> bool {
    !s.contains(" \n")
        && !s.ends_with(' ')
        && !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t')
}

fn literal(s: &str, indent: usize) -> String {
    let trailing = s.len() - s.trim_end_matches('\n').len();
    let chomp = match trailing {
        0 => "-",
        1 => "",
        _ => "+",
    };
    let body = s.trim_start_matches('\n');
    let ind = if s.starts_with(' ') || s.starts_with('\n') {
        "2"
    } else {
        ""
    };
    let mut out = format!("|{ind}{chomp}");
    let content = body.strip_suffix('\n').unwrap_or(body);
    for line in content.split('\n') {
        out.push('\n');
        if !line.is_empty() {
            out.push_str(&" ".repeat(indent));
            out.push_str(line);
        }
    }
    out
}

fn double_quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            c if (c as u32) < 0x20 || c == '\x7f' => out.push_str(&format!("\\x{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Sorts keys by [`natural`]. That order is not total for every set of
/// strings (neither is upstream's), so an insertion sort is used, which
/// gives some order instead of failing.
fn sorted_keys(mut keys: Vec<&String>) -> Vec<&String> {
    for i in 1..keys.len() {
        let mut j = i;
        while j > 0 && natural(keys[j], keys[j - 1]) == Ordering::Less {
            keys.swap(j, j - 1);
            j -= 1;
        }
    }
    keys
}

/// yaml.v3's natural key order.
pub(crate) fn natural(a: &str, b: &str) -> Ordering {
    let (ar, br): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut i = 0;
    while i < ar.len() && i < br.len() {
        if ar[i] == br[i] {
            i += 1;
            continue;
        }
        let (x, y) = (ar[i], br[i]);
        let (xl, yl) = (x.is_alphabetic(), y.is_alphabetic());
        if xl && yl {
            return x.cmp(&y);
        }
        if xl != yl {
            let prev_digit = i > 0 && ar[i - 1].is_ascii_digit();
            return if prev_digit == xl {
                Ordering::Less
            } else {
                Ordering::Greater
            };
        }
        let digits =
            |v: &[char], from: usize| v[from..].iter().take_while(|c| c.is_ascii_digit()).count();
        let (dx, dy) = (digits(&ar, i), digits(&br, i));
        if dx > 0 && dy > 0 {
            let nx: u128 = ar[i..i + dx]
                .iter()
                .collect::<String>()
                .parse()
                .unwrap_or(0);
            let ny: u128 = br[i..i + dy]
                .iter()
                .collect::<String>()
                .parse()
                .unwrap_or(0);
            if nx != ny {
                return nx.cmp(&ny);
            }
            if dx != dy {
                return dx.cmp(&dy);
            }
        }
        return x.cmp(&y);
    }
    ar.len().cmp(&br.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order() {
        let mut v = vec!["spec", "kind", "metadata", "apiVersion"];
        v.sort_by(|a, b| natural(a, b));
        assert_eq!(v, ["apiVersion", "kind", "metadata", "spec"]);
        assert_eq!(natural("a9", "a10"), Ordering::Less);
        assert_eq!(natural("B", "a9"), Ordering::Less);
    }

    #[test]
    fn numbers_like_go() {
        assert_eq!(go_g(420.0), "420");
        assert_eq!(go_g(1_000_000.0), "1e+06");
        assert_eq!(go_g(1_234_567.0), "1.234567e+06");
    }

    #[test]
    fn string_styles() {
        assert_eq!(scalar_str("a: b", 0), "'a: b'");
        assert_eq!(scalar_str("null", 0), "\"null\"");
        assert_eq!(scalar_str("y", 0), "\"y\"");
        assert_eq!(scalar_str("data:,x%20y", 0), "data:,x%20y");
        assert_eq!(scalar_str("", 0), "\"\"");
        assert_eq!(scalar_str("a\tb", 0), "\"a\\tb\"");
        assert_eq!(scalar_str("[Unit]\nA=b\n", 4), "|\n    [Unit]\n    A=b");
    }
}
