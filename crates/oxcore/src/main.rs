//! `oxcore`: one binary for the whole system.
//!
//! Subcommands are thin calls into the libraries. Run through a link named
//! after an upstream tool (`ignition-validate`), the binary behaves exactly
//! as that tool: same flags, output and exit codes.

mod admin;
mod butane;
mod cli;
mod demo;
mod docs;
mod fleetlock;
mod graph;
mod ignition;
mod image;
mod install;
mod links;
mod ostree;
mod release;
mod update_agent;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// `oxcore --version`: the package version and the commit it was built from.
pub(crate) const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("OXCORE_GIT_COMMIT"),
    ")"
);

/// Fedora CoreOS, rebuilt in Rust.
#[derive(Debug, Parser)]
#[command(name = "oxcore", version = VERSION, about, long_about = None, term_width = 80)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Butane: translate a Butane YAML config to Ignition JSON. Takes
    /// upstream Butane's options (see `oxcore butane --help`).
    #[command(disable_help_flag = true)]
    Butane {
        /// Options and input file, as for upstream `butane`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Walk the provisioning and update flows on embedded defaults.
    Demo {
        /// Keep the demo's graph server and dashboard running.
        #[arg(long)]
        serve: bool,
    },
    /// Releases: compose into streams, promote, barriers, dead-ends,
    /// rollouts, signed metadata.
    Release(release::ReleaseCli),
    /// The update graph server (Cincinnati for Fedora CoreOS).
    Graph(graph::GraphCli),
    /// The FleetLock server: reboot slots for a fleet (airlock-compatible,
    /// on etcd or an embedded store).
    Fleetlock(fleetlock::FleetlockCli),
    /// The update agent: follows the update graph, stages and reboots by
    /// its strategy, rolls back a release that fails its health checks
    /// (a Zincati drop-in, reading Zincati's configuration).
    Agent(update_agent::AgentCli),
    /// Install an OS disk image to a block device, checked before a byte
    /// is written (coreos-installer install).
    Install(Box<install::InstallCli>),
    /// The OS's initramfs and disk images (Fedora CoreOS's layout, GRUB
    /// for BIOS and UEFI), recorded in the release metadata.
    Image(image::ImageCli),
    /// Ignition: first-boot provisioning (`--stage NAME` runs a stage) and
    /// configs.
    Ignition(Box<ignition::IgnitionCli>),
    /// The OS store: an OSTree-format repository. Takes the `ostree`
    /// command's verbs and options (see `oxcore ostree --help`).
    #[command(disable_help_flag = true)]
    Ostree {
        /// Verb, options and arguments, as for `ostree`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Show the deployments (rpm-ostree status).
    Status {
        #[command(flatten)]
        at: SysrootArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Pull the origin's newest commit and deploy it (rpm-ostree upgrade).
    Upgrade {
        #[command(flatten)]
        at: SysrootArg,
        /// Accept a commit older than the deployed one.
        #[arg(long)]
        allow_downgrade: bool,
        /// Stage the new deployment (finalized at shutdown).
        #[arg(long)]
        stage: bool,
        /// Stage it and hold finalization until `oxcore ostree admin
        /// unlock-finalization` (what the update agent uses).
        #[arg(long)]
        lock_finalization: bool,
    },
    /// Deploy another refspec and follow it (rpm-ostree rebase).
    Rebase {
        #[command(flatten)]
        at: SysrootArg,
        /// `remote:ref`, a ref, or a commit.
        refspec: String,
    },
    /// Deploy a commit or version of the origin (rpm-ostree deploy).
    Deploy {
        #[command(flatten)]
        at: SysrootArg,
        /// A commit checksum or a version.
        revision: String,
        /// Stage it and hold finalization until unlock-finalization.
        #[arg(long)]
        lock_finalization: bool,
    },
    /// Pin deployments so cleanups keep them.
    Pin {
        #[command(flatten)]
        at: SysrootArg,
        /// Indexes from `status`.
        #[arg(required = true)]
        indexes: Vec<usize>,
    },
    /// Unpin deployments.
    Unpin {
        #[command(flatten)]
        at: SysrootArg,
        /// Indexes from `status`.
        #[arg(required = true)]
        indexes: Vec<usize>,
    },
    /// Make the previous deployment the default (rpm-ostree rollback).
    Rollback {
        #[command(flatten)]
        at: SysrootArg,
    },
    /// Remove unused deployments and prune the repository.
    Cleanup {
        #[command(flatten)]
        at: SysrootArg,
    },
    /// Change kernel arguments as a new deployment (rpm-ostree kargs).
    Kargs {
        #[command(flatten)]
        at: SysrootArg,
        /// Add an argument (repeatable).
        #[arg(long)]
        append: Vec<String>,
        /// Delete KEY or KEY=VALUE (repeatable).
        #[arg(long)]
        delete: Vec<String>,
        /// Replace KEY=VALUE or KEY=OLD=NEW (repeatable).
        #[arg(long)]
        replace: Vec<String>,
    },
    /// Initramfs step: set up the deployment named by `ostree=` on the
    /// kernel command line as the root at --sysroot (as
    /// ostree-prepare-root).
    PrepareRoot {
        /// Where the physical root is mounted.
        #[arg(long, default_value = "/sysroot")]
        sysroot: PathBuf,
        /// Kernel command line to read `ostree=` from.
        #[arg(long, default_value = "/proc/cmdline")]
        cmdline: PathBuf,
        /// An empty directory outside the sysroot for the staging mount
        /// (default: `<sysroot>.tmp`).
        #[arg(long)]
        staging: Option<PathBuf>,
    },
    /// Create links named after the upstream tools (ignition-validate, …)
    /// that run oxcore as that tool.
    InstallLinks {
        /// Directory to create the links in.
        dir: PathBuf,
        /// Replace existing files of the same names.
        #[arg(short, long)]
        force: bool,
        /// Also write the man pages (oxcore.8, oxcore-COMMAND.8, and one
        /// per link under its upstream name) into this directory.
        #[arg(long, value_name = "DIR")]
        man_dir: Option<PathBuf>,
        /// Also write bash, zsh and fish completions into DIR/bash,
        /// DIR/zsh and DIR/fish.
        #[arg(long, value_name = "DIR")]
        completions_dir: Option<PathBuf>,
    },
}

/// `--sysroot`, default `/`.
#[derive(Debug, clap::Args)]
struct SysrootArg {
    /// The sysroot (default `/`).
    #[arg(long, value_name = "PATH")]
    sysroot: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    // The initramfs runs this binary as /init, PID 1.
    if args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .is_some_and(|n| n == "init")
        && std::process::id() == 1
    {
        initrd::init::main();
    }
    if let Some(tool) = links::tool_for_argv0(args.first()) {
        return tool.run(args);
    }
    // `oxcore ignition` takes upstream's single-dash flags too.
    let args = if args.get(1).is_some_and(|a| a == "ignition") {
        let mut rest = args.into_iter();
        let head: Vec<OsString> = rest.by_ref().take(2).collect();
        head.into_iter()
            .chain(ignition::upstream_flags(rest))
            .collect()
    } else {
        args
    };
    let cli = Cli::parse_from(args);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Butane { args } => {
            let mut argv = vec![OsString::from("oxcore butane")];
            argv.extend(args);
            Ok(butane::main(argv))
        }
        Command::Demo { serve } => demo::run(serve),
        Command::Ignition(cli) => ignition::run(*cli),
        Command::Graph(cli) => graph::run(cli),
        Command::Fleetlock(cli) => fleetlock::run(cli),
        Command::Agent(cli) => update_agent::run(cli),
        Command::Install(cli) => install::run(*cli),
        Command::Image(cli) => image::run(cli),
        Command::Release(cli) => release::run(cli),
        Command::Ostree { args } => {
            let mut argv = vec![OsString::from("oxcore ostree")];
            argv.extend(args);
            Ok(ostree::main(argv))
        }
        Command::Status { at, json } => admin_verb(at, admin::AdminVerb::Status { json }),
        Command::Upgrade {
            at,
            allow_downgrade,
            stage,
            lock_finalization,
        } => admin_verb(
            at,
            admin::AdminVerb::Upgrade {
                allow_downgrade,
                stage,
                lock_finalization,
            },
        ),
        Command::Pin { at, indexes } => admin_verb(
            at,
            admin::AdminVerb::PinIndexes {
                indexes,
                unpin: false,
            },
        ),
        Command::Unpin { at, indexes } => admin_verb(
            at,
            admin::AdminVerb::PinIndexes {
                indexes,
                unpin: true,
            },
        ),
        Command::Rebase { at, refspec } => admin_verb(at, admin::AdminVerb::Switch { refspec }),
        Command::Deploy {
            at,
            revision,
            lock_finalization,
        } => admin_verb(
            at,
            admin::AdminVerb::DeployRevision {
                revision,
                lock_finalization,
            },
        ),
        Command::Rollback { at } => admin_verb(at, admin::AdminVerb::Rollback),
        Command::Cleanup { at } => admin_verb(at, admin::AdminVerb::Cleanup),
        Command::Kargs {
            at,
            append,
            delete,
            replace,
        } => admin_verb(
            at,
            admin::AdminVerb::Kargs {
                edit: None,
                append,
                delete,
                replace,
            },
        ),
        Command::PrepareRoot {
            sysroot,
            cmdline,
            staging,
        } => {
            let text = std::fs::read_to_string(&cmdline)
                .map_err(|e| anyhow::anyhow!("{}: {e}", cmdline.display()))?;
            let staging =
                staging.unwrap_or_else(|| PathBuf::from(format!("{}.tmp", sysroot.display())));
            let d = sysroot::prepare::prepare_root(&sysroot, &text, &staging)?;
            println!(
                "Prepared {} as the root at {}",
                d.display(),
                sysroot.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::InstallLinks {
            dir,
            force,
            man_dir,
            completions_dir,
        } => {
            let code = links::install(&dir, force)?;
            if let Some(m) = man_dir {
                for f in docs::write_man(&m)? {
                    println!("{}", m.join(f).display());
                }
            }
            if let Some(c) = completions_dir {
                for f in docs::write_completions(&c)? {
                    println!("{f}");
                }
            }
            Ok(code)
        }
    }
}

fn admin_verb(at: SysrootArg, verb: admin::AdminVerb) -> anyhow::Result<ExitCode> {
    admin::run_verb(at.sysroot, verb, &mut std::io::stdout().lock())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_validate() {
        let cli = Cli::try_parse_from(["oxcore", "ignition", "validate", "-"]).unwrap();
        assert!(matches!(cli.command, Command::Ignition(_)));
        assert!(Cli::try_parse_from(["oxcore", "ignition", "validate"]).is_err());
    }

    #[test]
    fn help_fits_80_columns() {
        fn check(cmd: &mut clap::Command) {
            let help = cmd.render_long_help().to_string();
            for line in help.lines() {
                assert!(line.chars().count() <= 80, "too long: {line:?}");
            }
            for sub in cmd.get_subcommands_mut() {
                check(sub);
            }
        }
        let mut cmd = Cli::command();
        cmd.build();
        check(&mut cmd);
    }
}
