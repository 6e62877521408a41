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

/// Whether `s` is a semantic version as upstream's semver parser accepts it:
/// `MAJOR.MINOR.PATCH` with an optional `-prerelease` and `+build` part.
///
/// Upstream distinguishes an unparsable version ("invalid config version
/// (couldn't parse)") from a well-formed one it does not support
/// ("unsupported config version").
pub fn is_semver(s: &str) -> bool {
    let (core, rest) = match s.find(['-', '+']) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    };
    let nums: Vec<&str> = core.split('.').collect();
    if nums.len() != 3
        || nums
            .iter()
            .any(|n| n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    let ident_ok = |part: &str| {
        !part.is_empty()
            && part
                .split('.')
                .all(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
    };
    let (pre, build) = match rest.find('+') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    if let Some(p) = pre.strip_prefix('-') {
        if !ident_ok(p) {
            return false;
        }
    } else if !pre.is_empty() {
        return false;
    }
    build.is_none_or(ident_ok)
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
        assert!(is_semver("3.0.0"));
        assert!(is_semver("2.2.0"));
        assert!(is_semver("3.7.0-experimental"));
        assert!(is_semver("1.0.0+build.5"));
        assert!(!is_semver(""));
        assert!(!is_semver("3.0"));
        assert!(!is_semver("3.0.x"));
        assert!(!is_semver("3.0.0-"));
    }
}
