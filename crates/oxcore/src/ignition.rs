//! `oxcore ignition …` and the `ignition-validate` personality.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};

use butane::files::go_error as path_error;

/// `oxcore ignition`: a stage (`--stage NAME`), or a subcommand.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct IgnitionCli {
    #[command(subcommand)]
    command: Option<IgnitionCommand>,
    #[command(flatten)]
    stage: StageArgs,
}

/// Running one of upstream's stages, as the initramfs units do.
#[derive(Debug, Args)]
pub struct StageArgs {
    /// The stage: fetch-offline, fetch, kargs, disks, mount, files, umount.
    #[arg(long)]
    stage: Option<String>,
    /// The platform: file (IGNITION_CONFIG_FILE), qemu, metal, aws, gcp,
    /// azure, openstack, brightbox, digitalocean.
    #[arg(long, default_value = "file")]
    platform: String,
    /// The cloud metadata service's address, instead of
    /// http://169.254.169.254 (e.g. http://127.0.0.1:8080).
    #[arg(long = "metadata-url", value_name = "URL")]
    metadata_url: Option<String>,
    /// A directory where the platform's config drive (openstack config-2,
    /// azure OVF CD) is mounted, instead of finding and mounting it.
    #[arg(long, value_name = "DIR")]
    config_drive: Option<PathBuf>,
    /// The target root.
    #[arg(long, default_value = "/sysroot")]
    root: PathBuf,
    /// The rendered config, shared by the stages.
    #[arg(long, default_value = "/run/ignition.json")]
    config_cache: PathBuf,
    /// The state shared by the stages.
    #[arg(long, default_value = "/run/ignition/state")]
    state_file: PathBuf,
    /// The flag `fetch-offline` writes when the network is needed.
    #[arg(long, default_value = "/run/ignition/neednet")]
    neednet: PathBuf,
    /// System config directories (base.d, base.platform.d, user.ign);
    /// default /run/ignition, /etc/ignition, /usr/lib/ignition.
    #[arg(long = "system-config-dir")]
    system_config_dirs: Vec<PathBuf>,
    /// The kernel command line to read.
    #[arg(long, default_value = "/proc/cmdline")]
    cmdline: PathBuf,
    /// Run even without `ignition.firstboot` on the kernel command line.
    #[arg(long)]
    force: bool,
}

/// Ignition subcommands.
#[derive(Debug, Subcommand)]
pub enum IgnitionCommand {
    /// Validate an Ignition config (any spec 3.0.0 to 3.7.0-experimental),
    /// as `ignition-validate` does: findings on stdout, exit 1 if invalid.
    Validate {
        /// The config file, or `-` for standard input.
        config: PathBuf,
    },
    /// Apply a config's files stage to a directory: files, directories,
    /// links, users and groups, systemd units. For image builders and tests.
    Apply {
        /// The target root.
        #[arg(long)]
        root: PathBuf,
        /// Use no network: only `data:` resources (else also `http:`,
        /// `https:` and `tftp:`).
        #[arg(long)]
        offline: bool,
        /// The config file, or `-` for standard input.
        config: PathBuf,
    },
}

pub fn run(cli: IgnitionCli) -> anyhow::Result<ExitCode> {
    let Some(cmd) = cli.command else {
        return run_stage(cli.stage);
    };
    match cmd {
        IgnitionCommand::Validate { config } => Ok(validate_file(&config)),
        IgnitionCommand::Apply {
            root,
            offline,
            config,
        } => apply(&root, &config, offline),
    }
}

fn apply(root: &Path, config: &Path, offline: bool) -> anyhow::Result<ExitCode> {
    let blob = read_config(config).map_err(|e| anyhow::anyhow!("couldn't read config: {e}"))?;
    let (config, report) =
        ignition_config::parse(&blob).map_err(|f| anyhow::anyhow!("{}: {f}", config.display()))?;
    if !report.is_empty() {
        eprint!("{report}");
    }
    let fetcher = ignition_engine::resource::Fetcher::for_config(&config, offline);
    let applied = ignition_engine::apply_with(&config, root, &fetcher)?;
    println!(
        "applied to {}: {} files, directories and links; {} users and groups; {} units",
        root.display(),
        applied.nodes,
        applied.accounts,
        applied.units
    );
    Ok(ExitCode::SUCCESS)
}

fn run_stage(a: StageArgs) -> anyhow::Result<ExitCode> {
    use ignition_engine::stages::{self, Env, Stage};
    let Some(name) = a.stage else {
        anyhow::bail!(
            "--stage is required (fetch-offline, fetch, kargs, disks, mount, files, umount), or a subcommand"
        );
    };
    let stage = Stage::parse(&name).ok_or_else(|| anyhow::anyhow!("unknown stage {name:?}"))?;
    let cmdline = std::fs::read_to_string(&a.cmdline).unwrap_or_default();
    if !a.force && !stages::is_first_boot(&cmdline) {
        println!(
            "not the first boot (no ignition.firstboot on the kernel command line); nothing to do"
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut env = Env::new(&a.root, &a.platform);
    env.config_cache = a.config_cache;
    env.state_file = a.state_file;
    env.neednet = a.neednet;
    env.cmdline = a.cmdline;
    env.metadata_base = a.metadata_url;
    env.config_drive = a.config_drive;
    if !a.system_config_dirs.is_empty() {
        env.system_dirs = a.system_config_dirs;
    }
    match stages::run(stage, &env) {
        Ok(()) => {
            if stage == Stage::FetchOffline && env.neednet.exists() {
                println!(
                    "{}: the config needs the network; {} written",
                    stage.name(),
                    env.neednet.display()
                );
            } else {
                println!("{} passed", stage.name());
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{} failed: {e}", stage.name());
            if let Ok(c) = stages::cached(&env) {
                eprintln!("Full config:\n{}", redacted(&c));
            }
            Ok(ExitCode::from(1))
        }
    }
}

/// The config for logs: password hashes and key material left out.
fn redacted(c: &ignition_config::Config) -> String {
    let mut c = c.clone();
    for u in &mut c.passwd.users {
        if u.password_hash.is_some() {
            u.password_hash = Some("<redacted>".into());
        }
    }
    for g in &mut c.passwd.groups {
        if g.password_hash.is_some() {
            g.password_hash = Some("<redacted>".into());
        }
    }
    for l in &mut c.storage.luks {
        if l.key_file.source.is_some() {
            l.key_file.source = Some("<redacted>".into());
        }
    }
    ignition_config::to_json_pretty(&c)
}

/// Reads a config from a file or `-` (stdin), with Go's error wording.
fn read_config(path: &Path) -> Result<Vec<u8>, String> {
    let mut blob = Vec::new();
    if path == Path::new("-") {
        std::io::stdin()
            .read_to_end(&mut blob)
            .map_err(|e| path_error("read", Path::new("/dev/stdin"), &e))?;
        return Ok(blob);
    }
    let mut f = std::fs::File::open(path).map_err(|e| path_error("open", path, &e))?;
    f.read_to_end(&mut blob)
        .map_err(|e| path_error("read", path, &e))?;
    Ok(blob)
}

/// Validates one config and prints what upstream's `ignition-validate`
/// prints; returns its exit code.
pub fn validate_file(path: &Path) -> ExitCode {
    let blob = match read_config(path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("couldn't read config: {e}");
            return ExitCode::from(1);
        }
    };
    let (report, error) = match ignition_config::parse(&blob) {
        Ok((config, report)) => {
            // The process ends right after this; freeing a large config
            // piece by piece would only cost time.
            std::mem::forget(config);
            (report, None)
        }
        Err(f) => (f.report, Some(f.error)),
    };
    std::mem::forget(blob);
    if !report.is_empty() {
        let mut out = std::io::stdout().lock();
        // Upstream trims the report and ends it with one newline.
        let _ = writeln!(out, "{}", report.to_string().trim());
    }
    if report.is_fatal() {
        return ExitCode::from(1);
    }
    if let Some(e) = error {
        eprintln!("couldn't parse config: {e}");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

/// `ignition-validate [flags] config.ign`, with Go's `flag` package rules:
/// single or double dash, `-flag=value`, parsing stops at the first
/// non-flag argument or `--`.
pub fn ignition_validate_main(args: Vec<OsString>) -> ExitCode {
    let argv0 = args
        .first()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_else(|| "ignition-validate".into());
    let usage = || {
        eprintln!(
            "Usage:\n  {argv0} [flags] config.ign\n\n  -version\n    \tprint the version of ignition-validate"
        );
    };
    let mut rest: Vec<OsString> = Vec::new();
    let mut show_version = false;
    let mut iter = args.into_iter().skip(1);
    while let Some(arg) = iter.next() {
        let s = arg.to_string_lossy().into_owned();
        if s == "--" {
            rest.extend(iter);
            break;
        }
        if !s.starts_with('-') || s == "-" {
            rest.push(arg);
            rest.extend(iter);
            break;
        }
        let name = s.trim_start_matches('-');
        let name = if s.starts_with("---") {
            s[1..].to_string()
        } else {
            name.to_string()
        };
        let (flag, value) = match name.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (name.clone(), None),
        };
        match flag.as_str() {
            "h" | "help" => {
                usage();
                return ExitCode::SUCCESS;
            }
            "version" => match value.as_deref() {
                None | Some("1" | "t" | "T" | "true" | "TRUE" | "True") => show_version = true,
                Some("0" | "f" | "F" | "false" | "FALSE" | "False") => show_version = false,
                Some(v) => {
                    eprintln!("invalid boolean value {v:?} for -version: parse error");
                    usage();
                    return ExitCode::from(2);
                }
            },
            _ => {
                eprintln!("flag provided but not defined: -{flag}");
                usage();
                return ExitCode::from(2);
            }
        }
    }
    if show_version {
        println!("oxcore ignition-validate {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    if rest.len() != 1 {
        usage();
        return ExitCode::from(1);
    }
    validate_file(Path::new(&rest[0]))
}
