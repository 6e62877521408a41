//! Ignition spec versions.
//!
//! Every config names its spec in `ignition.version`. The version decides
//! which fields exist (a field from a newer spec is an `unused key`) and which
//! validation rules apply.

use std::fmt;

/// A supported Ignition config spec version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    /// 3.0.0 (Ignition 2.0)
    V3_0,
    /// 3.1.0 (Ignition 2.3)
    V3_1,
    /// 3.2.0 (Ignition 2.7)
    V3_2,
    /// 3.3.0 (Ignition 2.11)
    V3_3,
    /// 3.4.0 (Ignition 2.15)
    V3_4,
    /// 3.5.0 (Ignition 2.20)
    V3_5,
    /// 3.6.0 (Ignition 2.26)
    V3_6,
    /// 3.7.0-experimental
    V3_7Exp,
}

impl Version {
    /// All versions, oldest first.
    pub const ALL: [Version; 8] = [
        Version::V3_0,
        Version::V3_1,
        Version::V3_2,
        Version::V3_3,
        Version::V3_4,
        Version::V3_5,
        Version::V3_6,
        Version::V3_7Exp,
    ];

    /// The newest stable version; the target of translation by default.
    pub const LATEST_STABLE: Version = Version::V3_6;

    /// The version string as it appears in `ignition.version`.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V3_0 => "3.0.0",
            Version::V3_1 => "3.1.0",
            Version::V3_2 => "3.2.0",
            Version::V3_3 => "3.3.0",
            Version::V3_4 => "3.4.0",
            Version::V3_5 => "3.5.0",
            Version::V3_6 => "3.6.0",
            Version::V3_7Exp => "3.7.0-experimental",
        }
    }

    /// Whether this is an experimental (unstable) spec.
    pub fn is_experimental(self) -> bool {
        self == Version::V3_7Exp
    }

    /// Looks up an exact version string.
    pub fn from_exact(s: &str) -> Option<Version> {
        Version::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A semantic version as upstream's semver parser reads it:
/// `MAJOR.MINOR.PATCH`, optional `-prerelease` and `+metadata`, leading zeros
/// allowed in the numbers.
///
/// Upstream distinguishes an unparsable version ("invalid config version
/// (couldn't parse)") from a well-formed one it does not support
/// ("unsupported config version"); versions compare equal when all five
/// parts do, so `3.4.0-` is 3.4.0 but `3.4.0+x` is not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Semver {
    /// Major, minor, patch.
    pub numbers: [u64; 3],
    /// Pre-release, without the `-`.
    pub pre: String,
    /// Build metadata, without the `+`.
    pub meta: String,
}

impl Semver {
    /// Parses `s`, or `None` when upstream could not.
    pub fn parse(s: &str) -> Option<Semver> {
        let (rest, meta) = s.split_once('+').unwrap_or((s, ""));
        let (core, pre) = rest.split_once('-').unwrap_or((rest, ""));
        let mut parts = core.splitn(3, '.');
        let mut numbers = [0u64; 3];
        for n in &mut numbers {
            let p = parts.next()?;
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            *n = p.parse().ok().filter(|&v: &u64| v <= i64::MAX as u64)?;
        }
        let ident_ok = |part: &str| {
            part.is_empty()
                || part.split('.').all(|id| {
                    !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
        };
        if !ident_ok(pre) || !ident_ok(meta) {
            return None;
        }
        Some(Semver {
            numbers,
            pre: pre.to_string(),
            meta: meta.to_string(),
        })
    }
}

impl Version {
    /// The supported version equal to `v`, if any.
    pub fn from_semver(v: &Semver) -> Option<Version> {
        if !v.meta.is_empty() {
            return None;
        }
        Version::ALL.into_iter().find(|k| {
            let s = Semver::parse(k.as_str()).expect("known versions parse");
            s.numbers == v.numbers && s.pre == v.pre
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_versions_round_trip() {
        for v in Version::ALL {
            assert_eq!(Version::from_exact(v.as_str()), Some(v));
        }
        assert_eq!(Version::from_exact("3.7.0"), None);
        assert_eq!(Version::from_exact("2.2.0"), None);
    }

    #[test]
    fn semver_shapes() {
        let v = |s: &str| Semver::parse(s).and_then(|s| Version::from_semver(&s));
        assert_eq!(v("3.0.0"), Some(Version::V3_0));
        assert_eq!(v("03.4.0"), Some(Version::V3_4));
        assert_eq!(v("3.4.0-"), Some(Version::V3_4));
        assert_eq!(v("3.4.0+"), Some(Version::V3_4));
        assert_eq!(v("3.4.0+x"), None);
        assert_eq!(v("3.7.0-experimental"), Some(Version::V3_7Exp));
        assert_eq!(v("3.6.0-experimental"), None);
        assert!(Semver::parse("2.2.0").is_some());
        assert!(Semver::parse("1.0.0+build.5").is_some());
        assert!(Semver::parse("").is_none());
        assert!(Semver::parse("3.0").is_none());
        assert!(Semver::parse("3.0.x").is_none());
        assert!(Semver::parse("3.0.0-a..b").is_none());
    }
}
