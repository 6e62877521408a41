//! `oxcore release`: compose releases into a stream, promote them between
//! streams, set barriers, dead-ends and rollouts, verify signed metadata.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};
use clap::{Args, Subcommand};
use ostree_store::commit::{CommitInfo, CommitOptions, TreeBuilder, write_commit};
use ostree_store::gvariant::Value;
use ostree_store::{Checksum, Repo, sign};
use release::publish::{Metadata, Rule, promoted_version};

/// Release tooling.
#[derive(Debug, Args)]
pub struct ReleaseCli {
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Debug, Args)]
pub(crate) struct Common {
    /// The metadata tree (upstream's layout: prod/streams/…, streams/…,
    /// updates/…).
    #[arg(long, value_name = "DIR")]
    pub(crate) metadata: PathBuf,
    /// URL the metadata tree is published at.
    #[arg(long, default_value = "https://builds.example.invalid")]
    base_url: String,
    /// ed25519 secret key (base64, or a file holding it, e.g. the output of
    /// `oxcore ostree generate-key`): every written file gets `<file>.sig`.
    #[arg(long, value_name = "KEY|FILE")]
    sign_key: Option<String>,
}

/// A release of a stream and why a rule applies to it.
#[derive(Debug, Args)]
struct ReasonArgs {
    #[command(flatten)]
    common: Common,
    /// Stream.
    #[arg(long)]
    stream: String,
    /// Version.
    version: String,
    /// Why (a URL).
    #[arg(long)]
    reason: String,
}

#[derive(Debug, Subcommand)]
enum Verb {
    /// Commit a root filesystem tree as a release of a stream.
    #[command(
        override_usage = "oxcore release compose --repo <REPO> --metadata <DIR> --stream <STREAM>\n       --tree <TREE> --version <VERSION> [OPTIONS]"
    )]
    Compose {
        #[command(flatten)]
        common: Common,
        /// The OSTree-format repository (archive mode to serve it).
        #[arg(long)]
        repo: PathBuf,
        /// Stream (next, testing, stable, …).
        #[arg(long)]
        stream: String,
        /// Architecture.
        #[arg(long, default_value = "x86_64")]
        arch: String,
        /// The root filesystem tree.
        #[arg(long)]
        tree: PathBuf,
        /// Version, `MAJOR.YYYYMMDD.STREAMID.RESPIN`.
        #[arg(long)]
        version: String,
        /// Ref prefix: refs are `<prefix>/<arch>/coreos/<stream>`.
        #[arg(long, default_value = "fedora")]
        ref_prefix: String,
        /// Commit timestamp (epoch seconds; default now).
        #[arg(long)]
        timestamp: Option<u64>,
        /// An artifact of the release, `PLATFORM:FORMAT:NAME=PATH` (e.g.
        /// `qemu:qcow2.xz:disk=fcos.qcow2.xz`): copied next to its
        /// release.json and listed with its location and sha256
        /// (repeatable).
        #[arg(long, value_name = "PLATFORM:FORMAT:NAME=PATH")]
        artifact: Vec<String>,
    },
    /// Copy a release to the next stream (a commit of the same tree with
    /// the target's version), optionally starting a rollout.
    #[command(
        override_usage = "oxcore release promote --repo <REPO> --metadata <DIR> --from <FROM>\n       --to <TO> [OPTIONS] <VERSION>"
    )]
    Promote {
        #[command(flatten)]
        common: Common,
        /// The repository.
        #[arg(long)]
        repo: PathBuf,
        /// Source stream.
        #[arg(long)]
        from: String,
        /// Target stream.
        #[arg(long)]
        to: String,
        /// The release's version in the source stream.
        version: String,
        /// Start a rollout over this many hours.
        #[arg(long)]
        rollout_hours: Option<u64>,
        /// Share of the fleet open at the rollout's start.
        #[arg(long, default_value_t = 0.0)]
        start_percentage: f64,
        /// Ref prefix.
        #[arg(long, default_value = "fedora")]
        ref_prefix: String,
    },
    /// Make a release a barrier: every node passes through it.
    #[command(
        override_usage = "oxcore release barrier --metadata <DIR> --stream <STREAM>\n       --reason <REASON> [OPTIONS] <VERSION>"
    )]
    Barrier(ReasonArgs),
    /// Make a release a dead-end: no update leaves it.
    #[command(
        override_usage = "oxcore release deadend --metadata <DIR> --stream <STREAM>\n       --reason <REASON> [OPTIONS] <VERSION>"
    )]
    Deadend(ReasonArgs),
    /// Roll a release out over time.
    #[command(
        override_usage = "oxcore release rollout --metadata <DIR> --stream <STREAM>\n       --hours <HOURS> [OPTIONS] <VERSION>"
    )]
    Rollout {
        #[command(flatten)]
        common: Common,
        /// Stream.
        #[arg(long)]
        stream: String,
        /// Version.
        version: String,
        /// Hours until the whole fleet may update.
        #[arg(long)]
        hours: u64,
        /// Share open at the start.
        #[arg(long, default_value_t = 0.0)]
        start_percentage: f64,
        /// Start (epoch seconds; default now).
        #[arg(long)]
        start: Option<i64>,
    },
    /// Check metadata files against their `.sig` signatures.
    Verify {
        /// Trusted public key (base64, or a file with one key per line).
        #[arg(long)]
        key: String,
        /// The files are artifacts: their signatures are of their SHA-256
        /// digest (read as a stream), not of their bytes.
        #[arg(long)]
        artifacts: bool,
        /// Files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A key given inline or in a file; a `secret: …` / `public: …` line of
/// `oxcore ostree generate-key` output is accepted.
fn key_text(arg: &str, label: &str) -> Result<String> {
    let text = if Path::new(arg).is_file() {
        std::fs::read_to_string(arg).with_context(|| arg.to_string())?
    } else {
        arg.to_string()
    };
    let prefix = format!("{label}: ");
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(str::to_string)
        .unwrap_or_else(|| {
            text.lines()
                .filter(|l| !l.contains(": "))
                .collect::<Vec<_>>()
                .join("\n")
        }))
}

fn signer(common: &Common) -> Result<Option<sign::SecretKey>> {
    common
        .sign_key
        .as_deref()
        .map(|k| Ok(sign::SecretKey::from_base64(&key_text(k, "secret")?)?))
        .transpose()
}

/// `PLATFORM:FORMAT:NAME=PATH`.
fn parse_artifact(a: &str) -> Result<(String, String, String, PathBuf)> {
    let bad = || anyhow!("invalid --artifact '{a}': expected PLATFORM:FORMAT:NAME=PATH");
    let (spec, path) = a.split_once('=').ok_or_else(bad)?;
    let parts: Vec<&str> = spec.split(':').collect();
    let [platform, format, name] = parts.as_slice() else {
        return Err(bad());
    };
    if [platform, format, name]
        .iter()
        .any(|p| p.is_empty() || p.contains('/'))
    {
        return Err(bad());
    }
    let path = PathBuf::from(path);
    if !path.is_file() {
        return Err(anyhow!("artifact {}: not a file", path.display()));
    }
    Ok((
        platform.to_string(),
        format.to_string(),
        name.to_string(),
        path,
    ))
}

/// Copies artifacts next to the release's release.json (each through a
/// temporary name) and describes them with location and sha256; with a
/// signer, each also gets `<file>.sig`, the signature of its SHA-256
/// digest (so a client verifies while it streams the file), listed as its
/// `signature`.
pub(crate) fn publish_artifacts(
    common: &Common,
    stream: &str,
    version: &str,
    arch: &str,
    artifacts: &[(String, String, String, PathBuf)],
    sign: Option<release::publish::Signer<'_>>,
) -> Result<std::collections::BTreeMap<String, release::meta::Platform>> {
    let mut media: std::collections::BTreeMap<String, release::meta::Platform> = Default::default();
    let rel_dir = format!("prod/streams/{stream}/builds/{version}/{arch}");
    let dir = common.metadata.join(&rel_dir);
    for (platform, format, name, path) in artifacts {
        std::fs::create_dir_all(&dir).with_context(|| dir.display().to_string())?;
        let file_name = path
            .file_name()
            .ok_or_else(|| anyhow!("{}: no file name", path.display()))?;
        let dest = dir.join(file_name);
        let tmp = dir.join(format!(".{}.tmp", file_name.to_string_lossy()));
        let mut src = std::fs::File::open(path).with_context(|| path.display().to_string())?;
        let mut out = std::fs::File::create(&tmp).with_context(|| tmp.display().to_string())?;
        let (digest, _) = util::sha256_copy(&mut src, Some(&mut out)).map_err(|e| match e {
            util::CopyError::Read(e) => anyhow::Error::new(e).context(path.display().to_string()),
            util::CopyError::Write(e) => anyhow::Error::new(e).context(tmp.display().to_string()),
        })?;
        out.sync_all().with_context(|| tmp.display().to_string())?;
        let location = format!(
            "{}/{rel_dir}/{}",
            common.base_url.trim_end_matches('/'),
            file_name.to_string_lossy()
        );
        // The signature first: the artifact never appears unsigned.
        let signature = match sign {
            Some(sign) => {
                let sig_path = dir.join(format!("{}.sig", file_name.to_string_lossy()));
                util::write_atomic(&sig_path, sign(digest.as_ref()).as_bytes(), 0o644, true)
                    .with_context(|| sig_path.display().to_string())?;
                Some(format!("{location}.sig"))
            }
            None => None,
        };
        std::fs::rename(&tmp, &dest).with_context(|| dest.display().to_string())?;
        let sha256 = util::hex(digest.as_ref());
        media
            .entry(platform.clone())
            .or_default()
            .artifacts
            .entry(format.clone())
            .or_default()
            .insert(
                name.clone(),
                release::meta::Artifact {
                    location,
                    signature,
                    sha256,
                    uncompressed_sha256: None,
                },
            );
    }
    Ok(media)
}

/// Sets a barrier or dead-end (`rule` made from the reason).
fn set_reason_rule(a: ReasonArgs, rule: fn(String) -> Rule) -> Result<()> {
    signed(&a.common, |meta, sign| {
        Ok(meta.set_rule(&a.stream, &a.version, rule(a.reason.clone()), now(), sign)?)
    })
}

/// Runs `f` on the metadata tree with the signer `--sign-key` gives.
pub(crate) fn signed<R>(
    common: &Common,
    f: impl FnOnce(&Metadata, Option<release::publish::Signer<'_>>) -> Result<R>,
) -> Result<R> {
    let key = signer(common)?;
    let sign_fn = |b: &[u8]| sign::base64_encode(&key.as_ref().expect("checked").sign(b));
    let meta = Metadata::new(&common.metadata, &common.base_url);
    f(
        &meta,
        key.as_ref()
            .map(|_| &sign_fn as release::publish::Signer<'_>),
    )
}

pub(crate) fn stream_ref(prefix: &str, arch: &str, stream: &str) -> String {
    format!("{prefix}/{arch}/coreos/{stream}")
}

fn commit_tree(
    repo: &Repo,
    r: &str,
    version: &str,
    source: Source<'_>,
    timestamp: Option<u64>,
) -> Result<Checksum> {
    let parent = repo.read_ref(None, r)?;
    let tx = repo.begin()?;
    let mut b = TreeBuilder::new(&tx, CommitOptions::default());
    match source {
        Source::Dir(d) => b.add_dir(d)?,
        Source::Commit(c) => b.add_commit_tree(repo, c)?,
    }
    let root = b.write()?;
    let info = CommitInfo {
        subject: format!("Fedora CoreOS {version}"),
        timestamp,
        parent,
        metadata: vec![
            ("version".into(), Value::Str(version.into())),
            sysroot_binding(r),
        ],
        ..CommitInfo::default()
    };
    let c = write_commit(&tx, &info, root)?;
    tx.set_ref(None, r, Some(c));
    tx.commit()?;
    Ok(c)
}

fn sysroot_binding(r: &str) -> (String, Value) {
    ostree_store::commit::ref_binding(&[r.to_string()])
}

enum Source<'a> {
    Dir(&'a Path),
    Commit(&'a Checksum),
}

/// The SHA-256 digest of a file, read as a stream.
fn sha256_of(path: &Path) -> Result<Vec<u8>> {
    let mut f = std::fs::File::open(path).with_context(|| path.display().to_string())?;
    let (digest, _) = util::sha256_copy(&mut f, None).map_err(|e| match e {
        util::CopyError::Read(e) | util::CopyError::Write(e) => {
            anyhow::Error::new(e).context(path.display().to_string())
        }
    })?;
    Ok(digest.to_vec())
}

/// Runs `oxcore release`.
pub fn run(cli: ReleaseCli) -> Result<ExitCode> {
    match cli.verb {
        Verb::Compose {
            common,
            repo,
            stream,
            arch,
            tree,
            version,
            ref_prefix,
            timestamp,
            artifact,
        } => signed(&common, |meta, sign| {
            // Validate before touching the repository.
            meta.check_new_release(&stream, &version, &arch)?;
            let artifacts = artifact
                .iter()
                .map(|a| parse_artifact(a))
                .collect::<Result<Vec<_>>>()?;
            let repo = Repo::open(&repo)?;
            let r = stream_ref(&ref_prefix, &arch, &stream);
            let c = commit_tree(&repo, &r, &version, Source::Dir(&tree), timestamp)?;
            let hex = c.to_hex();
            let media = publish_artifacts(&common, &stream, &version, &arch, &artifacts, sign)?;
            let new = release::publish::NewRelease {
                stream: &stream,
                version: &version,
                arch: &arch,
                commit: &hex,
                media: &media,
            };
            meta.add_release(&new, now(), sign)?;
            println!("{r} {version} {c}");
            Ok(())
        })?,
        Verb::Promote {
            common,
            repo,
            from,
            to,
            version,
            rollout_hours,
            start_percentage,
            ref_prefix,
        } => signed(&common, |meta, sign_opt| {
            let doc = meta.release(&from, &version)?;
            let target = promoted_version(&version, &to)?;
            for arch in doc.architectures.keys() {
                meta.check_new_release(&to, &target, arch)?;
            }
            let repo = Repo::open(&repo)?;
            let t = now();
            for (arch, a) in &doc.architectures {
                let src = Checksum::from_hex(&a.commit).map_err(|e| anyhow!("{e}"))?;
                let r = stream_ref(&ref_prefix, arch, &to);
                let c = commit_tree(&repo, &r, &target, Source::Commit(&src), None)?;
                let hex = c.to_hex();
                let new = release::publish::NewRelease {
                    stream: &to,
                    version: &target,
                    arch,
                    commit: &hex,
                    media: &a.media,
                };
                meta.add_release(&new, t, sign_opt)?;
                println!("{r} {target} {c}");
            }
            if let Some(h) = rollout_hours {
                let rule = Rule::Rollout {
                    start_epoch: t,
                    start_percentage,
                    duration_minutes: Some(h * 60),
                };
                meta.set_rule(&to, &target, rule, t, sign_opt)?;
            }
            Ok(())
        })?,
        Verb::Barrier(a) => set_reason_rule(a, Rule::Barrier)?,
        Verb::Deadend(a) => set_reason_rule(a, Rule::Deadend)?,
        Verb::Rollout {
            common,
            stream,
            version,
            hours,
            start_percentage,
            start,
        } => signed(&common, |meta, sign| {
            let t = now();
            let rule = Rule::Rollout {
                start_epoch: start.unwrap_or(t),
                start_percentage,
                duration_minutes: Some(hours * 60),
            };
            Ok(meta.set_rule(&stream, &version, rule, t, sign)?)
        })?,
        Verb::Verify {
            key,
            artifacts,
            files,
        } => {
            let keys = sign::public_keys(&key_text(&key, "public")?)?;
            let mut bad = 0;
            for f in files {
                let data = if artifacts {
                    sha256_of(&f)?
                } else {
                    std::fs::read(&f).with_context(|| f.display().to_string())?
                };
                let sig_path = PathBuf::from(format!("{}.sig", f.display()));
                let sig = std::fs::read_to_string(&sig_path)
                    .with_context(|| sig_path.display().to_string())?;
                let raw = sign::base64_decode(sig.trim())
                    .ok_or_else(|| anyhow!("{}: not base64", sig_path.display()))?;
                match sign::verify(&data, &[raw], &keys) {
                    Ok(()) => println!("{}: good signature", f.display()),
                    Err(e) => {
                        eprintln!("{}: {e}", f.display());
                        bad += 1;
                    }
                }
            }
            if bad > 0 {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
