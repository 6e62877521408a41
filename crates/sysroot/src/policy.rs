//! Update policy, as rpm-ostree decides it before it deploys: which
//! deployment an operation starts from, following its origin (pulling a
//! remote ref first), refusing a commit older than the deployed one,
//! deploying a version of the origin's history as an override, rebasing
//! onto another refspec, and changing the origin's remote. The CLI and the
//! update agent call these; the deployments themselves are written by
//! [`Sysroot::deploy`] and [`Sysroot::stage`].

use ostree_store::pull::{PullReport, PullStats};
use ostree_store::remote::{PullRequest, Remote};
use ostree_store::{Checksum, Repo};

use crate::{Deployment, Error, Result, Sysroot, origin_for_refspec};

/// How [`Sysroot::upgrade`] and [`Sysroot::deploy_revision`] deploy.
#[derive(Debug, Clone, Default)]
pub struct UpdateOptions {
    /// Accept a commit older than the deployed one (`--allow-downgrade`).
    pub allow_downgrade: bool,
    /// Stage the new deployment, finalized at shutdown.
    pub stage: bool,
    /// Stage it and hold finalization until it is unlocked.
    pub lock_finalization: bool,
}

/// How a pull reports its progress.
pub struct Puller<'a> {
    /// Concurrent fetches.
    pub connections: usize,
    /// Counters.
    pub stats: &'a PullStats,
    /// Called as objects arrive.
    pub progress: &'a (dyn Fn(&PullStats) + Sync),
}

/// What an upgrade did.
#[derive(Debug)]
pub enum Upgrade {
    /// The origin's ref names the deployed commit.
    NoUpdate,
    /// A new deployment, the default now or staged.
    Deployed(Deployment),
}

impl Sysroot {
    /// The deployment an operation starts from: the booted one, else the
    /// default.
    pub fn origin_deployment(&self) -> Result<Deployment> {
        let list = self.deployments()?;
        let booted = self.booted_index(&list)?;
        list.get(booted.unwrap_or(0))
            .cloned()
            .ok_or(Error::NoDeployments)
    }

    /// `rpm-ostree upgrade`: pulls the origin's ref when it names a remote
    /// (`remote:branch`), then deploys (or stages) its commit, unless it is
    /// the deployed one; a commit older than the deployed one is refused
    /// unless allowed. Following the ref again ends a `deploy <version>`
    /// override. The pull's report is returned when there was one.
    pub fn upgrade(
        &self,
        opts: &UpdateOptions,
        pull: &Puller<'_>,
    ) -> Result<(Option<PullReport>, Upgrade)> {
        let _lock = self.lock()?;
        let d = self.origin_deployment()?;
        let refspec = d.refspec().ok_or(Error::NoOriginRefspec)?.to_string();
        let report = match refspec.split_once(':') {
            Some((remote, branch)) => {
                let refs = [branch.to_string()];
                let remote = Remote::load(self.repo(), remote)?;
                let request = PullRequest {
                    connections: pull.connections,
                    stats: pull.stats,
                    progress: pull.progress,
                    ..PullRequest::new(&refs, pull.stats)
                };
                Some(remote.pull(self.repo(), &request)?)
            }
            None => None,
        };
        let new = self.repo().resolve_rev(&refspec)?;
        if new == d.checksum {
            return Ok((report, Upgrade::NoUpdate));
        }
        check_not_downgrade(self.repo(), &d.checksum, &new, opts.allow_downgrade)?;
        let mut origin = d.origin.clone();
        if d.override_commit().is_some() {
            origin = origin_for_refspec(&refspec);
        }
        let new = self.deploy_or_stage(&d.os, &new, origin, opts)?;
        Ok((report, Upgrade::Deployed(new)))
    }

    /// `rpm-ostree deploy REVISION`: a commit checksum, or a version found in
    /// the history of the origin's ref, deployed with an `override-commit`
    /// in its origin (a later [`Sysroot::upgrade`] ends it).
    pub fn deploy_revision(&self, revision: &str, opts: &UpdateOptions) -> Result<Deployment> {
        let _lock = self.lock()?;
        let d = self.origin_deployment()?;
        let commit = match Checksum::from_hex(revision) {
            Ok(c) => c,
            Err(_) => find_version(self.repo(), &d, revision)?,
        };
        let mut origin = d.origin.clone();
        origin.set("origin", "override-commit", &commit.to_hex());
        self.deploy_or_stage(&d.os, &commit, origin, opts)
    }

    /// `rpm-ostree rebase REFSPEC`: deploys what `refspec` names in the
    /// repository and makes it the origin.
    pub fn rebase(&self, refspec: &str) -> Result<Deployment> {
        let _lock = self.lock()?;
        let d = self.origin_deployment()?;
        let commit = self.repo().resolve_rev(refspec)?;
        let mut origin = d.origin.clone();
        origin.set("origin", "refspec", refspec);
        self.deploy(&d.os, &commit, origin, None, &Default::default())
    }

    /// `ostree admin set-origin`: remote `remote` at `url` (with more
    /// options), and deployment `index` following `remote:branch` (its
    /// current branch when `None`).
    pub fn set_origin(
        &self,
        index: usize,
        remote: &str,
        url: &str,
        branch: Option<&str>,
        options: &[(String, String)],
    ) -> Result<()> {
        let _lock = self.lock()?;
        let list = self.deployments()?;
        let d = list
            .get(index)
            .ok_or_else(|| Error::Msg("No deployment to change".into()))?;
        let branch = match branch {
            Some(b) => b.to_string(),
            None => {
                let r = d
                    .refspec()
                    .ok_or_else(|| Error::Msg("No origin refspec; give a BRANCH".into()))?;
                r.split_once(':').map(|(_, b)| b).unwrap_or(r).to_string()
            }
        };
        let mut repo = Repo::open(self.repo().path())?;
        Remote::set(&mut repo, remote, url, options)?;
        let mut origin = d.origin.clone();
        origin.set("origin", "refspec", &format!("{remote}:{branch}"));
        self.write_origin(d, &origin)
    }

    fn deploy_or_stage(
        &self,
        os: &str,
        commit: &Checksum,
        origin: ostree_store::keyfile::KeyFile,
        opts: &UpdateOptions,
    ) -> Result<Deployment> {
        if opts.stage || opts.lock_finalization {
            self.stage(os, commit, origin, None, opts.lock_finalization)
        } else {
            self.deploy(os, commit, origin, None, &Default::default())
        }
    }
}

/// The commit of `version` in the history of `d`'s origin ref.
fn find_version(repo: &Repo, d: &Deployment, version: &str) -> Result<Checksum> {
    let refspec = d.refspec().ok_or(Error::NoOriginRefspec)?;
    let mut c = Some(repo.resolve_rev(refspec)?);
    while let Some(cur) = c {
        let Ok(commit) = repo.load_commit(&cur) else {
            break;
        };
        if commit.version() == Some(version) {
            return Ok(cur);
        }
        c = commit.parent;
    }
    Err(Error::VersionNotFound {
        version: version.to_string(),
        refspec: refspec.to_string(),
    })
}

/// Refuses a commit older than the deployed one (by timestamp), as
/// `rpm-ostree upgrade` does, unless allowed.
fn check_not_downgrade(repo: &Repo, old: &Checksum, new: &Checksum, allow: bool) -> Result<()> {
    if allow {
        return Ok(());
    }
    let (o, n) = (repo.load_commit(old)?, repo.load_commit(new)?);
    if n.timestamp < o.timestamp {
        return Err(Error::Downgrade {
            new: *new,
            new_timestamp: n.timestamp,
            old: *old,
            old_timestamp: o.timestamp,
        });
    }
    Ok(())
}
