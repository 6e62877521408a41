//! The server's settings: a TOML file (every key optional but
//! `metadata`, unknown keys refused), then command-line flags over it, then
//! [`Settings::validate`] before the server starts.

use std::path::PathBuf;

use serde::Deserialize;

/// Why settings are refused.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The text is not TOML, or not these settings (unknown key, wrong
    /// type, `metadata` missing).
    #[error(transparent)]
    Toml(Box<toml::de::Error>),
    /// A limit or timeout that must be at least 1 is 0.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
}

/// Server settings (TOML file, then flags).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Metadata base: a directory or an http(s) URL.
    pub metadata: String,
    /// Addresses to listen on.
    #[serde(default = "default_listen")]
    pub listen: Vec<String>,
    /// Streams to serve.
    #[serde(default = "default_streams")]
    pub streams: Vec<String>,
    /// Architectures to serve.
    #[serde(default = "default_arches")]
    pub architectures: Vec<String>,
    /// Seconds between metadata refreshes.
    #[serde(default = "default_refresh")]
    pub refresh_secs: u64,
    /// Where fleet statistics are kept (`redb`); none keeps them in memory.
    #[serde(default)]
    pub stats_db: Option<PathBuf>,
    /// Salt of node hashes in the statistics; servers whose statistics
    /// are merged share one. None: made once and kept in the store.
    #[serde(default)]
    pub stats_salt: Option<String>,
    /// Platforms counted by name in the statistics (others as `other`).
    #[serde(default = "default_platforms")]
    pub platforms: Vec<String>,
    /// `Cache-Control: max-age` of graph answers.
    #[serde(default = "default_max_age")]
    pub cache_max_age_secs: u64,
    /// Most client connections open at once; more wait in the kernel's
    /// backlog. Keep it below the descriptor limit (`ulimit -n`).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Seconds a client has to send a request's head, the first one or
    /// the next one on a kept-alive connection.
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout_secs: u64,
    /// Seconds a connection may go without reading or writing a byte
    /// (a client that stops reading its answer).
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_secs: u64,
}

fn default_listen() -> Vec<String> {
    vec!["127.0.0.1:8080".into()]
}
fn default_streams() -> Vec<String> {
    vec!["stable".into(), "testing".into(), "next".into()]
}
fn default_arches() -> Vec<String> {
    vec![
        "x86_64".into(),
        "aarch64".into(),
        "ppc64le".into(),
        "s390x".into(),
    ]
}
fn default_refresh() -> u64 {
    300
}
fn default_max_age() -> u64 {
    60
}
fn default_max_connections() -> usize {
    4096
}
fn default_header_read_timeout() -> u64 {
    10
}
fn default_idle_timeout() -> u64 {
    60
}

/// The `ignition.platform.id` values of Fedora CoreOS.
pub const PLATFORMS: &[&str] = &[
    "akamai",
    "aliyun",
    "applehv",
    "aws",
    "azure",
    "azurestack",
    "cloudstack",
    "digitalocean",
    "exoscale",
    "gcp",
    "hetzner",
    "hyperv",
    "ibmcloud",
    "kubevirt",
    "metal",
    "nutanix",
    "openstack",
    "oraclecloud",
    "packet",
    "powervs",
    "proxmoxve",
    "qemu",
    "scaleway",
    "upcloud",
    "virtualbox",
    "vmware",
    "vultr",
    "zvm",
];

pub(crate) fn default_platforms() -> Vec<String> {
    PLATFORMS.iter().map(|p| p.to_string()).collect()
}

impl Settings {
    /// Parses a TOML settings file's text.
    pub fn from_toml(text: &str) -> Result<Settings, SettingsError> {
        toml::from_str(text).map_err(|e| SettingsError::Toml(Box::new(e)))
    }

    /// Checks values that would make the server useless.
    pub fn validate(&self) -> Result<(), SettingsError> {
        for (name, v) in [
            ("max_connections", self.max_connections as u64),
            ("header_read_timeout_secs", self.header_read_timeout_secs),
            ("idle_timeout_secs", self.idle_timeout_secs),
        ] {
            if v == 0 {
                return Err(SettingsError::Zero(name));
            }
        }
        Ok(())
    }
}
