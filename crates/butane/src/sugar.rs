//! Base sugar beyond the field copy: mount units (`with_mount_unit`),
//! `storage.trees`, quadlets, and the merge of generated config under the
//! user's that the variants' sugar uses too.

use std::collections::HashMap;

use ignition_config::types as ign;

use crate::decode::Base;
use crate::files;
use crate::report::{Path, Seg, p};
use crate::translate::{Cx, Ts};
use crate::types::*;

/// The base translation with all base sugar.
pub(crate) fn translate(c: &Config, cx: &mut Cx<'_>) -> ign::Config {
    let mut out = cx.base(c);
    if cx.target.base >= Base::V0_2 {
        mount_units(c, &mut out, cx);
        trees(c, &mut out, cx);
    }
    if cx.target.base >= Base::V0_8 {
        quadlets(c, &mut out, cx);
    }
    out
}

/// Where each child list entry lands when a generated parent config is
/// merged under the user's: parent entries first (merged with the child's
/// of the same key), then the child's new ones. Rewrites the translation
/// set accordingly.
fn reindex(
    ts: &mut Ts<'_>,
    list: &Path,
    parent_keys: &[String],
    child_keys: &[String],
    generated: &[(Path, Path)],
) {
    let mut map = Vec::with_capacity(child_keys.len());
    let mut merged = Vec::with_capacity(child_keys.len());
    let mut next = parent_keys.len();
    let parent_index = first_index(parent_keys);
    let sources: HashMap<&Path, &Path> = generated.iter().rev().map(|(g, y)| (g, y)).collect();
    for k in child_keys {
        match parent_index.get(k.as_str()) {
            Some(&i) => {
                map.push(i);
                let mut j = list.clone();
                j.0.push(Seg::Index(i));
                merged.push(Some(
                    sources.get(&j).map_or_else(Path::root, |y| (*y).clone()),
                ));
            }
            None => {
                map.push(next);
                merged.push(None);
                next += 1;
            }
        }
    }
    let yaml_list = Path(crate::translate::snake_rest(&list.0).collect());
    ts.reindex_merged(list, &yaml_list, &map, &merged);
}

/// Key → index of its first occurrence.
fn first_index(keys: &[String]) -> HashMap<&str, usize> {
    let mut m = HashMap::with_capacity(keys.len());
    for (i, k) in keys.iter().enumerate() {
        m.entry(k.as_str()).or_insert(i);
    }
    m
}

/// Merges a generated config under the user's, keeping the translation set
/// true for the user's entries.
/// `generated` lists where the parent's entries came from (added to the
/// translation set as generated subtrees, below the user's entries).
pub(crate) fn merge_generated(
    parent: &ign::Config,
    out: &mut ign::Config,
    ts: &mut Ts<'_>,
    generated: &[(Path, Path)],
) {
    let s = &parent.storage;
    let o = &out.storage;
    // A generated file is dropped when the user has a directory or link at
    // its path (files, directories and links share one key space).
    let user_nodes: std::collections::HashSet<&str> = o
        .directories
        .iter()
        .map(|d| d.path.as_str())
        .chain(o.links.iter().map(|l| l.path.as_str()))
        .collect();
    let lists: Vec<(Path, Vec<String>, Vec<String>)> = vec![
        (
            p!["storage", "disks"],
            s.disks.iter().map(|d| d.device.clone()).collect(),
            o.disks.iter().map(|d| d.device.clone()).collect(),
        ),
        (
            p!["storage", "files"],
            s.files
                .iter()
                .filter(|f| !user_nodes.contains(&f.path.as_str()))
                .map(|f| f.path.clone())
                .collect(),
            o.files.iter().map(|f| f.path.clone()).collect(),
        ),
        (
            p!["storage", "filesystems"],
            s.filesystems.iter().map(|f| f.device.clone()).collect(),
            o.filesystems.iter().map(|f| f.device.clone()).collect(),
        ),
        (
            p!["storage", "luks"],
            s.luks.iter().map(|l| l.name.clone()).collect(),
            o.luks.iter().map(|l| l.name.clone()).collect(),
        ),
        (
            p!["storage", "raid"],
            s.raid.iter().map(|r| r.name.clone()).collect(),
            o.raid.iter().map(|r| r.name.clone()).collect(),
        ),
        (
            p!["systemd", "units"],
            parent
                .systemd
                .units
                .iter()
                .map(|u| u.name.clone())
                .collect(),
            out.systemd.units.iter().map(|u| u.name.clone()).collect(),
        ),
    ];
    for (list, pk, ck) in lists {
        if !pk.is_empty() {
            reindex(ts, &list, &pk, &ck, generated);
        }
    }
    // Partitions of a user disk merged into a generated one.
    let parent_disks = first_index(
        &parent
            .storage
            .disks
            .iter()
            .map(|d| d.device.clone())
            .collect::<Vec<_>>(),
    )
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect::<HashMap<String, usize>>();
    for (ci, disk) in out.storage.disks.iter().enumerate() {
        let Some((pi, pdisk)) = parent_disks
            .get(&disk.device)
            .map(|&pi| (pi, &parent.storage.disks[pi]))
        else {
            continue;
        };
        let pk: Vec<String> = pdisk
            .partitions
            .iter()
            .map(ignition_config::merge::partition_key)
            .collect();
        let ck: Vec<String> = disk
            .partitions
            .iter()
            .map(ignition_config::merge::partition_key)
            .collect();
        let mut map = Vec::with_capacity(ck.len());
        let mut next = pk.len();
        let pk_index = first_index(&pk);
        for k in &ck {
            match pk_index.get(k.as_str()) {
                Some(&i) => map.push(i),
                None => {
                    map.push(next);
                    next += 1;
                }
            }
        }
        ts.reindex_from(
            &p!["storage", "disks", pi, "partitions"],
            &p!["storage", "disks", ci, "partitions"],
            &map,
        );
    }
    // Generated entries map whole to their source, except where the user's
    // entry merged into them wrote the field.
    for (j, y) in generated {
        ts.add_subtree(j.clone(), y.clone());
    }
    ts.commit_merged();
    *out = ignition_config::merge(parent, out);
}

/// `systemd-escape --path`.
pub(crate) fn path_escape(p: &str) -> String {
    let trimmed: Vec<&str> = p.split('/').filter(|s| !s.is_empty()).collect();
    let joined = trimmed.join("/");
    if joined.is_empty() {
        return "-".into();
    }
    let mut out = String::new();
    for (i, b) in joined.bytes().enumerate() {
        match b {
            b'/' => out.push('-'),
            b'.' if i == 0 => out.push_str("\\x2e"),
            b if b.is_ascii_alphanumeric() || b == b':' || b == b'_' || b == b'.' => {
                out.push(b as char)
            }
            b => out.push_str(&format!("\\x{b:x}")),
        }
    }
    out
}

fn mount_units(c: &Config, out: &mut ign::Config, cx: &mut Cx<'_>) {
    let mut parent = ign::Config::default();
    let mut sources = Vec::new();
    let tang: std::collections::HashSet<&str> = c
        .storage
        .luks
        .iter()
        .filter(|l| !l.clevis.tang.is_empty())
        .map(|l| l.name.as_str())
        .collect();
    for (i, fs) in c.storage.filesystems.iter().enumerate() {
        if fs.with_mount_unit != Some(true) {
            continue;
        }
        let format = fs.format.as_deref().unwrap_or("");
        let remote = cx.target.base >= Base::V0_3 && is_remote(&fs.device, &tang);
        let mut options = fs.mount_options.join(",");
        if remote {
            if options.is_empty() {
                options = "_netdev".into();
            } else {
                options.push_str(",_netdev");
            }
        }
        let options_line = if options.is_empty() {
            String::new()
        } else {
            format!("Options={options}\n")
        };
        let (name, contents) = if cx.target.base >= Base::V0_4 && format == "swap" {
            (
                format!("{}.swap", path_escape(&fs.device)),
                format!(
                    "# Generated by Butane\n[Swap]\nWhat={}\n{options_line}\n[Install]\nRequiredBy=swap.target",
                    fs.device
                ),
            )
        } else {
            let path = fs.path.clone().unwrap_or_default();
            let dev = path_escape(&fs.device);
            let target = if remote {
                "remote-fs.target"
            } else {
                "local-fs.target"
            };
            (
                format!("{}.mount", path_escape(&path)),
                format!(
                    "# Generated by Butane\n[Unit]\nRequires=systemd-fsck@{dev}.service\nAfter=systemd-fsck@{dev}.service\n\n[Mount]\nWhere={path}\nWhat={}\nType={format}\n{options_line}\n[Install]\nRequiredBy={target}",
                    fs.device
                ),
            )
        };
        parent.systemd.units.push(ign::Unit {
            contents: Some(contents),
            enabled: Some(true),
            name,
            ..ign::Unit::default()
        });
        sources.push(i);
    }
    if parent.systemd.units.is_empty() {
        return;
    }
    let generated: Vec<(Path, Path)> = sources
        .into_iter()
        .enumerate()
        .map(|(k, i)| {
            (
                p!["systemd", "units", k],
                p!["storage", "filesystems", i, "with_mount_unit"],
            )
        })
        .collect();
    merge_generated(&parent, out, &mut cx.ts, &generated);
}

/// Whether a filesystem is on a LUKS volume opened over the network
/// (`tang`: the names of volumes with Tang servers).
fn is_remote(device: &str, tang: &std::collections::HashSet<&str>) -> bool {
    // LUKS volumes are opened under their name.
    let name = device
        .strip_prefix("/dev/mapper/")
        .or_else(|| device.strip_prefix("/dev/disk/by-id/dm-name-"));
    name.is_some_and(|n| tang.contains(n))
}

/// Output nodes by path, to detect collisions when sugar adds entries.
struct Nodes {
    kind: HashMap<String, (u8, usize)>,
}

const FILE: u8 = 0;
const DIR: u8 = 1;
const LINK: u8 = 2;
const NODE_EXISTS: &str = "matching filesystem node has existing contents or different type";

impl Nodes {
    fn of(out: &ign::Config) -> Nodes {
        let mut kind = HashMap::new();
        for (i, f) in out.storage.files.iter().enumerate() {
            kind.insert(f.path.clone(), (FILE, i));
        }
        for (i, d) in out.storage.directories.iter().enumerate() {
            kind.insert(d.path.clone(), (DIR, i));
        }
        for (i, l) in out.storage.links.iter().enumerate() {
            kind.insert(l.path.clone(), (LINK, i));
        }
        Nodes { kind }
    }
}

fn trees(c: &Config, out: &mut ign::Config, cx: &mut Cx<'_>) {
    if c.storage.trees.is_empty() {
        return;
    }
    let mut nodes = Nodes::of(out);
    for (i, tree) in c.storage.trees.iter().enumerate() {
        let yp = p!["storage", "trees", i];
        let Some(_) = cx.files_dir else {
            cx.report.error(yp, files::NO_FILES_DIR);
            return;
        };
        let src = match files::resolve(cx.files_dir, &tree.local) {
            Ok(s) => s,
            Err(e) => {
                cx.report.error(yp, e);
                continue;
            }
        };
        match std::fs::metadata(&src) {
            Err(e) => {
                cx.report.error(yp, files::go_error("stat", &src, &e));
                continue;
            }
            Ok(m) if !m.is_dir() => {
                cx.report.error(yp, "root of tree must be a directory");
                continue;
            }
            Ok(_) => {}
        }
        let dest = tree
            .path
            .clone()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "/".into());
        let walk = Walk {
            tree,
            dest,
            with_dirs: tree.dir_mode.is_some()
                || tree.user != NodeUser::default()
                || tree.group != NodeGroup::default(),
            user: ign::NodeUser {
                id: tree.user.id,
                name: tree.user.name.clone(),
            },
            group: ign::NodeGroup {
                id: tree.group.id,
                name: tree.group.name.clone(),
            },
            yp,
        };
        walk.dir(&src, "", out, &mut nodes, cx);
    }
}

/// One tree being copied: Go's `filepath.Walk` order (pre-order, names
/// sorted bytewise, symlinks not followed).
struct Walk<'t> {
    tree: &'t Tree,
    dest: String,
    with_dirs: bool,
    user: ign::NodeUser,
    group: ign::NodeGroup,
    yp: Path,
}

impl Walk<'_> {
    fn dir(
        &self,
        dir: &std::path::Path,
        rel: &str,
        out: &mut ign::Config,
        nodes: &mut Nodes,
        cx: &mut Cx<'_>,
    ) {
        let dest_path = ignition_config::validate::clean_path(&format!("{}/{rel}", self.dest));
        if self.with_dirs {
            if nodes.kind.contains_key(&dest_path) {
                cx.report.error(self.yp.clone(), NODE_EXISTS);
            } else {
                nodes
                    .kind
                    .insert(dest_path.clone(), (DIR, out.storage.directories.len()));
                cx.ts.add_subtree(
                    p!["storage", "directories", out.storage.directories.len()],
                    self.yp.clone(),
                );
                out.storage.directories.push(ign::Directory {
                    group: self.group.clone(),
                    path: dest_path,
                    user: self.user.clone(),
                    mode: Some(self.tree.dir_mode.unwrap_or(0o755)),
                    ..ign::Directory::default()
                });
            }
        }
        let mut entries: Vec<_> = match std::fs::read_dir(dir) {
            Ok(rd) => rd.filter_map(Result::ok).collect(),
            Err(e) => {
                cx.report
                    .error(self.yp.clone(), files::go_error("open", dir, &e));
                return;
            }
        };
        entries.sort_by_key(|e| e.file_name().into_encoded_bytes());
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            let child_rel = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let path = e.path();
            let meta = match std::fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(err) => {
                    cx.report
                        .error(self.yp.clone(), files::go_error("lstat", &path, &err));
                    continue;
                }
            };
            let ft = meta.file_type();
            let dest_child =
                ignition_config::validate::clean_path(&format!("{}/{child_rel}", self.dest));
            if ft.is_dir() {
                self.dir(&path, &child_rel, out, nodes, cx);
            } else if ft.is_file() {
                tree_file(
                    &path,
                    &dest_child,
                    &meta,
                    self.tree,
                    &self.user,
                    &self.group,
                    &self.yp,
                    out,
                    nodes,
                    cx,
                );
            } else if ft.is_symlink() {
                tree_link(
                    &path,
                    &dest_child,
                    &self.user,
                    &self.group,
                    &self.yp,
                    out,
                    nodes,
                    cx,
                );
            } else {
                cx.report.error(
                    self.yp.clone(),
                    "trees may only contain files, directories, and symlinks",
                );
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn tree_file(
    path: &std::path::Path,
    dest: &str,
    meta: &std::fs::Metadata,
    tree: &Tree,
    user: &ign::NodeUser,
    group: &ign::NodeGroup,
    yp: &Path,
    out: &mut ign::Config,
    nodes: &mut Nodes,
    cx: &mut Cx<'_>,
) {
    use std::os::unix::fs::PermissionsExt;
    let idx = match nodes.kind.get(dest) {
        Some(&(FILE, i)) => {
            if out.storage.files[i].contents.source.is_some() {
                cx.report.error(yp.clone(), NODE_EXISTS);
                return;
            }
            i
        }
        Some(_) => {
            cx.report.error(yp.clone(), NODE_EXISTS);
            return;
        }
        None => {
            let i = out.storage.files.len();
            if i == 0 {
                cx.ts.add_subtree(p!["storage", "files"], yp.clone());
            }
            nodes.kind.insert(dest.to_string(), (FILE, i));
            out.storage.files.push(ign::File {
                path: dest.to_string(),
                user: user.clone(),
                group: group.clone(),
                ..ign::File::default()
            });
            cx.ts.add_subtree(p!["storage", "files", i], yp.clone());
            i
        }
    };
    let data = match files::read_go(path) {
        Ok(d) => d,
        Err(e) => {
            cx.report.error(yp.clone(), e);
            return;
        }
    };
    let f = &mut out.storage.files[idx];
    let (url, compression) = files::make_data_url(
        &data,
        f.contents.compression.as_deref(),
        cx.allow_compression,
    );
    f.contents.source = Some(url);
    if let Some(c) = compression {
        f.contents.compression = Some(c);
    }
    if f.mode.is_none() {
        let exec = meta.permissions().mode() & 0o111 != 0;
        f.mode = Some(tree.file_mode.unwrap_or(if exec { 0o755 } else { 0o644 }));
    }
    cx.ts.add_subtree(p!["storage", "files", idx], yp.clone());
}

#[allow(clippy::too_many_arguments)]
fn tree_link(
    path: &std::path::Path,
    dest: &str,
    user: &ign::NodeUser,
    group: &ign::NodeGroup,
    yp: &Path,
    out: &mut ign::Config,
    nodes: &mut Nodes,
    cx: &mut Cx<'_>,
) {
    let idx = match nodes.kind.get(dest) {
        Some(&(LINK, i)) => {
            if out.storage.links[i]
                .target
                .as_deref()
                .is_some_and(|t| !t.is_empty())
            {
                cx.report.error(yp.clone(), NODE_EXISTS);
                return;
            }
            i
        }
        Some(_) => {
            cx.report.error(yp.clone(), NODE_EXISTS);
            return;
        }
        None => {
            let i = out.storage.links.len();
            if i == 0 {
                cx.ts.add_subtree(p!["storage", "links"], yp.clone());
            }
            nodes.kind.insert(dest.to_string(), (LINK, i));
            out.storage.links.push(ign::Link {
                path: dest.to_string(),
                user: user.clone(),
                group: group.clone(),
                ..ign::Link::default()
            });
            i
        }
    };
    match std::fs::read_link(path) {
        Ok(t) => out.storage.links[idx].target = Some(t.to_string_lossy().into_owned()),
        Err(e) => cx
            .report
            .error(yp.clone(), files::go_error("readlink", path, &e)),
    }
    cx.ts.add_subtree(p!["storage", "links", idx], yp.clone());
}

fn quadlets(c: &Config, out: &mut ign::Config, cx: &mut Cx<'_>) {
    if c.systemd.quadlets.is_empty() {
        return;
    }
    let mut nodes = Nodes::of(out);
    for (n, q) in c.systemd.quadlets.iter().enumerate() {
        let dir = if q.rootful {
            "/etc/containers/systemd"
        } else {
            "/etc/containers/systemd/users"
        };
        let qpath = ignition_config::validate::clean_path(&format!("{dir}/{}", q.name));
        let yp = p!["systemd", "quadlets", n];
        if nodes.kind.contains_key(&qpath) {
            cx.report.error(yp.clone(), NODE_EXISTS);
        } else if let Some(template) = quadlet_template(&q.name) {
            nodes
                .kind
                .insert(qpath.clone(), (LINK, out.storage.links.len()));
            cx.ts
                .add(p!["storage", "links", out.storage.links.len()], yp.clone());
            out.storage.links.push(ign::Link {
                path: qpath.clone(),
                target: Some(template),
                ..ign::Link::default()
            });
        } else {
            let contents = quadlet_contents(&q.contents, &q.contents_local, &yp, cx);
            quadlet_file(&qpath, &contents, &yp, out, &mut nodes, cx);
        }
        for (i, d) in q.dropins.iter().enumerate() {
            let dp = format!("{qpath}.d/{}", d.name);
            let dyp = p!["systemd", "quadlets", n, "dropins", i];
            if nodes.kind.contains_key(&dp) {
                cx.report.error(dyp, NODE_EXISTS);
                continue;
            }
            let contents = quadlet_contents(&d.contents, &d.contents_local, &dyp, cx);
            quadlet_file(&dp, &contents, &dyp, out, &mut nodes, cx);
        }
    }
}

/// `web@8080.container` → `web@.container`; `None` for non-instances.
pub(crate) fn quadlet_template(name: &str) -> Option<String> {
    let a = name.find('@')?;
    let d = name.rfind('.')?;
    if a + 1 == d || d < a {
        return None;
    }
    Some(format!("{}@.{}", &name[..a], &name[d + 1..]))
}

fn quadlet_contents(
    contents: &Option<String>,
    local: &Option<String>,
    yp: &Path,
    cx: &mut Cx<'_>,
) -> Vec<u8> {
    if let Some(l) = local.as_deref().filter(|l| !l.is_empty()) {
        return match files::read_local(cx.files_dir, l) {
            Ok(d) => d,
            Err(e) => {
                let mut p = yp.clone();
                p.0.push(Seg::Key("contents_local"));
                cx.report.error(p, e);
                Vec::new()
            }
        };
    }
    contents.clone().unwrap_or_default().into_bytes()
}

fn quadlet_file(
    path: &str,
    contents: &[u8],
    yp: &Path,
    out: &mut ign::Config,
    nodes: &mut Nodes,
    cx: &mut Cx<'_>,
) {
    let (url, compression) = files::make_data_url(contents, None, cx.allow_compression);
    let i = out.storage.files.len();
    nodes.kind.insert(path.to_string(), (FILE, i));
    cx.ts.add_subtree(p!["storage", "files", i], yp.clone());
    out.storage.files.push(ign::File {
        path: path.to_string(),
        contents: ign::Resource {
            compression,
            source: Some(url),
            ..ign::Resource::default()
        },
        mode: Some(0o644),
        ..ign::File::default()
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quadlet_templates() {
        assert_eq!(
            quadlet_template("web@8080.container").as_deref(),
            Some("web@.container")
        );
        assert_eq!(quadlet_template("web@.container"), None);
        assert_eq!(quadlet_template("db.volume"), None);
    }
}
