//! The Ignition engine: applies a config to a target root the way upstream
//! Ignition's files stage does.
//!
//! This is the part of first-boot provisioning that writes into the root:
//! resources are fetched and verified, then files, directories and links
//! are written (never outside the root), users and groups are created with
//! the shadow tools, and systemd units, dropins, masks and presets are
//! written. Disks, platform providers and remote resources are not part of
//! this crate yet.

pub mod disks;
pub mod files;
pub mod http;
pub mod passwd;
pub mod resource;
pub mod root;
pub mod stages;
pub mod units;

use std::path::Path;

use ignition_config::Config;

/// Why applying a config failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The root cannot be opened.
    #[error("{0}")]
    Root(#[from] root::RootError),
    /// Files, directories or links.
    #[error("files stage: {0}")]
    Files(#[from] files::FilesError),
    /// Users or groups.
    #[error("files stage: {0}")]
    Passwd(#[from] passwd::PasswdError),
    /// systemd units.
    #[error("files stage: {0}")]
    Units(#[from] units::UnitError),
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
