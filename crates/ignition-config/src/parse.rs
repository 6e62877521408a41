//! Parsing a config of any supported version, as upstream's `config.Parse`.
//!
//! The steps and their failures are upstream's: an empty input is "not a
//! config (empty)"; JSON syntax errors and type mismatches are one report
//! entry with a line and column; `ignition.version` must be a semantic
//! version ("invalid config version (couldn't parse)") of a supported spec
//! ("unsupported config version"); then the config is validated and every
//! key that is not a field of its version is an `unused key` warning.

use serde_json::Value;

use crate::json::{Decode, Decoder, TypeError};
use crate::position::{Anchor, Locator, go_position};
use crate::report::{Entry, Path, Report, Seg, Severity};
use crate::types::Config;
use crate::validate;
use crate::version::{self, Version};

/// Why a config could not be used. The details are in the accompanying
/// [`Report`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Zero bytes.
    #[error("not a config (empty)")]
    Empty,
    /// `ignition.version` is not a semantic version.
    #[error("invalid config version (couldn't parse)")]
    InvalidVersion,
    /// A 2.x config or any version this library does not implement.
    #[error("unsupported config version")]
    UnknownVersion,
    /// The report holds at least one error.
    #[error("config is not valid")]
    Invalid,
}

/// A failed parse: the error and what was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What went wrong.
    pub error: ParseError,
    /// Findings; empty for version errors, as upstream.
    pub report: Report,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.error)?;
        if !self.report.is_empty() {
            write!(f, ":\n{}", self.report.to_string().trim_end())?;
        }
        Ok(())
    }
}

impl std::error::Error for Failure {}

fn fail(error: ParseError, report: Report) -> Failure {
    Failure { error, report }
}

fn positioned(
    severity: Severity,
    position: Option<crate::report::Position>,
    message: String,
) -> Report {
    Report {
        entries: vec![Entry {
            severity,
            path: None,
            position,
            message,
        }],
    }
}

/// Parses and validates a config of any supported version. On success the
/// config keeps the version it was written in (see [`crate::translate`]).
pub fn parse(raw: &[u8]) -> Result<(Config, Report), Failure> {
    parse_with(raw, true)
}

/// Parses a config without validating it: JSON, version and type errors
/// fail; unused keys are reported. For tools that validate later, or not at
/// all (the fuzzer's and the property tests' round trips).
pub fn parse_unvalidated(raw: &[u8]) -> Result<(Config, Report), Failure> {
    parse_with(raw, false)
}

fn parse_with(raw: &[u8], validate: bool) -> Result<(Config, Report), Failure> {
    if raw.is_empty() {
        return Err(fail(ParseError::Empty, Report::default()));
    }
    // Go's reading of the text, at the same offsets.
    let text = go_text(raw);
    let (depth, too_deep) = nesting(&text);
    match with_stack_for(depth, || parse_text(&text, too_deep, validate)) {
        Ok(r) => r,
        Err(e) => Err(fail(
            ParseError::Invalid,
            positioned(
                Severity::Error,
                None,
                format!(
                    "config nests {depth} levels deep, and no thread could be started to read it: {e}"
                ),
            ),
        )),
    }
}

/// Reads JSON as Go's decoder does (nesting to 10,000 levels, lone
/// surrogate escapes as U+FFFD) and returns the string at
/// `ignition.version` (keys matched exactly), or the syntax error in
/// ignition-validate's words. For configs embedded in other documents.
pub fn embedded_version(raw: &[u8]) -> Result<Option<String>, Failure> {
    let text = go_text(raw);
    let (depth, too_deep) = nesting(&text);
    let read = || -> Result<Option<String>, Failure> {
        if let Some(at) = too_deep {
            return Err(depth_failure(&text, at));
        }
        let value = read_json(&text).map_err(|e| syntax_failure(&text, &e))?;
        Ok(value
            .get("ignition")
            .and_then(|i| i.get("version"))
            .and_then(Value::as_str)
            .map(str::to_string))
    };
    with_stack_for(depth, read).unwrap_or_else(|e| {
        Err(fail(
            ParseError::Invalid,
            positioned(
                Severity::Error,
                None,
                format!("no thread to read the config: {e}"),
            ),
        ))
    })
}

/// encoding/json's limit on nesting (`maxNestingDepth`).
pub const MAX_DEPTH: usize = 10_000;

/// Nesting that parsing (which recurses per level) handles on any thread.
const SHALLOW: usize = 100;

/// Stack for each level of nesting past [`SHALLOW`]: serde_json's parse,
/// the drop of the parsed value and the position parser recurse per
/// level (measured: 2–4 KiB per level in a debug build).
const STACK_PER_LEVEL: usize = 8 << 10;

/// Runs `f` on the current thread, or for text nested deeper than
/// [`SHALLOW`] on a thread with a stack sized for `depth` levels.
fn with_stack_for<R: Send>(depth: usize, f: impl FnOnce() -> R + Send) -> std::io::Result<R> {
    if depth <= SHALLOW {
        return Ok(f());
    }
    let size = (2 << 20) + depth.min(MAX_DEPTH) * STACK_PER_LEVEL;
    std::thread::scope(|s| {
        let handle = std::thread::Builder::new()
            .name("deep-json".into())
            .stack_size(size)
            .spawn_scoped(s, f)?;
        Ok(handle
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
    })
}

/// The deepest nesting of `text` (brackets outside strings), and the offset
/// of the first bracket past [`MAX_DEPTH`]. One pass.
pub(crate) fn nesting(text: &[u8]) -> (usize, Option<usize>) {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for (i, &b) in text.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return (depth, Some(i));
                }
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    (deepest, None)
}

/// The text as Go's decoder reads it: a `\u` escape of a UTF-16
/// surrogate that is not the first half of a valid pair is U+FFFD (Go
/// replaces it; serde_json refuses it). Rewritten in place as `\ufffd`,
/// so every offset stays the same.
pub(crate) fn go_text(raw: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let hex = |at: usize| -> Option<u16> {
        let digits = raw.get(at..at + 4)?;
        let s = std::str::from_utf8(digits).ok()?;
        u16::from_str_radix(s, 16)
            .ok()
            .filter(|_| digits.iter().all(u8::is_ascii_hexdigit))
    };
    let escape_at = |at: usize| -> Option<u16> {
        (raw.get(at) == Some(&b'\\') && raw.get(at + 1) == Some(&b'u'))
            .then(|| hex(at + 2))
            .flatten()
    };
    let mut out: Option<Vec<u8>> = None;
    let (mut i, mut in_string) = (0, false);
    while i < raw.len() {
        let b = raw[i];
        if !in_string {
            in_string = b == b'"';
            i += 1;
            continue;
        }
        match b {
            b'"' => {
                in_string = false;
                i += 1;
            }
            b'\\' if raw.get(i + 1) == Some(&b'u') => match hex(i + 2) {
                Some(u)
                    if (0xD800..0xDC00).contains(&u)
                        && escape_at(i + 6).is_some_and(|l| (0xDC00..0xE000).contains(&l)) =>
                {
                    i += 12;
                }
                Some(u) if (0xD800..0xE000).contains(&u) => {
                    out.get_or_insert_with(|| raw.to_vec())[i + 2..i + 6].copy_from_slice(b"fffd");
                    i += 6;
                }
                _ => i += 2,
            },
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    match out {
        Some(v) => std::borrow::Cow::Owned(v),
        None => std::borrow::Cow::Borrowed(raw),
    }
}

/// serde_json without its 128-level limit: [`nesting`] has bounded the
/// depth, and [`with_stack_for`] provided the stack.
fn read_json(text: &[u8]) -> Result<Value, serde_json::Error> {
    use serde::Deserialize;
    let mut de = serde_json::Deserializer::from_slice(text);
    de.disable_recursion_limit();
    let v = Value::deserialize(&mut de)?;
    de.end()?;
    Ok(v)
}

fn parse_text(
    raw: &[u8],
    too_deep: Option<usize>,
    validate: bool,
) -> Result<(Config, Report), Failure> {
    let (version, value) = sniff(raw, too_deep)?;
    let mut d = Decoder::new(version);
    let config = match Config::decode(value, &mut d) {
        Ok(c) => c,
        Err(e) => return Err(type_failure(raw, &e)),
    };
    let mut report = if validate {
        validate::validate(&config, version)
    } else {
        Report::default()
    };
    // Upstream's third pass: unused keys in its walk order.
    let mut unused = d.unused;
    unused.sort_by(|a, b| a.order.cmp(&b.order));
    for u in unused {
        if u.null_struct {
            // In 3.2 `clevis` and `custom` were pointers: null means unset.
            let last = u.path.0.last().and_then(Seg::key);
            if version == Version::V3_2 && matches!(last, Some("clevis" | "custom")) {
                continue;
            }
            let message = format!(
                "context tree does not match content tree at {}. Line and column reporting may be inconsistent. Unused keys may not be reported",
                u.path
            );
            report.warn(u.path, message);
        } else {
            let name = u
                .path
                .0
                .last()
                .and_then(Seg::key)
                .unwrap_or_default()
                .to_string();
            report.warn(u.path, format!("unused key {name}"));
        }
    }
    if !report.is_empty() {
        locate(raw, &mut report);
    }
    if report.is_fatal() {
        return Err(fail(ParseError::Invalid, report));
    }
    Ok((config, report))
}

/// Parses the JSON and reads `ignition.version`, as upstream's version stub.
/// `too_deep`: where the text first nests past Go's limit.
fn sniff(raw: &[u8], too_deep: Option<usize>) -> Result<(Version, Value), Failure> {
    let value = match too_deep {
        None => read_json(raw).map_err(|e| syntax_failure(raw, &e))?,
        // Go stops at the first error in the text: one before that point,
        // or the depth.
        Some(at) => {
            return Err(depth_failure(raw, at));
        }
    };
    let version = stub_version(&value).map_err(|e| type_failure(raw, &e))?;
    let Some(semver) = version::Semver::parse(&version) else {
        return Err(fail(ParseError::InvalidVersion, Report::default()));
    };
    match Version::from_semver(&semver) {
        Some(v) => Ok((v, value)),
        None => Err(fail(ParseError::UnknownVersion, Report::default())),
    }
}

/// Go's error for text nesting past [`MAX_DEPTH`] at `at`, or the first
/// syntax error before that point (Go stops at the first error).
fn depth_failure(raw: &[u8], at: usize) -> Failure {
    match read_json(&raw[..at]) {
        Err(e) if !e.is_eof() => syntax_failure(raw, &e),
        _ => fail(
            ParseError::Invalid,
            positioned(
                Severity::Error,
                go_position(raw, at + 1),
                format!(
                    "invalid character {} exceeded max depth",
                    quote_char(raw[at])
                ),
            ),
        ),
    }
}

/// Decodes only `ignition.version`, with the Go type names of upstream's
/// anonymous version stub in errors.
fn stub_version(v: &Value) -> Result<String, Box<TypeError>> {
    let err = |path: Path, found: &Value, field: &str, go_type: &str, in_struct: bool| {
        let d = Decoder::new(Version::V3_0);
        let mut e = d.mismatch(found, go_type.to_string());
        e.path = path;
        e.go_struct = in_struct.then_some("");
        e.go_field = field.to_string();
        e
    };
    let obj = match v {
        Value::Object(o) => o,
        Value::Null => return Ok(String::new()),
        other => return Err(err(Path::root(), other, "", "util.versionStub", false)),
    };
    let find = |o: &'_ serde_json::Map<String, Value>, k: &str| -> Option<(String, Value)> {
        o.get(k).map(|v| (k.to_string(), v.clone())).or_else(|| {
            o.iter()
                .rev()
                .find(|(n, _)| n.eq_ignore_ascii_case(k))
                .map(|(n, v)| (n.clone(), v.clone()))
        })
    };
    let Some((ign_key, ign)) = find(obj, "ignition") else {
        return Ok(String::new());
    };
    let ign_path = Path(vec![Seg::Name(ign_key)]);
    let ign_obj = match &ign {
        Value::Object(o) => o,
        Value::Null => return Ok(String::new()),
        other => {
            let mut e = err(
                ign_path,
                other,
                "Ignition",
                "struct { Version string }",
                true,
            );
            e.go_struct = Some("versionStub");
            return Err(e);
        }
    };
    let Some((ver_key, ver)) = find(ign_obj, "version") else {
        return Ok(String::new());
    };
    let mut ver_path = ign_path;
    ver_path.0.push(Seg::Name(ver_key));
    match ver {
        Value::String(s) => Ok(s),
        Value::Null => Ok(String::new()),
        other => Err(err(ver_path, &other, "Ignition.Version", "string", true)),
    }
}

fn type_failure(raw: &[u8], e: &TypeError) -> Failure {
    let shallow = crate::position::shallow(raw);
    let locator = Locator::new(&shallow);
    let position = locator.locate(&e.path, Anchor::DecodeError);
    let mut e = e.clone();
    if e.literal.is_some() {
        // Go quotes the number as written, not as re-printed.
        e.literal = literal_text(raw, &locator, &e.path).or(e.literal);
    }
    fail(
        ParseError::Invalid,
        positioned(Severity::Error, position, e.message()),
    )
}

fn literal_text(raw: &[u8], locator: &Locator<'_>, path: &Path) -> Option<String> {
    let start = locator.locate(path, Anchor::Value)?;
    let end = locator.locate(path, Anchor::DecodeError)?;
    if start.line != end.line {
        return None;
    }
    let line_start = raw
        .split(|&b| b == b'\n')
        .take(start.line - 1)
        .map(|l| l.len() + 1)
        .sum::<usize>();
    let bytes = raw.get(line_start + start.col - 1..line_start + end.col - 1)?;
    Some(String::from_utf8_lossy(bytes).into_owned())
}

/// A JSON syntax error in Go's words and at Go's offset (the byte after the
/// offending one).
fn syntax_failure(raw: &[u8], e: &serde_json::Error) -> Failure {
    if e.is_eof() {
        // Go's scanner feeds a space at the end: inside a literal that is
        // the offending character.
        let tail_start = raw
            .iter()
            .rposition(|b| !b.is_ascii_alphabetic())
            .map_or(0, |i| i + 1);
        let tail = &raw[tail_start..];
        if !tail.is_empty()
            && let Some(word) = ["true", "false", "null"]
                .into_iter()
                .find(|w| w.as_bytes().starts_with(tail))
        {
            let expecting = quote_char(word.as_bytes()[tail.len().min(word.len() - 1)]);
            return fail(
                ParseError::Invalid,
                positioned(
                    Severity::Error,
                    go_position(raw, raw.len()),
                    format!("invalid character ' ' in literal {word} (expecting {expecting})"),
                ),
            );
        }
        return fail(
            ParseError::Invalid,
            positioned(
                Severity::Error,
                go_position(raw, raw.len()),
                "unexpected end of JSON input".into(),
            ),
        );
    }
    // serde_json counts lines from 1 and columns in bytes from 1, at the
    // offending byte; column 0 is the newline that ended the previous line.
    let line_start: usize = raw
        .split(|&b| b == b'\n')
        .take(e.line().saturating_sub(1))
        .map(|l| l.len() + 1)
        .sum();
    let index = (line_start + e.column())
        .saturating_sub(1)
        .min(raw.len().saturating_sub(1));
    let mut index = index;
    let msg = e.to_string();
    if msg.starts_with("invalid escape") || msg.starts_with("invalid unicode") {
        // Go stops at the first non-hex digit of a `\u` escape.
        if let Some(bs) = raw[..=index].iter().rposition(|&b| b == b'\\')
            && raw.get(bs + 1) == Some(&b'u')
        {
            let bad = (bs + 2..bs + 6).find(|&i| !raw.get(i).is_some_and(u8::is_ascii_hexdigit));
            if let Some(bad) = bad {
                let c = raw.get(bad).copied().unwrap_or(b' ');
                let message = format!(
                    "invalid character {} in \\u hexadecimal character escape",
                    quote_char(c)
                );
                return fail(
                    ParseError::Invalid,
                    positioned(Severity::Error, go_position(raw, bad + 1), message),
                );
            }
        }
    }
    let c = raw.get(index).copied().unwrap_or(b' ');
    if msg.starts_with("invalid number") && index > 0 {
        index = index.min(raw.len() - 1);
    }
    let prev = index.checked_sub(1).and_then(|i| raw.get(i)).copied();
    let literal;
    let context = if msg.starts_with("expected ident") {
        // Inside `true`, `false` or `null`: Go names the literal and the
        // letter it expected.
        let start = raw[..index]
            .iter()
            .rposition(|b| !b.is_ascii_alphabetic())
            .map_or(0, |i| i + 1);
        let typed = &raw[start..index];
        let word = ["true", "false", "null"]
            .into_iter()
            .find(|w| typed.first() == w.as_bytes().first())
            .unwrap_or("true");
        let expecting = word.as_bytes().get(typed.len()).copied().unwrap_or(b'e');
        literal = format!("in literal {word} (expecting {})", quote_char(expecting));
        literal.as_str()
    } else if msg.starts_with("expected `:`") {
        "after object key"
    } else if msg.starts_with("expected `,` or `}`") {
        "after object key:value pair"
    } else if msg.starts_with("expected `,` or `]`") {
        "after array element"
    } else if msg.starts_with("key must be a string") {
        "looking for beginning of object key string"
    } else if msg.starts_with("trailing characters") {
        "after top-level value"
    } else if msg.starts_with("trailing comma") {
        if c == b'}' {
            "looking for beginning of object key string"
        } else {
            "looking for beginning of value"
        }
    } else if msg.starts_with("control character") || msg.starts_with("invalid unicode") {
        "in string literal"
    } else if msg.starts_with("invalid escape") {
        "in string escape code"
    } else if msg.starts_with("invalid number") || msg.starts_with("number out of range") {
        match prev {
            Some(b'.') => "after decimal point in numeric literal",
            Some(b'e' | b'E' | b'+' | b'-')
                if prev != Some(b'-') || index >= 2 && matches!(raw[index - 2], b'e' | b'E') =>
            {
                "in exponent of numeric literal"
            }
            _ => "in numeric literal",
        }
    } else {
        "looking for beginning of value"
    };
    let message = format!("invalid character {} {context}", quote_char(c));
    fail(
        ParseError::Invalid,
        positioned(Severity::Error, go_position(raw, index + 1), message),
    )
}

/// Go's `quoteChar` from encoding/json.
fn quote_char(c: u8) -> String {
    match c {
        b'\'' => r"'\''".into(),
        b'"' => "'\"'".into(),
        c if c.is_ascii_graphic() || c == b' ' => format!("'{}'", c as char),
        b'\n' => r"'\n'".into(),
        b'\t' => r"'\t'".into(),
        b'\r' => r"'\r'".into(),
        c if c < 0x80 => format!("'\\x{c:02x}'"),
        _ => r"'\ufffd'".into(),
    }
}

/// Fills in the positions of a report's entries.
fn locate(raw: &[u8], report: &mut Report) {
    let shallow = crate::position::shallow(raw);
    let locator = Locator::new(&shallow);
    for e in &mut report.entries {
        if e.position.is_some() {
            continue;
        }
        if let Some(path) = &e.path {
            let anchor = match path.0.last() {
                Some(Seg::Name(_)) => Anchor::Key,
                _ => Anchor::Value,
            };
            e.position = locator.locate(path, anchor);
        }
    }
}
