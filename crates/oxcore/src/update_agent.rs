//! `oxcore agent` (and the `zincati` link): the update agent, its status
//! and `update-now`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use agent::state::{Persistent, Status};
use agent::{Agent, Clock, ManualClock, Root, SystemClock, config, control};
use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

/// The update agent (a Zincati drop-in, with health checks and
/// automatic rollback).
#[derive(Debug, Args)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "Configuration: Zincati's TOML fragments in /usr/lib/zincati/config.d, \
/run/zincati/config.d and /etc/zincati/config.d (same name: the later directory wins; \
a link to /dev/null masks), plus oxcore's [oxcore] table (reboot command, health checks). \
Health checks: executables in /usr/lib/oxcore/health.d and /etc/oxcore/health.d. \
State: /var/lib/oxcore-agent/state.json. Metrics: /run/zincati/public/metrics.promsock."
)]
pub struct AgentCli {
    #[command(subcommand)]
    verb: Option<Verb>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Treat DIR as the node's `/`: configuration, machine ID, kernel
    /// command line, sysroot, state and sockets are all read and written
    /// under it (tests, image builds).
    #[arg(long, value_name = "DIR", default_value = "/")]
    root: PathBuf,
    /// Run one check-and-act cycle with the configured strategy, print
    /// what it decided on one line, and exit.
    #[arg(long)]
    once: bool,
    /// With --once: decide as if the clock read TIME (RFC 3339, e.g.
    /// 2026-03-08T07:30:00Z), to see what a maintenance window allows.
    #[arg(long, value_name = "TIME", requires = "once")]
    now: Option<String>,
    /// More log detail (-v info, -vv debug, -vvv trace; warnings without).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Debug, Subcommand)]
enum Verb {
    /// Show the agent's state, last and next check, target, reboot lock,
    /// health, and the releases it will not apply.
    Status {
        /// The node's `/`.
        #[arg(long, value_name = "DIR", default_value = "/")]
        root: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Ask the running agent to check for an update at once and, if one is
    /// allowed, stage it and reboot through the configured strategy (its
    /// maintenance window or reboot slot still apply).
    UpdateNow {
        /// The node's `/`.
        #[arg(long, value_name = "DIR", default_value = "/")]
        root: PathBuf,
    },
}

/// Runs `oxcore agent`.
pub fn run(cli: AgentCli) -> Result<ExitCode> {
    match cli.verb {
        None => agent(&cli.run),
        Some(Verb::Status { root, json }) => status(&Root::new(root), json),
        Some(Verb::UpdateNow { root }) => {
            let answer = control::ask(&Root::new(root), "update-now")?;
            println!("{answer}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn agent(args: &RunArgs) -> Result<ExitCode> {
    crate::cli::log_at_verbosity(args.verbose);
    let root = Root::new(&args.root);
    let settings = config::load(&root).context("failed to assemble configuration settings")?;
    let clock: Arc<dyn Clock> = match &args.now {
        Some(t) => Arc::new(ManualClock::new(
            t.parse()
                .with_context(|| format!("--now {t}: not an RFC 3339 time"))?,
        )),
        None => Arc::new(SystemClock),
    };
    tracing::info!("starting update agent (oxcore {})", crate::VERSION);
    let enabled = settings.enabled;
    let mut a = Agent::new(root.clone(), settings, clock)?;
    tracing::info!(
        "agent running on node '{}', in update group '{}'",
        a.node_uuid(),
        a.settings().group
    );
    if args.once {
        let c = a.cycle()?;
        println!("{}", c.decision);
        return Ok(ExitCode::SUCCESS);
    }
    if enabled {
        let sr = sysroot::Sysroot::open(root.dir())?;
        if let Err(e) = sr.register_update_driver("oxcore agent", "oxcore-agent.service") {
            tracing::warn!("cannot register as the update driver: {e}");
        }
        tracing::info!("initialization complete, auto-updates logic enabled");
    } else {
        tracing::warn!("initialization complete, auto-updates logic disabled by configuration");
    }
    agent::metrics::serve(&root, a.metrics())?;
    let (tx, rx) = std::sync::mpsc::channel();
    control::listen(&root, tx)?;
    notify_ready();
    control::run(&mut a, &rx)?;
    Ok(ExitCode::SUCCESS)
}

/// Tells systemd the service is up (`Type=notify`), when it asks.
fn notify_ready() {
    let Some(sock) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sock = sock.to_string_lossy().into_owned();
    let Ok(s) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let msg = b"READY=1\nSTATUS=periodically polling for updates\n";
    let sent = match sock.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
                .and_then(|a| s.send_to_addr(msg, &a))
        }
        None => s.send_to(msg, &sock),
    };
    if let Err(e) = sent {
        tracing::debug!("sd_notify: {e}");
    }
}

fn status(root: &Root, json: bool) -> Result<ExitCode> {
    let persistent = Persistent::load(root)?;
    let status = Status::load(root)?;
    if json {
        let v = serde_json::json!({
            "status": status,
            "denylist": persistent.denylist,
            "trial": persistent.trial,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    match &status {
        None => println!("Agent: no status recorded (not started since boot)"),
        Some(s) => {
            let alive = std::path::Path::new(&format!("/proc/{}", s.pid)).exists();
            println!(
                "Agent: pid {}{}",
                s.pid,
                if alive { "" } else { " (not running)" }
            );
            println!("State: {}", s.state);
            println!("Decision: {}", s.decision);
            println!("Strategy: {}", s.strategy);
            if let Some(b) = &s.booted {
                println!("Booted: {} ({})", b.version, b.payload);
            }
            if let Some(t) = &s.target {
                println!("Target: {} ({})", t.version, t.payload);
            }
            println!("Last check: {}", s.last_check.as_deref().unwrap_or("never"));
            println!("Next check: {}", s.next_check.as_deref().unwrap_or("-"));
            if let Some(l) = &s.lock {
                println!("Reboot lock: {l}");
            }
            if let Some(h) = &s.health {
                println!("Health: {h}");
            }
        }
    }
    if let Some(t) = &persistent.trial {
        println!(
            "Trial: {} (from {}), finalized {}",
            t.to.version, t.from.version, t.finalized_at
        );
    }
    if !persistent.denylist.is_empty() {
        println!("Not applied again:");
        for d in &persistent.denylist {
            println!(
                "  {} ({}): {} [{}]",
                d.release.version, d.release.payload, d.reason, d.at
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `zincati`: the agent under Zincati's name (`zincati agent -v`), and
/// its dead-end notice helper.
#[derive(Debug, Parser)]
#[command(name = "zincati", version = crate::VERSION, about = "Update agent (oxcore, Zincati-compatible)")]
struct ZincatiCli {
    /// More log detail.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: ZincatiCommand,
}

#[derive(Debug, Subcommand)]
enum ZincatiCommand {
    /// Run the update agent.
    Agent,
    /// Set or unset the dead-end MOTD notice.
    #[command(hide = true)]
    DeadendMotd {
        #[command(subcommand)]
        verb: DeadendVerb,
    },
}

#[derive(Debug, Subcommand)]
enum DeadendVerb {
    /// Write the notice.
    Set {
        /// Why the release is a dead-end.
        #[arg(long)]
        reason: String,
    },
    /// Remove the notice.
    Unset,
}

/// The `zincati` link's command, for its man page and completions.
pub fn zincati_command() -> clap::Command {
    <ZincatiCli as clap::CommandFactory>::command()
}

/// Runs the `zincati` link.
pub fn zincati_main(args: Vec<OsString>) -> ExitCode {
    let cli = ZincatiCli::parse_from(args);
    let result = match cli.command {
        ZincatiCommand::Agent => agent(&RunArgs {
            root: PathBuf::from("/"),
            once: false,
            now: None,
            verbose: cli.verbose,
        }),
        ZincatiCommand::DeadendMotd { verb } => {
            let d = match verb {
                DeadendVerb::Set { reason } => agent::graph::DeadEnd::Yes(reason),
                DeadendVerb::Unset => agent::graph::DeadEnd::No,
            };
            agent::graph::set_deadend_motd(&Root::new("/"), &d)
                .map(|()| ExitCode::SUCCESS)
                .map_err(Into::into)
        }
    };
    match result {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
