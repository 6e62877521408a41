//! `oxcore ignition …` and the `ignition-validate` personality.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};

use butane::go_error as path_error;

/// `oxcore ignition`: a stage (`--stage NAME`), or a subcommand.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct IgnitionCli {
    #[command(subcommand)]
    command: Option<IgnitionCommand>,
    #[command(flatten)]
    stage: StageArgs,
}

/// Running one of upstream's stages, as the initramfs units do. Upstream's
/// single-dash flags (`-stage files`, `-root=/sysroot`) are accepted too.
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
    /// The target root (may be empty for the stages that do not use it,
    /// as upstream's units pass it).
    #[arg(long, default_value = "/sysroot", value_parser = clap::value_parser!(OsString))]
    root: OsString,
    /// The rendered config, shared by the stages.
    #[arg(long, default_value = "/run/ignition.json")]
    config_cache: PathBuf,
    /// The state shared by the stages.
    #[arg(long, default_value = "/run/ignition/state")]
    state_file: PathBuf,
    /// The flag `fetch-offline` writes when the network is needed.
    #[arg(long, default_value = "/run/ignition/neednet")]
    neednet: PathBuf,
    /// How long the platform's config may take to fetch (a Go duration:
    /// 2m0s, 90s, 1h).
    #[arg(long, value_name = "DURATION", default_value = "2m0s")]
    fetch_timeout: String,
    /// Accepted for upstream's sake: logs always go to stdout and stderr.
    #[arg(long)]
    log_to_stdout: bool,
    /// Print the version and exit.
    #[arg(long = "version")]
    print_version: bool,
    /// System config directories (base.d, base.platform.d, user.ign);
    /// default $IGNITION_SYSTEM_CONFIG_DIR, else /run/ignition,
    /// /etc/ignition, /usr/lib/ignition.
    #[arg(long = "system-config-dir")]
    system_config_dirs: Vec<PathBuf>,
    /// The kernel command line to read.
    #[arg(long, default_value = "/proc/cmdline")]
    cmdline: PathBuf,
    /// Run even without `ignition.firstboot` on the kernel command line.
    #[arg(long)]
    force: bool,
}

/// The flags of upstream's `ignition` binary (`internal/main.go`), which
/// take a value unless boolean.
const UPSTREAM_FLAGS: [(&str, bool); 9] = [
    ("config-cache", false),
    ("fetch-timeout", false),
    ("neednet", false),
    ("platform", false),
    ("root", false),
    ("stage", false),
    ("state-file", false),
    ("version", true),
    ("log-to-stdout", true),
];

/// Upstream's single-dash flags, as Go's `flag` package reads them
/// (`-name`, `-name=value`, `-name value`), rewritten to the double-dash
/// form: `-root=/x` becomes `--root=/x`. A boolean given `=false` is
/// dropped, `=true` kept bare. Other arguments are left alone.
pub fn upstream_flags(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    args.into_iter()
        .filter_map(|arg| {
            let Some(s) = arg.to_str() else {
                return Some(arg);
            };
            let Some(rest) = s.strip_prefix('-').filter(|r| !r.starts_with('-')) else {
                return Some(arg);
            };
            let (name, value) = match rest.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (rest, None),
            };
            let Some(&(_, boolean)) = UPSTREAM_FLAGS.iter().find(|(f, _)| *f == name) else {
                return Some(arg);
            };
            Some(match (boolean, value) {
                (true, Some("1" | "t" | "T" | "true" | "TRUE" | "True")) | (true, None) => {
                    OsString::from(format!("--{name}"))
                }
                (true, Some("0" | "f" | "F" | "false" | "FALSE" | "False")) => return None,
                _ => OsString::from(format!("-{s}")),
            })
        })
        .collect()
}

/// A Go duration (`2m0s`, `90s`, `1h30m`, `1.5s`) in whole seconds.
fn go_duration_secs(s: &str) -> Option<i64> {
    if s == "0" {
        return Some(0);
    }
    if s.is_empty() {
        return None;
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|&n| n > 0)?;
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..u] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[u..];
    }
    (total.is_finite() && total < i64::MAX as f64).then(|| total.ceil() as i64)
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
    crate::cli::log_messages_to_stderr();
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
    let (parsed, report) =
        ignition_config::parse(&blob).map_err(|f| anyhow::anyhow!("{}: {f}", config.display()))?;
    if !report.is_empty() {
        eprint!("{report}");
    }
    // `ignition.config.replace` and `merge`, as the fetch stages render
    // them.
    let rendered = ignition_engine::stages::render(parsed, offline)
        .map_err(|e| anyhow::anyhow!("{}: {e}", config.display()))?;
    let fetcher = ignition_engine::resource::Fetcher::for_config(&rendered, offline);
    let applied = ignition_engine::apply_with(&rendered, root, &fetcher)?;
    println!(
        "applied to {}: {} files, directories and links; {} users and groups; {} units",
        root.display(),
        applied.nodes,
        applied.accounts,
        applied.units
    );
    Ok(ExitCode::SUCCESS)
}

/// Upstream `ignition`'s command line.
#[derive(Debug, clap::Parser)]
#[command(
    name = "ignition",
    about = "Ignition: first-boot provisioning, one stage per run",
    term_width = 80,
    disable_version_flag = true
)]
pub(crate) struct Upstream {
    #[command(flatten)]
    stage: StageArgs,
}

/// `ignition` (argv[0]): upstream's binary, flags and defaults (root `/`,
/// `-platform` and `-stage` required, exit 2 for a usage error), with no
/// first-boot check: upstream leaves that to the systemd generator.
pub fn ignition_main(args: Vec<OsString>) -> ExitCode {
    let argv = upstream_flags(args);
    let mut cli = match <Upstream as clap::Parser>::try_parse_from(&argv) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let explicit = |name: &str| {
        argv.iter().any(|a| {
            a.to_str()
                .is_some_and(|a| a == format!("--{name}") || a.starts_with(&format!("--{name}=")))
        })
    };
    if cli.stage.print_version {
        println!("oxcore ignition {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    if !explicit("platform") {
        eprintln!("'--platform' must be provided");
        return ExitCode::from(2);
    }
    if cli.stage.stage.is_none() {
        eprintln!("'--stage' must be provided");
        return ExitCode::from(2);
    }
    if !explicit("root") {
        cli.stage.root = OsString::from("/");
    }
    cli.stage.force = true;
    match run_stage(cli.stage) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("CRITICAL: Ignition failed: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run_stage(a: StageArgs) -> anyhow::Result<ExitCode> {
    use ignition_engine::stages::{self, Env, Stage};
    if a.print_version {
        println!("oxcore ignition {}", env!("CARGO_PKG_VERSION"));
        return Ok(ExitCode::SUCCESS);
    }
    let Some(name) = a.stage else {
        anyhow::bail!(
            "--stage is required (fetch-offline, fetch, kargs, disks, mount, files, umount), or a subcommand"
        );
    };
    let stage = Stage::parse(&name).ok_or_else(|| anyhow::anyhow!("unknown stage {name:?}"))?;
    let fetch_timeout = go_duration_secs(&a.fetch_timeout).ok_or_else(|| {
        anyhow::anyhow!(
            "--fetch-timeout {:?}: not a duration (e.g. 2m0s, 90s)",
            a.fetch_timeout
        )
    })?;
    let cmdline = std::fs::read_to_string(&a.cmdline).unwrap_or_default();
    if !a.force && !stages::is_first_boot(&cmdline) {
        println!(
            "not the first boot (no ignition.firstboot on the kernel command line); nothing to do"
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut env = Env::new(Path::new(&a.root), &a.platform);
    env.config_cache = a.config_cache;
    env.state_file = a.state_file;
    env.neednet = a.neednet;
    env.cmdline = a.cmdline;
    env.metadata_base = a.metadata_url;
    env.config_drive = a.config_drive;
    env.fetch_timeout_secs = fetch_timeout;
    if !a.system_config_dirs.is_empty() {
        env.system_dirs = a.system_config_dirs;
    } else if let Some(dir) =
        std::env::var_os("IGNITION_SYSTEM_CONFIG_DIR").filter(|d| !d.is_empty())
    {
        // Upstream's variable names its one system config directory.
        env.system_dirs = vec![PathBuf::from(dir)];
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

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn upstream_single_dash_flags() {
        assert_eq!(
            upstream_flags(os(&[
                "-platform",
                "file",
                "-stage=files",
                "-root",
                "",
                "-log-to-stdout",
                "-version=false",
                "--neednet",
                "/n",
                "-",
                "-x",
                "apply",
            ])),
            os(&[
                "--platform",
                "file",
                "--stage=files",
                "--root",
                "",
                "--log-to-stdout",
                "--neednet",
                "/n",
                "-",
                "-x",
                "apply",
            ])
        );
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration_secs("2m0s"), Some(120));
        assert_eq!(go_duration_secs("1h30m"), Some(5400));
        assert_eq!(go_duration_secs("1.5s"), Some(2));
        assert_eq!(go_duration_secs("500ms"), Some(1));
        assert_eq!(go_duration_secs("0"), Some(0));
        assert_eq!(go_duration_secs("90"), None);
        assert_eq!(go_duration_secs("2x"), None);
        assert_eq!(go_duration_secs(""), None);
    }
}
