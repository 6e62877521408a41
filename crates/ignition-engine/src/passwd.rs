//! Users and groups, through the shadow-utils tools with `--root`, as
//! upstream Ignition does: `groupadd`/`groupdel` for groups, `useradd` for
//! new users, `usermod` for existing ones, `userdel` for `shouldExist:
//! false`; SSH keys go to `~/.ssh/authorized_keys.d/ignition`.
//!
//! Password hashes are passed to the tools, never printed: a failing
//! command is reported with them redacted.

use std::process::Command;

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

/// Runs a tool; on failure the error names the command, without secrets.
fn run(at: &str, tool: &str, args: &[String], secret: Option<&str>) -> Result<(), PasswdError> {
    let out = Command::new(tool)
        .args(args)
        .output()
        .map_err(|e| PasswdError {
            at: at.to_string(),
            message: format!("running {tool}: {e}"),
        })?;
    if out.status.success() {
        return Ok(());
    }
    let shown: Vec<String> = args
        .iter()
        .map(|a| {
            if Some(a.as_str()) == secret {
                "<redacted>".to_string()
            } else {
                a.clone()
            }
        })
        .collect();
    Err(PasswdError {
        at: at.to_string(),
        message: format!(
            "{tool} {} failed ({}): {}",
            shown.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    })
}

fn root_arg(root: &Root) -> Vec<String> {
    vec!["--root".into(), root.path().display().to_string()]
}

fn group(g: &PasswdGroup, i: usize, root: &Root, ids: &Ids) -> Result<(), PasswdError> {
    let at = format!("$.passwd.groups.{i}");
    let exists = ids.group(&g.name).is_some();
    if g.should_exist == Some(false) {
        if exists {
            let mut args = root_arg(root);
            args.push(g.name.clone());
            run(&at, "groupdel", &args, None)?;
        }
        return Ok(());
    }
    if exists {
        return Ok(());
    }
    let mut args = root_arg(root);
    if let Some(gid) = g.gid {
        args.extend(["--gid".into(), gid.to_string()]);
    }
    // No hash or an empty one locks the group password, as upstream.
    let secret = Some(
        g.password_hash
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "*".into()),
    );
    if let Some(h) = &secret {
        args.extend(["--password".into(), h.clone()]);
    }
    if g.system == Some(true) {
        args.push("--system".into());
    }
    args.push(g.name.clone());
    run(&at, "groupadd", &args, secret.as_deref())
}

fn user(u: &PasswdUser, i: usize, root: &Root, ids: &Ids) -> Result<(), PasswdError> {
    let at = format!("$.passwd.users.{i}");
    let exists = ids.user(&u.name).is_some();
    if u.should_exist == Some(false) {
        if exists {
            let mut args = root_arg(root);
            args.extend(["--remove".into(), u.name.clone()]);
            run(&at, "userdel", &args, None)?;
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
    run(&at, tool, &args, hash.as_deref())
}

/// Writes the SSH keys of a user to `~/.ssh/authorized_keys.d/ignition`.
fn keys(u: &PasswdUser, i: usize, root: &Root) -> Result<(), PasswdError> {
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
    root.make_dir(&format!("{ssh}/authorized_keys.d"), 0o700, Some((uid, gid)))
        .map_err(e)?;
    let mut text = u.ssh_authorized_keys.join("\n");
    text.push('\n');
    root.write_file(
        &format!("{ssh}/authorized_keys.d/ignition"),
        text.as_bytes(),
        0o600,
        Some((uid, gid)),
    )
    .map_err(e)
}

/// Creates, changes or deletes the config's groups and users.
pub fn apply(config: &Config, root: &Root) -> Result<usize, PasswdError> {
    let p = &config.passwd;
    if p.groups.is_empty() && p.users.is_empty() {
        return Ok(0);
    }
    let ids = Ids::load(root);
    for (i, g) in p.groups.iter().enumerate() {
        group(g, i, root, &ids)?;
    }
    let ids = Ids::load(root);
    for (i, u) in p.users.iter().enumerate() {
        user(u, i, root, &ids)?;
        keys(u, i, root)?;
    }
    Ok(p.groups.len() + p.users.len())
}
