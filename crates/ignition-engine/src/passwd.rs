//! Users and groups, through the shadow-utils tools with `--root`, as
//! upstream Ignition does: `groupadd` for new groups, `groupmod` for
//! existing ones, `groupdel` for `shouldExist: false`; `useradd` for new
//! users, `usermod` for existing ones, `userdel` for `shouldExist: false`.
//! Arguments are upstream's (`internal/exec/util/passwd.go`): a group gets
//! `--password` only for a non-empty hash (the tools then write `!`, a
//! locked group password, into `/etc/gshadow`), a new user without a hash
//! gets `*`. SSH keys go to `~/.ssh/authorized_keys.d/ignition`, or
//! `~/.ssh/authorized_keys` with `IGNITION_WRITE_AUTHORIZED_KEYS_FRAGMENT=false`.
//! Directories the mount stage created at or below a home are given to
//! the user with mode 0700.
//!
//! Password hashes are passed to the tools, never printed: a failing
//! command is reported with them redacted.

use ignition_config::Config;
use ignition_config::types::{PasswdGroup, PasswdUser};

use crate::files::Ids;
use crate::root::Root;

/// A failure, with the config path of the entry.
#[derive(Debug, thiserror::Error)]
#[error("{at}: {message}")]
pub struct PasswdError {
    /// JSON path of the user or group.
    pub at: String,
    /// What failed: the command line (secrets redacted) and its stderr.
    pub message: String,
}

/// Runs a tool with the tools' deadline; on failure the error names the
/// command, without secrets.
fn run(at: &str, tool: &str, args: &[String], secret: Option<&str>) -> Result<(), PasswdError> {
    let shown: Vec<String> = std::iter::once(tool.to_string())
        .chain(args.iter().map(|a| {
            if Some(a.as_str()) == secret {
                "<redacted>".to_string()
            } else {
                a.clone()
            }
        }))
        .collect();
    let shown = crate::cmd::command_line(&shown);
    let mut argv = vec![tool.to_string()];
    argv.extend_from_slice(args);
    let out = crate::cmd::run(&argv, Some(&shown)).map_err(|e| PasswdError {
        at: at.to_string(),
        message: e.to_string(),
    })?;
    if out.status.success() {
        return Ok(());
    }
    Err(PasswdError {
        at: at.to_string(),
        message: format!(
            "{shown} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    })
}

fn root_arg(root: &Root) -> Vec<String> {
    vec!["--root".into(), root.path().display().to_string()]
}

fn group(
    g: &PasswdGroup,
    i: usize,
    root: &Root,
    ids: &Ids,
    opts: &crate::Options,
) -> Result<(), PasswdError> {
    let at = format!("$.passwd.groups.{i}");
    let exists = ids.group(&g.name).is_some();
    if g.should_exist == Some(false) {
        if exists {
            let mut args = root_arg(root);
            args.push(g.name.clone());
            run(&at, &opts.tool("groupdel"), &args, None)?;
        }
        return Ok(());
    }
    // As upstream: an existing group is changed with groupmod; the
    // password is passed only when the config gives a non-empty hash, so
    // that the tools' default (`!` in /etc/gshadow, a locked group
    // password) applies otherwise.
    let mut args = root_arg(root);
    if let Some(gid) = g.gid {
        args.extend(["--gid".into(), gid.to_string()]);
    }
    let secret = g.password_hash.clone().filter(|h| !h.is_empty());
    if let Some(h) = &secret {
        args.extend(["--password".into(), h.clone()]);
    }
    if exists {
        args.push(g.name.clone());
        return run(&at, &opts.tool("groupmod"), &args, secret.as_deref());
    }
    if g.system == Some(true) {
        args.push("--system".into());
    }
    args.push(g.name.clone());
    run(&at, &opts.tool("groupadd"), &args, secret.as_deref())
}

fn user(
    u: &PasswdUser,
    i: usize,
    root: &Root,
    ids: &Ids,
    opts: &crate::Options,
) -> Result<(), PasswdError> {
    let at = format!("$.passwd.users.{i}");
    let exists = ids.user(&u.name).is_some();
    if u.should_exist == Some(false) {
        if exists {
            let mut args = root_arg(root);
            args.extend(["--remove".into(), u.name.clone()]);
            run(&at, &opts.tool("userdel"), &args, None)?;
        }
        return Ok(());
    }
    let mut args = root_arg(root);
    if let Some(home) = &u.home_dir {
        if exists {
            args.extend(["--home".into(), home.clone(), "--move-home".into()]);
        } else {
            args.extend(["--home-dir".into(), home.clone()]);
        }
    }
    if !exists {
        args.push(
            if u.no_create_home == Some(true) {
                "--no-create-home"
            } else {
                "--create-home"
            }
            .into(),
        );
    }
    if let Some(g) = &u.primary_group {
        args.extend(["--gid".into(), g.clone()]);
    }
    if let Some(uid) = u.uid {
        args.extend(["--uid".into(), uid.to_string()]);
    }
    if let Some(c) = &u.gecos {
        args.extend(["--comment".into(), c.clone()]);
    }
    if !u.groups.is_empty() {
        args.extend(["--groups".into(), u.groups.join(",")]);
    }
    // No hash (for a new user) or an empty one locks the password, as
    // upstream.
    let hash = match u.password_hash.as_deref() {
        Some("") => Some("*".to_string()),
        Some(h) => Some(h.to_string()),
        None if !exists => Some("*".to_string()),
        None => None,
    };
    if let Some(h) = &hash {
        args.extend(["--password".into(), h.clone()]);
    }
    if let Some(s) = &u.shell {
        args.extend(["--shell".into(), s.clone()]);
    }
    if !exists {
        if u.no_user_group == Some(true) {
            args.push("--no-user-group".into());
        }
        if u.system == Some(true) {
            args.push("--system".into());
        }
        if u.no_log_init == Some(true) {
            args.push("--no-log-init".into());
        }
    }
    args.push(u.name.clone());
    let tool = if exists { "usermod" } else { "useradd" };
    // usermod with nothing to change is still valid.
    run(&at, &opts.tool(tool), &args, hash.as_deref())
}

/// Writes the SSH keys of a user to `~/.ssh/authorized_keys.d/ignition`,
/// or to `~/.ssh/authorized_keys` when the fragment is turned off
/// (`IGNITION_WRITE_AUTHORIZED_KEYS_FRAGMENT=false`), as upstream.
fn keys(u: &PasswdUser, i: usize, root: &Root, opts: &crate::Options) -> Result<(), PasswdError> {
    if u.ssh_authorized_keys.is_empty() || u.should_exist == Some(false) {
        return Ok(());
    }
    let at = format!("$.passwd.users.{i}.sshAuthorizedKeys");
    let ids = Ids::load(root);
    let (uid, gid, home) = ids.user(&u.name).ok_or_else(|| PasswdError {
        at: at.clone(),
        message: format!("user {:?} is not in the root's /etc/passwd", u.name),
    })?;
    let e = |e: crate::root::RootError| PasswdError {
        at: at.clone(),
        message: e.to_string(),
    };
    let ssh = format!("{}/.ssh", home.trim_end_matches('/'));
    root.make_dir(&ssh, 0o700, Some((uid, gid))).map_err(e)?;
    let path = if opts.authorized_keys_fragment {
        root.make_dir(&format!("{ssh}/authorized_keys.d"), 0o700, Some((uid, gid)))
            .map_err(e)?;
        format!("{ssh}/authorized_keys.d/ignition")
    } else {
        format!("{ssh}/authorized_keys")
    };
    let mut text = u.ssh_authorized_keys.join("\n");
    if !text.ends_with('\n') {
        text.push('\n');
    }
    root.write_file(&path, text.as_bytes(), 0o600, Some((uid, gid)))
        .map_err(e)
}

/// Gives a user the directories the mount stage created at or below the
/// user's home (mount points), mode 0700, as upstream's
/// `ModifyHomeDirPermissions`: `useradd` leaves an existing home alone.
fn home_mount_points(
    u: &PasswdUser,
    i: usize,
    root: &Root,
    opts: &crate::Options,
) -> Result<(), PasswdError> {
    if u.no_create_home == Some(true)
        || u.should_exist == Some(false)
        || opts.notated_directories.is_empty()
    {
        return Ok(());
    }
    let at = format!("$.passwd.users.{i}");
    let ids = Ids::load(root);
    let (uid, gid, home) = ids.user(&u.name).ok_or_else(|| PasswdError {
        at: at.clone(),
        message: format!("user {:?} is not in the root's /etc/passwd", u.name),
    })?;
    let home = home.trim_end_matches('/');
    for dir in &opts.notated_directories {
        if dir == home || dir.starts_with(&format!("{home}/")) {
            // Only what is still a directory: chmod would follow a link.
            let kind = root.kind(dir).map_err(|e| PasswdError {
                at: at.clone(),
                message: e.to_string(),
            })?;
            if kind != Some(crate::root::NodeKind::Dir) {
                continue;
            }
            root.set_attrs(dir, Some(0o700), Some((uid, gid)))
                .map_err(|e| PasswdError {
                    at: at.clone(),
                    message: format!("changing the mount point in the home directory: {e}"),
                })?;
        }
    }
    Ok(())
}

/// Creates, changes or deletes the config's groups and users.
pub fn apply(config: &Config, root: &Root, opts: &crate::Options) -> Result<usize, PasswdError> {
    let p = &config.passwd;
    if p.groups.is_empty() && p.users.is_empty() {
        return Ok(0);
    }
    let ids = Ids::load(root);
    for (i, g) in p.groups.iter().enumerate() {
        group(g, i, root, &ids, opts)?;
    }
    let ids = Ids::load(root);
    for (i, u) in p.users.iter().enumerate() {
        user(u, i, root, &ids, opts)?;
        home_mount_points(u, i, root, opts)?;
        keys(u, i, root, opts)?;
    }
    Ok(p.groups.len() + p.users.len())
}
