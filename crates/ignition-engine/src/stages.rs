//! Upstream's stages, each runnable alone, sharing a config cache and a
//! state file: `fetch-offline`, `fetch`, `kargs`, `disks`, `mount`,
//! `files`, `umount`.
//!
//! The fetch stages find the user config (the `ignition.config.url` kernel
//! argument, then `user.ign` in the system config directories, then the
//! platform, the cloud ones through [`crate::providers`]), render it
//! (`ignition.config.replace` and `merge`), merge it over the base configs
//! (`base.d/*.ign`, then `base.platform.d/PLATFORM/*.ign`) and write the
//! result to the config cache. `fetch-offline` that meets a
//! resource needing the network writes the `neednet` flag and stops, as
//! upstream; `fetch` runs then. The other stages read the cache only.

use std::path::{Path, PathBuf};

use ignition_config::{Config, Version};

use crate::resource;

/// A stage name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Find and render the config without network.
    FetchOffline,
    /// Find and render the config, with network.
    Fetch,
    /// Kernel arguments.
    Kargs,
    /// Partitions, RAID, LUKS, filesystems.
    Disks,
    /// Mount the filesystems that have a path.
    Mount,
    /// Files, directories, links, users, units; the result file.
    Files,
    /// Unmount what `mount` mounted.
    Umount,
}

impl Stage {
    /// Parses upstream's stage name.
    pub fn parse(s: &str) -> Option<Stage> {
        Some(match s {
            "fetch-offline" => Stage::FetchOffline,
            "fetch" => Stage::Fetch,
            "kargs" => Stage::Kargs,
            "disks" => Stage::Disks,
            "mount" => Stage::Mount,
            "files" => Stage::Files,
            "umount" => Stage::Umount,
            _ => return None,
        })
    }

    /// Upstream's stage name.
    pub fn name(self) -> &'static str {
        match self {
            Stage::FetchOffline => "fetch-offline",
            Stage::Fetch => "fetch",
            Stage::Kargs => "kargs",
            Stage::Disks => "disks",
            Stage::Mount => "mount",
            Stage::Files => "files",
            Stage::Umount => "umount",
        }
    }
}

/// Where a stage finds and keeps things. The defaults are upstream's.
#[derive(Debug, Clone)]
pub struct Env {
    /// The target root (`/sysroot` in the initramfs).
    pub root: PathBuf,
    /// The platform (`file`, `qemu`, `metal`, ...).
    pub platform: String,
    /// The rendered config (`/run/ignition.json`).
    pub config_cache: PathBuf,
    /// The state shared between stages (`/run/ignition/state`).
    pub state_file: PathBuf,
    /// Written by `fetch-offline` when the network is needed.
    pub neednet: PathBuf,
    /// System config directories, highest priority first.
    pub system_dirs: Vec<PathBuf>,
    /// The kernel command line (`/proc/cmdline`).
    pub cmdline: PathBuf,
    /// The boot ID (`/proc/sys/kernel/random/boot_id`).
    pub boot_id: PathBuf,
    /// The `qemu` platform's fw_cfg entry.
    pub qemu_fw_cfg: PathBuf,
    /// The cloud providers' metadata service address, instead of
    /// `http://169.254.169.254` (e.g. `http://127.0.0.1:8080`).
    pub metadata_base: Option<String>,
    /// A directory where the platform's config drive is mounted
    /// (OpenStack's `config-2`, Azure's OVF CD), instead of finding and
    /// mounting the device.
    pub config_drive: Option<PathBuf>,
    /// How long a cloud provider's metadata requests may take in all
    /// (upstream's `-fetch-timeout`, 2 minutes by default).
    pub fetch_timeout_secs: i64,
    /// How long the disks stage waits for the devices the config names
    /// ([`crate::devices::timeout`]: `OXCORE_IGNITION_DEVICE_TIMEOUT`, else
    /// 90 s).
    pub device_timeout: std::time::Duration,
}

impl Env {
    /// Upstream's paths for a root and platform.
    pub fn new(root: &Path, platform: &str) -> Env {
        Env {
            root: root.to_path_buf(),
            platform: platform.to_string(),
            config_cache: "/run/ignition.json".into(),
            state_file: "/run/ignition/state".into(),
            neednet: "/run/ignition/neednet".into(),
            system_dirs: vec![
                "/run/ignition".into(),
                "/etc/ignition".into(),
                "/usr/lib/ignition".into(),
            ],
            cmdline: "/proc/cmdline".into(),
            boot_id: "/proc/sys/kernel/random/boot_id".into(),
            qemu_fw_cfg: "/sys/firmware/qemu_fw_cfg/by_name/opt/com.coreos/config/raw".into(),
            metadata_base: None,
            config_drive: None,
            fetch_timeout_secs: crate::providers::FETCH_TIMEOUT_SECS,
            device_timeout: crate::devices::timeout(),
        }
    }
}

/// Why a stage failed.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// A config source is malformed or invalid.
    #[error("{source_name}: {message}")]
    Config {
        /// Where the config came from.
        source_name: String,
        /// What is wrong.
        message: String,
    },
    /// A resource could not be fetched.
    #[error("{0}")]
    Fetch(#[from] resource::FetchError),
    /// The platform cannot give a config here.
    #[error("platform {0:?} is not supported by this engine yet")]
    Platform(String),
    /// A cloud provider failed.
    #[error("{0}")]
    Provider(crate::providers::ProviderError),
    /// The cache or state is missing or unreadable.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        message: String,
    },
    /// The files stage failed.
    #[error("{0}")]
    Apply(#[from] crate::ApplyError),
    /// A command failed.
    #[error("{0}")]
    Command(String),
    /// Devices the config names did not appear in time.
    #[error("{0}")]
    Devices(crate::devices::WaitError),
}

/// What the fetch stages decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// The config is cached.
    Cached,
    /// A resource needs the network: the `neednet` flag is written.
    NeedNet,
}

fn io(path: &Path, e: impl std::fmt::Display) -> StageError {
    StageError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Writes a file on the host through a temporary name and a rename.
fn write_host(path: &Path, data: &[u8]) -> Result<(), StageError> {
    write_host_mode(path, data, 0o644)
}

/// [`write_host`] with the file's mode; the directory is created first.
fn write_host_mode(path: &Path, data: &[u8], mode: u32) -> Result<(), StageError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    }
    // Atomic for readers; not synced to disk, as before.
    util::write_atomic(path, data, mode, false).map_err(|e| io(path, e))
}

/// A kernel command line argument's value.
pub fn cmdline_value(cmdline: &str, key: &str) -> Option<String> {
    cmdline
        .split_whitespace()
        .rev()
        .find_map(|a| a.strip_prefix(key)?.strip_prefix('=').map(str::to_string))
}

/// Whether a kernel command line marks the first boot (`ignition.firstboot`).
pub fn is_first_boot(cmdline: &str) -> bool {
    cmdline
        .split_whitespace()
        .any(|a| a == "ignition.firstboot" || a.starts_with("ignition.firstboot="))
}

/// Parses a config of any supported version and brings it to the newest.
fn parse_any(data: &[u8], source_name: &str) -> Result<Config, StageError> {
    let (c, report) = ignition_config::parse(data).map_err(|f| StageError::Config {
        source_name: source_name.to_string(),
        message: f.to_string(),
    })?;
    for e in &report.entries {
        tracing::warn!("{source_name}: {e}");
    }
    ignition_config::translate(c, Version::V3_7Exp).map_err(|e| StageError::Config {
        source_name: source_name.to_string(),
        message: e.to_string(),
    })
}

/// Why looking for the config stopped.
enum Stop {
    /// Offline, and what comes next needs the network (upstream's
    /// "neednet": the online fetch stage goes on).
    NeedsNetwork,
    /// Offline, and this referenced config (its JSON path and URL) needs
    /// the network.
    ReferenceNeedsNetwork {
        /// The JSON path of the reference.
        at: String,
        /// Its URL.
        url: String,
    },
    /// Anything else.
    Failed(StageError),
}

impl From<StageError> for Stop {
    fn from(e: StageError) -> Stop {
        Stop::Failed(e)
    }
}

/// Fetches a config resource.
fn fetch_config(
    r: &ignition_config::types::Resource,
    fetcher: &resource::Fetcher,
) -> Result<Option<Vec<u8>>, Stop> {
    match fetcher.fetch(r) {
        Ok(d) => Ok(d),
        Err(resource::FetchError::Unsupported { .. }) if fetcher.offline => Err(Stop::NeedsNetwork),
        Err(e) => Err(Stop::Failed(e.into())),
    }
}

/// Renders `ignition.config.replace` and `merge`, recursively; `at` is
/// the JSON path of the config being rendered.
fn render_at(mut c: Config, offline: bool, at: &str, depth: usize) -> Result<Config, Stop> {
    // A config's own proxy and timeouts apply to the configs it references.
    let fetcher = resource::Fetcher::for_config(&c, offline);
    if depth > 10 {
        return Err(Stop::Failed(StageError::Config {
            source_name: "ignition.config".into(),
            message: "configs referenced too deeply".into(),
        }));
    }
    let fetch = |r: &ignition_config::types::Resource, child_at: &str| {
        fetch_config(r, &fetcher).map_err(|e| match e {
            Stop::NeedsNetwork => Stop::ReferenceNeedsNetwork {
                at: child_at.to_string(),
                url: r.source.clone().unwrap_or_default(),
            },
            e => e,
        })
    };
    if c.ignition.config.replace.source.is_some() {
        let child_at = format!("{at}.ignition.config.replace");
        let data = fetch(&c.ignition.config.replace, &child_at)?.unwrap_or_default();
        let child = parse_any(&data, "ignition.config.replace")?;
        return render_at(child, offline, &child_at, depth + 1);
    }
    let merges = std::mem::take(&mut c.ignition.config.merge);
    for (i, m) in merges.iter().enumerate() {
        let child_at = format!("{at}.ignition.config.merge.{i}");
        let data = fetch(m, &child_at)?.unwrap_or_default();
        let child = parse_any(&data, "ignition.config.merge")?;
        let child = render_at(child, offline, &child_at, depth + 1)?;
        c = ignition_config::merge(&c, &child);
    }
    Ok(c)
}

/// Renders `ignition.config.replace` and `merge` as the fetch stages do
/// (the children's own references included). `offline` reads only
/// `data:` children; another one is an error naming it.
pub fn render(c: Config, offline: bool) -> Result<Config, StageError> {
    render_at(c, offline, "$", 0).map_err(|s| match s {
        Stop::ReferenceNeedsNetwork { at, url } => StageError::Config {
            source_name: at,
            message: format!("{url} needs the network; offline, only data: URLs are read"),
        },
        Stop::NeedsNetwork => StageError::Config {
            source_name: "$".into(),
            message: "a referenced config needs the network; offline, only data: URLs are read"
                .into(),
        },
        Stop::Failed(e) => e,
    })
}

fn read_dir_configs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "ign"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The user config's bytes and where they came from.
fn user_config(env: &Env, offline: bool) -> Result<Option<(Vec<u8>, String)>, Stop> {
    let cmdline = std::fs::read_to_string(&env.cmdline).unwrap_or_default();
    if let Some(url) = cmdline_value(&cmdline, "ignition.config.url") {
        let r = ignition_config::types::Resource {
            source: Some(url.clone()),
            ..Default::default()
        };
        let fetcher = resource::Fetcher {
            offline,
            ..resource::Fetcher::default()
        };
        return Ok(fetch_config(&r, &fetcher)?.map(|d| (d, url)));
    }
    for dir in &env.system_dirs {
        let p = dir.join("user.ign");
        if let Ok(d) = std::fs::read(&p) {
            return Ok(Some((d, p.display().to_string())));
        }
    }
    match env.platform.as_str() {
        "file" => {
            let path = std::env::var_os("IGNITION_CONFIG_FILE")
                .map(PathBuf::from)
                .unwrap_or_else(|| "config.ign".into());
            std::fs::read(&path)
                .map(|d| Some((d, path.display().to_string())))
                .map_err(|e| Stop::Failed(io(&path, e)))
        }
        "qemu" => match std::fs::read(&env.qemu_fw_cfg) {
            Ok(d) => Ok(Some((d, "qemu fw_cfg opt/com.coreos/config".into()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Stop::Failed(io(&env.qemu_fw_cfg, e))),
        },
        "metal" => Ok(None),
        other => {
            use crate::providers::{self, ProviderError};
            // Upstream's provider requests are bounded by `-fetch-timeout`
            // and use no proxy.
            let fetcher = resource::Fetcher {
                offline,
                timeouts: ignition_config::types::Timeouts {
                    http_total: Some(env.fetch_timeout_secs),
                    http_response_headers: None,
                },
                ..resource::Fetcher::default()
            };
            match providers::fetch_user_config(
                other,
                env.metadata_base.as_deref(),
                env.config_drive.as_deref(),
                &fetcher,
            ) {
                Ok(u) => Ok(u),
                Err(ProviderError::NeedNet(_)) => Err(Stop::NeedsNetwork),
                Err(ProviderError::Unsupported(p)) => Err(Stop::Failed(StageError::Platform(p))),
                Err(e) => Err(Stop::Failed(StageError::Provider(e))),
            }
        }
    }
}

/// Upstream's platform initialisation before the config is looked for:
/// on AWS offline, the network is needed whatever the config source;
/// online, the IMDSv2 token endpoint must answer.
fn platform_init(env: &Env, offline: bool) -> Result<(), Stop> {
    if env.platform != "aws" {
        return Ok(());
    }
    let fetcher = resource::Fetcher {
        offline,
        ..resource::Fetcher::default()
    };
    match crate::providers::aws_init(env.metadata_base.as_deref(), &fetcher) {
        Ok(()) => Ok(()),
        Err(crate::providers::ProviderError::NeedNet(_)) => Err(Stop::NeedsNetwork),
        Err(e) => Err(Stop::Failed(StageError::Command(format!(
            "initializing platform config: {e}"
        )))),
    }
}

/// The fetch stages.
pub fn fetch(env: &Env, offline: bool) -> Result<Fetched, StageError> {
    let mut base = Config::default();
    base.ignition.version = Version::V3_7Exp.as_str().into();
    let mut sources = Vec::new();
    for dir in &env.system_dirs {
        let files = read_dir_configs(&dir.join("base.d"))
            .into_iter()
            .chain(read_dir_configs(
                &dir.join("base.platform.d").join(&env.platform),
            ));
        for f in files {
            let data = std::fs::read(&f).map_err(|e| io(&f, e))?;
            let c = parse_any(&data, &f.display().to_string())?;
            base = ignition_config::merge(&base, &c);
            sources.push(("base", f.display().to_string()));
        }
    }
    match platform_init(env, offline) {
        Ok(()) => {}
        Err(Stop::Failed(e)) => return Err(e),
        Err(_) => return need_net(env),
    }
    let user = match user_config(env, offline) {
        Ok(u) => u,
        Err(Stop::Failed(e)) => return Err(e),
        Err(_) => return need_net(env),
    };
    let mut full = base;
    if let Some((data, name)) = user {
        if data.is_empty() {
            tracing::warn!("{name}: not a config (empty): ignoring user-provided config");
        } else {
            let c = parse_any(&data, &name)?;
            let c = match render_at(c, offline, "$", 0) {
                Ok(c) => c,
                Err(Stop::Failed(e)) => return Err(e),
                Err(_) => return need_net(env),
            };
            full = ignition_config::merge(&full, &c);
            sources.push(("user", name));
        }
    }
    write_host(
        &env.config_cache,
        ignition_config::to_json(&full).as_bytes(),
    )?;
    let mut state = load_state(env)?;
    state.insert(
        "fetchedConfigs".into(),
        serde_json::Value::Array(
            sources
                .iter()
                .map(|(k, s)| serde_json::json!({"kind": k, "source": s, "referenced": false}))
                .collect(),
        ),
    );
    save_state(env, &state)?;
    Ok(Fetched::Cached)
}

/// The state the stages share (upstream's `internal/state`): a JSON
/// object; a missing file is the empty state, an unreadable or malformed
/// one is an error.
fn load_state(env: &Env) -> Result<serde_json::Map<String, serde_json::Value>, StageError> {
    let data = match std::fs::read(&env.state_file) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Default::default()),
        Err(e) => return Err(io(&env.state_file, e)),
    };
    match serde_json::from_slice(&data) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        Ok(_) => Err(io(&env.state_file, "parsing state file: not a JSON object")),
        Err(e) => Err(io(&env.state_file, format!("parsing state file: {e}"))),
    }
}

/// Writes the state (mode 0600, through a temporary file).
fn save_state(
    env: &Env,
    state: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), StageError> {
    let mut data = serde_json::to_vec(state).map_err(|e| io(&env.state_file, e))?;
    data.push(b'\n');
    write_host_mode(&env.state_file, &data, 0o600)
}

/// The directories the mount stage created, from the state.
fn notated_directories(env: &Env) -> Result<Vec<String>, StageError> {
    Ok(load_state(env)?
        .get("notatedDirectories")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|d| d.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default())
}

fn json_str(s: &str) -> String {
    ignition_config::to_go_json(s, false)
}

fn need_net(env: &Env) -> Result<Fetched, StageError> {
    write_host(&env.neednet, b"")?;
    Ok(Fetched::NeedNet)
}

/// The cached config, for the stages after fetch.
pub fn cached(env: &Env) -> Result<Config, StageError> {
    let data = std::fs::read(&env.config_cache).map_err(|e| io(&env.config_cache, e))?;
    parse_any(&data, &env.config_cache.display().to_string())
}

/// Whether the fetched configs included a user config.
fn user_config_provided(env: &Env) -> Result<bool, StageError> {
    Ok(load_state(env)?
        .get("fetchedConfigs")
        .and_then(|v| v.as_array())
        .is_some_and(|a| {
            a.iter()
                .any(|c| c.get("kind").and_then(|k| k.as_str()) == Some("user"))
        }))
}

/// Runs one stage.
pub fn run(stage: Stage, env: &Env) -> Result<(), StageError> {
    match stage {
        Stage::FetchOffline => fetch(env, true).map(|_| ()),
        Stage::Fetch => match fetch(env, false)? {
            Fetched::Cached => Ok(()),
            Fetched::NeedNet => Err(StageError::Command(
                "a resource needs the network even in the fetch stage".into(),
            )),
        },
        Stage::Kargs => kargs(&cached(env)?, env),
        Stage::Files => {
            let c = cached(env)?;
            let mut opts = crate::Options::from_env()?;
            opts.notated_directories = notated_directories(env)?;
            let fetcher = resource::Fetcher::for_config(&c, false);
            crate::apply_opts(&c, &env.root, &fetcher, &opts)?;
            result_file(env)
        }
        Stage::Disks => disks(&cached(env)?, env),
        Stage::Mount => mount(&cached(env)?, env, true),
        Stage::Umount => mount(&cached(env)?, env, false),
    }
}

/// The disks stage, in upstream's order: partitions, RAID arrays, LUKS
/// volumes (formatted, opened, bound to Clevis), filesystems.
fn disks(c: &Config, env: &Env) -> Result<(), StageError> {
    use crate::disks;
    let s = &c.storage;
    let e = |e: disks::DiskError| StageError::Command(e.to_string());
    // Each step first waits for every device it names, as upstream, so a
    // disk or link that udev makes a little later is not a failure.
    let wait = |devs: Vec<&str>, what: &str| {
        crate::devices::wait_for_with(&devs, what, env.device_timeout).map_err(StageError::Devices)
    };
    wait(s.disks.iter().map(|d| d.device.as_str()).collect(), "disks")?;
    for (i, d) in s.disks.iter().enumerate() {
        disks::partition(d, &format!("$.storage.disks.{i}")).map_err(e)?;
    }
    wait(
        s.raid
            .iter()
            .flat_map(|r| r.devices.iter().map(String::as_str))
            .collect(),
        "raids",
    )?;
    for (i, r) in s.raid.iter().enumerate() {
        disks::create_raid(r, &format!("$.storage.raid.{i}")).map_err(e)?;
    }
    let key_dir = env
        .state_file
        .parent()
        .unwrap_or(Path::new("/run/ignition"))
        .join("luks-keyfiles");
    wait(
        s.luks.iter().filter_map(|l| l.device.as_deref()).collect(),
        "luks",
    )?;
    for (i, l) in s.luks.iter().enumerate() {
        let at = format!("$.storage.luks.{i}");
        std::fs::create_dir_all(&key_dir).map_err(|err| io(&key_dir, err))?;
        let key = key_dir.join(&l.name);
        let generated = l.key_file.source.is_none();
        if generated {
            if !key.exists() {
                disks::generate_key_file(&key).map_err(|err| io(&key, err))?;
            }
        } else {
            let data = resource::Fetcher::for_config(c, false)
                .fetch(&l.key_file)
                .map_err(|err| StageError::Command(format!("{at}.keyFile: {err}")))?
                .unwrap_or_default();
            write_host(&key, &data)?;
        }
        let outcome = disks::format_luks(l, &key, &at).map_err(e)?;
        let key_s = key.display().to_string();
        let cmds = disks::luks_commands(l, &key_s, generated)
            .map_err(|m| StageError::Command(format!("{at}: {m}")))?;
        let mut steps = vec![cmds.open];
        if outcome == disks::LuksOutcome::Formatted {
            steps.extend(cmds.clevis_bind);
            if let Some([close, unlock]) = cmds.reopen {
                steps.push(close);
                steps.push(unlock);
            }
            steps.extend(cmds.remove_key);
        }
        for argv in steps {
            let out = crate::cmd::run(&argv, None)
                .map_err(|err| StageError::Command(format!("{at}: {err}")))?;
            if !out.status.success() {
                return Err(StageError::Command(format!(
                    "{at}: `{}` failed ({}): {}",
                    argv.join(" "),
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
        }
    }
    wait(
        s.filesystems.iter().map(|f| f.device.as_str()).collect(),
        "filesystems",
    )?;
    for (i, f) in s.filesystems.iter().enumerate() {
        disks::make_filesystem(f, &format!("$.storage.filesystems.{i}")).map_err(e)?;
    }
    Ok(())
}

/// `/etc/.ignition-result.json` in the root, as upstream writes it.
fn result_file(env: &Env) -> Result<(), StageError> {
    let boot_id = std::fs::read_to_string(&env.boot_id).unwrap_or_default();
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let t = civil_time::utc(secs);
    let date = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    );
    let text = format!(
        "{{\n  \"provisioningBootID\": {},\n  \"provisioningDate\": {},\n  \"userConfigProvided\": {}\n}}\n",
        json_str(boot_id.trim()),
        json_str(&date),
        user_config_provided(env)?
    );
    let root =
        crate::root::Root::open(&env.root).map_err(|e| StageError::Command(e.to_string()))?;
    root.write_file("/etc/.ignition-result.json", text.as_bytes(), 0o644, None)
        .map_err(|e| StageError::Command(e.to_string()))
}

/// Kernel arguments, written into the root's BLS entries
/// (`/boot/loader/entries/*.conf`, the `options` line).
fn kargs(c: &Config, env: &Env) -> Result<(), StageError> {
    let k = &c.kernel_arguments;
    if k.should_exist.is_empty() && k.should_not_exist.is_empty() {
        return Ok(());
    }
    let dir = env.root.join("boot/loader/entries");
    let entries = std::fs::read_dir(&dir).map_err(|e| io(&dir, e))?;
    for e in entries.filter_map(Result::ok) {
        let p = e.path();
        if p.extension().is_none_or(|x| x != "conf") {
            continue;
        }
        let text = std::fs::read_to_string(&p).map_err(|e| io(&p, e))?;
        let mut out = String::new();
        for line in text.lines() {
            match line.strip_prefix("options") {
                Some(rest) if rest.starts_with([' ', '\t']) || rest.is_empty() => {
                    let mut args: Vec<String> =
                        rest.split_whitespace().map(str::to_string).collect();
                    args.retain(|a| !k.should_not_exist.contains(a));
                    for a in &k.should_exist {
                        if !args.contains(a) {
                            args.push(a.clone());
                        }
                    }
                    out.push_str(&format!("options {}\n", args.join(" ")));
                }
                _ => {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        write_host(&p, out.as_bytes())?;
    }
    Ok(())
}

/// Refuses a mount path with a component in the root that exists and is
/// not a directory (a symlink above all), in upstream's words.
fn non_directories(env: &Env, path: &str) -> Result<(), StageError> {
    let root =
        crate::root::Root::open(&env.root).map_err(|e| StageError::Command(e.to_string()))?;
    let clean = ignition_config::validate::clean_path(path);
    let mut prefix = String::new();
    for c in clean.split('/').filter(|c| !c.is_empty()) {
        prefix = format!("{prefix}/{c}");
        match root
            .kind(&prefix)
            .map_err(|e| StageError::Command(e.to_string()))?
        {
            None => return Ok(()),
            Some(crate::root::NodeKind::Dir) => {}
            Some(_) => {
                return Err(StageError::Command(format!(
                    "mount path {} contains non-directory component {}",
                    ignition_config::go_quote(path),
                    ignition_config::go_quote(&prefix)
                )));
            }
        }
    }
    Ok(())
}

/// Mounts (or unmounts) the filesystems that have a path, under the root.
fn mount(c: &Config, env: &Env, mount: bool) -> Result<(), StageError> {
    let mut fss: Vec<&ignition_config::types::Filesystem> = c
        .storage
        .filesystems
        .iter()
        .filter(|f| {
            f.path.as_deref().is_some_and(|p| !p.is_empty())
                && f.format
                    .as_deref()
                    .is_some_and(|f| f != "swap" && f != "none")
        })
        .collect();
    fss.sort_by_key(|f| {
        f.path
            .as_deref()
            .unwrap_or("")
            .split('/')
            .filter(|s| !s.is_empty())
            .count()
    });
    if !mount {
        fss.reverse();
    }
    for fs in fss {
        let path = fs.path.as_deref().unwrap_or("/");
        let target = env.root.join(path.trim_start_matches('/'));
        // `mount` follows symlinks on the host: a link in the root (`/mnt
        // -> /`) would put the filesystem over the host's own directory.
        // As upstream, a mount path must be directories only.
        non_directories(env, path)?;
        let mut cmd = vec![if mount { "mount" } else { "umount" }.to_string()];
        if mount {
            // The root is opened afresh for each mount point, so a mount
            // point below an earlier mount is made in the mounted
            // filesystem, and no descriptor of ours keeps a mount busy.
            let root = crate::root::Root::open(&env.root)
                .map_err(|e| StageError::Command(e.to_string()))?;
            // The directories made for the mount point are recorded, so
            // that the files stage can give those in a home to its user.
            let clean = ignition_config::validate::clean_path(path);
            let mut missing = Vec::new();
            let mut prefix = String::new();
            for c in clean.split('/').filter(|c| !c.is_empty()) {
                prefix = format!("{prefix}/{c}");
                let there = root
                    .kind(&prefix)
                    .map_err(|e| StageError::Command(e.to_string()))?;
                if there.is_none() {
                    missing.push(prefix.clone());
                }
            }
            root.create_dirs(path)
                .map_err(|e| StageError::Command(e.to_string()))?;
            drop(root);
            if !missing.is_empty() {
                let mut state = load_state(env)?;
                let list = state
                    .entry("notatedDirectories")
                    .or_insert_with(|| serde_json::Value::Array(Vec::new()));
                // Go writes an empty list as null.
                if !list.is_array() {
                    *list = serde_json::Value::Array(Vec::new());
                }
                if let serde_json::Value::Array(a) = list {
                    a.extend(missing.into_iter().map(serde_json::Value::String));
                }
                save_state(env, &state)?;
            }
            cmd.extend(["-t".into(), fs.format.clone().unwrap_or("auto".into())]);
            if !fs.mount_options.is_empty() {
                cmd.extend(["-o".into(), fs.mount_options.join(",")]);
            }
            cmd.push(fs.device.clone());
        }
        cmd.push(target.display().to_string());
        let out = crate::cmd::run(&cmd, None).map_err(|e| StageError::Command(e.to_string()))?;
        if !out.status.success() {
            return Err(StageError::Command(format!(
                "`{}` failed ({}): {}",
                crate::cmd::command_line(&cmd),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_command_line() {
        let c = "BOOT_IMAGE=/vmlinuz ignition.firstboot ignition.platform.id=qemu ignition.config.url=data:,{}";
        assert!(is_first_boot(c));
        assert!(!is_first_boot("root=/dev/sda"));
        assert_eq!(
            cmdline_value(c, "ignition.config.url").as_deref(),
            Some("data:,{}")
        );
        assert_eq!(
            cmdline_value(c, "ignition.platform.id").as_deref(),
            Some("qemu")
        );
    }
}
