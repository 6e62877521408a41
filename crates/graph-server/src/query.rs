//! The query string of `GET /v1/graph`, read as upstream's policy engine
//! reads it.
//!
//! Upstream deserializes the query (`serde_urlencoded`, split on `&`, the
//! first `=` separating key and value, `+` and `%XX` decoded) into a struct
//! of five optional fields: `basearch`, `stream`, `rollout_wariness`,
//! `node_uuid` (strings) and `oci` (a bool, so exactly `true` or `false`).
//! One of those given twice, or an `oci` that is not a bool, answers 400;
//! any other parameter is ignored, repeated or not. An empty `basearch` or
//! `stream` is as missing (400).
//!
//! Here the query is read in one pass, keeping only the fields the server
//! uses (the five, plus `os_version` and `platform` for the statistics,
//! whose first value counts), so its cost is linear in its length; the
//! server bounds that length (the request head) and the number of
//! parameters ([`MAX_PARAMETERS`]).

use util::form_decode;

/// Most parameters a query may have. Zincati sends at most nine.
pub const MAX_PARAMETERS: usize = 64;

/// What a graph request asks, percent-decoded.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct GraphQuery {
    /// `basearch`.
    pub basearch: Option<String>,
    /// `stream`.
    pub stream: Option<String>,
    /// `oci` (`true` or `false`).
    pub oci: Option<bool>,
    /// `rollout_wariness`, as sent.
    pub rollout_wariness: Option<String>,
    /// `node_uuid`.
    pub node_uuid: Option<String>,
    /// `os_version` (the first one).
    pub os_version: Option<String>,
    /// `platform` (the first one).
    pub platform: Option<String>,
}

/// Why a query is refused (all answer 400).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    /// One of upstream's fields given more than once.
    #[error("parameter {0:?} is given more than once")]
    Duplicate(String),
    /// More than [`MAX_PARAMETERS`] parameters.
    #[error("more than {MAX_PARAMETERS} parameters")]
    TooMany,
    /// A parameter whose value must be `true` or `false`.
    #[error("parameter {name:?} must be true or false, not {value:?}")]
    NotBool {
        /// The parameter.
        name: &'static str,
        /// What was sent.
        value: String,
    },
    /// `basearch` or `stream` absent or empty.
    #[error("parameter {0:?} is missing or empty")]
    Missing(&'static str),
}

impl QueryError {
    /// The machine-readable kind of the error answer.
    pub fn kind(&self) -> &'static str {
        match self {
            QueryError::Duplicate(_) => "duplicate_parameter",
            QueryError::TooMany => "too_many_parameters",
            QueryError::NotBool { .. } => "invalid_parameter",
            QueryError::Missing(_) => "missing_parameter",
        }
    }

    /// The value of the error answer: the parameter concerned.
    pub fn value(&self) -> String {
        match self {
            QueryError::Duplicate(k) => k.clone(),
            QueryError::TooMany => MAX_PARAMETERS.to_string(),
            QueryError::NotBool { name, .. } => (*name).to_string(),
            QueryError::Missing(k) => (*k).to_string(),
        }
    }
}

/// Calls `f(key, raw value)` for each parameter, keys decoded, in order;
/// at most [`MAX_PARAMETERS`].
fn each(
    query: &str,
    mut f: impl FnMut(&str, &str) -> Result<(), QueryError>,
) -> Result<(), QueryError> {
    for (n, pair) in query.split('&').filter(|p| !p.is_empty()).enumerate() {
        if n == MAX_PARAMETERS {
            return Err(QueryError::TooMany);
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        // Most keys need no decoding; spare the copy.
        if k.bytes().any(|c| c == b'%' || c == b'+') {
            f(&form_decode(k), v)?;
        } else {
            f(k, v)?;
        }
    }
    Ok(())
}

impl GraphQuery {
    /// Reads a query string (without the `?`).
    pub fn parse(query: &str) -> Result<GraphQuery, QueryError> {
        let mut q = GraphQuery::default();
        each(query, |k, v| {
            let once = |slot: &mut Option<String>| {
                if slot.is_some() {
                    return Err(QueryError::Duplicate(k.to_string()));
                }
                *slot = Some(form_decode(v));
                Ok(())
            };
            match k {
                "basearch" => once(&mut q.basearch),
                "stream" => once(&mut q.stream),
                "rollout_wariness" => once(&mut q.rollout_wariness),
                "node_uuid" => once(&mut q.node_uuid),
                "oci" => {
                    if q.oci.is_some() {
                        return Err(QueryError::Duplicate(k.to_string()));
                    }
                    q.oci = Some(match form_decode(v).as_str() {
                        "true" => true,
                        "false" => false,
                        other => {
                            return Err(QueryError::NotBool {
                                name: "oci",
                                value: other.to_string(),
                            });
                        }
                    });
                    Ok(())
                }
                "os_version" if q.os_version.is_none() => {
                    q.os_version = Some(form_decode(v));
                    Ok(())
                }
                "platform" if q.platform.is_none() => {
                    q.platform = Some(form_decode(v));
                    Ok(())
                }
                _ => Ok(()),
            }
        })?;
        Ok(q)
    }

    /// `basearch` and `stream`, both present and not empty.
    pub fn scope(&self) -> Result<(&str, &str), QueryError> {
        let arch = self
            .basearch
            .as_deref()
            .filter(|a| !a.is_empty())
            .ok_or(QueryError::Missing("basearch"))?;
        let stream = self
            .stream
            .as_deref()
            .filter(|s| !s.is_empty())
            .ok_or(QueryError::Missing("stream"))?;
        Ok((arch, stream))
    }
}

/// The first value of parameter `name`, decoded (for the dashboard's
/// `?basearch=`); at most [`MAX_PARAMETERS`] are looked at.
pub(crate) fn first(query: &str, name: &str) -> Option<String> {
    let mut found = None;
    let _ = each(query, |k, v| {
        if found.is_none() && k == name {
            found = Some(form_decode(v));
        }
        Ok(())
    });
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_zincati_sends() {
        let q = GraphQuery::parse(
            "basearch=x86_64&stream=stable&os_version=41.1&os_checksum=abc&group=default&node_uuid=0123&platform=qemu&rollout_wariness=0.500000&oci=true",
        )
        .unwrap();
        assert_eq!(q.scope().unwrap(), ("x86_64", "stable"));
        assert_eq!(q.oci, Some(true));
        assert_eq!(q.rollout_wariness.as_deref(), Some("0.500000"));
        assert_eq!(q.os_version.as_deref(), Some("41.1"));
        assert_eq!(q.platform.as_deref(), Some("qemu"));
    }

    #[test]
    fn upstream_answers() {
        // oci is a bool: exactly true or false.
        for bad in ["1", "TRUE", "yes", "", "True", "%20true"] {
            assert_eq!(
                GraphQuery::parse(&format!("basearch=x86_64&stream=stable&oci={bad}"))
                    .unwrap_err()
                    .kind(),
                "invalid_parameter",
                "{bad:?}"
            );
        }
        assert_eq!(GraphQuery::parse("oci=false").unwrap().oci, Some(false));
        // Decoded before it is read, as upstream.
        assert_eq!(GraphQuery::parse("oci=tru%65").unwrap().oci, Some(true));
        // Empty is missing.
        for (q, missing) in [
            ("basearch=&stream=stable", "basearch"),
            ("basearch=x86_64&stream=", "stream"),
            ("basearch=x86_64&stream", "stream"),
            ("stream=stable", "basearch"),
            ("", "basearch"),
        ] {
            assert_eq!(
                GraphQuery::parse(q).unwrap().scope(),
                Err(QueryError::Missing(missing)),
                "{q}"
            );
        }
        // Upstream's fields may not repeat (keys decoded first); others may.
        for dup in ["stream", "basearch", "node_uuid", "rollout_wariness", "oci"] {
            let q = format!("{dup}=true&{dup}=false");
            assert_eq!(
                GraphQuery::parse(&q),
                Err(QueryError::Duplicate(dup.into())),
                "{q}"
            );
        }
        assert_eq!(
            GraphQuery::parse("stream=a&str%65am=b"),
            Err(QueryError::Duplicate("stream".into()))
        );
        let q = GraphQuery::parse("os_version=1&os_version=2&group=a&group=b&x&x").unwrap();
        assert_eq!(q.os_version.as_deref(), Some("1"));
    }

    #[test]
    fn bounded_and_linear() {
        let many = "a=1&".repeat(MAX_PARAMETERS);
        assert!(GraphQuery::parse(&many).is_ok());
        let too_many = "a=1&".repeat(MAX_PARAMETERS + 1);
        assert_eq!(GraphQuery::parse(&too_many), Err(QueryError::TooMany));
        // Empty pairs do not count, as upstream skips them.
        assert!(GraphQuery::parse(&"&".repeat(10_000)).is_ok());
        // 12,000 parameters stop at the 65th.
        let attack: String = (0..12_000).map(|i| format!("p{i}=v&")).collect();
        assert_eq!(GraphQuery::parse(&attack), Err(QueryError::TooMany));
    }

    #[test]
    fn decoding() {
        assert_eq!(form_decode("a+b%20c%2"), "a b c%2");
        assert_eq!(form_decode("%e2%82%ac%zz%"), "€%zz%");
        assert_eq!(form_decode("%ff"), "\u{fffd}");
        assert_eq!(
            first("a=1&basearch=aarch64&basearch=x", "basearch").as_deref(),
            Some("aarch64")
        );
    }
}
