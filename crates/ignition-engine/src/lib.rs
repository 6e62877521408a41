//! The Ignition engine: applies a config to a target root the way upstream
//! Ignition's files stage does.
//!
//! This is the part of first-boot provisioning that writes into the root:
//! resources are fetched and verified, then files, directories and links
//! are written (never outside the root), users and groups are created with
//! the shadow tools, and systemd units, dropins, masks and presets are
//! written. The stages around it are in [`stages`], the disks stage in
//! [`disks`], the cloud platform providers in [`providers`] and `http:`
//! resources in [`http`].

pub mod cmd;
pub mod devices;
pub mod disks;
pub mod files;
pub mod gs;
pub mod http;
mod imds;
pub mod passwd;
pub mod providers;
pub mod resource;
pub mod root;
pub mod s3;
pub mod stages;
pub mod tftp;
pub mod units;

use std::path::Path;

use ignition_config::Config;

/// Why applying a config failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The root cannot be opened.
    #[error("{0}")]
    Root(root::RootError),
    /// Files, directories or links.
    #[error("files stage: {0}")]
    Files(files::FilesError),
    /// Users or groups.
    #[error("files stage: {0}")]
    Passwd(passwd::PasswdError),
    /// systemd units.
    #[error("files stage: {0}")]
    Units(units::UnitError),
    /// A setting from the environment is malformed.
    #[error("{0}")]
    Setting(String),
}

/// Settings of the files stage that do not come from the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// SSH keys go to `~/.ssh/authorized_keys.d/ignition` (true, upstream's
    /// default) or to `~/.ssh/authorized_keys` (false).
    pub authorized_keys_fragment: bool,
    /// Directories the mount stage created for mount points (in-root
    /// paths, from the state file): those at or below a user's home are
    /// given to the user with mode 0700, as upstream.
    pub notated_directories: Vec<String>,
    /// The `systemctl` asked whether a unit with `enabled: false` is
    /// enabled in the root; `None`: there is none, and the root's
    /// enablement links are looked at instead (see [`units`]).
    pub systemctl: Option<std::path::PathBuf>,
    /// Appended to the shadow tools' names (`useradd`, `usermod`,
    /// `userdel`, `groupadd`, `groupmod`, `groupdel`): `-stub` runs the
    /// stand-ins of upstream's blackbox suite, as upstream's own binary is
    /// built for it. From [`SHADOW_TOOL_SUFFIX_ENV`]; empty normally.
    pub shadow_tool_suffix: String,
}

/// Environment variable with [`Options::shadow_tool_suffix`].
pub const SHADOW_TOOL_SUFFIX_ENV: &str = "OXCORE_IGNITION_SHADOW_TOOL_SUFFIX";

impl Default for Options {
    fn default() -> Self {
        Options {
            authorized_keys_fragment: true,
            notated_directories: Vec::new(),
            systemctl: find_tool("systemctl"),
            shadow_tool_suffix: String::new(),
        }
    }
}

impl Options {
    /// The name of a shadow tool, with [`Options::shadow_tool_suffix`].
    pub(crate) fn tool(&self, name: &str) -> String {
        format!("{name}{}", self.shadow_tool_suffix)
    }
}

/// The first executable `name` on the `PATH`.
pub fn find_tool(name: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Environment variable upstream reads to choose where SSH keys go.
pub const AUTHORIZED_KEYS_FRAGMENT_ENV: &str = "IGNITION_WRITE_AUTHORIZED_KEYS_FRAGMENT";

impl Options {
    /// The defaults, with `IGNITION_WRITE_AUTHORIZED_KEYS_FRAGMENT` read as
    /// upstream reads it (`true`/`1`, `false`/`0`; empty or unset is the
    /// default; anything else is refused).
    pub fn from_env() -> Result<Options, ApplyError> {
        let mut o = Options {
            shadow_tool_suffix: std::env::var(SHADOW_TOOL_SUFFIX_ENV).unwrap_or_default(),
            ..Options::default()
        };
        match std::env::var(AUTHORIZED_KEYS_FRAGMENT_ENV).as_deref() {
            Err(_) | Ok("") => {}
            Ok("true" | "1") => o.authorized_keys_fragment = true,
            Ok("false" | "0") => o.authorized_keys_fragment = false,
            Ok(other) => {
                return Err(ApplyError::Setting(format!(
                    "{AUTHORIZED_KEYS_FRAGMENT_ENV}={other:?}: not true, false, 1 or 0"
                )));
            }
        }
        Ok(o)
    }
}

// The messages above include their causes, so these are conversions only
// (not error sources, which would print each cause twice).
impl From<root::RootError> for ApplyError {
    fn from(e: root::RootError) -> Self {
        ApplyError::Root(e)
    }
}

impl From<files::FilesError> for ApplyError {
    fn from(e: files::FilesError) -> Self {
        ApplyError::Files(e)
    }
}

impl From<passwd::PasswdError> for ApplyError {
    fn from(e: passwd::PasswdError) -> Self {
        ApplyError::Passwd(e)
    }
}

impl From<units::UnitError> for ApplyError {
    fn from(e: units::UnitError) -> Self {
        ApplyError::Units(e)
    }
}

/// What was applied.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Files, directories and links.
    pub nodes: usize,
    /// Users and groups.
    pub accounts: usize,
    /// systemd units.
    pub units: usize,
}

/// Applies the files stage of `config` to the root at `root`: users and
/// groups first (so that owners by name resolve), then files, directories
/// and links, then units. Remote resources are fetched with the config's
/// proxy and timeouts.
pub fn apply(config: &Config, root: &Path) -> Result<Applied, ApplyError> {
    apply_with(config, root, &resource::Fetcher::for_config(config, false))
}

/// [`apply`] with explicit network settings (`offline` refuses remote
/// resources) and the settings of [`Options::from_env`].
pub fn apply_with(
    config: &Config,
    root: &Path,
    fetcher: &resource::Fetcher,
) -> Result<Applied, ApplyError> {
    apply_opts(config, root, fetcher, &Options::from_env()?)
}

/// [`apply_with`] with explicit [`Options`].
pub fn apply_opts(
    config: &Config,
    root: &Path,
    fetcher: &resource::Fetcher,
    opts: &Options,
) -> Result<Applied, ApplyError> {
    // Brought to the newest spec first: specs before 3.6.0 never applied
    // setuid, setgid and sticky bits, and translation clears them.
    let translated;
    let config = match ignition_config::Version::from_exact(&config.ignition.version) {
        Some(v) if v < ignition_config::Version::V3_7Exp => {
            translated =
                ignition_config::translate(config.clone(), ignition_config::Version::V3_7Exp)
                    .expect("translating to a newer spec always works");
            &translated
        }
        _ => config,
    };
    let root = root::Root::open(root)?;
    let accounts = passwd::apply(config, &root, opts)?;
    let nodes = files::apply(config, &root, fetcher)?.nodes;
    let units = units::apply(config, &root, opts)?;
    Ok(Applied {
        nodes,
        accounts,
        units,
    })
}
