//! `oxcore ostree`: the OS store with the `ostree` command's arguments.
//!
//! Verbs and options follow `ostree` (2022.7 and later) for everything both
//! have, so scripts written for `ostree` keep working: `--repo=PATH` before
//! or after the verb (or `$OSTREE_REPO`), `commit -b/-s/-m --tree=dir=
//! --timestamp= --no-bindings --add-metadata-string= --owner-uid=`, and so
//! on. Output formats match `ostree`'s where scripts read them (a commit's
//! checksum on stdout, `ls`, `log`, `show`, `refs`, `diff`, `fsck` lines).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use ostree_store::checkout::{CheckoutOptions, checkout};
use ostree_store::commit::{
    CommitInfo, CommitOptions, TreeBuilder, checksum_path, ref_binding, write_commit,
};
use ostree_store::gvariant::Value;

use ostree_store::object::{Checksum, Commit, ObjectType};
use ostree_store::pull::PullStats;
use ostree_store::remote::{KeySource, NewRemote, PullRequest, Remote};
use ostree_store::{time, tree};

use crate::cli::{PullProgress, format_size, parse_kv};
use ostree_store::{Repo, RepoMode, fsck, prune, sign, summary};

/// The OS store: an OSTree-format repository (takes `ostree`'s arguments).
#[derive(Debug, Parser)]
#[command(name = "oxcore ostree", term_width = 80)]
pub struct OstreeCli {
    /// Path to the repository (default: $OSTREE_REPO).
    #[arg(long, global = true, value_name = "PATH")]
    repo: Option<PathBuf>,
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Debug, Subcommand)]
enum Verb {
    /// Initialize a new empty repository.
    Init {
        /// bare, bare-user, bare-user-only or archive (archive-z2).
        #[arg(long, default_value = "bare")]
        mode: String,
    },
    /// Commit a new revision.
    Commit(Box<CommitArgs>),
    /// List refs, or create and delete them.
    Refs {
        /// Only refs that start with this prefix.
        prefix: Option<String>,
        /// Delete the given refs.
        #[arg(long)]
        delete: bool,
        /// Create a ref NAME pointing at the given revision.
        #[arg(long, value_name = "NAME")]
        create: Option<String>,
        /// Revision for --create (when a prefix is given too).
        rev: Option<String>,
    },
    /// Output the commit a revision names.
    RevParse {
        /// A ref, `remote:ref`, checksum, or any of them with `^`.
        rev: String,
    },
    /// Show a commit's history.
    Log {
        /// Revision.
        rev: String,
        /// Show raw variant data.
        #[arg(long)]
        raw: bool,
    },
    /// Output a commit.
    Show {
        /// Revision.
        rev: String,
        /// Show raw variant data.
        #[arg(long)]
        raw: bool,
        /// Print the value of one metadata key.
        #[arg(long, value_name = "KEY")]
        print_metadata_key: Option<String>,
        /// Print the value of one detached metadata key.
        #[arg(long, value_name = "KEY")]
        print_detached_metadata_key: Option<String>,
    },
    /// List file paths in a commit.
    Ls {
        /// Revision.
        rev: String,
        /// Paths to list (default `/`).
        paths: Vec<String>,
        /// List directories recursively.
        #[arg(short = 'R', long)]
        recursive: bool,
        /// Show object checksums.
        #[arg(short = 'C', long)]
        checksum: bool,
        /// Show extended attributes.
        #[arg(short = 'X', long)]
        xattrs: bool,
        /// Only list directories themselves, not their contents.
        #[arg(short = 'd', long)]
        dironly: bool,
        /// Print only file names.
        #[arg(long)]
        nul_filenames_only: bool,
    },
    /// Concatenate the contents of files in a commit.
    Cat {
        /// Revision.
        rev: String,
        /// Paths in the commit.
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Check out a commit into a directory.
    Checkout(CheckoutArgs),
    /// Compare two commits (or a commit with its parent).
    Diff {
        /// Old revision (or the only one: compared with its parent).
        old: String,
        /// New revision.
        new: Option<String>,
    },
    /// Checksum a file or directory as OSTree names it.
    Checksum {
        /// Paths.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Ignore extended attributes.
        #[arg(long)]
        ignore_xattrs: bool,
    },
    /// Re-hash every object and report what is corrupt or missing.
    Fsck {
        /// Print only errors.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Delete unreachable objects.
    Prune(PruneArgs),
    /// Show or regenerate the summary file.
    Summary {
        /// Regenerate it.
        #[arg(short, long)]
        update: bool,
        /// Print it (the default without --update).
        #[arg(short, long)]
        view: bool,
        /// Sign it with this secret key (base64).
        #[arg(long, value_name = "KEY")]
        sign: Vec<String>,
        /// Signature type (only ed25519).
        #[arg(long, default_value = "ed25519")]
        sign_type: String,
    },
    /// Sign a commit, or verify its signatures.
    Sign {
        /// The commit.
        commit: String,
        /// Secret keys (or public keys with --verify), base64.
        keys: Vec<String>,
        /// Verify instead of signing.
        #[arg(long)]
        verify: bool,
        /// Signature type (only ed25519).
        #[arg(short = 's', long, default_value = "ed25519")]
        sign_type: String,
        /// Read keys from this file, one per line.
        #[arg(long, value_name = "PATH")]
        keys_file: Option<PathBuf>,
    },
    /// Copy commits from another local repository.
    PullLocal {
        /// The source repository.
        src: PathBuf,
        /// Refs or commits (default: all local refs of the source).
        refs: Vec<String>,
        /// Store the refs under this remote name.
        #[arg(long)]
        remote: Option<String>,
    },
    /// Download commits from a remote archive repository.
    Pull {
        /// The remote's name (see `remote add`).
        remote: String,
        /// Refs or commits to pull.
        refs: Vec<String>,
        /// Concurrent downloads.
        #[arg(long, default_value_t = 8)]
        connections: usize,
        /// Also write the refs as local refs.
        #[arg(long)]
        mirror: bool,
        /// Use this URL instead of the remote's.
        #[arg(long)]
        url: Option<String>,
    },
    /// Manage remotes.
    #[command(subcommand)]
    Remote(RemoteVerb),
    /// Generate an ed25519 key pair for `sign` (oxcore's addition).
    GenerateKey,
    /// Manage deployments in a sysroot (`ostree admin`).
    Admin(crate::admin::AdminCli),
}

#[derive(Debug, Args)]
struct CommitArgs {
    /// Branch to commit to.
    #[arg(short = 'b', long)]
    branch: Option<String>,
    /// One-line subject.
    #[arg(short = 's', long, default_value = "")]
    subject: String,
    /// Full description.
    #[arg(short = 'm', long, default_value = "")]
    body: String,
    /// Read the full description from a file.
    #[arg(short = 'F', long, value_name = "PATH")]
    body_file: Option<PathBuf>,
    /// Trees to overlay: `dir=PATH` or `ref=REV` (repeatable).
    #[arg(long, value_name = "dir=PATH|ref=REV")]
    tree: Vec<String>,
    /// Directory to commit (same as --tree=dir=PATH).
    path: Option<PathBuf>,
    /// Timestamp (ISO 8601 such as 2024-01-01T00:00:00Z, or @EPOCH).
    #[arg(long)]
    timestamp: Option<String>,
    /// Parent commit, or `none`.
    #[arg(long)]
    parent: Option<String>,
    /// Create a commit without writing a ref.
    #[arg(long)]
    orphan: bool,
    /// Do not add the `ostree.ref-binding` metadata.
    #[arg(long)]
    no_bindings: bool,
    /// Add a ref to the bindings (repeatable).
    #[arg(long, value_name = "REF")]
    bind_ref: Vec<String>,
    /// Add a string metadata entry KEY=VALUE (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    add_metadata_string: Vec<String>,
    /// Add a metadata entry KEY=VALUE in GVariant text (strings, numbers,
    /// booleans; repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    add_metadata: Vec<String>,
    /// Add a string to the detached metadata KEY=VALUE (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    add_detached_metadata_string: Vec<String>,
    /// File listing paths (one per line, from the tree's root) to leave out.
    #[arg(long, value_name = "PATH")]
    skip_list: Option<PathBuf>,
    /// Make executable files read-only.
    #[arg(long)]
    mode_ro_executables: bool,
    /// Owner of every file.
    #[arg(long)]
    owner_uid: Option<u32>,
    /// Group of every file.
    #[arg(long)]
    owner_gid: Option<u32>,
    /// Do not import extended attributes.
    #[arg(long)]
    no_xattrs: bool,
    /// Owner 0:0 and canonical 0755/0644 modes.
    #[arg(long)]
    canonical_permissions: bool,
    /// Do not create a commit if the tree equals the parent's.
    #[arg(long)]
    skip_if_unchanged: bool,
    /// Sign with this ed25519 secret key (base64).
    #[arg(long, value_name = "KEY")]
    sign: Vec<String>,
    /// Signature type (only ed25519).
    #[arg(long, default_value = "ed25519")]
    sign_type: String,
    /// Sync to disk before the ref moves (`--fsync=false` to skip).
    #[arg(long)]
    fsync: Option<bool>,
}

#[derive(Debug, Args)]
struct CheckoutArgs {
    /// Revision.
    rev: String,
    /// Destination directory (default: the revision's name).
    dest: Option<PathBuf>,
    /// Do not change owners or set xattrs.
    #[arg(short = 'U', long)]
    user_mode: bool,
    /// Keep existing files, overwrite the ones the commit has.
    #[arg(long)]
    union: bool,
    /// Like --union, but existing files must be identical.
    #[arg(long)]
    union_identical: bool,
    /// Check out only this subpath.
    #[arg(long)]
    subpath: Option<String>,
    /// Never hard-link.
    #[arg(short = 'C', long)]
    force_copy: bool,
    /// Fail unless every file can be hard-linked.
    #[arg(short = 'H', long)]
    require_hardlinks: bool,
}

#[derive(Debug, Args)]
struct PruneArgs {
    /// Only keep what refs reach.
    #[arg(long)]
    refs_only: bool,
    /// Parents to keep per ref (-1: all).
    #[arg(long, allow_negative_numbers = true)]
    depth: Option<i64>,
    /// Keep commits younger than this date (ISO 8601 or @EPOCH).
    #[arg(long)]
    keep_younger_than: Option<String>,
    /// Only report what would be deleted.
    #[arg(long)]
    no_prune: bool,
    /// Delete this commit's ref-less object first.
    #[arg(long)]
    delete_commit: Option<String>,
}

#[derive(Debug, Subcommand)]
enum RemoteVerb {
    /// Add a remote.
    Add {
        /// Name.
        name: String,
        /// URL (http://, https:// or file://).
        url: String,
        /// Default branches.
        branches: Vec<String>,
        /// Do not verify GPG signatures (accepted for compatibility).
        #[arg(long)]
        no_gpg_verify: bool,
        /// Require ed25519 signatures: `ed25519=inline:KEY` or
        /// `ed25519=file:PATH`.
        #[arg(long, value_name = "TYPE=SOURCE")]
        sign_verify: Option<String>,
        /// Set an option KEY=VALUE in the remote's config.
        #[arg(long, value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Do nothing if the remote exists.
        #[arg(long)]
        if_not_exists: bool,
    },
    /// List remotes.
    List {
        /// Show URLs too.
        #[arg(short, long)]
        show_urls: bool,
    },
    /// Delete a remote.
    Delete {
        /// Name.
        name: String,
        /// Do nothing if it does not exist.
        #[arg(long)]
        if_exists: bool,
    },
    /// Print a remote's URL.
    ShowUrl {
        /// Name.
        name: String,
    },
    /// List a remote's refs (from its summary).
    Refs {
        /// Name.
        name: String,
    },
}

/// Entry point: parses `argv` (argv[0] first) and runs.
pub fn main(argv: Vec<std::ffi::OsString>) -> ExitCode {
    let cli = match OstreeCli::try_parse_from(argv) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    match run(cli) {
        Ok(code) => code,
        // A reader that went away (`| head`): stop quietly, as a process
        // killed by SIGPIPE would.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::from(141)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn repo_path(cli: &Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = cli {
        return Ok(p.clone());
    }
    if let Some(p) = std::env::var_os("OSTREE_REPO") {
        return Ok(PathBuf::from(p));
    }
    bail!("Command requires a --repo argument")
}

fn open(cli: &Option<PathBuf>) -> Result<Repo> {
    let path = repo_path(cli)?;
    Ok(Repo::open(&path)?)
}

fn run(cli: OstreeCli) -> Result<ExitCode> {
    let out = &mut std::io::stdout().lock();
    match cli.verb {
        Verb::Init { mode } => {
            let mode = RepoMode::parse(&mode)
                .ok_or_else(|| anyhow!("Invalid mode '{mode}' in repository configuration"))?;
            Repo::init(&repo_path(&cli.repo)?, mode)?;
        }
        Verb::Commit(args) => {
            let mut repo = open(&cli.repo)?;
            let c = commit(&mut repo, *args)?;
            writeln!(out, "{c}")?;
        }
        Verb::Refs {
            prefix,
            delete,
            create,
            rev,
        } => {
            let repo = open(&cli.repo)?;
            if let Some(name) = create {
                // `refs --create=NAME REV`: the one positional is the revision.
                let rev = rev
                    .or(prefix)
                    .ok_or_else(|| anyhow!("--create requires specifying a revision"))?;
                let c = repo.resolve_rev(&rev)?;
                if repo.read_ref(None, &name)?.is_some() {
                    bail!("--create specified but ref {name} already exists");
                }
                repo.set_ref(None, &name, Some(&c))?;
            } else if delete {
                let prefix = prefix
                    .ok_or_else(|| anyhow!("At least one ref must be specified with --delete"))?;
                for (name, _) in repo.list_refs()? {
                    if name == prefix || name.starts_with(&format!("{prefix}/")) {
                        match name.split_once(':') {
                            Some((r, n)) => repo.set_ref(Some(r), n, None)?,
                            None => repo.set_ref(None, &name, None)?,
                        }
                    }
                }
            } else {
                for name in repo.list_refs()?.into_keys() {
                    match &prefix {
                        Some(p) => {
                            if let Some(rest) = name.strip_prefix(p.as_str()) {
                                let rest = rest.trim_start_matches('/');
                                writeln!(
                                    out,
                                    "{}",
                                    if rest.is_empty() { name.as_str() } else { rest }
                                )?;
                            }
                        }
                        None => writeln!(out, "{name}")?,
                    }
                }
            }
        }
        Verb::RevParse { rev } => {
            let repo = open(&cli.repo)?;
            writeln!(out, "{}", repo.resolve_rev(&rev)?)?;
        }
        Verb::Log { rev, raw } => {
            let repo = open(&cli.repo)?;
            let mut c = Some(repo.resolve_rev(&rev)?);
            while let Some(cur) = c {
                let commit = match repo.load_commit(&cur) {
                    Ok(commit) => commit,
                    Err(ostree_store::Error::MissingObject { .. }) => {
                        writeln!(out, "<< History beyond this commit not fetched >>")?;
                        break;
                    }
                    Err(e) => return Err(e.into()),
                };
                print_commit(out, &repo, &cur, &commit, raw)?;
                c = commit.parent;
            }
        }
        Verb::Show {
            rev,
            raw,
            print_metadata_key,
            print_detached_metadata_key,
        } => {
            let repo = open(&cli.repo)?;
            let c = repo.resolve_rev(&rev)?;
            let commit = repo.load_commit(&c)?;
            if let Some(k) = print_metadata_key {
                let v = commit
                    .meta(&k)
                    .ok_or_else(|| anyhow!("No such metadata key '{k}'"))?;
                writeln!(out, "{v}")?;
            } else if let Some(k) = print_detached_metadata_key {
                let meta = repo.load_commitmeta(&c)?.unwrap_or_default();
                let v = meta
                    .iter()
                    .find(|(key, _)| *key == k)
                    .ok_or_else(|| anyhow!("No such metadata key '{k}'"))?;
                writeln!(out, "{}", v.1)?;
            } else {
                print_commit(out, &repo, &c, &commit, raw)?;
            }
        }
        Verb::Ls {
            rev,
            paths,
            recursive,
            checksum,
            xattrs,
            dironly,
            nul_filenames_only,
        } => {
            let repo = open(&cli.repo)?;
            let c = repo.resolve_rev(&rev)?;
            let commit = repo.load_commit(&c)?;
            let paths = if paths.is_empty() {
                vec!["/".to_string()]
            } else {
                paths
            };
            let ls = Ls {
                repo: &repo,
                recursive,
                checksum,
                xattrs,
                nul: nul_filenames_only,
            };
            for p in paths {
                ls.path(out, &commit, &p, dironly)?;
            }
        }
        Verb::Cat { rev, paths } => {
            let repo = open(&cli.repo)?;
            let commit = repo.load_commit(&repo.resolve_rev(&rev)?)?;
            for p in paths {
                match tree::lookup(&repo, &commit, &p)? {
                    tree::Node::File(fc) => {
                        let (_, mut content) = repo.open_file(&fc)?;
                        std::io::copy(&mut content, out)?;
                    }
                    tree::Node::Dir(..) => bail!("{p}: Is a directory"),
                }
            }
        }
        Verb::Checkout(args) => {
            let repo = open(&cli.repo)?;
            let c = repo.resolve_rev(&args.rev)?;
            let dest = args
                .dest
                .clone()
                .unwrap_or_else(|| PathBuf::from(&args.rev));
            if args.require_hardlinks && repo.mode() == RepoMode::Archive {
                bail!("Hardlinks required (-H) but the repository is in archive mode");
            }
            let opts = CheckoutOptions {
                user_mode: args.user_mode,
                union: args.union,
                union_identical: args.union_identical,
                subpath: args.subpath,
                force_copy: args.force_copy,
                threads: 0,
            };
            checkout(&repo, &c, &dest, &opts)?;
        }
        Verb::Diff { old, new } => {
            let repo = open(&cli.repo)?;
            let (a, b) = match new {
                Some(n) => (repo.resolve_rev(&old)?, repo.resolve_rev(&n)?),
                None => {
                    let b = repo.resolve_rev(&old)?;
                    let parent = repo
                        .load_commit(&b)?
                        .parent
                        .ok_or_else(|| anyhow!("Commit {b} has no parent"))?;
                    (parent, b)
                }
            };
            let (ca, cb) = (repo.load_commit(&a)?, repo.load_commit(&b)?);
            let mut lines = tree::diff(&repo, &ca, &cb)?;
            // As ostree: modified, then removed, then added, each in tree order.
            lines.sort_by_key(|(k, _)| match k {
                tree::Change::Modified => 0,
                tree::Change::Deleted => 1,
                tree::Change::Added => 2,
            });
            for (kind, path) in lines {
                writeln!(out, "{}    {path}", kind.letter())?;
            }
        }
        Verb::Checksum {
            paths,
            ignore_xattrs,
        } => {
            for p in paths {
                let c = checksum_path(&p, ignore_xattrs)?;
                writeln!(out, "{c}")?;
            }
        }
        Verb::Fsck { quiet } => {
            let repo = open(&cli.repo)?;
            return fsck_cmd(&repo, quiet, out);
        }
        Verb::Prune(args) => {
            let repo = open(&cli.repo)?;
            if let Some(c) = &args.delete_commit {
                let c = repo.resolve_rev(c)?;
                if repo.list_refs()?.values().any(|r| *r == c) {
                    bail!("Commit '{c}' is referenced by a ref; delete the ref first");
                }
                let p = repo.object_path(&c, ObjectType::Commit);
                std::fs::remove_file(&p).with_context(|| p.display().to_string())?;
            }
            let opts = prune::PruneOptions {
                refs_only: args.refs_only,
                depth: args.depth.filter(|d| *d >= 0).map(|d| d as usize),
                keep_younger_than: args
                    .keep_younger_than
                    .as_deref()
                    .map(time::parse_timestamp)
                    .transpose()?,
                dry_run: args.no_prune,
            };
            let report = prune::prune(&repo, &opts)?;
            writeln!(out, "Total objects: {}", report.total)?;
            if report.deleted == 0 {
                writeln!(out, "No unreachable objects")?;
            } else {
                let verb = if args.no_prune {
                    "Would delete"
                } else {
                    "Deleted"
                };
                writeln!(
                    out,
                    "{verb} {} objects, {} freed",
                    report.deleted,
                    format_size(report.freed)
                )?;
            }
        }
        Verb::Summary {
            update,
            view,
            sign: keys,
            sign_type,
        } => {
            let repo = open(&cli.repo)?;
            check_sign_type(&sign_type)?;
            if update {
                let keys = keys
                    .iter()
                    .map(|k| sign::SecretKey::from_base64(k))
                    .collect::<Result<Vec<_>, _>>()?;
                summary::update(&repo, &keys)?;
            }
            if view || !update {
                let path = repo.path().join("summary");
                let bytes = std::fs::read(&path)
                    .with_context(|| format!("No summary file: {}", path.display()))?;
                print_summary(out, &summary::Summary::parse(&bytes)?)?;
            }
        }
        Verb::Sign {
            commit,
            keys,
            verify,
            sign_type,
            keys_file,
        } => {
            let repo = open(&cli.repo)?;
            check_sign_type(&sign_type)?;
            let c = repo.resolve_rev(&commit)?;
            let mut keys = keys;
            if let Some(f) = keys_file {
                let text = std::fs::read_to_string(&f).with_context(|| f.display().to_string())?;
                keys.extend(
                    text.lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(str::to_string),
                );
            }
            if keys.is_empty() {
                bail!("No keys given");
            }
            if verify {
                let pks = sign::public_keys(&keys.join("\n"))?;
                sign::verify_commit(&repo, &c, &pks)?;
                writeln!(out, "Signature verified successfully with key")?;
            } else {
                for k in &keys {
                    sign::sign_commit(&repo, &c, &sign::SecretKey::from_base64(k)?)?;
                }
            }
        }
        Verb::PullLocal { src, refs, remote } => {
            let repo = open(&cli.repo)?;
            let src = Repo::open(&src)?;
            let pulled = ostree_store::pull::pull_local(&repo, &src, &refs, remote.as_deref())?;
            for (r, c) in pulled {
                eprintln!("{r}: {c}");
            }
        }
        Verb::Pull {
            remote,
            refs,
            connections,
            mirror,
            url,
        } => {
            let repo = open(&cli.repo)?;
            return pull_cmd(&repo, &remote, refs, connections, mirror, url);
        }
        Verb::Remote(v) => remote_cmd(&cli.repo, v, out)?,
        Verb::Admin(a) => return crate::admin::run(a, out),
        Verb::GenerateKey => {
            let rng_seed = {
                let mut s = [0u8; 32];
                std::fs::File::open("/dev/urandom")
                    .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut s))
                    .context("reading /dev/urandom")?;
                s
            };
            let key = sign::SecretKey::from_base64(&sign::base64_encode(&rng_seed))?;
            writeln!(out, "public: {}", key.public_base64())?;
            writeln!(out, "secret: {}", key.to_base64(&rng_seed))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn check_sign_type(t: &str) -> Result<()> {
    if t != "ed25519" {
        bail!("Requested signature type is not implemented: {t}");
    }
    Ok(())
}

fn commit(repo: &mut Repo, args: CommitArgs) -> Result<Checksum> {
    if let Some(on) = args.fsync {
        repo.set_fsync(on);
    }
    check_sign_type(&args.sign_type)?;
    let branch = args.branch.clone();
    if branch.is_none() && !args.orphan {
        bail!("A branch must be specified with --branch, or use --orphan");
    }
    let parent = match args.parent.as_deref() {
        Some("none") => None,
        Some(p) => Some(repo.resolve_rev(p)?),
        None => match &branch {
            Some(b) => repo.read_ref(None, b)?,
            None => None,
        },
    };
    let timestamp = args
        .timestamp
        .as_deref()
        .map(time::parse_timestamp)
        .transpose()?;
    let mut metadata = Vec::new();
    for kv in &args.add_metadata_string {
        let (k, v) = parse_kv(kv)?;
        metadata.push((k, Value::Str(v)));
    }
    for kv in &args.add_metadata {
        let (k, v) = parse_kv(kv)?;
        metadata.push((k, Value::parse_text(&v)?));
    }
    if !args.no_bindings {
        let mut refs = args.bind_ref.clone();
        if let Some(b) = &branch {
            refs.push(b.clone());
        }
        if !refs.is_empty() {
            metadata.push(ref_binding(&refs));
        }
    }
    let mut trees: Vec<String> = args.tree.clone();
    if let Some(p) = &args.path {
        trees.push(format!("dir={}", p.display()));
    }
    if trees.is_empty() {
        trees.push("dir=.".into());
    }
    let skip = match &args.skip_list {
        Some(p) => std::fs::read_to_string(p)
            .with_context(|| p.display().to_string())?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| format!("/{}", l.trim_matches('/')))
            .collect(),
        None => Default::default(),
    };
    let opts = CommitOptions {
        owner_uid: args.owner_uid,
        owner_gid: args.owner_gid,
        no_xattrs: args.no_xattrs,
        canonical_permissions: args.canonical_permissions,
        mode_ro_executables: args.mode_ro_executables,
        skip,
        threads: 0,
    };
    let tx = repo.begin()?;
    let mut builder = TreeBuilder::new(&tx, opts);
    for t in &trees {
        if let Some(dir) = t.strip_prefix("dir=") {
            builder.add_dir(Path::new(dir))?;
        } else if let Some(rev) = t.strip_prefix("ref=") {
            let c = repo.resolve_rev(rev)?;
            builder.add_commit_tree(repo, &c)?;
        } else {
            bail!(
                "Invalid --tree argument '{t}': expected dir=PATH or ref=REV (tar= is not supported)"
            );
        }
    }
    let root = builder.write()?;
    if args.skip_if_unchanged
        && let Some(p) = parent
        && let Ok(pc) = repo.load_commit(&p)
        && (pc.root_tree, pc.root_meta) == root
    {
        tx.commit()?;
        return Ok(p);
    }
    let body = match &args.body_file {
        Some(p) => std::fs::read_to_string(p).with_context(|| p.display().to_string())?,
        None => args.body.clone(),
    };
    let info = CommitInfo {
        subject: args.subject.clone(),
        body,
        timestamp,
        parent,
        metadata,
    };
    let c = write_commit(&tx, &info, root)?;
    if let Some(b) = &branch
        && !args.orphan
    {
        tx.set_ref(None, b, Some(c));
    }
    tx.commit()?;
    if !args.add_detached_metadata_string.is_empty() {
        let mut meta = repo.load_commitmeta(&c)?.unwrap_or_default();
        for kv in &args.add_detached_metadata_string {
            let (k, v) = parse_kv(kv)?;
            meta.push((k, Value::Str(v)));
        }
        sign::write_commitmeta(repo, &c, meta)?;
    }
    for k in &args.sign {
        sign::sign_commit(repo, &c, &sign::SecretKey::from_base64(k)?)?;
    }
    Ok(c)
}

fn print_commit(
    out: &mut dyn Write,
    repo: &Repo,
    c: &Checksum,
    commit: &Commit,
    raw: bool,
) -> Result<()> {
    writeln!(out, "commit {c}")?;
    if raw {
        // As ostree, the big-endian timestamp is shown as its value.
        let mut v = commit.to_value();
        if let Value::Tuple(items) = &mut v {
            items[5] = Value::U64(commit.timestamp);
        }
        writeln!(out, "{v}")?;
        return Ok(());
    }
    if let Some(p) = commit.parent {
        writeln!(out, "Parent:  {p}")?;
    }
    writeln!(out, "ContentChecksum:  {}", commit.content_checksum())?;
    writeln!(out, "Date:  {}", time::format_log_date(commit.timestamp))?;
    if let Some(v) = commit.version() {
        writeln!(out, "Version: {v}")?;
    }
    if let Ok(Some(meta)) = repo.load_commitmeta(c) {
        let n = sign::signatures(&meta).len();
        if n > 0 {
            writeln!(out, "Found {n} ed25519 signature(s)")?;
        }
    }
    writeln!(out)?;
    if !commit.subject.is_empty() {
        writeln!(out, "    {}", commit.subject)?;
        writeln!(out)?;
    }
    if !commit.body.is_empty() {
        for l in commit.body.lines() {
            writeln!(out, "    {l}")?;
        }
        writeln!(out)?;
    }
    Ok(())
}

fn print_summary(out: &mut dyn Write, s: &summary::Summary) -> Result<()> {
    for r in &s.refs {
        writeln!(out, "* {}", r.name)?;
        writeln!(out, "    Latest Commit ({} bytes):", r.commit_size)?;
        writeln!(out, "      {}", r.checksum)?;
        for (k, v) in &r.metadata {
            match (k.as_str(), v) {
                ("ostree.commit.version", Value::Str(s)) => {
                    writeln!(out, "    Version ({k}): {s}")?
                }
                ("ostree.commit.timestamp", v) => {
                    let t = v.as_be64().unwrap_or(0);
                    writeln!(out, "    Timestamp ({k}): {}", time::format_iso(t))?
                }
                _ => writeln!(out, "    {k}: {v}")?,
            }
        }
    }
    writeln!(out)?;
    for (k, v) in &s.metadata {
        match (k.as_str(), v) {
            ("ostree.summary.mode", Value::Str(m)) => writeln!(out, "Repository Mode ({k}): {m}")?,
            ("ostree.summary.last-modified", v) => writeln!(
                out,
                "Last-Modified ({k}): {}",
                time::format_iso(v.as_be64().unwrap_or(0))
            )?,
            ("ostree.summary.tombstone-commits", Value::Bool(b)) => writeln!(
                out,
                "Has Tombstone Commits ({k}): {}",
                if *b { "Yes" } else { "No" }
            )?,
            _ => writeln!(out, "{k}: {v}")?,
        }
    }
    Ok(())
}

struct Ls<'a> {
    repo: &'a Repo,
    recursive: bool,
    checksum: bool,
    xattrs: bool,
    nul: bool,
}

fn xattrs_text(x: &ostree_store::object::Xattrs) -> String {
    let v = Value::Array(
        ostree_store::gvariant::Type::parse("(ayay)").expect("static"),
        x.iter()
            .map(|(k, v)| {
                let mut k = k.clone();
                k.push(0);
                Value::Tuple(vec![Value::Bytes(k), Value::Bytes(v.clone())])
            })
            .collect(),
    );
    format!("{{ {v} }}")
}

impl Ls<'_> {
    fn path(&self, out: &mut dyn Write, commit: &Commit, path: &str, dironly: bool) -> Result<()> {
        let clean = format!("/{}", path.trim_matches('/'));
        let clean = if clean == "/" { "/".to_string() } else { clean };
        match tree::lookup(self.repo, commit, &clean)? {
            tree::Node::File(c) => self.file(out, &clean, &c),
            tree::Node::Dir(t, m) => {
                self.dir_line(out, &clean, &t, &m)?;
                if !dironly {
                    self.children(out, &clean, &t)?;
                }
                Ok(())
            }
        }
    }

    fn dir_line(&self, out: &mut dyn Write, path: &str, t: &Checksum, m: &Checksum) -> Result<()> {
        if self.nul {
            write!(out, "{path}\0")?;
            return Ok(());
        }
        let meta = self.repo.load_dirmeta(m)?;
        write!(
            out,
            "d0{:04o} {} {} {:>6} ",
            meta.mode & 0o7777,
            meta.uid,
            meta.gid,
            0
        )?;
        if self.checksum {
            write!(out, "{t} {m} ")?;
        }
        if self.xattrs {
            write!(out, "{} ", xattrs_text(&meta.xattrs))?;
        }
        writeln!(out, "{path}")?;
        Ok(())
    }

    fn file(&self, out: &mut dyn Write, path: &str, c: &Checksum) -> Result<()> {
        if self.nul {
            write!(out, "{path}\0")?;
            return Ok(());
        }
        let (meta, content) = self.repo.open_file(c)?;
        let t = if meta.is_symlink() { 'l' } else { '-' };
        write!(
            out,
            "{t}0{:04o} {} {} {:>6} ",
            meta.mode & 0o7777,
            meta.uid,
            meta.gid,
            content.size()
        )?;
        if self.checksum {
            write!(out, "{c} ")?;
        }
        if self.xattrs {
            write!(out, "{} ", xattrs_text(&meta.xattrs))?;
        }
        if meta.is_symlink() {
            writeln!(out, "{path} -> {}", meta.symlink_target)?;
        } else {
            writeln!(out, "{path}")?;
        }
        Ok(())
    }

    fn children(&self, out: &mut dyn Write, dir: &str, t: &Checksum) -> Result<()> {
        let tree = self.repo.load_dirtree(t)?;
        let join = |n: &str| {
            if dir == "/" {
                format!("/{n}")
            } else {
                format!("{dir}/{n}")
            }
        };
        // As ostree: files first, then directories, each in name order.
        for (n, c) in &tree.files {
            self.file(out, &join(n), c)?;
        }
        for (n, tc, mc) in &tree.dirs {
            self.dir_line(out, &join(n), tc, mc)?;
            if self.recursive {
                self.children(out, &join(n), tc)?;
            }
        }
        Ok(())
    }
}

fn fsck_cmd(repo: &Repo, quiet: bool, out: &mut dyn Write) -> Result<ExitCode> {
    if !quiet {
        writeln!(out, "Validating refs...")?;
        writeln!(out, "Enumerating commits...")?;
    }
    let tty = std::io::stderr().is_terminal() && !quiet;
    let mut progress = |done: usize, total: usize| {
        if tty {
            eprint!(
                "\rfsck objects ({done}/{total}) {}%",
                done * 100 / total.max(1)
            );
        }
    };
    let report = fsck::fsck(repo, &mut progress)?;
    if tty {
        eprintln!();
    }
    for e in &report.errors {
        eprintln!("error: {e}");
    }
    if !report.errors.is_empty() {
        eprintln!(
            "error: {} errors found in {} objects of {} commits",
            report.errors.len(),
            report.objects,
            report.commits
        );
        return Ok(ExitCode::FAILURE);
    }
    if !quiet {
        writeln!(
            out,
            "object fsck of {} commits completed successfully - no errors found.",
            report.commits
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn remote_cmd(repo_arg: &Option<PathBuf>, v: RemoteVerb, out: &mut dyn Write) -> Result<()> {
    let mut repo = open(repo_arg)?;
    match v {
        RemoteVerb::Add {
            name,
            url,
            branches,
            no_gpg_verify,
            sign_verify,
            set,
            if_not_exists,
        } => {
            let sign_verify = match sign_verify {
                None => None,
                Some(sv) => {
                    let (ty, src) = sv
                        .split_once('=')
                        .ok_or_else(|| anyhow!("Invalid --sign-verify '{sv}'"))?;
                    check_sign_type(ty)?;
                    Some(match src.split_once(':') {
                        Some(("inline", key)) => KeySource::Inline(key.to_string()),
                        Some(("file", path)) => KeySource::File(path.into()),
                        _ => {
                            bail!("Invalid key reference '{src}': expected inline:KEY or file:PATH")
                        }
                    })
                }
            };
            let new = NewRemote {
                name,
                url,
                branches,
                no_gpg_verify,
                sign_verify,
                set: set.iter().map(|kv| parse_kv(kv)).collect::<Result<_>>()?,
            };
            Remote::add(&mut repo, &new, if_not_exists)?;
        }
        RemoteVerb::List { show_urls } => {
            for (name, url) in Remote::list(&repo) {
                if show_urls {
                    writeln!(out, "{name}  {url}")?;
                } else {
                    writeln!(out, "{name}")?;
                }
            }
        }
        RemoteVerb::Delete { name, if_exists } => {
            Remote::delete(&mut repo, &name, if_exists)?;
        }
        RemoteVerb::ShowUrl { name } => {
            writeln!(out, "{}", Remote::load(&repo, &name)?.url)?;
        }
        RemoteVerb::Refs { name } => {
            let f = Remote::load(&repo, &name)?.fetcher()?;
            let summary = ostree_store::pull::fetch_summary(&f)?
                .ok_or_else(|| anyhow!("Remote refs not available; server has no summary file"))?;
            for r in summary.refs {
                writeln!(out, "{name}:{}", r.name)?;
            }
        }
    }
    Ok(())
}

/// `ostree pull REMOTE [REF…]`, with a progress line on a terminal.
fn pull_cmd(
    repo: &Repo,
    remote: &str,
    refs: Vec<String>,
    connections: usize,
    mirror: bool,
    url: Option<String>,
) -> Result<ExitCode> {
    let remote = Remote::load_with_url(repo, remote, url.as_deref())?;
    let stats = PullStats::default();
    let progress = PullProgress::new();
    let show = |s: &PullStats| progress.show(s);
    let report = remote.pull(
        repo,
        &PullRequest {
            refs: &refs,
            connections,
            mirror,
            stats: &stats,
            progress: &show,
        },
    )?;
    progress.finish(&report);
    Ok(ExitCode::SUCCESS)
}
