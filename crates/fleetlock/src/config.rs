//! airlock's TOML configuration, read unchanged, with oxcore's additions
//! (`[embedded] path`, `lease_seconds`).
//!
//! Unlike airlock, unknown keys and bad values are errors that name the
//! key and the file (airlock ignores unknown keys and wraps negative
//! numbers); what airlock accepts with a meaning is read with that
//! meaning, defaults included.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Where the embedded store lives when the config names none.
pub const DEFAULT_EMBEDDED_PATH: &str = "/var/lib/oxcore/fleetlock.redb";

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("{}: {error}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// Not TOML, an unknown key or a value of the wrong type (the parser's
    /// message names the line, the column and the key).
    #[error("{}: {message}", .path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A value the server cannot use.
    #[error("{}: {key}: {message}", .path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The key, as `table.key`.
        key: String,
        /// Why.
        message: String,
    },
}

/// One lock group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Reboot slots: how many nodes may hold one at once.
    pub slots: u64,
    /// A holder that neither renews (a repeated pre-reboot) nor releases
    /// within this many seconds loses its slot; `None`: never (airlock).
    pub lease_seconds: Option<u64>,
}

/// Where the semaphores live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendConfig {
    /// An etcd3 cluster, with airlock's key layout.
    Etcd {
        /// Endpoints (`http://host:port`, `https://host:port`).
        endpoints: Vec<String>,
        /// The bound of one request's whole exchange with etcd.
        transaction_timeout: Duration,
        /// A client certificate and its key (PEM files), for `https://`.
        client_cert: Option<(PathBuf, PathBuf)>,
        /// A CA (PEM) trusted besides the system's roots (oxcore's key).
        ca_cert: Option<PathBuf>,
    },
    /// A redb file on this machine.
    Embedded {
        /// The file.
        path: PathBuf,
    },
}

/// A whole configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The FleetLock service's listen address and port.
    pub service: (String, u16),
    /// The status listener (`/metrics`, `/v1/status`), when enabled.
    pub status: Option<(String, u16)>,
    /// Where the semaphores live.
    pub backend: BackendConfig,
    /// The groups, by name (the default group included).
    pub groups: BTreeMap<String, Group>,
    /// The default group's name.
    pub default_group: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    service: Service,
    #[serde(default)]
    status: Status,
    #[serde(default)]
    etcd3: Etcd3,
    lock: Option<Lock>,
    #[serde(default)]
    embedded: Embedded,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Service {
    address: Option<String>,
    port: Option<i64>,
    tls: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Status {
    enabled: Option<bool>,
    address: Option<String>,
    port: Option<i64>,
    tls: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Etcd3 {
    #[serde(default)]
    endpoints: Vec<String>,
    transaction_timeout_ms: Option<i64>,
    client_cert_pub_path: Option<String>,
    client_cert_key_path: Option<String>,
    ca_cert_path: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Lock {
    default_group_name: Option<String>,
    default_slots: Option<i64>,
    default_lease_seconds: Option<i64>,
    #[serde(default)]
    groups: Vec<LockGroup>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LockGroup {
    name: Option<String>,
    slots: Option<i64>,
    lease_seconds: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Embedded {
    path: Option<String>,
}

impl Default for Config {
    /// airlock's defaults with the embedded store: 0.0.0.0:9090, no status
    /// listener, one group `default` with one slot.
    fn default() -> Config {
        Config::parse("", Path::new("(defaults)")).expect("the defaults are valid")
    }
}

impl Config {
    /// Reads a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        Config::parse(&text, path)
    }

    /// Parses a configuration's text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let f: File = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            key: key.to_string(),
            message,
        };
        let port = |key: &str, v: Option<i64>, default: u16| match v {
            None => Ok(default),
            Some(p) => u16::try_from(p)
                .map_err(|_| invalid(key, format!("{p} is not a port (0 to 65535)"))),
        };
        let count = |key: &str, v: Option<i64>| match v {
            None => Ok(None),
            Some(n) if n < 0 => Err(invalid(key, format!("{n} is negative"))),
            Some(n) => Ok(Some(n as u64)),
        };
        // airlock refuses to start with service.tls true (its default):
        // TLS is not implemented there either. Absent reads as false here.
        if f.service.tls == Some(true) {
            return Err(invalid(
                "service.tls",
                "TLS mode not yet implemented (set tls = false and terminate TLS in front)".into(),
            ));
        }
        if f.status.tls == Some(true) {
            return Err(invalid("status.tls", "TLS mode not yet implemented".into()));
        }
        let service = (
            f.service.address.unwrap_or_else(|| "0.0.0.0".into()),
            port("service.port", f.service.port, 9090)?,
        );
        let status = if f.status.enabled == Some(true) {
            Some((
                f.status.address.unwrap_or_default(),
                port("status.port", f.status.port, 0)?,
            ))
        } else {
            None
        };
        let backend = if f.etcd3.endpoints.is_empty() {
            if f.etcd3.client_cert_pub_path.is_some()
                || f.etcd3.client_cert_key_path.is_some()
                || f.etcd3.ca_cert_path.is_some()
            {
                return Err(invalid(
                    "etcd3.endpoints",
                    "TLS files are set but no endpoint".into(),
                ));
            }
            BackendConfig::Embedded {
                path: PathBuf::from(
                    f.embedded
                        .path
                        .unwrap_or_else(|| DEFAULT_EMBEDDED_PATH.into()),
                ),
            }
        } else {
            if f.embedded.path.is_some() {
                return Err(invalid(
                    "embedded.path",
                    "an embedded store and etcd3 endpoints: choose one".into(),
                ));
            }
            for (i, e) in f.etcd3.endpoints.iter().enumerate() {
                if e.trim().is_empty() {
                    return Err(invalid(&format!("etcd3.endpoints[{i}]"), "empty".into()));
                }
            }
            let client_cert = match (f.etcd3.client_cert_pub_path, f.etcd3.client_cert_key_path) {
                (None, None) => None,
                (Some(c), Some(k)) if !c.is_empty() && !k.is_empty() => {
                    Some((PathBuf::from(c), PathBuf::from(k)))
                }
                (Some(c), Some(k)) if c.is_empty() && k.is_empty() => None,
                _ => {
                    return Err(invalid(
                        "etcd3.client_cert_key_path",
                        "client_cert_pub_path and client_cert_key_path go together".into(),
                    ));
                }
            };
            let ms = count(
                "etcd3.transaction_timeout_ms",
                f.etcd3.transaction_timeout_ms,
            )?
            .unwrap_or(3000);
            if ms == 0 {
                return Err(invalid(
                    "etcd3.transaction_timeout_ms",
                    "0 leaves no time for etcd".into(),
                ));
            }
            BackendConfig::Etcd {
                endpoints: f.etcd3.endpoints,
                transaction_timeout: Duration::from_millis(ms),
                client_cert,
                ca_cert: f
                    .etcd3
                    .ca_cert_path
                    .filter(|p| !p.is_empty())
                    .map(PathBuf::from),
            }
        };
        let mut groups = BTreeMap::new();
        let lock = f.lock.unwrap_or_default();
        let default_group = lock.default_group_name.unwrap_or_else(|| "default".into());
        if default_group.is_empty() {
            return Err(invalid("lock.default_group_name", "empty".into()));
        }
        let default_slots = count("lock.default_slots", lock.default_slots)?.unwrap_or(1);
        let default_lease = count("lock.default_lease_seconds", lock.default_lease_seconds)?;
        if default_lease == Some(0) {
            return Err(invalid(
                "lock.default_lease_seconds",
                "0 would take every slot back at once".into(),
            ));
        }
        for (i, g) in lock.groups.iter().enumerate() {
            let at = |k: &str| format!("lock.groups[{i}].{k}");
            let name = g.name.clone().unwrap_or_default();
            if name.is_empty() {
                return Err(invalid(&at("name"), "a group needs a name".into()));
            }
            let lease = count(&at("lease_seconds"), g.lease_seconds)?.or(default_lease);
            if lease == Some(0) {
                return Err(invalid(
                    &at("lease_seconds"),
                    "0 would take every slot back at once".into(),
                ));
            }
            let group = Group {
                slots: count(&at("slots"), g.slots)?.unwrap_or(default_slots),
                lease_seconds: lease,
            };
            if groups.insert(name.clone(), group).is_some() {
                return Err(invalid(
                    &at("name"),
                    format!("group {name:?} is configured twice"),
                ));
            }
        }
        // As airlock: the default group is set last, with default_slots,
        // over a [[lock.groups]] entry of the same name (whose lease stays).
        let lease = groups
            .get(&default_group)
            .and_then(|g| g.lease_seconds)
            .or(default_lease);
        groups.insert(
            default_group.clone(),
            Group {
                slots: default_slots,
                lease_seconds: lease,
            },
        );
        Ok(Config {
            service,
            status,
            backend,
            groups,
            default_group,
        })
    }

    /// `host:port` of the service listener.
    pub fn service_addr(&self) -> String {
        listen_addr(&self.service)
    }

    /// `host:port` of the status listener, when enabled.
    pub fn status_addr(&self) -> Option<String> {
        self.status.as_ref().map(listen_addr)
    }
}

/// `host:port` to bind; an empty host is every interface, as Go's `:port`.
fn listen_addr((host, port): &(String, u16)) -> String {
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("c.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn airlocks_example_reads_as_airlock_does() {
        let c = parse(
            r#"
[service]
address = "0.0.0.0"
port = 3333
tls = false

[status]
enabled = true
address = "127.0.0.1"
port = 2222
tls = false

[etcd3]
endpoints = [ "http://127.0.0.1:2379" ]
transaction_timeout_ms = 1500

[lock]
default_group_name = "default"
default_slots = 2

[[lock.groups]]
name = "controllers"
slots = 1

[[lock.groups]]
name = "workers"
"#,
        )
        .unwrap();
        assert_eq!(c.service_addr(), "0.0.0.0:3333");
        assert_eq!(c.status_addr().as_deref(), Some("127.0.0.1:2222"));
        assert_eq!(
            c.backend,
            BackendConfig::Etcd {
                endpoints: vec!["http://127.0.0.1:2379".into()],
                transaction_timeout: Duration::from_millis(1500),
                client_cert: None,
                ca_cert: None,
            }
        );
        let slots: Vec<(&str, u64)> = c
            .groups
            .iter()
            .map(|(n, g)| (n.as_str(), g.slots))
            .collect();
        assert_eq!(slots, [("controllers", 1), ("default", 2), ("workers", 2)]);
    }

    #[test]
    fn defaults_are_airlocks_with_the_embedded_store() {
        let c = parse("").unwrap();
        assert_eq!(c.service_addr(), "0.0.0.0:9090");
        assert_eq!(c.status, None);
        assert_eq!(
            c.backend,
            BackendConfig::Embedded {
                path: DEFAULT_EMBEDDED_PATH.into()
            }
        );
        assert_eq!(c.groups.len(), 1);
        assert_eq!(c.groups["default"].slots, 1);
        assert_eq!(c, Config::default());
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key_and_file() {
        let e = parse("[lock]\ndefault_slot = 2\n").unwrap_err();
        assert!(
            e.starts_with("c.toml: ") && e.contains("default_slot"),
            "{e}"
        );
        assert!(e.contains("line 2"), "{e}");
        let e = parse("[service]\nport = 70000\n").unwrap_err();
        assert_eq!(e, "c.toml: service.port: 70000 is not a port (0 to 65535)");
        let e = parse("[lock]\ndefault_slots = -1\n").unwrap_err();
        assert_eq!(e, "c.toml: lock.default_slots: -1 is negative");
        let e = parse("[service]\nport = \"x\"\n").unwrap_err();
        assert!(e.contains("port") && e.contains("line 2"), "{e}");
        let e = parse("[service]\ntls = true\n").unwrap_err();
        assert!(
            e.starts_with("c.toml: service.tls: TLS mode not yet implemented"),
            "{e}"
        );
        let e = parse("[[lock.groups]]\nslots = 1\n").unwrap_err();
        assert_eq!(e, "c.toml: lock.groups[0].name: a group needs a name");
        let e =
            parse("[[lock.groups]]\nname = \"a\"\n[[lock.groups]]\nname = \"a\"\n").unwrap_err();
        assert_eq!(
            e,
            "c.toml: lock.groups[1].name: group \"a\" is configured twice"
        );
        let e = parse("[etcd3]\nendpoints = [\"http://e:2379\"]\nclient_cert_pub_path = \"c\"\n")
            .unwrap_err();
        assert!(e.contains("go together"), "{e}");
        let e = parse("[etcd3]\nendpoints = [\"http://e:2379\"]\n[embedded]\npath = \"/x\"\n")
            .unwrap_err();
        assert!(e.contains("choose one"), "{e}");
    }

    #[test]
    fn leases_default_per_lock_and_per_group() {
        let c = parse(
            "[lock]\ndefault_lease_seconds = 600\n[[lock.groups]]\nname = \"w\"\nlease_seconds = 60\n[[lock.groups]]\nname = \"x\"\n",
        )
        .unwrap();
        assert_eq!(c.groups["default"].lease_seconds, Some(600));
        assert_eq!(c.groups["w"].lease_seconds, Some(60));
        assert_eq!(c.groups["x"].lease_seconds, Some(600));
        assert_eq!(parse("").unwrap().groups["default"].lease_seconds, None);
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(listen_addr(&(String::new(), 80)), "0.0.0.0:80");
        assert_eq!(listen_addr(&("::1".into(), 80)), "[::1]:80");
        assert_eq!(listen_addr(&("[::1]".into(), 80)), "[::1]:80");
    }
}
