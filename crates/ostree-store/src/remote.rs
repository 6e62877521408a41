//! Remotes as OSTree keeps them: `[remote "NAME"]` groups in a
//! repository's `config` with `url`, `branches` (`a;b;`), `gpg-verify`,
//! `sign-verify` with `verification-ed25519-key` or `-file`, and
//! `tls-ca-path`; and pulling from one, with its trust applied.

use std::path::PathBuf;

use crate::keyfile::KeyFile;
use crate::pull::{HttpFetcher, PullOptions, PullReport, PullStats, pull};
use crate::repo::{Repo, Result, msg};
use crate::sign;

/// The config group of remote `name`.
pub fn group(name: &str) -> String {
    format!("remote \"{name}\"")
}

/// A remote read from a repository's config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    /// Its name.
    pub name: String,
    /// Where its archive repository is served.
    pub url: String,
    /// The refs pulled when none are named.
    pub branches: Vec<String>,
    /// A PEM file of authorities trusted for its HTTPS server.
    pub tls_ca_path: Option<PathBuf>,
    /// Whether commits must carry a valid ed25519 signature.
    pub sign_verify: bool,
    /// Inline base64 ed25519 public key(s).
    pub verification_key: Option<String>,
    /// A file of base64 ed25519 public keys, one per line.
    pub verification_file: Option<PathBuf>,
}

/// Where a remote's signing keys come from (`--sign-verify=ed25519=…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `inline:KEY`
    Inline(String),
    /// `file:PATH`
    File(PathBuf),
}

/// A remote to add.
#[derive(Debug, Clone, Default)]
pub struct NewRemote {
    /// Its name.
    pub name: String,
    /// Its URL.
    pub url: String,
    /// Default branches.
    pub branches: Vec<String>,
    /// Write `gpg-verify=false` (`--no-gpg-verify`).
    pub no_gpg_verify: bool,
    /// Require ed25519 signatures with these keys.
    pub sign_verify: Option<KeySource>,
    /// More `KEY=VALUE` options (`--set`).
    pub set: Vec<(String, String)>,
}

impl Remote {
    /// Reads remote `name` from `repo`'s config.
    pub fn load(repo: &Repo, name: &str) -> Result<Remote> {
        let cfg = repo.config();
        let g = group(name);
        let url = cfg
            .get(&g, "url")
            .ok_or_else(|| msg(format!("Remote \"{name}\" not found")))?
            .to_string();
        Ok(Remote {
            name: name.to_string(),
            url,
            branches: cfg
                .get(&g, "branches")
                .map(|b| {
                    b.split(';')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            tls_ca_path: cfg.get(&g, "tls-ca-path").map(PathBuf::from),
            sign_verify: cfg.get_bool(&g, "sign-verify").unwrap_or(false),
            verification_key: cfg.get(&g, "verification-ed25519-key").map(str::to_string),
            verification_file: cfg.get(&g, "verification-ed25519-file").map(PathBuf::from),
        })
    }

    /// [`Remote::load`]; with `url`, a remote the repository lacks is taken
    /// as that URL with no other settings (`ostree pull --url=`), and one
    /// it has keeps its settings with that URL.
    pub fn load_with_url(repo: &Repo, name: &str, url: Option<&str>) -> Result<Remote> {
        let Some(url) = url else {
            return Remote::load(repo, name);
        };
        let mut r = if repo.config().groups().contains(&group(name).as_str()) {
            Remote::load(repo, name)?
        } else {
            Remote {
                name: name.to_string(),
                url: String::new(),
                branches: Vec::new(),
                tls_ca_path: None,
                sign_verify: false,
                verification_key: None,
                verification_file: None,
            }
        };
        r.url = url.to_string();
        Ok(r)
    }

    /// Every remote of `repo`: (name, URL), in config order.
    pub fn list(repo: &Repo) -> Vec<(String, String)> {
        let cfg = repo.config();
        cfg.groups()
            .into_iter()
            .filter_map(|g| {
                let name = g.strip_prefix("remote \"")?.strip_suffix('"')?;
                Some((
                    name.to_string(),
                    cfg.get(g, "url").unwrap_or("").to_string(),
                ))
            })
            .collect()
    }

    /// Adds a remote; with `if_not_exists`, an existing one is left as it
    /// is (`Ok(false)`).
    pub fn add(repo: &mut Repo, new: &NewRemote, if_not_exists: bool) -> Result<bool> {
        let mut cfg: KeyFile = repo.config().clone();
        let g = group(&new.name);
        if cfg.groups().contains(&g.as_str()) {
            if if_not_exists {
                return Ok(false);
            }
            return Err(msg(format!(
                "Remote configuration for \"{}\" already exists",
                new.name
            )));
        }
        cfg.set(&g, "url", &new.url);
        if !new.branches.is_empty() {
            cfg.set(&g, "branches", &format!("{};", new.branches.join(";")));
        }
        if new.no_gpg_verify {
            cfg.set(&g, "gpg-verify", "false");
        }
        match &new.sign_verify {
            Some(KeySource::Inline(key)) => {
                cfg.set(&g, "sign-verify", "true");
                cfg.set(&g, "verification-ed25519-key", key);
            }
            Some(KeySource::File(path)) => {
                cfg.set(&g, "sign-verify", "true");
                cfg.set(&g, "verification-ed25519-file", &path.to_string_lossy());
            }
            None => {}
        }
        for (k, v) in &new.set {
            cfg.set(&g, k, v);
        }
        repo.write_config(cfg)?;
        Ok(true)
    }

    /// Sets options of remote `name`, adding it with `url` if it is new
    /// (`ostree admin set-origin`).
    pub fn set(repo: &mut Repo, name: &str, url: &str, options: &[(String, String)]) -> Result<()> {
        let mut cfg = repo.config().clone();
        let g = group(name);
        cfg.set(&g, "url", url);
        for (k, v) in options {
            cfg.set(&g, k, v);
        }
        repo.write_config(cfg)
    }

    /// Deletes a remote; with `if_exists`, a missing one is `Ok(false)`.
    pub fn delete(repo: &mut Repo, name: &str, if_exists: bool) -> Result<bool> {
        let mut cfg = repo.config().clone();
        if !cfg.remove_group(&group(name)) {
            if if_exists {
                return Ok(false);
            }
            return Err(msg(format!("Remote \"{name}\" not found")));
        }
        repo.write_config(cfg)?;
        Ok(true)
    }

    /// The keys commits must be signed with, when `sign-verify` is on.
    pub fn verify_keys(&self) -> Result<Option<Vec<Vec<u8>>>> {
        if !self.sign_verify {
            return Ok(None);
        }
        let mut text = String::new();
        if let Some(k) = &self.verification_key {
            text.push_str(k);
            text.push('\n');
        }
        if let Some(f) = &self.verification_file {
            text.push_str(
                &std::fs::read_to_string(f)
                    .map_err(|e| msg(format!("reading {}: {e}", f.display())))?,
            );
        }
        let keys = sign::public_keys(&text)?;
        if keys.is_empty() {
            return Err(msg(format!(
                "Remote \"{}\" requires signatures but has no verification-ed25519-key/-file",
                self.name
            )));
        }
        Ok(Some(keys))
    }

    /// A fetcher for the remote, trusting its `tls-ca-path`.
    pub fn fetcher(&self) -> Result<HttpFetcher> {
        let cas = match &self.tls_ca_path {
            Some(p) => vec![
                std::fs::read(p).map_err(|e| msg(format!("tls-ca-path {}: {e}", p.display())))?,
            ],
            None => Vec::new(),
        };
        HttpFetcher::new(&self.url, &cas)
    }

    /// Pulls `refs` (the remote's `branches` when empty) into `repo`, with
    /// the remote's trust and signature rules.
    pub fn pull(&self, repo: &Repo, request: &PullRequest<'_>) -> Result<PullReport> {
        let refs = if request.refs.is_empty() {
            self.branches.clone()
        } else {
            request.refs.to_vec()
        };
        if refs.is_empty() {
            return Err(msg(format!(
                "No refs given and remote \"{}\" has no default branches",
                self.name
            )));
        }
        let fetcher = self.fetcher()?;
        let opts = PullOptions {
            remote: self.name.clone(),
            refs,
            verify_keys: self.verify_keys()?,
            connections: request.connections,
            mirror: request.mirror,
        };
        pull(repo, &fetcher, &opts, request.stats, request.progress)
    }
}

/// What [`Remote::pull`] fetches and how.
pub struct PullRequest<'a> {
    /// Refs (or commit checksums); empty for the remote's branches.
    pub refs: &'a [String],
    /// Concurrent fetches.
    pub connections: usize,
    /// Write the refs as local refs too (`--mirror`).
    pub mirror: bool,
    /// Counters for progress reports.
    pub stats: &'a PullStats,
    /// Called as objects arrive.
    pub progress: &'a (dyn Fn(&PullStats) + Sync),
}

impl<'a> PullRequest<'a> {
    /// `refs` with 8 connections, no progress reports.
    pub fn new(refs: &'a [String], stats: &'a PullStats) -> PullRequest<'a> {
        PullRequest {
            refs,
            connections: 8,
            mirror: false,
            stats,
            progress: &|_| {},
        }
    }
}
