//! LUKS volumes: formatting with `cryptsetup luksFormat` or reusing a
//! LUKS2 volume that matches the config, and the command lines upstream
//! runs to open the volume and bind it with Clevis.

use std::fs::{self, File};
use std::io::{self, Read as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use ignition_config::types::Luks;

use super::command::{CommandFailure, Ctx, DiskError, argv, not_empty, run_command};
use super::device::settle;
use super::filesystem::filesystem_info;
use crate::cmd::command_line;

/// The `cryptsetup luksFormat` command line upstream runs for `luks` with
/// the key in `key_file` (CEX secure-key arguments are not included).
pub fn luks_format_command(luks: &Luks, key_file: &str) -> Vec<String> {
    let mut args = argv([
        "cryptsetup",
        "luksFormat",
        "--type",
        "luks2",
        "--key-file",
        key_file,
    ]);
    if let Some(label) = not_empty(&luks.label) {
        args.extend(["--label".to_string(), label.to_string()]);
    }
    if let Some(uuid) = not_empty(&luks.uuid) {
        args.extend(["--uuid".to_string(), uuid.to_string()]);
    }
    args.extend(luks.options.iter().cloned());
    args.push(luks.device.clone().unwrap_or_default());
    args
}

/// The `cryptsetup luksOpen` command line upstream runs (it persists
/// `--allow-discards` and the open options into the header).
pub fn luks_open_command(luks: &Luks, key_file: &str) -> Vec<String> {
    let mut args = vec![
        "cryptsetup".to_string(),
        "luksOpen".to_string(),
        luks.device.clone().unwrap_or_default(),
        luks.name.clone(),
        "--key-file".to_string(),
        key_file.to_string(),
        "--persistent".to_string(),
    ];
    if luks.discard == Some(true) {
        args.push("--allow-discards".to_string());
    }
    args.extend(luks.open_options.iter().cloned());
    args
}

/// Whether the config binds the volume with Clevis (upstream's
/// `Clevis.IsPresent`).
pub fn clevis_present(luks: &Luks) -> bool {
    let c = &luks.clevis;
    not_empty(&c.custom.pin).is_some()
        || !c.tang.is_empty()
        || c.tpm2 == Some(true)
        || c.threshold.is_some_and(|t| t != 0)
}

/// Sorts object keys, as Go does when it marshals a map.
fn sort_keys(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(String, Value)> = m.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, sort_keys(v)))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.into_iter().map(sort_keys).collect()),
        other => other,
    }
}

/// Why the Clevis config cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ClevisError {
    /// A Tang server's advertisement is not JSON.
    #[error("unmarshalling advertisement: {0}")]
    Advertisement(serde_json::Error),
    /// The config could not be serialized.
    #[error("creating clevis json: {0}")]
    Json(serde_json::Error),
}

/// The Clevis pin and its JSON config for `luks`: the custom pin as given,
/// or `sss` over the Tang servers and the TPM2, as upstream builds it
/// (`{"pins":{"tang":[{"url":…,"thp":…,"adv":…}],"tpm2":{}},"t":N}`, Go's
/// field order, empty `thp`/`adv` left out, the advertisement's keys
/// sorted).
pub fn clevis_config(luks: &Luks) -> Result<(String, String), ClevisError> {
    use serde_json::{Map, Value};
    let c = &luks.clevis;
    if let Some(pin) = not_empty(&c.custom.pin) {
        return Ok((pin.to_string(), c.custom.config.clone().unwrap_or_default()));
    }
    let mut tangs = Vec::new();
    for t in &c.tang {
        let mut m = Map::new();
        m.insert("url".into(), Value::String(t.url.clone()));
        if let Some(thp) = not_empty(&t.thumbprint) {
            m.insert("thp".into(), Value::String(thp.to_string()));
        }
        if let Some(adv) = &t.advertisement {
            let adv: Value = serde_json::from_str(adv).map_err(ClevisError::Advertisement)?;
            if !adv.is_null() {
                m.insert("adv".into(), sort_keys(adv));
            }
        }
        tangs.push(Value::Object(m));
    }
    let mut pins = Map::new();
    if c.tpm2 == Some(true) {
        if !tangs.is_empty() {
            pins.insert("tang".into(), Value::Array(tangs));
        }
        pins.insert("tpm2".into(), Value::Object(Map::new()));
    } else if tangs.is_empty() {
        pins.insert("tang".into(), Value::Null);
    } else {
        pins.insert("tang".into(), Value::Array(tangs));
    }
    let mut config = Map::new();
    config.insert("pins".into(), Value::Object(pins));
    config.insert("t".into(), Value::from(c.threshold.unwrap_or(1)));
    let text = serde_json::to_string(&Value::Object(config)).map_err(ClevisError::Json)?;
    Ok(("sss".to_string(), util::go_html_escape(&text)))
}

/// The commands upstream runs for one LUKS volume, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LuksCommands {
    /// `cryptsetup luksFormat ...`.
    pub format: Vec<String>,
    /// `cryptsetup luksOpen ... --persistent`.
    pub open: Vec<String>,
    /// `clevis luks bind -f -k KEYFILE -d DEVICE PIN CONFIG`, when Clevis
    /// is configured.
    pub clevis_bind: Option<Vec<String>>,
    /// `cryptsetup luksClose NAME` then `clevis luks unlock -d DEVICE -n
    /// NAME`, when enough pins work without the network to test the
    /// binding (Tang servers without an advertisement, plus the TPM2, reach
    /// the threshold).
    pub reopen: Option<[Vec<String>; 2]>,
    /// `cryptsetup luksRemoveKey DEVICE KEYFILE`, when the key file was
    /// generated and Clevis holds the volume.
    pub remove_key: Option<Vec<String>>,
}

/// Builds the command lines of [`LuksCommands`]; `key_generated` says that
/// the key file is Ignition's own (no `keyFile` in the config).
pub fn luks_commands(
    luks: &Luks,
    key_file: &str,
    key_generated: bool,
) -> Result<LuksCommands, ClevisError> {
    let device = luks.device.clone().unwrap_or_default();
    let mut cmds = LuksCommands {
        format: luks_format_command(luks, key_file),
        open: luks_open_command(luks, key_file),
        clevis_bind: None,
        reopen: None,
        remove_key: None,
    };
    if !clevis_present(luks) {
        return Ok(cmds);
    }
    let (pin, config) = clevis_config(luks)?;
    cmds.clevis_bind = Some(vec![
        "clevis".into(),
        "luks".into(),
        "bind".into(),
        "-f".into(),
        "-k".into(),
        key_file.into(),
        "-d".into(),
        device.clone(),
        pin,
        config,
    ]);
    let c = &luks.clevis;
    let without_adv = c
        .tang
        .iter()
        .filter(|t| not_empty(&t.advertisement).is_none())
        .count() as i64;
    let tpm = i64::from(c.tpm2 == Some(true));
    if without_adv + tpm >= c.threshold.unwrap_or(1) {
        cmds.reopen = Some([
            argv(["cryptsetup", "luksClose", &luks.name]),
            argv(["clevis", "luks", "unlock", "-d", &device, "-n", &luks.name]),
        ]);
    }
    if key_generated {
        cmds.remove_key = Some(argv(["cryptsetup", "luksRemoveKey", &device, key_file]));
    }
    Ok(cmds)
}

/// Writes a new random key file the way upstream generates one when the
/// config has no `keyFile`: 4096 random bytes as 8192 hex digits, mode 0400.
pub fn generate_key_file(path: &Path) -> io::Result<()> {
    let mut bytes = vec![0u8; 4096];
    File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    let hex = util::hex(&bytes);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o400)
        .open(path)?;
    io::Write::write_all(&mut f, hex.as_bytes())
}

/// What [`format_luks`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LuksOutcome {
    /// A new LUKS2 header was written.
    Formatted,
    /// An existing LUKS2 volume matched the config and the key opens it.
    Reused,
}

/// Whether `cryptsetup isLuks` accepts the device (as LUKS2 when `luks2`).
fn is_luks(ctx: Ctx<'_>, device: &str, luks2: bool) -> Result<bool, DiskError> {
    let mut args = argv(["cryptsetup", "isLuks", device]);
    if luks2 {
        args.extend(argv(["--type", "luks2"]));
    }
    match crate::cmd::run(&args, None) {
        Ok(out) => Ok(out.status.success()),
        Err(e) => Err(ctx.command(
            "checking for a LUKS header",
            CommandFailure {
                what: String::new(),
                command: command_line(&args),
                status: e.status(),
                stderr: String::new(),
            },
        )),
    }
}

/// Checks an existing LUKS2 volume against the config the way upstream's
/// `reuseLuksDevice` does; the key is tested with `--test-passphrase`
/// instead of opening the volume.
fn reuse_luks(luks: &Luks, device: &str, key_file: &Path) -> Result<(), String> {
    if clevis_present(luks) {
        return Err("config must not specify clevis binding".into());
    }
    if not_empty(&luks.key_file.source).is_none() {
        return Err("config must specify keyfile".into());
    }
    if let Some(label) = &luks.label {
        let info =
            filesystem_info(device).map_err(|e| format!("retrieving filesystem info: {e}"))?;
        if info.label != *label {
            return Err(format!(
                "volume label {} doesn't match expected label {}",
                ignition_config::go_quote(&info.label),
                ignition_config::go_quote(label)
            ));
        }
    }
    let fail = |f: CommandFailure| format!("`{}` {}: {}", f.command, f.status, f.stderr);
    if let Some(uuid) = &luks.uuid {
        let out = run_command(&argv(["cryptsetup", "luksUUID", device])).map_err(fail)?;
        let got = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if got != *uuid {
            return Err(format!(
                "volume UUID {} doesn't match expected UUID {}",
                ignition_config::go_quote(&got),
                ignition_config::go_quote(uuid)
            ));
        }
    }
    let out = run_command(&argv([
        "cryptsetup",
        "luksDump",
        "--dump-json-metadata",
        device,
    ]))
    .map_err(fail)?;
    let dump: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("parsing luks metadata: {e}"))?;
    let discards = dump["config"]["flags"]
        .as_array()
        .is_some_and(|f| f.iter().any(|f| f == "allow-discards"));
    let want = luks.discard == Some(true);
    if discards != want {
        return Err(format!(
            "volume allow-discards flag {discards} doesn't match expected value {want}"
        ));
    }
    let key = key_file.to_string_lossy();
    run_command(&argv([
        "cryptsetup",
        "luksOpen",
        "--test-passphrase",
        "--key-file",
        &key,
        device,
    ]))
    .map_err(|_| "failed to open device using specified keyfile".to_string())?;
    Ok(())
}

/// Formats the LUKS2 volume `luks` with the key in `key_file`, deciding
/// like upstream: without `wipeVolume`, an existing LUKS2 volume that
/// matches (label, UUID, discard flag, and the key opens it) is reused, a
/// LUKS1 volume or any other signature is refused; with it, signatures are
/// wiped first. `at` is the config path (e.g. `$.storage.luks.0`).
///
/// Opening the volume and Clevis binding are not done here (see
/// [`luks_commands`]); CEX volumes are refused.
pub fn format_luks(luks: &Luks, key_file: &Path, at: &str) -> Result<LuksOutcome, DiskError> {
    let device = luks.device.as_deref().unwrap_or_default();
    let ctx = Ctx { at, device };
    if luks.cex.enabled == Some(true) {
        return Err(ctx.refused("IBM CEX secure keys are not supported"));
    }
    if luks.wipe_volume != Some(true) {
        if is_luks(ctx, device, true)? {
            return match reuse_luks(luks, device, key_file) {
                Ok(()) => Ok(LuksOutcome::Reused),
                Err(why) => Err(ctx.refused(format!(
                    "volume is not of the correct type: volume wipe was not requested and luks device {} could not be reused: {why}",
                    ignition_config::go_quote(device)
                ))),
            };
        }
        if is_luks(ctx, device, false)? {
            return Err(ctx.refused(format!(
                "{device} is a luks device but not luks2; Ignition cannot reuse it"
            )));
        }
        let info = filesystem_info(device)
            .map_err(|e| ctx.refused(format!("determining volume type: {e}")))?;
        if !info.fs_type.is_empty() {
            return Err(ctx.refused(format!(
                "volume is not of the correct type (found {}) and a volume wipe was not requested",
                info.fs_type
            )));
        }
    } else {
        ctx.run("wipefs failed", &argv(["wipefs", "-a", device]))?;
    }
    let args = luks_format_command(luks, &key_file.to_string_lossy());
    ctx.run("cryptsetup failed", &args)?;
    settle(ctx, Path::new(device), "LUKS")?;
    Ok(LuksOutcome::Formatted)
}
