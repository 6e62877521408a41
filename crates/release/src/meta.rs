//! The Fedora CoreOS metadata formats, as published under one base:
//!
//! - `prod/streams/<stream>/releases.json`: the release index (every
//!   release of a stream, oldest first, with its per-architecture commits,
//!   OCI images and the URL of its `release.json`);
//! - `prod/streams/<stream>/builds/<version>/release.json`: one release;
//! - `streams/<stream>.json`: stream metadata (the newest release's
//!   artifacts per architecture and platform);
//! - `updates/<stream>.json`: update metadata (barriers, dead-ends and
//!   rollouts per release).
//!
//! Unknown fields are kept where upstream may add them (`extra`), so a
//! mirror of Fedora CoreOS's metadata round-trips.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `metadata` of every document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocMeta {
    /// RFC 3339 time of the last change.
    #[serde(rename = "last-modified", default)]
    pub last_modified: String,
    /// Anything else.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// `releases.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReleaseIndex {
    /// Upstream's note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The stream.
    #[serde(default)]
    pub stream: String,
    /// Document metadata.
    #[serde(default)]
    pub metadata: DocMeta,
    /// Releases, oldest first.
    pub releases: Vec<IndexRelease>,
}

/// One release of the index.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IndexRelease {
    /// Per-architecture commits.
    #[serde(default)]
    pub commits: Vec<Commit>,
    /// Per-architecture OCI images (image-based updates).
    #[serde(rename = "oci-images", default, skip_serializing_if = "Vec::is_empty")]
    pub oci_images: Vec<OciImage>,
    /// The version.
    pub version: String,
    /// URL of its `release.json`.
    #[serde(default)]
    pub metadata: String,
}

/// An architecture's commit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    /// `x86_64`, `aarch64`, …
    pub architecture: String,
    /// The OSTree commit checksum.
    pub checksum: String,
}

/// An architecture's container image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OciImage {
    /// `x86_64`, `aarch64`, …
    pub architecture: String,
    /// Repository (`quay.io/fedora/fedora-coreos`).
    pub image: String,
    /// Pullspec by digest.
    #[serde(rename = "digest-ref")]
    pub digest_ref: String,
}

/// `updates/<stream>.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UpdatesDoc {
    /// The stream.
    #[serde(default)]
    pub stream: String,
    /// Document metadata.
    #[serde(default)]
    pub metadata: DocMeta,
    /// Per-release update rules.
    #[serde(default)]
    pub releases: Vec<UpdateEntry>,
}

/// Rules for one version (several entries for one version all apply,
/// later keys winning, as upstream).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UpdateEntry {
    /// The version.
    pub version: String,
    /// The rules.
    #[serde(default)]
    pub metadata: UpdateRules,
}

/// Barrier, dead-end and rollout of one release.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UpdateRules {
    /// Every node must pass through this release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub barrier: Option<Reason>,
    /// No update leaves this release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadend: Option<Reason>,
    /// A phased rollout to this release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
}

/// Why (a URL, usually an issue).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// The reason. Upstream requires it and rejects the whole stream
    /// without it; oxcore accepts its absence and says so in `/status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A phased rollout.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    /// When it starts (seconds since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_epoch: Option<i64>,
    /// The share of the fleet open at the start (0.0 – 1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_percentage: Option<f64>,
    /// Minutes until the whole fleet is open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_minutes: Option<u64>,
}

/// `release.json` of one build.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReleaseDoc {
    /// The version.
    pub release: String,
    /// The stream.
    pub stream: String,
    /// Document metadata.
    #[serde(default)]
    pub metadata: DocMeta,
    /// Per architecture: commit, OCI image, media.
    pub architectures: BTreeMap<String, ReleaseArch>,
}

/// One architecture of a release.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReleaseArch {
    /// The OSTree commit.
    pub commit: String,
    /// The container image, if any.
    #[serde(rename = "oci-image", default, skip_serializing_if = "Option::is_none")]
    pub oci_image: Option<serde_json::Value>,
    /// Platform → artifacts.
    #[serde(default)]
    pub media: BTreeMap<String, Platform>,
}

/// A platform's artifacts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Platform {
    /// Format (`qcow2.xz`) → files (`disk`) → where.
    #[serde(default)]
    pub artifacts: BTreeMap<String, BTreeMap<String, Artifact>>,
    /// Anything else (images, …).
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// One downloadable file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// URL.
    pub location: String,
    /// Detached signature URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// SHA-256 of the file.
    pub sha256: String,
    /// SHA-256 of the uncompressed content.
    #[serde(
        rename = "uncompressed-sha256",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub uncompressed_sha256: Option<String>,
}

/// `streams/<stream>.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamDoc {
    /// The stream.
    pub stream: String,
    /// Document metadata.
    #[serde(default)]
    pub metadata: DocMeta,
    /// Architecture → artifacts per platform.
    pub architectures: BTreeMap<String, StreamArch>,
}

/// One architecture of a stream.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamArch {
    /// Platform → the release it comes from and its formats.
    #[serde(default)]
    pub artifacts: BTreeMap<String, StreamPlatform>,
    /// Anything else (`images`).
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// A platform in stream metadata.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamPlatform {
    /// The release.
    pub release: String,
    /// Format → files.
    #[serde(default)]
    pub formats: BTreeMap<String, BTreeMap<String, Artifact>>,
}

/// The Fedora CoreOS version scheme `X.Y.Z.N`: Fedora major, build date
/// (`YYYYMMDD`), stream id (`1` next, `2` testing, `3` stable, …), respin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// Fedora major version.
    pub major: u32,
    /// Build date as `YYYYMMDD`.
    pub date: u32,
    /// Stream id.
    pub stream: u32,
    /// Respin.
    pub respin: u32,
}

/// A version that is not `MAJOR.YYYYMMDD.STREAM.RESPIN` (each a decimal
/// number, the date a real month and day).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid version '{0}': expected MAJOR.YYYYMMDD.STREAM.RESPIN")]
pub struct VersionError(pub String);

impl std::str::FromStr for Version {
    type Err = VersionError;

    fn from_str(s: &str) -> Result<Version, VersionError> {
        let parts: Vec<&str> = s.split('.').collect();
        let bad = || VersionError(s.to_string());
        let [major, date, stream, respin] = parts.as_slice() else {
            return Err(bad());
        };
        let num = |p: &str| {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            p.parse::<u32>().map_err(|_| bad())
        };
        let v = Version {
            major: num(major)?,
            date: num(date)?,
            stream: num(stream)?,
            respin: num(respin)?,
        };
        let (month, day) = (v.date / 100 % 100, v.date % 100);
        if date.len() != 8 || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
            return Err(bad());
        }
        Ok(v)
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}.{}.{}.{}",
            self.major, self.date, self.stream, self.respin
        )
    }
}

/// The stream id of a stream name, as Fedora CoreOS numbers them.
pub(crate) fn stream_id(stream: &str) -> Option<u32> {
    Some(match stream {
        "next" => 1,
        "testing" => 2,
        "stable" => 3,
        "next-devel" => 10,
        "testing-devel" => 20,
        "rawhide" => 91,
        "branched" => 92,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        let v: Version = "41.20261125.3.0".parse().unwrap();
        assert_eq!(
            v,
            Version {
                major: 41,
                date: 20261125,
                stream: 3,
                respin: 0
            }
        );
        assert_eq!(v.to_string(), "41.20261125.3.0");
        assert!("41.20261125.3.1".parse::<Version>().unwrap() > v);
        for bad in [
            "41.2026112.3.0",
            "41.20261325.3.0",
            "41.20261125.3",
            "a.b.c.d",
            "41.20261125.3.0.1",
            "41.20261125.-3.0",
        ] {
            assert!(bad.parse::<Version>().is_err(), "{bad}");
        }
    }

    #[test]
    fn upstream_documents_parse_and_round_trip() {
        let index = r#"{"note":"For use only by Fedora CoreOS internal tooling.","stream":"stable","metadata":{"last-modified":"2024-01-01T00:00:00Z"},"releases":[{"commits":[{"architecture":"x86_64","checksum":"abc"},{"architecture":"aarch64","checksum":"def"}],"oci-images":[{"architecture":"x86_64","image":"quay.io/fedora/fedora-coreos","digest-ref":"quay.io/fedora/fedora-coreos@sha256:01"}],"version":"38.20230310.3.0","metadata":"https://example/builds/38.20230310.3.0/release.json"}]}"#;
        let parsed: ReleaseIndex = serde_json::from_str(index).unwrap();
        assert_eq!(parsed.releases[0].commits[1].architecture, "aarch64");
        let again: ReleaseIndex =
            serde_json::from_str(&serde_json::to_string(&parsed).unwrap()).unwrap();
        assert_eq!(again, parsed);
        let updates = r#"{"stream":"stable","metadata":{"last-modified":"2024-01-01T00:00:00Z"},"releases":[{"version":"30.20190716.1","metadata":{"barrier":{"reason":"https://x/163"}}},{"version":"30.20190725.0","metadata":{"deadend":{"reason":"https://x/1"},"rollout":{"start_epoch":1565712000,"start_percentage":0.0,"duration_minutes":1440}}}]}"#;
        let u: UpdatesDoc = serde_json::from_str(updates).unwrap();
        assert_eq!(
            u.releases[1]
                .metadata
                .rollout
                .as_ref()
                .unwrap()
                .duration_minutes,
            Some(1440)
        );
        assert_eq!(
            u.releases[0]
                .metadata
                .barrier
                .as_ref()
                .unwrap()
                .reason
                .as_deref(),
            Some("https://x/163")
        );
    }
}
