//! Who this node is, as Zincati tells the graph server: the node's
//! app-specific machine ID, its platform, its architecture, and the
//! release it booted.

use std::fs;

use ring::hmac;

use crate::{Error, Result, Root};

/// Zincati's application ID for `sd_id128_get_machine_app_specific()`: the
/// same machine keeps the same `node_uuid` (and rollout position) whichever
/// agent runs on it.
pub const ZINCATI_APP_ID: [u8; 16] = [
    0xde, 0x35, 0x10, 0x6b, 0x6e, 0xc2, 0x46, 0x88, 0xb6, 0x3a, 0xfd, 0xda, 0xa1, 0x56, 0x67, 0x9b,
];

/// systemd's app-specific ID: HMAC-SHA256 keyed by the machine ID over the
/// application ID, its first 16 bytes made a version-4 UUID (variant 1),
/// as `sd_id128_get_machine_app_specific()` computes it.
pub fn app_specific_id(machine_id: &[u8; 16], app_id: &[u8; 16]) -> [u8; 16] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, machine_id);
    let tag = hmac::sign(&key, app_id);
    let mut id = [0u8; 16];
    id.copy_from_slice(&tag.as_ref()[..16]);
    id[6] = (id[6] & 0x0f) | 0x40;
    id[8] = (id[8] & 0x3f) | 0x80;
    id
}

/// Parses `/etc/machine-id` (32 hexadecimal digits and a newline).
pub fn parse_machine_id(text: &str) -> Option<[u8; 16]> {
    let t = text.trim_end_matches('\n');
    if t.len() != 32 {
        return None;
    }
    let bytes = util::unhex(t)?;
    bytes.try_into().ok()
}

/// The node UUID Zincati computes from `<root>/etc/machine-id`: 32
/// lower-case hexadecimal digits.
pub fn node_uuid(root: &Root) -> Result<String> {
    let path = root.path("/etc/machine-id");
    let text = fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let mid = parse_machine_id(&text).ok_or_else(|| {
        Error::Invalid(format!(
            "{}: not a machine ID (32 hexadecimal digits expected)",
            path.display()
        ))
    })?;
    Ok(util::hex(&app_specific_id(&mid, &ZINCATI_APP_ID)))
}

/// The platform from `ignition.platform.id=` on the kernel command line:
/// the first non-empty one, as Zincati reads it.
pub fn platform(cmdline: &str) -> Option<String> {
    cmdline
        .split_whitespace()
        .filter_map(|a| a.strip_prefix("ignition.platform.id="))
        .map(str::trim)
        .find(|p| !p.is_empty())
        .map(str::to_string)
}

/// Reads the kernel command line at `<root>/proc/cmdline`.
pub fn read_cmdline(root: &Root) -> Result<String> {
    let path = root.path("/proc/cmdline");
    fs::read_to_string(&path).map_err(|e| Error::io(&path, e))
}

/// The architecture as Fedora CoreOS names it (`x86_64`, `aarch64`,
/// `s390x`, `ppc64le`): Rust's names for the compiled target, which match.
pub fn basearch() -> &'static str {
    match std::env::consts::ARCH {
        "powerpc64" => "ppc64le",
        a => a,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_ids_parse_strictly() {
        assert!(parse_machine_id("0123456789abcdef0123456789abcdef\n").is_some());
        assert!(parse_machine_id("0123456789abcdef0123456789abcde\n").is_none());
        assert!(parse_machine_id("0123456789abcdef0123456789abcdeg").is_none());
    }

    #[test]
    fn app_specific_ids_are_version_4() {
        let mid = parse_machine_id("0123456789abcdef0123456789abcdef").unwrap();
        let id = app_specific_id(&mid, &ZINCATI_APP_ID);
        assert_eq!(id[6] >> 4, 4);
        assert_eq!(id[8] >> 6, 0b10);
        // Another application gets another ID from the same machine.
        assert_ne!(id, app_specific_id(&mid, &[0; 16]));
    }

    #[test]
    fn platform_is_the_first_non_empty_ignition_platform_id() {
        assert_eq!(
            platform("root=x ignition.platform.id=qemu ostree=/a").as_deref(),
            Some("qemu")
        );
        assert_eq!(
            platform("ignition.platform.id=aws ignition.platform.id=metal").as_deref(),
            Some("aws")
        );
        assert_eq!(
            platform("ignition.platform.id= ignition.platform.id=qemu").as_deref(),
            Some("qemu")
        );
        assert_eq!(platform("ignition.platform.id= quiet"), None);
        assert_eq!(platform("quiet"), None);
    }
}
