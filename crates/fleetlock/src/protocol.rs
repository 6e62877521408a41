//! The FleetLock protocol v1 as airlock serves it: the request's header
//! and body, and the errors as `{"kind":…,"value":…}` with airlock's kinds
//! and HTTP statuses.

use serde_json::Value;

/// The largest request body read; Zincati sends about 80 bytes (airlock
/// reads any size).
pub const MAX_BODY: usize = 4096;

/// A protocol error: airlock's kind, its HTTP status and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError {
    /// HTTP status.
    pub status: u16,
    /// airlock's kind (`invalid_client_identity`, `unknown_group`,
    /// `failed_sem_init`, `failed_lock`).
    pub kind: &'static str,
    /// The message.
    pub value: String,
}

impl ProtocolError {
    /// A request whose header or body is not FleetLock's (400).
    pub fn identity(why: &str) -> ProtocolError {
        ProtocolError {
            status: 400,
            kind: "invalid_client_identity",
            value: format!("failed to validate client identity: {why}"),
        }
    }

    /// A group the configuration does not name (400).
    pub fn unknown_group(group: &str) -> ProtocolError {
        ProtocolError {
            status: 400,
            kind: "unknown_group",
            value: format!("unknown group {}", util::go_quote(group)),
        }
    }

    /// The backend cannot be reached (500).
    pub fn backend(why: &str) -> ProtocolError {
        ProtocolError {
            status: 500,
            kind: "failed_sem_init",
            value: format!("failed to initialize semaphore manager: {why}"),
        }
    }

    /// The lock or release failed: no slot free, a lost race, a stored
    /// value that cannot be read (500, as airlock).
    pub fn lock(why: &str) -> ProtocolError {
        ProtocolError {
            status: 500,
            kind: "failed_lock",
            value: why.to_string(),
        }
    }

    /// The body airlock writes: compact JSON, `<`, `>` and `&` escaped as
    /// Go's encoder does, and a newline.
    pub fn body(&self) -> String {
        let json = serde_json::json!({"kind": self.kind, "value": self.value}).to_string();
        let mut out = util::go_html_escape(&json);
        out.push('\n');
        out
    }
}

/// Who asks: the group and the id from `{"client_params":{…}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientParams {
    /// The lock group.
    pub group: String,
    /// The node's id.
    pub id: String,
}

/// Checks the `fleet-lock-protocol` header's value (exactly `true`, as
/// airlock) and decodes the body as Go's decoder reads airlock's struct:
/// the first JSON value only, unknown fields ignored, keys matched exactly
/// or else without regard to case, the last of duplicates winning, `null`
/// as absent.
pub fn client_params(header: Option<&[u8]>, body: &[u8]) -> Result<ClientParams, ProtocolError> {
    if header.map(|h| h.trim_ascii()) != Some(b"true") {
        return Err(ProtocolError::identity(
            "wrong 'fleet-lock-protocol' header",
        ));
    }
    let mut values = serde_json::Deserializer::from_slice(body).into_iter::<Value>();
    let v = match values.next() {
        None => return Err(ProtocolError::identity("EOF")),
        Some(Err(e)) => return Err(ProtocolError::identity(&go_syntax_error(&e, body))),
        Some(Ok(v)) => v,
    };
    let mismatch = |found: &Value, field: &str, ty: &str| {
        let found = match found {
            Value::String(_) => "string",
            Value::Number(_) => "number",
            Value::Bool(_) => "bool",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
            Value::Null => "null",
        };
        ProtocolError::identity(&if field.is_empty() {
            format!("json: cannot unmarshal {found} into Go value of type {ty}")
        } else {
            format!("json: cannot unmarshal {found} into Go struct field {field} of type {ty}")
        })
    };
    let top = match &v {
        Value::Null => return Err(ProtocolError::identity("empty client group")),
        Value::Object(m) => m,
        other => return Err(mismatch(other, "", "server.HTTPParams")),
    };
    let params = match field(top, "client_params") {
        None | Some(Value::Null) => return Err(ProtocolError::identity("empty client group")),
        Some(Value::Object(m)) => m,
        Some(other) => {
            return Err(mismatch(other, "HTTPParams.client_params", "server.Params"));
        }
    };
    let string = |name: &str| match field(params, name) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(mismatch(
            other,
            &format!("HTTPParams.client_params.{name}"),
            "string",
        )),
    };
    let (group, id) = (string("group")?, string("id")?);
    if group.is_empty() {
        return Err(ProtocolError::identity("empty client group"));
    }
    if id.is_empty() {
        return Err(ProtocolError::identity("empty client ID"));
    }
    Ok(ClientParams { group, id })
}

/// A field as Go's decoder finds it: an exact match, else one equal but
/// for case; the last one of several.
fn field<'a>(m: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a Value> {
    m.get(name).or_else(|| {
        m.iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

/// Go's words for the common syntax errors of a streamed decode.
fn go_syntax_error(e: &serde_json::Error, body: &[u8]) -> String {
    if e.is_eof() {
        return "unexpected EOF".into();
    }
    // serde_json counts lines from 1 and columns from 1 at the byte.
    let mut line = 1;
    let mut at = None;
    for (i, &b) in body.iter().enumerate() {
        if line == e.line() {
            let col = i - body[..i]
                .iter()
                .rposition(|&c| c == b'\n')
                .map_or(0, |p| p + 1);
            if col + 1 == e.column() {
                at = Some(b);
                break;
            }
        }
        if b == b'\n' {
            line += 1;
        }
    }
    match at {
        Some(b) if b.is_ascii_graphic() => format!(
            "invalid character '{}' looking for beginning of value",
            b as char
        ),
        Some(b) => format!("invalid character '\\x{b:02x}' looking for beginning of value"),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(body: &str) -> Result<ClientParams, String> {
        client_params(Some(b"true"), body.as_bytes()).map_err(|e| e.value)
    }

    #[test]
    fn reads_what_zincati_sends() {
        let body = "{\n  \"client_params\": {\n    \"id\": \"de35106b6ec24688b63afddaa156679b\",\n    \"group\": \"default\"\n  }\n}";
        assert_eq!(
            params(body).unwrap(),
            ClientParams {
                group: "default".into(),
                id: "de35106b6ec24688b63afddaa156679b".into()
            }
        );
    }

    #[test]
    fn reads_as_gos_decoder() {
        let p =
            params(r#"{"CLIENT_PARAMS":{"Group":"g","ID":"i","x":[1]},"y":2} trailing"#).unwrap();
        assert_eq!((p.group.as_str(), p.id.as_str()), ("g", "i"));
        assert_eq!(
            params("").unwrap_err(),
            "failed to validate client identity: EOF"
        );
        assert_eq!(
            params("{\"client_params\":").unwrap_err(),
            "failed to validate client identity: unexpected EOF"
        );
        assert_eq!(
            params("x").unwrap_err(),
            "failed to validate client identity: invalid character 'x' looking for beginning of value"
        );
        assert_eq!(
            params("{}").unwrap_err(),
            "failed to validate client identity: empty client group"
        );
        assert_eq!(
            params(r#"{"client_params":{"group":"g"}}"#).unwrap_err(),
            "failed to validate client identity: empty client ID"
        );
        assert_eq!(
            params(r#"{"client_params":{"group":"g","id":7}}"#).unwrap_err(),
            "failed to validate client identity: json: cannot unmarshal number into Go struct field HTTPParams.client_params.id of type string"
        );
        assert_eq!(
            params("[]").unwrap_err(),
            "failed to validate client identity: json: cannot unmarshal array into Go value of type server.HTTPParams"
        );
    }

    #[test]
    fn the_header_is_exactly_true() {
        let body = br#"{"client_params":{"group":"g","id":"i"}}"#;
        assert!(client_params(Some(b"true"), body).is_ok());
        assert!(client_params(Some(b" true "), body).is_ok());
        for bad in [None, Some(&b"True"[..]), Some(b"1")] {
            let e = client_params(bad, body).unwrap_err();
            assert_eq!((e.status, e.kind), (400, "invalid_client_identity"));
            assert_eq!(
                e.value,
                "failed to validate client identity: wrong 'fleet-lock-protocol' header"
            );
        }
    }

    #[test]
    fn errors_as_airlock_writes_them() {
        let e = ProtocolError::unknown_group("a<b>");
        assert_eq!(e.status, 400);
        assert_eq!(
            e.body(),
            "{\"kind\":\"unknown_group\",\"value\":\"unknown group \\\"a\\u003cb\\u003e\\\"\"}\n"
        );
        assert_eq!(
            ProtocolError::lock("all 1 semaphore slots currently locked").body(),
            "{\"kind\":\"failed_lock\",\"value\":\"all 1 semaphore slots currently locked\"}\n"
        );
    }
}
