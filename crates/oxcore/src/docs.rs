//! Man pages and shell completions, generated from the same clap
//! definitions that parse the command lines: `oxcore install-links DIR
//! --man-dir M --completions-dir C` writes `oxcore.8`, `oxcore-<command>.8`
//! and a page under each upstream name the links answer to (`ostree.1`,
//! `butane.1`, `ignition-validate.1`, `ignition.8`), and bash, zsh and fish
//! completions for `oxcore` and each link.
//!
//! Butane and ignition-validate parse their flags as upstream's Go tools
//! do (pflag, Go's flag package), not with clap; their pages come from
//! clap definitions written to match those flags.

use std::path::Path;

use anyhow::{Context, Result};
use clap::{Arg, ArgAction, Command, CommandFactory};
use clap_complete::Shell;

/// The flags of upstream Butane, for its page and completions.
fn butane_command(name: &str) -> Command {
    let flag = |id: &'static str, short: char, help: &'static str| {
        Arg::new(id)
            .long(id)
            .short(short)
            .action(ArgAction::SetTrue)
            .help(help)
    };
    let value = |id: &'static str, short: Option<char>, help: &'static str| {
        let a = Arg::new(id)
            .long(id)
            .value_name(id.to_uppercase())
            .help(help);
        match short {
            Some(c) => a.short(c),
            None => a,
        }
    };
    Command::new(name.to_string())
        .about("Translate a Butane config (YAML) to an Ignition config (JSON)")
        .disable_help_flag(true)
        .disable_version_flag(true)
        .arg(flag("check", 'c', "check config without producing output"))
        .arg(value(
            "color",
            None,
            "control color output: \"auto\", \"always\", or \"never\"",
        ))
        .arg(value(
            "files-dir",
            Some('d'),
            "allow embedding local files from this directory",
        ))
        .arg(flag("help", 'h', "show usage and exit"))
        .arg(value(
            "output",
            Some('o'),
            "write to output file instead of stdout",
        ))
        .arg(flag("pretty", 'p', "output formatted json"))
        .arg(flag(
            "raw",
            'r',
            "never wrap in a MachineConfig; force Ignition output",
        ))
        .arg(
            Arg::new("raw-errors")
                .long("raw-errors")
                .action(ArgAction::SetTrue)
                .help("show raw errors, rather than pretty printing them"),
        )
        .arg(flag("strict", 's', "fail on any warning"))
        .arg(flag("version", 'V', "print the version and exit"))
        .arg(
            Arg::new("input")
                .value_name("INPUT")
                .help("the Butane config (default: standard input)"),
        )
}

/// The flags of upstream ignition-validate.
fn ignition_validate_command() -> Command {
    Command::new("ignition-validate")
        .about("Check an Ignition config as upstream Ignition would read it")
        .disable_version_flag(true)
        .arg(
            Arg::new("version")
                .long("version")
                .action(ArgAction::SetTrue)
                .help("print the version of ignition-validate"),
        )
        .arg(
            Arg::new("config")
                .value_name("CONFIG")
                .help("the Ignition config (`-` for standard input)"),
        )
}

/// Every command a page or completions are made for: (name, section,
/// definition).
fn commands() -> Vec<(String, &'static str, Command)> {
    let oxcore = crate::Cli::command();
    let mut out = vec![("oxcore".to_string(), "8", oxcore.clone())];
    for sub in oxcore.get_subcommands() {
        let name = format!("oxcore-{}", sub.get_name());
        // The pass-through commands are documented by their own parsers.
        let cmd = match sub.get_name() {
            "butane" => butane_command(&name),
            "ostree" => crate::ostree::OstreeCli::command().name(name.clone()),
            _ => sub.clone().name(name.clone()),
        };
        out.push((name, "8", cmd));
    }
    out.push(("butane".into(), "1", butane_command("butane")));
    out.push(("ignition-validate".into(), "1", ignition_validate_command()));
    out.push((
        "ostree".into(),
        "1",
        crate::ostree::OstreeCli::command().name("ostree"),
    ));
    out.push(("ignition".into(), "8", crate::ignition::Upstream::command()));
    out.push(("airlock".into(), "8", crate::fleetlock::airlock_command()));
    out.push((
        "zincati".into(),
        "8",
        crate::update_agent::zincati_command(),
    ));
    out
}

/// Writes the man pages into `dir`.
pub fn write_man(dir: &Path) -> Result<Vec<String>> {
    let version = crate::VERSION;
    let mut written = Vec::new();
    for (name, section, cmd) in commands() {
        let file = format!("{name}.{section}");
        let mut buf = Vec::new();
        clap_mangen::Man::new(cmd)
            .section(section)
            .source(format!("oxcore {version}"))
            .manual("oxcore")
            .render(&mut buf)
            .with_context(|| format!("rendering {file}"))?;
        let path = dir.join(&file);
        util::write_atomic(&path, &buf, 0o644, false)
            .with_context(|| format!("writing {}", path.display()))?;
        written.push(file);
    }
    Ok(written)
}

/// Writes bash, zsh and fish completions for `oxcore` and each link into
/// `dir/bash/NAME`, `dir/zsh/_NAME` and `dir/fish/NAME.fish`.
pub fn write_completions(dir: &Path) -> Result<Vec<String>> {
    let mut written = Vec::new();
    let names = [
        "oxcore",
        "butane",
        "ignition-validate",
        "ostree",
        "ignition",
        "airlock",
        "zincati",
    ];
    let all = commands();
    for (shell, sub) in [
        (Shell::Bash, "bash"),
        (Shell::Zsh, "zsh"),
        (Shell::Fish, "fish"),
    ] {
        let out = dir.join(sub);
        std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        for name in names {
            let (_, _, cmd) = all
                .iter()
                .find(|(n, _, _)| n == name)
                .expect("every link has a definition");
            let mut cmd = cmd.clone();
            let file = clap_complete::generate_to(shell, &mut cmd, name, &out)
                .with_context(|| format!("completions for {name} in {}", out.display()))?;
            written.push(file.display().to_string());
        }
    }
    Ok(written)
}
