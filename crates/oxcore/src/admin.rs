//! `oxcore ostree admin`: deployments, with `ostree admin`'s arguments, and
//! the rpm-ostree verbs on the same library (`oxcore status`, `rollback`,
//! `deploy`, `upgrade`, `rebase`, `cleanup`, `kargs`, `pin`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use sysroot::{Deployment, Sysroot, origin_for_refspec};

/// `ostree admin` options shared by every verb.
#[derive(Debug, Args)]
pub struct AdminCli {
    /// The sysroot (default `/`).
    #[arg(long, global = true, value_name = "PATH")]
    sysroot: Option<PathBuf>,
    #[command(subcommand)]
    verb: AdminVerb,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AdminVerb {
    /// Initialize a root filesystem.
    InitFs {
        /// The new sysroot.
        path: PathBuf,
    },
    /// Initialize empty state for an operating system.
    OsInit {
        /// The OS name.
        os: String,
    },
    /// Check out a revision as the new default deployment.
    Deploy(Box<DeployArgs>),
    /// Make the staged deployment the default (run at shutdown).
    FinalizeStaged {
        /// Finalize even when finalization is locked.
        #[arg(long)]
        force: bool,
    },
    /// Hold finalization of the staged deployment.
    LockFinalization,
    /// Release finalization of the staged deployment.
    UnlockFinalization,
    /// List deployments.
    Status {
        /// Print JSON (oxcore's addition; see `oxcore status --json`).
        #[arg(long)]
        json: bool,
    },
    /// Delete deployment INDEX.
    Undeploy {
        /// Index from `status`.
        index: usize,
    },
    /// Change the pinning state of a deployment.
    Pin {
        /// Indexes from `status`.
        #[arg(required = true)]
        indexes: Vec<usize>,
        /// Unpin instead.
        #[arg(short, long)]
        unpin: bool,
    },
    /// Delete unused deployments and repository objects.
    Cleanup,
    /// Make the rollback deployment the default (`rpm-ostree rollback`).
    Rollback,
    /// Set the origin of the default deployment to REMOTE:BRANCH.
    SetOrigin {
        /// Remote name.
        remote: String,
        /// Its URL.
        url: String,
        /// Branch (default: the current origin's).
        branch: Option<String>,
        /// Set an option KEY=VALUE in the remote's config.
        #[arg(long, value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// The deployment to change (default 0).
        #[arg(long)]
        index: Option<usize>,
    },
    /// Change kernel arguments, as a new deployment of the same commit.
    Kargs {
        /// `edit-in-place`, as `ostree admin kargs`.
        #[command(subcommand)]
        edit: Option<KargsEdit>,
        /// Add an argument (repeatable).
        #[arg(long)]
        append: Vec<String>,
        /// Delete an argument KEY or KEY=VALUE (repeatable).
        #[arg(long)]
        delete: Vec<String>,
        /// Replace KEY=VALUE or KEY=OLD=NEW (repeatable).
        #[arg(long)]
        replace: Vec<String>,
    },
    /// Deploy the newest commit of the default deployment's origin
    /// (after `pull`), refusing an older one unless allowed.
    Upgrade {
        /// Accept a commit older than the deployed one.
        #[arg(long)]
        allow_downgrade: bool,
        /// Stage the new deployment (finalized at shutdown).
        #[arg(long)]
        stage: bool,
        /// Stage it and hold finalization until unlock-finalization.
        #[arg(long)]
        lock_finalization: bool,
    },
    /// Deploy another refspec and make it the origin.
    Switch {
        /// The new refspec.
        refspec: String,
    },
    /// Deploy a commit or version of the origin's history, keeping the
    /// origin (`rpm-ostree deploy`).
    #[command(skip)]
    DeployRevision {
        /// A commit checksum, or a `version` of the origin's history.
        revision: String,
        /// Stage it and hold finalization until unlock-finalization.
        lock_finalization: bool,
    },
    /// Pin or unpin deployments (the rpm-ostree face of `pin`).
    #[command(skip)]
    PinIndexes {
        /// Indexes from `status`.
        indexes: Vec<usize>,
        /// Unpin instead.
        unpin: bool,
    },
}

/// `ostree admin kargs` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum KargsEdit {
    /// Change the kernel arguments of every deployment in place (no new
    /// deployment; the boot configuration is rewritten).
    EditInPlace {
        /// Append NAME=VALUE where it is not there yet (repeatable).
        #[arg(long, value_name = "NAME=VALUE")]
        append_if_missing: Vec<String>,
    },
}

/// `ostree admin deploy`'s options.
#[derive(Debug, Args)]
pub(crate) struct DeployArgs {
    /// Ref, `remote:ref` or commit.
    refspec: String,
    /// OS to deploy to (default: the only one).
    #[arg(long)]
    os: Option<String>,
    /// Origin file to use instead of one made from REFSPEC.
    #[arg(long, value_name = "FILENAME")]
    origin_file: Option<PathBuf>,
    /// Do not prune the repository when done.
    #[arg(long)]
    no_prune: bool,
    /// Do not merge /etc and kernel arguments from the current deployment.
    #[arg(long)]
    no_merge: bool,
    /// Keep every existing deployment.
    #[arg(long)]
    retain: bool,
    /// Keep pending deployments.
    #[arg(long)]
    retain_pending: bool,
    /// Keep rollback deployments.
    #[arg(long)]
    retain_rollback: bool,
    /// Add the deployment last rather than first.
    #[arg(long)]
    not_as_default: bool,
    /// Write it now, make it the default at shutdown (finalize-staged).
    #[arg(long)]
    stage: bool,
    /// With --stage: hold finalization until unlock-finalization.
    #[arg(long, requires = "stage")]
    lock_finalization: bool,
    /// Start from the current /proc/cmdline's arguments.
    #[arg(long)]
    karg_proc_cmdline: bool,
    /// Set an argument NAME=VALUE, overriding one of the same name (repeatable).
    #[arg(long, value_name = "NAME=VALUE")]
    karg: Vec<String>,
    /// Append an argument (repeatable).
    #[arg(long, value_name = "NAME=VALUE")]
    karg_append: Vec<String>,
    /// Start from no arguments at all.
    #[arg(long)]
    karg_none: bool,
    /// Delete an argument NAME or NAME=VALUE if present (repeatable).
    #[arg(long, value_name = "NAME=VALUE")]
    karg_delete: Vec<String>,
}

/// Kernel arguments for a new deployment, as `ostree admin deploy` builds
/// them: the merge deployment's (or /proc/cmdline's, or none), then
/// `--karg` overrides by name, `--karg-append` adds, `--karg-delete`
/// removes. `None` when nothing changes the merge deployment's.
fn deploy_kargs(a: &DeployArgs, base: Option<&str>, root: &Path) -> Result<Option<String>> {
    if a.karg.is_empty()
        && a.karg_append.is_empty()
        && a.karg_delete.is_empty()
        && !a.karg_none
        && !a.karg_proc_cmdline
    {
        return Ok(None);
    }
    let start = if a.karg_proc_cmdline {
        let p = root.join("proc/cmdline");
        std::fs::read_to_string(&p).with_context(|| p.display().to_string())?
    } else if a.karg_none {
        String::new()
    } else {
        base.unwrap_or("").to_string()
    };
    let mut args: Vec<String> = start.split_whitespace().map(str::to_string).collect();
    let key = |s: &str| s.split('=').next().unwrap_or("").to_string();
    for k in &a.karg {
        match args.iter().position(|x| key(x) == key(k)) {
            Some(i) => {
                args[i] = k.clone();
                let name = key(k);
                let mut seen = false;
                args.retain(|x| {
                    if key(x) != name {
                        return true;
                    }
                    let keep = !seen;
                    seen = true;
                    keep
                });
            }
            None => args.push(k.clone()),
        }
    }
    args.extend(a.karg_append.iter().cloned());
    for d in &a.karg_delete {
        if d.contains('=') {
            args.retain(|x| x != d);
        } else {
            args.retain(|x| key(x) != *d);
        }
    }
    Ok(Some(args.join(" ")))
}

fn sysroot_path(p: &Option<PathBuf>) -> PathBuf {
    p.clone().unwrap_or_else(|| PathBuf::from("/"))
}

fn only_os(root: &Path) -> Result<String> {
    let dir = root.join("ostree/deploy");
    let oses: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| dir.display().to_string())?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    match oses.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("No OS initialized in {}: run os-init first", root.display()),
        _ => bail!("Multiple operating systems in {}: use --os", root.display()),
    }
}

/// Runs an admin verb.
pub fn run(cli: AdminCli, out: &mut dyn Write) -> Result<ExitCode> {
    run_verb(cli.sysroot, cli.verb, out)
}

/// Runs `verb` on the sysroot at `sysroot` (default `/`); the rpm-ostree
/// style top-level commands come here too.
pub(crate) fn run_verb(
    sysroot: Option<PathBuf>,
    verb: AdminVerb,
    out: &mut dyn Write,
) -> Result<ExitCode> {
    let root = sysroot_path(&sysroot);
    match verb {
        AdminVerb::InitFs { path } => {
            Sysroot::init_fs(&path)?;
        }
        AdminVerb::OsInit { os } => {
            Sysroot::open(&root)?.os_init(&os)?;
            writeln!(out, "ostree/deploy/{os} initialized as OSTree root")?;
        }
        AdminVerb::Deploy(a) => {
            let (sr, _lock) = open_locked(&root)?;
            let os = match &a.os {
                Some(o) => o.clone(),
                None => only_os(&root)?,
            };
            let commit = sr.repo().resolve_rev(&a.refspec)?;
            let current = sr.deployments()?;
            let base = if a.no_merge {
                None
            } else {
                current
                    .iter()
                    .find(|d| d.os == os)
                    .map(|d| d.kargs.as_str())
            };
            let mut kargs = deploy_kargs(&a, base, &root)?;
            if kargs.is_none() && a.no_merge {
                kargs = Some(String::new());
            }
            let origin = match &a.origin_file {
                Some(p) => {
                    let text =
                        std::fs::read_to_string(p).with_context(|| p.display().to_string())?;
                    ostree_store::keyfile::KeyFile::parse(&text)
                        .map_err(|e| anyhow!("{}: {e}", p.display()))?
                }
                None => origin_for_refspec(&a.refspec),
            };
            if a.stage {
                let d = sr.stage(&os, &commit, origin, kargs, a.lock_finalization)?;
                writeln!(out, "Staged {}", d.name())?;
            } else {
                let opts = sysroot::DeployOptions {
                    retain: a.retain,
                    retain_pending: a.retain_pending,
                    retain_rollback: a.retain_rollback,
                    not_as_default: a.not_as_default,
                    no_merge: a.no_merge,
                };
                let d = sr.deploy(&os, &commit, origin, kargs, &opts)?;
                if !a.no_prune {
                    // As ostree admin deploy: clean up and prune the repository.
                    sr.cleanup()?;
                }
                writeln!(out, "Deployed {}", d.name())?;
            }
        }
        AdminVerb::FinalizeStaged { force } => {
            let (sr, _lock) = open_locked(&root)?;
            match sr.finalize_staged(force)? {
                Some(d) => writeln!(out, "Finalized {}", d.name())?,
                None => writeln!(out, "No staged deployment")?,
            }
        }
        AdminVerb::LockFinalization => Sysroot::open(&root)?.set_finalization_locked(true)?,
        AdminVerb::UnlockFinalization => Sysroot::open(&root)?.set_finalization_locked(false)?,
        AdminVerb::Status { json } => {
            let sr = Sysroot::open(&root)?;
            print_status(&sr, json, out)?;
        }
        AdminVerb::Undeploy { index } => {
            let (sr, _lock) = open_locked(&root)?;
            let list = sr.deployments()?;
            let name = list.get(index).map(Deployment::name);
            sr.undeploy(index)?;
            writeln!(out, "Deleted deployment {}", name.unwrap_or_default())?;
        }
        AdminVerb::Pin { indexes, unpin } => {
            let (sr, _lock) = open_locked(&root)?;
            for i in indexes {
                sr.set_pinned(i, !unpin)?;
                writeln!(
                    out,
                    "Deployment {i} is now {}",
                    if unpin { "unpinned" } else { "pinned" }
                )?;
            }
        }
        AdminVerb::Cleanup => {
            let (sr, _lock) = open_locked(&root)?;
            let r = sr.cleanup()?;
            if r.deleted > 0 {
                writeln!(out, "Freed objects: {} ({} bytes)", r.deleted, r.freed)?;
            }
        }
        AdminVerb::Rollback => {
            let (sr, _lock) = open_locked(&root)?;
            let (from, to) = sr.rollback()?;
            writeln!(out, "Moving deployment {from} to be the default ({to})")?;
        }
        AdminVerb::SetOrigin {
            remote,
            url,
            branch,
            set,
            index,
        } => {
            let (sr, _lock) = open_locked(&root)?;
            let options = set
                .iter()
                .map(|kv| crate::cli::parse_kv(kv))
                .collect::<Result<Vec<_>>>()?;
            sr.set_origin(
                index.unwrap_or(0),
                &remote,
                &url,
                branch.as_deref(),
                &options,
            )?;
        }
        AdminVerb::Kargs {
            edit: Some(KargsEdit::EditInPlace { append_if_missing }),
            append,
            delete,
            replace,
        } => {
            if !(append.is_empty() && delete.is_empty() && replace.is_empty()) {
                bail!(
                    "--append, --delete and --replace make a new deployment; they do not go with edit-in-place"
                );
            }
            let (sr, _lock) = open_locked(&root)?;
            sr.edit_kargs_in_place(|k| {
                let mut args: Vec<String> = k.split_whitespace().map(str::to_string).collect();
                for a in &append_if_missing {
                    if !args.contains(a) {
                        args.push(a.clone());
                    }
                }
                args.join(" ")
            })?;
        }
        AdminVerb::Kargs {
            edit: None,
            append,
            delete,
            replace,
        } => {
            let (sr, _lock) = open_locked(&root)?;
            let d = sr.origin_deployment()?;
            let kargs = sysroot::bls::edit_kargs(&d.kargs, &append, &delete, &replace)
                .map_err(|e| anyhow!(e))?;
            if kargs.split_whitespace().eq(d.kargs.split_whitespace()) {
                writeln!(out, "No changes.")?;
                return Ok(ExitCode::SUCCESS);
            }
            let new = sr.deploy(
                &d.os,
                &d.checksum,
                d.origin.clone(),
                Some(kargs),
                &Default::default(),
            )?;
            writeln!(
                out,
                "Kernel arguments updated; new deployment {}",
                new.name()
            )?;
        }
        AdminVerb::Upgrade {
            allow_downgrade,
            stage,
            lock_finalization,
        } => {
            let (sr, _lock) = open_locked(&root)?;
            let stats = ostree_store::pull::PullStats::default();
            let progress = crate::cli::PullProgress::new();
            let show = |s: &ostree_store::pull::PullStats| progress.show(s);
            let opts = sysroot::UpdateOptions {
                allow_downgrade,
                stage,
                lock_finalization,
            };
            let puller = sysroot::Puller {
                connections: 8,
                stats: &stats,
                progress: &show,
            };
            let (report, outcome) = sr.upgrade(&opts, &puller)?;
            if let Some(r) = &report {
                progress.finish(r);
            }
            match outcome {
                sysroot::Upgrade::NoUpdate => writeln!(out, "No update available.")?,
                sysroot::Upgrade::Deployed(nd) => writeln!(out, "Upgraded to {}", nd.name())?,
            }
        }
        AdminVerb::PinIndexes { indexes, unpin } => {
            return run_verb(sysroot, AdminVerb::Pin { indexes, unpin }, out);
        }
        AdminVerb::DeployRevision {
            revision,
            lock_finalization,
        } => {
            let (sr, _lock) = open_locked(&root)?;
            let opts = sysroot::UpdateOptions {
                lock_finalization,
                ..Default::default()
            };
            let nd = sr.deploy_revision(&revision, &opts)?;
            writeln!(out, "Deployed {revision}: {}", nd.name())?;
        }
        AdminVerb::Switch { refspec } => {
            let (sr, _lock) = open_locked(&root)?;
            let nd = sr.rebase(&refspec)?;
            writeln!(out, "Switched to {refspec}: {}", nd.name())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Opens the sysroot and takes its lock for the whole command, so that what
/// it reads (indexes, the default deployment) is still true when it writes;
/// says so (on stdout, as `ostree`) when another process (`ostree`,
/// rpm-ostree, the agent) holds it.
fn open_locked(root: &Path) -> Result<(Sysroot, sysroot::SysrootLock)> {
    let sr = Sysroot::open(root)?;
    let lock = sr.lock_with(|| println!("Waiting for sysroot lock..."))?;
    Ok((sr, lock))
}

/// `ostree admin status`, or `rpm-ostree status --json` (the format
/// Zincati reads).
pub fn print_status(sr: &Sysroot, json: bool, out: &mut dyn Write) -> Result<()> {
    let status = sr.status()?;
    if json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&status.to_rpm_ostree_json())?
        )?;
        return Ok(());
    }
    if status.deployments.is_empty() {
        writeln!(out, "No deployments.")?;
        return Ok(());
    }
    for s in &status.deployments {
        let d = &s.deployment;
        let mark = if s.booted { "* " } else { "  " };
        let label = if s.staged {
            " (staged)"
        } else if s.pending {
            " (pending)"
        } else if s.rollback && status.deployments.iter().any(|o| o.booted) {
            " (rollback)"
        } else {
            ""
        };
        writeln!(out, "{mark}{} {}{label}", d.os, d.name())?;
        if let Some(v) = &d.version {
            writeln!(out, "    Version: {v}")?;
        }
        if s.finalization_locked {
            writeln!(out, "    finalization locked")?;
        }
        if d.pinned() {
            writeln!(out, "    Pinned: yes")?;
        }
        match d.refspec() {
            Some(r) => writeln!(out, "    origin refspec: {r}")?,
            None => writeln!(out, "    origin: <unknown origin type>")?,
        }
    }
    Ok(())
}
