//! Translating a config to a newer spec version, as upstream's chain of
//! per-version translators does.
//!
//! Apart from the version string, three steps change values: 3.0→3.1 makes
//! every CA reference's `source` present; 3.2→3.3 makes RAID `level`, link
//! `target` and a custom Clevis pin's `config`/`pin` present (they were plain
//! strings before); 3.5→3.6 clears the setuid, setgid and sticky bits of
//! file and directory modes, which older specs never honoured.
//!
//! Upstream's 3.4→3.5 step also drops Tang `advertisement`; that is a bug
//! (the field exists in both versions) and oxcore keeps the field.

use crate::types::Config;
use crate::version::Version;

/// Why a translation is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    /// Translation only goes to the same or a newer version.
    #[error("cannot translate config from {from} to older version {to}")]
    Downgrade {
        /// The config's version.
        from: Version,
        /// The requested version.
        to: Version,
    },
    /// The config's `ignition.version` is not a supported version.
    #[error("config has unsupported version {0:?}")]
    UnknownVersion(String),
}

/// Translates `config` (of the version in its `ignition.version`) to `to`.
pub fn translate(mut config: Config, to: Version) -> Result<Config, TranslateError> {
    let from = Version::from_exact(&config.ignition.version)
        .ok_or_else(|| TranslateError::UnknownVersion(config.ignition.version.clone()))?;
    if to < from {
        return Err(TranslateError::Downgrade { from, to });
    }
    let crosses = |step: Version| from < step && step <= to;
    if crosses(Version::V3_1) {
        for ca in &mut config.ignition.security.tls.certificate_authorities {
            ca.source.get_or_insert_with(String::new);
        }
    }
    if crosses(Version::V3_3) {
        for r in &mut config.storage.raid {
            r.level.get_or_insert_with(String::new);
        }
        for l in &mut config.storage.links {
            l.target.get_or_insert_with(String::new);
        }
        for l in &mut config.storage.luks {
            let custom = &mut l.clevis.custom;
            if custom.needs_network.is_some() || custom.config.is_some() || custom.pin.is_some() {
                custom.config.get_or_insert_with(String::new);
                custom.pin.get_or_insert_with(String::new);
            }
        }
    }
    if crosses(Version::V3_6) {
        let strip = |m: &mut Option<i64>| {
            if let Some(m) = m {
                *m &= !0o7000;
            }
        };
        config
            .storage
            .files
            .iter_mut()
            .for_each(|f| strip(&mut f.mode));
        config
            .storage
            .directories
            .iter_mut()
            .for_each(|d| strip(&mut d.mode));
    }
    config.ignition.version = to.as_str().to_string();
    Ok(config)
}
