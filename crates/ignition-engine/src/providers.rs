//! The cloud platform providers: where upstream Ignition finds the user
//! config on `aws`, `gcp`, `openstack` (and `brightbox`), `azure` and
//! `digitalocean`.
//!
//! Each asks its metadata service over `http://`; the service's base
//! address (default `http://169.254.169.254`, upstream's for all five) can
//! be overridden, e.g. to reach a test server. OpenStack's config drive and
//! Azure's provisioning CD are found and mounted as upstream does, unless a
//! directory where the drive is already mounted is given instead.
//!
//! Offline (`fetch-offline`) every provider answers [`ProviderError::NeedNet`]
//! before touching anything, as upstream's do: their configs only come
//! with the network (OpenStack and Azure check this even before looking at
//! their drives).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ignition_config::types::HttpHeader;

use crate::http::{self, HttpError, header};
use crate::imds;
use crate::resource::Fetcher;

/// The metadata services' address unless overridden (upstream uses the
/// link-local address for every provider here, GCP included).
pub const DEFAULT_METADATA_BASE: &str = imds::METADATA_BASE;

/// The platforms this module provides configs for.
pub const PLATFORMS: &[&str] = &[
    "aws",
    "azure",
    "brightbox",
    "digitalocean",
    "gcp",
    "openstack",
];

/// Upstream's `-fetch-timeout` default: the total time for each provider
/// request (`httpTotal` while fetching the user config), in seconds.
pub const FETCH_TIMEOUT_SECS: i64 = 120;

/// The user config's bytes and where they came from; `None` when the
/// platform has none (upstream's empty config).
pub type UserConfig = Option<(Vec<u8>, String)>;

/// Why a provider gave no config.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// Offline: the config can only be had with the network.
    #[error("the {0} provider needs the network")]
    NeedNet(String),
    /// Not a platform of this module.
    #[error("platform {0:?} is not supported by this engine yet")]
    Unsupported(String),
    /// A metadata service request failed.
    #[error("{provider}: fetching {url}: {error}")]
    Http {
        /// The platform.
        provider: String,
        /// The request's URL.
        url: String,
        /// What went wrong.
        error: HttpError,
    },
    /// The answer could not be used.
    #[error("{provider}: {message}")]
    Bad {
        /// The platform.
        provider: String,
        /// What is wrong.
        message: String,
    },
}

/// Fetches the user config of a cloud `platform`. `base` replaces the
/// metadata service address (`http://169.254.169.254`); `drive` is a
/// directory where the platform's config drive is mounted (OpenStack's
/// `config-2`, Azure's OVF CD), instead of finding and mounting it.
pub fn fetch_user_config(
    platform: &str,
    base: Option<&str>,
    drive: Option<&Path>,
    fetcher: &Fetcher,
) -> Result<UserConfig, ProviderError> {
    match platform {
        "aws" => aws(base, fetcher),
        "gcp" => gcp(base, fetcher),
        "openstack" | "brightbox" => openstack(platform, base, drive, fetcher),
        "azure" => azure(base, drive, fetcher),
        "digitalocean" => digitalocean(base, fetcher),
        other => Err(ProviderError::Unsupported(other.to_string())),
    }
}

fn url(base: Option<&str>, path: &str) -> String {
    format!(
        "{}{path}",
        base.unwrap_or(DEFAULT_METADATA_BASE).trim_end_matches('/')
    )
}

fn offline(provider: &str, f: &Fetcher) -> Result<(), ProviderError> {
    if f.offline {
        return Err(ProviderError::NeedNet(provider.into()));
    }
    Ok(())
}

fn http_err(provider: &str, url: &str, error: HttpError) -> ProviderError {
    ProviderError::Http {
        provider: provider.into(),
        url: url.into(),
        error,
    }
}

/// A `GET` where 404 means "no config".
fn get_optional(
    provider: &str,
    url: &str,
    headers: &[HttpHeader],
    f: &Fetcher,
) -> Result<UserConfig, ProviderError> {
    match http::get(url, headers, &f.proxy, &f.timeouts) {
        Ok(d) => Ok(Some((d, url.to_string()))),
        Err(HttpError::Status(404)) => {
            tracing::info!("{provider}: {url}: not found (404): no user config");
            Ok(None)
        }
        Err(e) => Err(http_err(provider, url, e)),
    }
}

/// Asks for an IMDSv2 session token; `None` when the service has none
/// (404: IMDSv1 only).
fn aws_token(base: Option<&str>, f: &Fetcher) -> Result<Option<String>, ProviderError> {
    imds::aws_token(base.unwrap_or(DEFAULT_METADATA_BASE), &f.proxy, &f.timeouts)
        .map_err(|e| http_err("aws", &e.url, e.error))
}

/// Upstream's AWS platform initialisation, which runs before any config
/// source is looked at: offline it needs the network (so `fetch-offline`
/// on AWS always defers to `fetch`); online it waits for the IMDSv2 token
/// endpoint to answer (404, IMDSv1 only, is fine).
pub fn aws_init(base: Option<&str>, f: &Fetcher) -> Result<(), ProviderError> {
    offline("aws", f)?;
    aws_token(base, f).map(|_| ())
}

/// AWS EC2: an IMDSv2 session token (`PUT /latest/api/token` with a TTL of
/// 21600 s), then `GET /2019-10-01/user-data` with that token. Without
/// IMDSv2 (404 for the token) the user data is read as IMDSv1, without a
/// token. 404 for the user data: no config.
pub fn aws(base: Option<&str>, f: &Fetcher) -> Result<UserConfig, ProviderError> {
    offline("aws", f)?;
    let mut headers = Vec::new();
    match aws_token(base, f)? {
        Some(token) => headers.push(imds::aws_token_header(&token)),
        None => tracing::warn!("aws: IMDSv2 service is unavailable; falling back to IMDSv1"),
    }
    get_optional("aws", &url(base, "/2019-10-01/user-data"), &headers, f)
}

/// Google Compute Engine: `GET
/// /computeMetadata/v1/instance/attributes/user-data` with
/// `Metadata-Flavor: Google`. 404: no config.
pub fn gcp(base: Option<&str>, f: &Fetcher) -> Result<UserConfig, ProviderError> {
    offline("gcp", f)?;
    get_optional(
        "gcp",
        &url(base, "/computeMetadata/v1/instance/attributes/user-data"),
        &[imds::gce_flavor()],
        f,
    )
}

/// DigitalOcean: `GET /metadata/v1/user-data`. Unlike the other providers,
/// upstream treats every failure here as an error, 404 included.
pub fn digitalocean(base: Option<&str>, f: &Fetcher) -> Result<UserConfig, ProviderError> {
    offline("digitalocean", f)?;
    let u = url(base, "/metadata/v1/user-data");
    http::get(&u, &[], &f.proxy, &f.timeouts)
        .map(|d| Some((d, u.clone())))
        .map_err(|e| http_err("digitalocean", &u, e))
}

const OPENSTACK_PATH: &str = "/openstack/latest/user_data";

/// OpenStack: the config drive (a filesystem labelled `config-2` or
/// `CONFIG-2`, file `openstack/latest/user_data`) and the metadata service
/// (`GET /openstack/latest/user_data`, on 169.254.169.254 and on
/// `fe80::a9fe:a9fe` through every IPv6 interface) are asked at once, as
/// upstream does, and the first to answer wins. A drive without the file,
/// or 404 from the service, means no config; if every source fails there
/// is no config either.
///
/// With `drive` (a directory where the config drive is mounted) that
/// directory, when it exists, is the config drive and answers first;
/// when it does not, only the metadata service is asked. With `base` only
/// that address is asked (no IPv6 link-local addresses).
pub fn openstack(
    platform: &str,
    base: Option<&str>,
    drive: Option<&Path>,
    f: &Fetcher,
) -> Result<UserConfig, ProviderError> {
    offline(platform, f)?;
    let (tx, rx) = std::sync::mpsc::channel::<(String, Result<UserConfig, String>)>();
    let cancel = Arc::new(AtomicBool::new(false));
    match drive {
        Some(dir) if dir.is_dir() => {
            return read_config_drive(dir).map_err(|message| ProviderError::Bad {
                provider: platform.into(),
                message,
            });
        }
        Some(_) => {}
        None => {
            for label in ["config-2", "CONFIG-2"] {
                let (tx, cancel) = (tx.clone(), cancel.clone());
                let dev = PathBuf::from("/dev/disk/by-label").join(label);
                std::thread::spawn(move || {
                    let r = config_drive_device(&dev, &cancel);
                    let _ = tx.send((format!("config drive ({label})"), r));
                });
            }
        }
    }
    {
        let tx = tx.clone();
        let base = base.map(str::to_string);
        let f = f.clone();
        std::thread::spawn(move || {
            let r = openstack_metadata(base.as_deref(), &f);
            let _ = tx.send(("metadata service".into(), r));
        });
    }
    drop(tx);
    for (name, r) in rx {
        match r {
            Ok(c) => {
                cancel.store(true, Ordering::SeqCst);
                return Ok(c);
            }
            Err(e) => tracing::warn!("{platform}: failed to fetch config from {name}: {e}"),
        }
    }
    tracing::warn!("{platform}: couldn't fetch config");
    Ok(None)
}

/// A mounted config drive's user data; no file, no config.
fn read_config_drive(dir: &Path) -> Result<UserConfig, String> {
    let p = dir.join(OPENSTACK_PATH.trim_start_matches('/'));
    match std::fs::read(&p) {
        Ok(d) => Ok(Some((d, p.display().to_string()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", p.display())),
    }
}

/// Waits for the config drive device, mounts it read-only and reads it.
fn config_drive_device(dev: &Path, cancel: &AtomicBool) -> Result<UserConfig, String> {
    while !dev.exists() {
        if cancel.load(Ordering::SeqCst) {
            return Err("cancelled".into());
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    with_mounted(dev, "auto", |mnt| {
        read_config_drive(mnt)
            .map(|c| c.map(|(d, _)| (d, format!("{}:{OPENSTACK_PATH}", dev.display()))))
    })
}

/// The metadata service, on every address upstream tries, in parallel.
fn openstack_metadata(base: Option<&str>, f: &Fetcher) -> Result<UserConfig, String> {
    let mut urls = vec![url(base, OPENSTACK_PATH)];
    if base.is_none() {
        urls.extend(
            ipv6_interfaces()
                .into_iter()
                .map(|i| format!("http://[fe80::a9fe:a9fe%{i}]{OPENSTACK_PATH}")),
        );
    }
    let (tx, rx) = std::sync::mpsc::channel();
    for u in urls {
        let (tx, f) = (tx.clone(), f.clone());
        std::thread::spawn(move || {
            let r = http::get(&u, &[], &f.proxy, &f.timeouts);
            let _ = tx.send((u, r));
        });
    }
    drop(tx);
    let mut last = None;
    for (u, r) in rx {
        match r {
            Ok(d) => return Ok(Some((d, u))),
            Err(e) => {
                tracing::warn!("openstack: fetching {u}: {e}");
                last = Some(e);
            }
        }
    }
    match last {
        // The service exists but has no user data: no config.
        Some(HttpError::Status(404)) => Ok(None),
        Some(e) => Err(e.to_string()),
        None => Ok(None),
    }
}

/// Network interfaces that are up, not loopback, and have an IPv6 address.
fn ipv6_interfaces() -> Vec<String> {
    let text = std::fs::read_to_string("/proc/net/if_inet6").unwrap_or_default();
    let mut names: Vec<String> = Vec::new();
    for line in text.lines() {
        let Some(name) = line.split_whitespace().nth(5) else {
            continue;
        };
        let flags = std::fs::read_to_string(format!("/sys/class/net/{name}/flags"))
            .ok()
            .and_then(|s| u32::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok())
            .unwrap_or(0);
        // IFF_UP, not IFF_LOOPBACK.
        if flags & 0x1 != 0 && flags & 0x8 == 0 && !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }
    names
}

/// Mounts `dev` read-only on a fresh temporary directory, runs `f` on it,
/// and unmounts it again.
fn with_mounted<T>(
    dev: &Path,
    fstype: &str,
    f: impl FnOnce(&Path) -> Result<T, String>,
) -> Result<T, String> {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let mnt = std::env::temp_dir().join(format!(
        "ignition-drive-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&mnt).map_err(|e| format!("creating {}: {e}", mnt.display()))?;
    // Through the engine's runner: a deadline, and the command named.
    let run = |argv: &[String]| -> Result<(), String> {
        let out = crate::cmd::run(argv, None).map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "`{}` failed: {}",
                crate::cmd::command_line(argv),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    };
    let path = |p: &Path| p.to_string_lossy().into_owned();
    let mount: Vec<String> = ["mount", "-o", "ro", "-t", fstype]
        .iter()
        .map(|s| s.to_string())
        .chain([path(dev), path(&mnt)])
        .collect();
    let r = run(&mount).and_then(|()| {
        let r = f(&mnt);
        if let Err(e) = run(&["umount".to_string(), path(&mnt)]) {
            tracing::warn!("unmounting {}: {e}", mnt.display());
        }
        r
    });
    let _ = std::fs::remove_dir(&mnt);
    r
}

const AZURE_IMDS_PATH: &str =
    "/metadata/instance/compute/userData?api-version=2021-01-01&format=text";

/// Microsoft Azure: the user data from IMDS (`GET
/// /metadata/instance/compute/userData?api-version=2021-01-01&format=text`
/// with `Metadata: true`, base64), where 404, 410 and 429 are retried as
/// 5xx are (upstream follows cloud-init there). Empty user data falls back
/// to the custom data on the provisioning CD: a UDF CD-ROM with
/// `ovf-env.xml`, file `CustomData.bin` (missing: no config). Upstream
/// waits for that CD as long as it takes; with `drive` that directory is
/// the mounted CD.
pub fn azure(
    base: Option<&str>,
    drive: Option<&Path>,
    f: &Fetcher,
) -> Result<UserConfig, ProviderError> {
    offline("azure", f)?;
    let u = url(base, AZURE_IMDS_PATH);
    let data = http::request_retrying(
        "GET",
        &u,
        &[header("Metadata", "true")],
        None,
        &f.proxy,
        &f.timeouts,
        &http::Options {
            retry_codes: &[404, 410, 429],
            ..http::Options::default()
        },
    )
    .map_err(|e| http_err("azure", &u, e))?;
    let bad = |message: String| ProviderError::Bad {
        provider: "azure".into(),
        message,
    };
    if !data.is_empty() {
        // Go's decoder skips line breaks.
        let clean: Vec<u8> = data
            .iter()
            .copied()
            .filter(|&c| c != b'\r' && c != b'\n')
            .collect();
        let decoded = ignition_config::url::decode_base64(&clean)
            .map_err(|e| bad(format!("decoding userdata from {u}: {e}")))?;
        tracing::info!("azure: config has been read from IMDS userdata");
        return Ok(Some((decoded, u)));
    }
    tracing::info!("azure: no userdata in IMDS, falling back to custom data");
    match drive {
        Some(dir) => read_ovf(dir).map_err(bad),
        None => Ok(ovf_device()),
    }
}

/// A mounted provisioning CD's custom data.
fn read_ovf(dir: &Path) -> Result<UserConfig, String> {
    let env = dir.join("ovf-env.xml");
    if let Err(e) = std::fs::metadata(&env) {
        return Err(format!(
            "{} does not appear to be a config drive: {}: {e}",
            dir.display(),
            env.display()
        ));
    }
    let p = dir.join("CustomData.bin");
    match std::fs::read(&p) {
        Ok(d) => {
            tracing::info!("azure: config has been read from custom data");
            Ok(Some((d, p.display().to_string())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("failed to read config from {}: {e}", p.display())),
    }
}

/// Waits for a UDF CD-ROM carrying `ovf-env.xml` and reads its custom
/// data, as upstream: each device is looked at once.
fn ovf_device() -> UserConfig {
    let mut checked: Vec<String> = Vec::new();
    loop {
        for dev in udf_devices() {
            if checked.contains(&dev) {
                continue;
            }
            if is_cdrom(&dev) {
                match with_mounted(Path::new(&dev), "udf", read_ovf) {
                    Ok(c) => {
                        return c.map(|(d, _)| (d, format!("{dev}:/CustomData.bin")));
                    }
                    Err(e) => tracing::warn!("azure: failed to retrieve config from {dev}: {e}"),
                }
            }
            checked.push(dev);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Block devices with a UDF filesystem, by `blkid`.
fn udf_devices() -> Vec<String> {
    let argv = ["blkid", "-t", "TYPE=udf", "-o", "device"].map(String::from);
    crate::cmd::run(&argv, None)
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a device is a CD-ROM drive (SCSI type 5 in sysfs). Upstream
/// asks the drive with `CDROM_DRIVE_STATUS`; `blkid` having found a
/// filesystem on it already says a disc is in.
fn is_cdrom(dev: &str) -> bool {
    let name = dev.rsplit('/').next().unwrap_or(dev);
    std::fs::read_to_string(format!("/sys/class/block/{name}/device/type"))
        .is_ok_and(|t| t.trim() == "5")
        || name.starts_with("sr")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_join_the_base() {
        assert_eq!(
            url(None, "/metadata/v1/user-data"),
            "http://169.254.169.254/metadata/v1/user-data"
        );
        assert_eq!(
            url(Some("http://127.0.0.1:8080/"), "/latest/api/token"),
            "http://127.0.0.1:8080/latest/api/token"
        );
    }

    #[test]
    fn offline_providers_need_the_network() {
        let f = Fetcher {
            offline: true,
            ..Fetcher::default()
        };
        for p in PLATFORMS {
            assert!(
                matches!(
                    fetch_user_config(p, Some("http://127.0.0.1:1"), None, &f),
                    Err(ProviderError::NeedNet(_))
                ),
                "{p}"
            );
        }
        assert!(matches!(
            fetch_user_config("vultr", None, None, &f),
            Err(ProviderError::Unsupported(_))
        ));
    }
}
