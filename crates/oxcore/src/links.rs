//! Multi-call: the upstream tool names oxcore answers to.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};

/// An upstream tool that oxcore can stand in for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// `butane`
    Butane,
    /// `ignition-validate`
    IgnitionValidate,
    /// `ostree` (the repository verbs)
    Ostree,
    /// `ignition` (the stages, with upstream's flags)
    Ignition,
    /// `airlock` (the FleetLock server)
    Airlock,
    /// `zincati` (the update agent)
    Zincati,
}

impl Tool {
    /// Every tool `install-links` creates a link for.
    pub const ALL: [Tool; 6] = [
        Tool::Butane,
        Tool::IgnitionValidate,
        Tool::Ostree,
        Tool::Ignition,
        Tool::Airlock,
        Tool::Zincati,
    ];

    /// The command name.
    pub fn name(self) -> &'static str {
        match self {
            Tool::Butane => "butane",
            Tool::IgnitionValidate => "ignition-validate",
            Tool::Ostree => "ostree",
            Tool::Ignition => "ignition",
            Tool::Airlock => "airlock",
            Tool::Zincati => "zincati",
        }
    }

    /// Runs the tool with the full argument vector (argv[0] included).
    pub fn run(self, args: Vec<OsString>) -> ExitCode {
        match self {
            Tool::Butane => crate::butane::main(args),
            Tool::IgnitionValidate => crate::ignition::ignition_validate_main(args),
            Tool::Ostree => crate::ostree::main(args),
            Tool::Ignition => crate::ignition::ignition_main(args),
            Tool::Airlock => crate::fleetlock::airlock_main(args),
            Tool::Zincati => crate::update_agent::zincati_main(args),
        }
    }
}

/// The tool named by the file name of argv[0], if any.
pub fn tool_for_argv0(argv0: Option<&OsString>) -> Option<Tool> {
    let name = Path::new(argv0?).file_name()?.to_str()?;
    Tool::ALL.into_iter().find(|t| t.name() == name)
}

/// Creates `DIR/<tool>` symlinks to the running binary.
pub fn install(dir: &Path, force: bool) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("finding the oxcore binary")?;
    let exe = exe.canonicalize().unwrap_or(exe);
    if !dir.is_dir() {
        bail!("{}: not a directory", dir.display());
    }
    for tool in Tool::ALL {
        let link: PathBuf = dir.join(tool.name());
        if link.symlink_metadata().is_ok() && !force {
            bail!("{} exists; use --force to replace it", link.display());
        }
        // Create under a temporary name, then rename over: the old link is
        // never missing and a failure leaves nothing half-made.
        let tmp = dir.join(format!(".{}.oxcore-tmp", tool.name()));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&exe, &tmp)
            .with_context(|| format!("creating link {}", tmp.display()))?;
        if let Err(e) = std::fs::rename(&tmp, &link) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e).with_context(|| format!("renaming link to {}", link.display()));
        }
        println!("{} -> {}", link.display(), exe.display());
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv0_selects_tool() {
        let a = OsString::from("/usr/local/bin/ignition-validate");
        assert_eq!(tool_for_argv0(Some(&a)), Some(Tool::IgnitionValidate));
        let b = OsString::from("oxcore");
        assert_eq!(tool_for_argv0(Some(&b)), None);
        assert_eq!(tool_for_argv0(None), None);
    }
}
