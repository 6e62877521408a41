//! `oxcore fleetlock serve|status|release`, and the `airlock` link
//! (`airlock serve -c FILE`, `airlock ex get slots`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Result, anyhow};
use clap::{Args, Parser, Subcommand};
use fleetlock::Config;

/// airlock's default configuration path.
const AIRLOCK_CONFIG: &str = "/etc/airlock/config.toml";

/// The FleetLock server (reboot slots for a fleet; airlock-compatible).
#[derive(Debug, Args)]
pub struct FleetlockCli {
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Debug, Subcommand)]
enum Verb {
    /// Serve FleetLock (`/v1/pre-reboot`, `/v1/steady-state`) and, when
    /// `[status] enabled`, metrics and status.
    Serve(ConfigArg),
    /// Show each group's slots and holders (and since when, with leases).
    Status(ConfigArg),
    /// Give a holder's slot back by hand (a node that died holding it).
    Release {
        #[command(flatten)]
        config: ConfigArg,
        /// The lock group.
        #[arg(long)]
        group: String,
        /// The holder's id (Zincati's app-specific machine id).
        #[arg(long)]
        id: String,
    },
}

#[derive(Debug, Args)]
struct ConfigArg {
    /// airlock's TOML configuration (default /etc/airlock/config.toml when
    /// it exists, else built-in defaults: the embedded store at
    /// /var/lib/oxcore/fleetlock.redb, 0.0.0.0:9090, one group `default`
    /// with one slot).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// More log detail (-v info, -vv debug, -vvv trace; warnings without).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

fn load(arg: &ConfigArg) -> Result<Config> {
    let path = match &arg.config {
        Some(p) => Some(p.clone()),
        None => Some(PathBuf::from(AIRLOCK_CONFIG)).filter(|p| p.exists()),
    };
    match path {
        Some(p) => Config::load(&p).map_err(|e| anyhow!(e)),
        None => Ok(Config::default()),
    }
}

/// Runs `oxcore fleetlock`.
pub fn run(cli: FleetlockCli) -> Result<ExitCode> {
    match cli.verb {
        Verb::Serve(arg) => serve(&arg),
        Verb::Status(arg) => {
            crate::cli::log_at_verbosity(arg.verbose);
            print_status(&load(&arg)?)
        }
        Verb::Release { config, group, id } => {
            crate::cli::log_at_verbosity(config.verbose);
            let held = fleetlock::admin::release(&load(&config)?, &group, &id)?;
            if held {
                println!("released {id}'s slot in group {group}");
            } else {
                println!("{id} held no slot in group {group}; nothing to release");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn serve(arg: &ConfigArg) -> Result<ExitCode> {
    crate::cli::log_at_verbosity(arg.verbose.max(1));
    let config = load(arg)?;
    let running = fleetlock::start(config, true)?;
    println!("listening on {}", running.service);
    if let Some(s) = running.status {
        println!("status and metrics on {s}");
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    running.join()?;
    Ok(ExitCode::SUCCESS)
}

fn print_status(config: &Config) -> Result<ExitCode> {
    let groups = fleetlock::admin::status(config)?;
    for (name, sem) in &groups {
        let lease = config
            .groups
            .get(name)
            .and_then(|g| g.lease_seconds)
            .map_or(String::new(), |l| format!(", lease {l} s"));
        println!(
            "{name}: {} of {} slots held{lease}",
            sem.holders.len(),
            sem.total_slots
        );
        for h in &sem.holders {
            match sem.leases.get(h) {
                Some(l) => println!(
                    "  {h}  since {}  renewed {}",
                    civil_time_stamp(l.since),
                    civil_time_stamp(l.renewed)
                ),
                None => println!("  {h}"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn civil_time_stamp(t: u64) -> String {
    ostree_store::time::format_iso(t)
}

/// airlock's command line.
#[derive(Debug, Parser)]
#[command(
    name = "airlock",
    about = "FleetLock server (oxcore, airlock-compatible)"
)]
struct AirlockCli {
    /// Path to the configuration file.
    #[arg(short, long, global = true, default_value = AIRLOCK_CONFIG)]
    config: PathBuf,
    /// Verbosity level (-v info, -vv debug, -vvv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: AirlockCommand,
}

#[derive(Debug, Subcommand)]
enum AirlockCommand {
    /// Serve the FleetLock service.
    Serve,
    /// Experimental commands.
    Ex {
        #[command(subcommand)]
        what: ExCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ExCommand {
    /// Get things.
    Get {
        #[command(subcommand)]
        what: GetCommand,
    },
}

#[derive(Debug, Subcommand)]
enum GetCommand {
    /// Each group's slots and lock owners.
    Slots,
}

/// The `airlock` link's clap definition (man page, completions).
pub fn airlock_command() -> clap::Command {
    <AirlockCli as clap::CommandFactory>::command()
}

/// The `airlock` link.
pub fn airlock_main(args: Vec<OsString>) -> ExitCode {
    let cli = AirlockCli::parse_from(args);
    let arg = ConfigArg {
        config: Some(cli.config.clone()),
        verbose: cli.verbose,
    };
    let result = match cli.command {
        AirlockCommand::Serve => serve(&arg),
        AirlockCommand::Ex {
            what: ExCommand::Get {
                what: GetCommand::Slots,
            },
        } => slots(&cli.config),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `airlock ex get slots`, in airlock's layout.
fn slots(path: &Path) -> Result<ExitCode> {
    let config = Config::load(path)?;
    for (name, sem) in fleetlock::admin::status(&config)? {
        println!("group: {name}");
        println!(" semaphore slots: {}", sem.total_slots);
        println!(" lock owners:");
        for h in &sem.holders {
            println!(" - {h}");
        }
        println!("---");
    }
    Ok(ExitCode::SUCCESS)
}
