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

pub mod disks;
pub mod files;
pub mod gs;
pub mod http;
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
/// resources).
pub fn apply_with(
    config: &Config,
    root: &Path,
    fetcher: &resource::Fetcher,
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
    let accounts = passwd::apply(config, &root)?;
    let nodes = files::apply(config, &root, fetcher)?.nodes;
    let units = units::apply(config, &root)?;
    Ok(Applied {
        nodes,
        accounts,
        units,
    })
}
