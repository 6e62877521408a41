//! Butane → Ignition: the generic copy, the base sugar, and the translation
//! set that maps every output path back to the YAML path it came from.

use std::collections::{BTreeMap, HashMap};
use std::path::Path as FsPath;

use ignition_config::types as ign;

use crate::decode::Base;
use crate::files;
use crate::report::{Path, Report, Seg, p};
use crate::types::*;
use crate::variant::Target;

/// How a recorded output path relates to its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// Descendants map to the source path plus the same (snake_case) rest.
    Prefix,
    /// Generated content: every descendant maps to exactly the source path.
    Subtree,
    /// A user's list entry that moved when generated entries were merged in
    /// front: a descendant maps to the entry's source only where the source
    /// has that field; otherwise upstream falls back to the output path.
    Moved,
    /// A user's entry merged into a generated one: the user's source where
    /// the user wrote the field, else the generated entry's source.
    Merged,
}

/// Output JSON paths and the YAML paths they came from (upstream's
/// translation set). Lookups take the longest recorded prefix; of entries
/// recorded at the same path, the one recorded last (or moved there last)
/// wins. Entries are kept by path, so a lookup costs a few map probes and
/// moving the entries of a list touches only that list's entries.
#[derive(Debug, Clone, Default)]
pub(crate) struct Ts<'a> {
    /// JSON path → (precedence, YAML path, link).
    entries: BTreeMap<Vec<Seg>, (i64, Path, Link)>,
    /// Precedence of the next entry recorded last / first.
    next_last: i64,
    next_first: i64,
    /// For [`Link::Merged`] entries: the generated entry's source.
    fallbacks: HashMap<Vec<Seg>, Path>,
    /// Merged entries waiting for [`Ts::commit_merged`].
    pending: Vec<(Path, Path, Link)>,
    /// The source tree, to tell which fields a moved entry really has.
    pub root: Option<&'a crate::yaml::Node>,
}

/// An output path's elements as source (snake_case) elements.
pub(crate) fn snake_rest(rest: &[Seg]) -> impl Iterator<Item = Seg> + '_ {
    rest.iter().map(|seg| match seg {
        Seg::Index(i) => Seg::Index(*i),
        s => Seg::Name(snake(s.key().unwrap_or_default())),
    })
}

impl<'a> Ts<'a> {
    /// An empty set over the given source tree.
    pub(crate) fn new(root: Option<&'a crate::yaml::Node>) -> Ts<'a> {
        Ts {
            root,
            ..Ts::default()
        }
    }

    /// Records an entry with the highest precedence so far.
    fn push(&mut self, json: Path, yaml: Path, link: Link) {
        self.next_last += 1;
        self.put(json.0, (self.next_last, yaml, link));
    }

    /// Keeps the entry of higher precedence at a path.
    fn put(&mut self, json: Vec<Seg>, rec: (i64, Path, Link)) {
        match self.entries.get_mut(&json) {
            Some(old) if old.0 > rec.0 => {}
            Some(old) => *old = rec,
            None => {
                self.entries.insert(json, rec);
            }
        }
    }

    /// Records that `json` (and what is below it, field by field) came from
    /// `yaml`.
    pub(crate) fn add(&mut self, json: Path, yaml: Path) {
        self.push(json, yaml, Link::Prefix);
    }

    /// Records that `json` and everything below it was generated from
    /// `yaml`.
    pub(crate) fn add_subtree(&mut self, json: Path, yaml: Path) {
        self.push(json, yaml, Link::Subtree);
    }

    /// Moves recorded entries of the list at `list` from index `i` to
    /// `map[i]` (a generated list was merged in front of the user's), and
    /// records each user entry's new place; `yaml_list` is the list's
    /// source path (it differs from the output path for a nested list in
    /// an entry that itself moved).
    pub(crate) fn reindex_from(&mut self, list: &Path, yaml_list: &Path, map: &[usize]) {
        self.reindex_merged(list, yaml_list, map, &[]);
    }

    /// [`Ts::reindex_from`], where `merged[i]` is the generated source of the
    /// entry child `i` was merged into (if it was).
    pub(crate) fn reindex_merged(
        &mut self,
        list: &Path,
        yaml_list: &Path,
        map: &[usize],
        merged: &[Option<Path>],
    ) {
        let n = list.0.len();
        let moving: Vec<Vec<Seg>> = self
            .entries
            .range::<[Seg], _>((
                std::ops::Bound::Included(&list.0[..]),
                std::ops::Bound::Unbounded,
            ))
            .map(|(j, _)| j)
            .take_while(|j| j.starts_with(&list.0))
            .filter(|j| j.len() > n && matches!(j[n], Seg::Index(i) if map.get(i).is_some()))
            .cloned()
            .collect();
        let mut moved = Vec::with_capacity(moving.len());
        for mut j in moving {
            if let Some(rec) = self.entries.remove(&j) {
                if let Seg::Index(i) = j[n] {
                    j[n] = Seg::Index(map[i]);
                }
                moved.push((j, rec));
            }
        }
        for (j, rec) in moved {
            self.put(j, rec);
        }
        for (from, &to) in map.iter().enumerate() {
            let mut j = list.clone();
            j.0.push(Seg::Index(to));
            let mut y = yaml_list.clone();
            y.0.push(Seg::Index(from));
            match merged.get(from).cloned().flatten() {
                Some(fallback) => {
                    self.fallbacks.insert(j.0.clone(), fallback);
                    self.pending.push((j, y, Link::Merged));
                }
                None if from != to => {
                    self.next_first -= 1;
                    self.put(j.0, (self.next_first, y, Link::Moved));
                }
                None => {}
            }
        }
    }

    /// Records the merged entries of the last reindexing, so that they take
    /// precedence over generated entries recorded before this call.
    pub(crate) fn commit_merged(&mut self) {
        for (j, y, link) in std::mem::take(&mut self.pending) {
            self.push(j, y, link);
        }
    }

    /// The YAML path an output path came from.
    pub(crate) fn map(&self, json: &Path) -> Path {
        let best = (0..=json.0.len())
            .rev()
            .find_map(|n| self.entries.get(&json.0[..n]).map(|(_, y, k)| (n, y, *k)));
        let raw = || Path(snake_rest(&json.0).collect());
        match best {
            None => raw(),
            Some((_, y, Link::Subtree)) => y.clone(),
            Some((n, y, Link::Prefix)) => {
                let mut out = y.clone();
                out.0.extend(snake_rest(&json.0[n..]));
                out
            }
            Some((n, y, Link::Merged)) => {
                let mut out = y.clone();
                out.0.extend(snake_rest(&json.0[n..]));
                match self.root {
                    Some(root) if crate::report::exists(root, &out) => out,
                    _ => self
                        .fallbacks
                        .get(&json.0[..n])
                        .map_or_else(raw, Clone::clone),
                }
            }
            Some((n, y, Link::Moved)) => {
                let mut out = y.clone();
                out.0.extend(snake_rest(&json.0[n..]));
                match self.root {
                    Some(root) if crate::report::exists(root, &out) => out,
                    _ => raw(),
                }
            }
        }
    }
}

/// Ignition's camelCase key as Butane's snake_case one.
pub(crate) fn snake(key: &str) -> String {
    let key = key.replace("MiB", "_mib");
    let mut out = String::with_capacity(key.len() + 4);
    for c in key.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Translation state.
pub(crate) struct Cx<'a> {
    /// What we translate for.
    pub target: Target,
    /// `-d/--files-dir`.
    pub files_dir: Option<&'a FsPath>,
    /// Whether data URLs may be gzipped.
    pub allow_compression: bool,
    /// Findings (on YAML paths).
    pub report: Report,
    /// Output → source paths.
    pub ts: Ts<'a>,
}

fn join(base: &Path, rest: &[Seg]) -> Path {
    let mut p = base.clone();
    p.0.extend_from_slice(rest);
    p
}

impl Cx<'_> {
    /// An error on an output (JSON) path, reported on the YAML path it came
    /// from.
    pub(crate) fn output_error(&mut self, json: Path, msg: &str) {
        let yaml = self.ts.map(&json);
        self.report.error(yaml, msg);
    }

    fn v(&self) -> Base {
        self.target.base
    }

    /// Translates a resource at YAML path `yp` (JSON path `jp`).
    fn resource(&mut self, r: &Resource, yp: &Path, jp: &Path) -> ign::Resource {
        let mut out = ign::Resource {
            compression: r.compression.clone(),
            http_headers: r
                .http_headers
                .iter()
                .map(|h| ign::HttpHeader {
                    name: h.name.clone(),
                    value: h.value.clone(),
                })
                .collect(),
            source: r.source.clone(),
            verification: ign::Verification {
                hash: r.verification.hash.clone(),
            },
        };
        if self.v() == Base::V0_1 {
            if let Some(inline) = &r.inline {
                out.source = Some(format!("data:,{}", files::escape(inline.as_bytes())));
                self.ts.add(
                    join(jp, &[Seg::Key("source")]),
                    join(yp, &[Seg::Key("inline")]),
                );
            }
            return out;
        }
        let (data, key) = if let Some(local) = &r.local {
            match files::read_local(self.files_dir, local) {
                Ok(d) => (Some(d), "local"),
                Err(e) => {
                    self.report.error(join(yp, &[Seg::Key("local")]), e);
                    (None, "local")
                }
            }
        } else if let Some(inline) = &r.inline {
            (Some(inline.clone().into_bytes()), "inline")
        } else {
            (None, "")
        };
        if let Some(data) = data {
            let (url, compression) =
                files::make_data_url(&data, r.compression.as_deref(), self.allow_compression);
            out.source = Some(url);
            self.ts
                .add(join(jp, &[Seg::Key("source")]), join(yp, &[Seg::Key(key)]));
            if let Some(c) = compression {
                out.compression = Some(c);
                self.ts.add(
                    join(jp, &[Seg::Key("compression")]),
                    join(yp, &[Seg::Key(key)]),
                );
            }
        }
        out
    }

    fn resources(&mut self, rs: &[Resource], yp: &Path, jp: &Path) -> Vec<ign::Resource> {
        rs.iter()
            .enumerate()
            .map(|(i, r)| {
                self.resource(r, &join(yp, &[Seg::Index(i)]), &join(jp, &[Seg::Index(i)]))
            })
            .collect()
    }

    /// The generic copy of the whole config, with the per-field sugar
    /// (resources, local SSH keys, local unit contents).
    pub(crate) fn base(&mut self, c: &Config) -> ign::Config {
        let mut out = ign::Config::default();
        out.ignition.version = self.target.ignition.as_str().to_string();
        let ig = &c.ignition;
        out.ignition.config.merge = self.resources(
            &ig.config.merge,
            &p!["ignition", "config", "merge"],
            &p!["ignition", "config", "merge"],
        );
        out.ignition.config.replace = self.resource(
            &ig.config.replace,
            &p!["ignition", "config", "replace"],
            &p!["ignition", "config", "replace"],
        );
        out.ignition.proxy = ign::Proxy {
            http_proxy: ig.proxy.http_proxy.clone(),
            https_proxy: ig.proxy.https_proxy.clone(),
            no_proxy: ig.proxy.no_proxy.clone(),
        };
        let cas = p!["ignition", "security", "tls", "certificate_authorities"];
        out.ignition.security.tls.certificate_authorities = self.resources(
            &ig.security.tls.certificate_authorities,
            &cas,
            &p!["ignition", "security", "tls", "certificateAuthorities"],
        );
        out.ignition.timeouts = ign::Timeouts {
            http_response_headers: ig.timeouts.http_response_headers,
            http_total: ig.timeouts.http_total,
        };
        out.kernel_arguments = ign::KernelArguments {
            should_exist: c.kernel_arguments.should_exist.clone(),
            should_not_exist: c.kernel_arguments.should_not_exist.clone(),
        };
        out.passwd.groups = c
            .passwd
            .groups
            .iter()
            .map(|g| ign::PasswdGroup {
                gid: g.gid,
                name: g.name.clone(),
                password_hash: g.password_hash.clone(),
                should_exist: g.should_exist,
                system: g.system,
            })
            .collect();
        out.passwd.users = c
            .passwd
            .users
            .iter()
            .enumerate()
            .map(|(i, u)| self.user(u, i))
            .collect();
        self.storage(&c.storage, &mut out);
        out.systemd.units = c
            .systemd
            .units
            .iter()
            .enumerate()
            .map(|(i, u)| self.unit(u, i))
            .collect();
        out
    }

    fn user(&mut self, u: &PasswdUser, i: usize) -> ign::PasswdUser {
        let mut keys = u.ssh_authorized_keys.clone();
        if !u.ssh_authorized_keys_local.is_empty() {
            let yp = p!["passwd", "users", i, "ssh_authorized_keys_local"];
            let jp = p!["passwd", "users", i, "sshAuthorizedKeys"];
            if self.files_dir.is_none() {
                self.report.error(yp, files::NO_FILES_DIR);
            } else {
                self.ts.add(jp.clone(), yp.clone());
                for (k, local) in u.ssh_authorized_keys_local.iter().enumerate() {
                    match files::read_local(self.files_dir, local) {
                        Ok(data) => {
                            let text = String::from_utf8_lossy(&data).into_owned();
                            for line in text.split('\n') {
                                let line = line.strip_suffix('\r').unwrap_or(line);
                                if line.is_empty() {
                                    continue;
                                }
                                self.ts.add(
                                    join(&jp, &[Seg::Index(keys.len())]),
                                    join(&yp, &[Seg::Index(k)]),
                                );
                                keys.push(line.to_string());
                            }
                        }
                        Err(e) => self.report.error(join(&yp, &[Seg::Index(k)]), e),
                    }
                }
            }
        }
        ign::PasswdUser {
            gecos: u.gecos.clone(),
            groups: u.groups.clone(),
            home_dir: u.home_dir.clone(),
            name: u.name.clone(),
            no_create_home: u.no_create_home,
            no_log_init: u.no_log_init,
            no_user_group: u.no_user_group,
            password_hash: u.password_hash.clone(),
            primary_group: u.primary_group.clone(),
            ssh_authorized_keys: keys,
            shell: u.shell.clone(),
            should_exist: u.should_exist,
            system: u.system,
            uid: u.uid,
        }
    }

    fn contents_local(
        &mut self,
        contents: &Option<String>,
        local: &Option<String>,
        yp: Path,
    ) -> Option<String> {
        match local.as_deref() {
            Some(l) if !l.is_empty() => match files::read_local(self.files_dir, l) {
                Ok(d) => Some(String::from_utf8_lossy(&d).into_owned()),
                Err(e) => {
                    self.report.error(yp, e);
                    contents.clone()
                }
            },
            _ => contents.clone(),
        }
    }

    fn unit(&mut self, u: &Unit, i: usize) -> ign::Unit {
        // Upstream reports a unit's dropin errors before its own.
        let dropins = u
            .dropins
            .iter()
            .enumerate()
            .map(|(j, d)| {
                let contents = self.contents_local(
                    &d.contents,
                    &d.contents_local,
                    p!["systemd", "units", i, "dropins", j, "contents_local"],
                );
                if d.contents_local.as_deref().is_some_and(|l| !l.is_empty()) {
                    self.ts.add(
                        p!["systemd", "units", i, "dropins", j, "contents"],
                        p!["systemd", "units", i, "dropins", j, "contents_local"],
                    );
                }
                ign::Dropin {
                    contents,
                    name: d.name.clone(),
                }
            })
            .collect();
        let contents = self.contents_local(
            &u.contents,
            &u.contents_local,
            p!["systemd", "units", i, "contents_local"],
        );
        if u.contents_local.as_deref().is_some_and(|l| !l.is_empty()) {
            self.ts.add(
                p!["systemd", "units", i, "contents"],
                p!["systemd", "units", i, "contents_local"],
            );
        }
        ign::Unit {
            contents,
            dropins,
            enabled: u.enabled,
            mask: u.mask,
            name: u.name.clone(),
        }
    }

    fn storage(&mut self, s: &Storage, out: &mut ign::Config) {
        let node_user = |u: &NodeUser| ign::NodeUser {
            id: u.id,
            name: u.name.clone(),
        };
        let node_group = |g: &NodeGroup| ign::NodeGroup {
            id: g.id,
            name: g.name.clone(),
        };
        let st = &mut out.storage;
        st.directories = s
            .directories
            .iter()
            .map(|d| ign::Directory {
                group: node_group(&d.group),
                overwrite: d.overwrite,
                path: d.path.clone(),
                user: node_user(&d.user),
                mode: d.mode,
            })
            .collect();
        st.disks = s
            .disks
            .iter()
            .map(|d| ign::Disk {
                device: d.device.clone(),
                partitions: d
                    .partitions
                    .iter()
                    .map(|p| ign::Partition {
                        guid: p.guid.clone(),
                        label: p.label.clone(),
                        number: p.number,
                        resize: p.resize,
                        should_exist: p.should_exist,
                        size_mib: p.size_mib,
                        start_mib: p.start_mib,
                        type_guid: p.type_guid.clone(),
                        wipe_partition_entry: p.wipe_partition_entry,
                    })
                    .collect(),
                wipe_table: d.wipe_table,
            })
            .collect();
        let mut new_files = Vec::with_capacity(s.files.len());
        for (i, f) in s.files.iter().enumerate() {
            let yp = p!["storage", "files", i];
            let append = self.resources(
                &f.append,
                &join(&yp, &[Seg::Key("append")]),
                &join(&yp, &[Seg::Key("append")]),
            );
            let contents = self.resource(
                &f.contents,
                &join(&yp, &[Seg::Key("contents")]),
                &join(&yp, &[Seg::Key("contents")]),
            );
            new_files.push(ign::File {
                group: node_group(&f.group),
                overwrite: f.overwrite,
                path: f.path.clone(),
                user: node_user(&f.user),
                append,
                contents,
                mode: f.mode,
            });
        }
        out.storage.files = new_files;
        let st = &mut out.storage;
        st.filesystems = s
            .filesystems
            .iter()
            .map(|f| ign::Filesystem {
                device: f.device.clone(),
                format: f.format.clone(),
                label: f.label.clone(),
                mount_options: f.mount_options.clone(),
                options: f.options.clone(),
                path: f.path.clone(),
                uuid: f.uuid.clone(),
                wipe_filesystem: f.wipe_filesystem,
            })
            .collect();
        st.links = s
            .links
            .iter()
            .map(|l| ign::Link {
                group: node_group(&l.group),
                overwrite: l.overwrite,
                path: l.path.clone(),
                user: node_user(&l.user),
                hard: l.hard,
                target: l.target.clone(),
            })
            .collect();
        st.raid = s
            .raid
            .iter()
            .map(|r| ign::Raid {
                devices: r.devices.clone(),
                level: r.level.clone(),
                name: r.name.clone(),
                options: r.options.clone(),
                spares: r.spares,
            })
            .collect();
        let mut luks = Vec::with_capacity(s.luks.len());
        for (i, l) in s.luks.iter().enumerate() {
            let yp = p!["storage", "luks", i, "key_file"];
            let jp = p!["storage", "luks", i, "keyFile"];
            let key_file = self.resource(&l.key_file, &yp, &jp);
            luks.push(ign::Luks {
                cex: ign::Cex {
                    enabled: l.cex.enabled,
                },
                clevis: clevis(&l.clevis),
                device: l.device.clone(),
                discard: l.discard,
                key_file,
                label: l.label.clone(),
                name: l.name.clone(),
                open_options: l.open_options.clone(),
                options: l.options.clone(),
                uuid: l.uuid.clone(),
                wipe_volume: l.wipe_volume,
            });
        }
        out.storage.luks = luks;
    }
}

/// Clevis settings as Ignition's.
pub(crate) fn clevis(c: &Clevis) -> ign::Clevis {
    ign::Clevis {
        custom: ign::ClevisCustom {
            config: c.custom.config.clone(),
            needs_network: c.custom.needs_network,
            pin: c.custom.pin.clone(),
        },
        tang: c.tang.iter().map(tang).collect(),
        threshold: c.threshold,
        tpm2: c.tpm2,
    }
}

/// A Tang server as Ignition's.
pub(crate) fn tang(t: &Tang) -> ign::Tang {
    ign::Tang {
        advertisement: t.advertisement.clone(),
        thumbprint: t.thumbprint.clone(),
        url: t.url.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_case_keys() {
        assert_eq!(snake("sizeMiB"), "size_mib");
        assert_eq!(snake("httpHeaders"), "http_headers");
        assert_eq!(snake("sshAuthorizedKeys"), "ssh_authorized_keys");
        assert_eq!(snake("path"), "path");
    }

    #[test]
    fn translation_set_prefers_longest_prefix() {
        let mut ts = Ts::default();
        ts.add(p!["systemd", "units", 1], p!["systemd", "units", 0]);
        let m = ts.map(&p!["systemd", "units", 1, "contents"]);
        assert_eq!(m.to_string(), "$.systemd.units.0.contents");
        let m = ts.map(&p!["storage", "files", 0, "contents", "httpHeaders", 0]);
        assert_eq!(m.to_string(), "$.storage.files.0.contents.http_headers.0");
    }
}
