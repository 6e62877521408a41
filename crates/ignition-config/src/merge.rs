//! Merging a child config over a parent, with upstream's semantics.
//!
//! This is what `ignition.config.merge` and base configs do: the child
//! overrides the parent field by field. Plain values (strings, numbers) are
//! the child's; optional values are the child's when set; a struct that is
//! all zero on one side is taken whole from the other side, otherwise it is
//! merged field by field. Lists are merged by key: a parent entry whose key
//! the child also has is merged with the child's last entry of that key, and
//! the child's new entries follow. Files, directories and links share one key
//! space (the path), as do the two kernel argument lists: a child's link
//! replaces a parent's file at the same path. Option lists (`options`,
//! `mountOptions`, file `append`) are concatenated. A child HTTP header
//! without a value removes the parent's header of that name.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;

use crate::json::Zero;
use crate::types::*;

/// Merges `child` over `parent`.
pub fn merge(parent: &Config, child: &Config) -> Config {
    parent.clone().merged(child.clone())
}

/// A type that merges field by field.
trait Merge: Sized + Zero {
    fn merged(self, child: Self) -> Self;
}

/// Rules for a nested struct: a zero child keeps the parent, a zero parent
/// takes the child, otherwise merge recursively.
fn st<T: Merge>(p: T, c: T) -> T {
    if c.is_zero() {
        p
    } else if p.is_zero() {
        c
    } else {
        p.merged(c)
    }
}

/// Optional values: the child's when set.
fn opt<T>(p: Option<T>, c: Option<T>) -> Option<T> {
    c.or(p)
}

/// Lists that are simply concatenated.
fn append<T>(mut p: Vec<T>, c: Vec<T>) -> Vec<T> {
    p.extend(c);
    p
}

/// Where a child's entry for a key lives: which list (of the lists sharing
/// a key space) and which index. Later entries win.
fn child_index<T, K: Eq + Hash>(
    lists: &[(usize, &[T])],
    key: impl Fn(&T) -> K,
) -> HashMap<K, (usize, usize)> {
    let mut m = HashMap::new();
    for (list, items) in lists {
        for (i, item) in items.iter().enumerate() {
            m.insert(key(item), (*list, i));
        }
    }
    m
}

/// Keyed merge of one list. `index` covers every child list sharing the key
/// space, `me` names this list in it. `combine` merges a parent entry with
/// the matching child entry (returning `None` drops it).
fn keyed<T: Clone, K: Eq + Hash>(
    p: Vec<T>,
    c: &[T],
    me: usize,
    index: &HashMap<K, (usize, usize)>,
    key: impl Fn(&T) -> K,
    combine: impl Fn(T, &T) -> Option<T>,
) -> Vec<T> {
    let parent_keys: HashSet<K> = p.iter().map(&key).collect();
    let mut out = Vec::with_capacity(p.len() + c.len());
    for item in p {
        match index.get(&key(&item)) {
            Some(&(list, i)) if list == me => {
                if let Some(m) = combine(item, &c[i]) {
                    out.push(m);
                }
            }
            // The child has this key in a sibling list: its entry wins there.
            Some(_) => {}
            None => out.push(item),
        }
    }
    out.extend(
        c.iter()
            .filter(|item| !parent_keys.contains(&key(item)))
            .cloned(),
    );
    out
}

/// Keyed merge of a list with its own key space.
fn keyed_alone<T: Merge + Clone, K: Eq + Hash>(
    p: Vec<T>,
    c: Vec<T>,
    key: impl Fn(&T) -> K,
) -> Vec<T> {
    let index = child_index(&[(0, &c[..])], &key);
    keyed(p, &c, 0, &index, key, |p, c| Some(p.merged(c.clone())))
}

/// Keyed merge of a list of strings (the string is the key; equal strings
/// merge to the child's).
fn keyed_strings(p: Vec<String>, c: Vec<String>) -> Vec<String> {
    let index = child_index(&[(0, &c[..])], |s: &String| s.clone());
    keyed(p, &c, 0, &index, |s| s.clone(), |_, c| Some(c.clone()))
}

fn source_key(r: &Resource) -> String {
    r.source.clone().unwrap_or_default()
}

impl Merge for Config {
    fn merged(self, c: Self) -> Self {
        Config {
            ignition: st(self.ignition, c.ignition),
            kernel_arguments: st(self.kernel_arguments, c.kernel_arguments),
            passwd: st(self.passwd, c.passwd),
            storage: st(self.storage, c.storage),
            systemd: st(self.systemd, c.systemd),
        }
    }
}

impl Merge for Ignition {
    fn merged(self, c: Self) -> Self {
        Ignition {
            config: st(self.config, c.config),
            proxy: st(self.proxy, c.proxy),
            security: st(self.security, c.security),
            timeouts: st(self.timeouts, c.timeouts),
            version: c.version,
        }
    }
}

impl Merge for IgnitionConfig {
    fn merged(self, c: Self) -> Self {
        IgnitionConfig {
            merge: keyed_alone(self.merge, c.merge, source_key),
            replace: st(self.replace, c.replace),
        }
    }
}

impl Merge for Proxy {
    fn merged(self, c: Self) -> Self {
        Proxy {
            http_proxy: opt(self.http_proxy, c.http_proxy),
            https_proxy: opt(self.https_proxy, c.https_proxy),
            no_proxy: keyed_strings(self.no_proxy, c.no_proxy),
        }
    }
}

impl Merge for Security {
    fn merged(self, c: Self) -> Self {
        Security {
            tls: st(self.tls, c.tls),
        }
    }
}

impl Merge for Tls {
    fn merged(self, c: Self) -> Self {
        Tls {
            certificate_authorities: keyed_alone(
                self.certificate_authorities,
                c.certificate_authorities,
                source_key,
            ),
        }
    }
}

impl Merge for Timeouts {
    fn merged(self, c: Self) -> Self {
        Timeouts {
            http_response_headers: opt(self.http_response_headers, c.http_response_headers),
            http_total: opt(self.http_total, c.http_total),
        }
    }
}

impl Merge for Resource {
    fn merged(self, c: Self) -> Self {
        let index = child_index(&[(0, &c.http_headers[..])], |h: &HttpHeader| h.name.clone());
        let http_headers = keyed(
            self.http_headers,
            &c.http_headers,
            0,
            &index,
            |h| h.name.clone(),
            // A child header without a value deletes the parent's.
            |p, c| c.value.is_some().then(|| p.merged(c.clone())),
        );
        Resource {
            compression: opt(self.compression, c.compression),
            http_headers,
            source: opt(self.source, c.source),
            verification: st(self.verification, c.verification),
        }
    }
}

impl Merge for HttpHeader {
    fn merged(self, c: Self) -> Self {
        HttpHeader {
            name: c.name,
            value: opt(self.value, c.value),
        }
    }
}

impl Merge for Verification {
    fn merged(self, c: Self) -> Self {
        Verification {
            hash: opt(self.hash, c.hash),
        }
    }
}

impl Merge for KernelArguments {
    fn merged(self, c: Self) -> Self {
        let index = child_index(
            &[(0, &c.should_exist[..]), (1, &c.should_not_exist[..])],
            |s: &String| s.clone(),
        );
        let take = |_: String, c: &String| Some(c.clone());
        KernelArguments {
            should_exist: keyed(
                self.should_exist,
                &c.should_exist,
                0,
                &index,
                |s| s.clone(),
                take,
            ),
            should_not_exist: keyed(
                self.should_not_exist,
                &c.should_not_exist,
                1,
                &index,
                |s| s.clone(),
                take,
            ),
        }
    }
}

impl Merge for Passwd {
    fn merged(self, c: Self) -> Self {
        Passwd {
            groups: keyed_alone(self.groups, c.groups, |g| g.name.clone()),
            users: keyed_alone(self.users, c.users, |u| u.name.clone()),
        }
    }
}

impl Merge for PasswdGroup {
    fn merged(self, c: Self) -> Self {
        PasswdGroup {
            gid: opt(self.gid, c.gid),
            name: c.name,
            password_hash: opt(self.password_hash, c.password_hash),
            should_exist: opt(self.should_exist, c.should_exist),
            system: opt(self.system, c.system),
        }
    }
}

impl Merge for PasswdUser {
    fn merged(self, c: Self) -> Self {
        PasswdUser {
            gecos: opt(self.gecos, c.gecos),
            groups: keyed_strings(self.groups, c.groups),
            home_dir: opt(self.home_dir, c.home_dir),
            name: c.name,
            no_create_home: opt(self.no_create_home, c.no_create_home),
            no_log_init: opt(self.no_log_init, c.no_log_init),
            no_user_group: opt(self.no_user_group, c.no_user_group),
            password_hash: opt(self.password_hash, c.password_hash),
            primary_group: opt(self.primary_group, c.primary_group),
            ssh_authorized_keys: keyed_strings(self.ssh_authorized_keys, c.ssh_authorized_keys),
            shell: opt(self.shell, c.shell),
            should_exist: opt(self.should_exist, c.should_exist),
            system: opt(self.system, c.system),
            uid: opt(self.uid, c.uid),
        }
    }
}

impl Merge for Storage {
    fn merged(self, c: Self) -> Self {
        // Directories, files and links share the path as one key space.
        let mut index: HashMap<String, (usize, usize)> = HashMap::new();
        for (i, d) in c.directories.iter().enumerate() {
            index.insert(d.path.clone(), (0, i));
        }
        for (i, f) in c.files.iter().enumerate() {
            index.insert(f.path.clone(), (1, i));
        }
        for (i, l) in c.links.iter().enumerate() {
            index.insert(l.path.clone(), (2, i));
        }
        Storage {
            directories: keyed(
                self.directories,
                &c.directories,
                0,
                &index,
                |d| d.path.clone(),
                |p, c| Some(p.merged(c.clone())),
            ),
            disks: keyed_alone(self.disks, c.disks, |d| d.device.clone()),
            files: keyed(
                self.files,
                &c.files,
                1,
                &index,
                |f| f.path.clone(),
                |p, c| Some(p.merged(c.clone())),
            ),
            filesystems: keyed_alone(self.filesystems, c.filesystems, |f| f.device.clone()),
            links: keyed(
                self.links,
                &c.links,
                2,
                &index,
                |l| l.path.clone(),
                |p, c| Some(p.merged(c.clone())),
            ),
            luks: keyed_alone(self.luks, c.luks, |l| l.name.clone()),
            raid: keyed_alone(self.raid, c.raid, |r| r.name.clone()),
        }
    }
}

impl Merge for Disk {
    fn merged(self, c: Self) -> Self {
        Disk {
            device: c.device,
            partitions: keyed_alone(self.partitions, c.partitions, partition_key),
            wipe_table: opt(self.wipe_table, c.wipe_table),
        }
    }
}

/// A partition is known by its number, or else by its label.
pub fn partition_key(p: &Partition) -> String {
    if p.number != 0 {
        format!("number:{}", p.number)
    } else if let Some(l) = &p.label {
        format!("label:{l}")
    } else {
        String::new()
    }
}

impl Merge for Partition {
    fn merged(self, c: Self) -> Self {
        Partition {
            guid: opt(self.guid, c.guid),
            label: opt(self.label, c.label),
            number: c.number,
            resize: opt(self.resize, c.resize),
            should_exist: opt(self.should_exist, c.should_exist),
            size_mib: opt(self.size_mib, c.size_mib),
            start_mib: opt(self.start_mib, c.start_mib),
            type_guid: opt(self.type_guid, c.type_guid),
            wipe_partition_entry: opt(self.wipe_partition_entry, c.wipe_partition_entry),
        }
    }
}

impl Merge for Raid {
    fn merged(self, c: Self) -> Self {
        Raid {
            devices: keyed_strings(self.devices, c.devices),
            level: opt(self.level, c.level),
            name: c.name,
            options: append(self.options, c.options),
            spares: opt(self.spares, c.spares),
        }
    }
}

impl Merge for Luks {
    fn merged(self, c: Self) -> Self {
        Luks {
            cex: st(self.cex, c.cex),
            clevis: st(self.clevis, c.clevis),
            device: opt(self.device, c.device),
            discard: opt(self.discard, c.discard),
            key_file: st(self.key_file, c.key_file),
            label: opt(self.label, c.label),
            name: c.name,
            open_options: keyed_strings(self.open_options, c.open_options),
            options: append(self.options, c.options),
            uuid: opt(self.uuid, c.uuid),
            wipe_volume: opt(self.wipe_volume, c.wipe_volume),
        }
    }
}

impl Merge for Cex {
    fn merged(self, c: Self) -> Self {
        Cex {
            enabled: opt(self.enabled, c.enabled),
        }
    }
}

impl Merge for Clevis {
    fn merged(self, c: Self) -> Self {
        Clevis {
            custom: st(self.custom, c.custom),
            tang: keyed_alone(self.tang, c.tang, |t| t.url.clone()),
            threshold: opt(self.threshold, c.threshold),
            tpm2: opt(self.tpm2, c.tpm2),
        }
    }
}

impl Merge for ClevisCustom {
    fn merged(self, c: Self) -> Self {
        ClevisCustom {
            config: opt(self.config, c.config),
            needs_network: opt(self.needs_network, c.needs_network),
            pin: opt(self.pin, c.pin),
        }
    }
}

impl Merge for Tang {
    fn merged(self, c: Self) -> Self {
        Tang {
            advertisement: opt(self.advertisement, c.advertisement),
            thumbprint: opt(self.thumbprint, c.thumbprint),
            url: c.url,
        }
    }
}

impl Merge for Filesystem {
    fn merged(self, c: Self) -> Self {
        Filesystem {
            device: c.device,
            format: opt(self.format, c.format),
            label: opt(self.label, c.label),
            mount_options: append(self.mount_options, c.mount_options),
            options: append(self.options, c.options),
            path: opt(self.path, c.path),
            uuid: opt(self.uuid, c.uuid),
            wipe_filesystem: opt(self.wipe_filesystem, c.wipe_filesystem),
        }
    }
}

impl Merge for NodeUser {
    fn merged(self, c: Self) -> Self {
        NodeUser {
            id: opt(self.id, c.id),
            name: opt(self.name, c.name),
        }
    }
}

impl Merge for NodeGroup {
    fn merged(self, c: Self) -> Self {
        NodeGroup {
            id: opt(self.id, c.id),
            name: opt(self.name, c.name),
        }
    }
}

impl Merge for File {
    fn merged(self, c: Self) -> Self {
        File {
            group: st(self.group, c.group),
            overwrite: opt(self.overwrite, c.overwrite),
            path: c.path,
            user: st(self.user, c.user),
            append: append(self.append, c.append),
            contents: st(self.contents, c.contents),
            mode: opt(self.mode, c.mode),
        }
    }
}

impl Merge for Directory {
    fn merged(self, c: Self) -> Self {
        Directory {
            group: st(self.group, c.group),
            overwrite: opt(self.overwrite, c.overwrite),
            path: c.path,
            user: st(self.user, c.user),
            mode: opt(self.mode, c.mode),
        }
    }
}

impl Merge for Link {
    fn merged(self, c: Self) -> Self {
        Link {
            group: st(self.group, c.group),
            overwrite: opt(self.overwrite, c.overwrite),
            path: c.path,
            user: st(self.user, c.user),
            hard: opt(self.hard, c.hard),
            target: opt(self.target, c.target),
        }
    }
}

impl Merge for Systemd {
    fn merged(self, c: Self) -> Self {
        Systemd {
            units: keyed_alone(self.units, c.units, |u| u.name.clone()),
        }
    }
}

impl Merge for Unit {
    fn merged(self, c: Self) -> Self {
        Unit {
            contents: opt(self.contents, c.contents),
            dropins: keyed_alone(self.dropins, c.dropins, |d| d.name.clone()),
            enabled: opt(self.enabled, c.enabled),
            mask: opt(self.mask, c.mask),
            name: c.name,
        }
    }
}

impl Merge for Dropin {
    fn merged(self, c: Self) -> Self {
        Dropin {
            contents: opt(self.contents, c.contents),
            name: c.name,
        }
    }
}
