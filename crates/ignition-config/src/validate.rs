//! Validation of a config against the rules of its own spec version.
//!
//! The report is built as upstream builds it, in three passes over the
//! config, each in pre-order (a struct before its fields, fields in spec
//! order): first every type's own checks, then duplicate entries in keyed
//! lists, then (added by the parser) unused keys. Messages, severities and
//! paths are upstream's; where upstream reports a path that does not exist
//! in the JSON (a LUKS key file is reported at `.keys`), so does oxcore, and
//! the position falls back to the nearest enclosing value.

use std::collections::{HashMap, HashSet};

use crate::merge::partition_key;
use crate::report::{Path, Report, Seg, Severity};
use crate::types::*;
use crate::unit;
use crate::url;
use crate::version::Version;

/// Validates `config` with the rules of spec `version`: each type's checks,
/// then duplicate entries.
pub fn validate(config: &Config, version: Version) -> Report {
    let mut report = type_checks(config, version);
    report.extend(duplicates(config, version));
    report
}

/// The first pass alone: each type's own checks.
pub fn type_checks(config: &Config, version: Version) -> Report {
    let mut cx = Cx::new(version);
    checks::config(config, &mut cx);
    cx.report
}

/// The second pass alone: duplicate entries in keyed lists.
pub fn duplicates(config: &Config, version: Version) -> Report {
    let mut cx = Cx::new(version);
    dups::config(config, &mut cx);
    cx.report
}

/// Walk state: the spec version, where we are, and what was found.
struct Cx {
    v: Version,
    path: Vec<Seg>,
    report: Report,
}

impl Cx {
    fn new(v: Version) -> Cx {
        Cx {
            v,
            path: Vec::with_capacity(16),
            report: Report::default(),
        }
    }

    fn add(&mut self, severity: Severity, rel: &[Seg], message: impl Into<String>) {
        let mut p = self.path.clone();
        p.extend_from_slice(rel);
        self.report.push(severity, Path(p), message);
    }

    fn err(&mut self, rel: &[Seg], message: impl Into<String>) {
        self.add(Severity::Error, rel, message);
    }

    fn warn(&mut self, rel: &[Seg], message: impl Into<String>) {
        self.add(Severity::Warning, rel, message);
    }

    /// Runs `f` one level down.
    fn at(&mut self, seg: Seg, f: impl FnOnce(&mut Cx)) {
        self.path.push(seg);
        f(self);
        self.path.pop();
    }

    fn key(&mut self, k: &'static str, f: impl FnOnce(&mut Cx)) {
        self.at(Seg::Key(k), f);
    }

    /// Runs `f` on each element of a list at key `k`.
    fn each<T>(&mut self, k: &'static str, items: &[T], mut f: impl FnMut(&T, &mut Cx)) {
        if items.is_empty() {
            return;
        }
        self.path.push(Seg::Key(k));
        for (i, item) in items.iter().enumerate() {
            self.path.push(Seg::Index(i));
            f(item, self);
            self.path.pop();
        }
        self.path.pop();
    }
}

const K: fn(&'static str) -> Seg = Seg::Key;
const I: fn(usize) -> Seg = Seg::Index;

fn not_empty(s: &Option<String>) -> bool {
    s.as_deref().is_some_and(|s| !s.is_empty())
}

fn nil_or_empty(s: &Option<String>) -> bool {
    !not_empty(s)
}

fn is_true(b: &Option<bool>) -> bool {
    *b == Some(true)
}

/// Go's `path.Clean`: the shortest lexically equivalent path.
pub fn clean_path(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            s => parts.push(s),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

/// Upstream's `validatePath`.
fn path_error(p: &str) -> Option<&'static str> {
    if p.is_empty() {
        Some("path not specified")
    } else if !p.starts_with('/') {
        Some("path not absolute")
    } else if clean_path(p) != p {
        Some("path is not fully simplified")
    } else {
        None
    }
}

/// Go's `path.Ext`.
fn ext(name: &str) -> &str {
    let tail = &name[name.rfind('/').map_or(0, |i| i + 1)..];
    tail.rfind('.').map_or("", |i| &tail[i..])
}

/// The checks of each type, pass one.
mod checks {
    use super::*;

    pub(super) fn config(c: &Config, cx: &mut Cx) {
        systemd_conflicts(c, cx);
        cx.key("ignition", |cx| ignition(&c.ignition, cx));
        cx.key("storage", |cx| storage(&c.storage, cx));
        cx.key("systemd", |cx| systemd(&c.systemd, cx));
    }

    /// Files, directories and links may not sit where a unit or dropin is
    /// written.
    fn systemd_conflicts(c: &Config, cx: &mut Cx) {
        let mut unit_paths: HashSet<String> = HashSet::new();
        for u in &c.systemd.units {
            if not_empty(&u.contents) {
                unit_paths.insert(format!("/etc/systemd/system/{}", u.name));
            }
            for d in &u.dropins {
                if not_empty(&d.contents) {
                    unit_paths.insert(format!("/etc/systemd/system/{}.d/{}", u.name, d.name));
                }
            }
        }
        if unit_paths.is_empty() {
            return;
        }
        let msg = "path conflicts with systemd unit or dropin";
        let s = &c.storage;
        for (i, f) in s.files.iter().enumerate() {
            if unit_paths.contains(&f.path) {
                cx.err(&[K("storage"), K("files"), I(i), K("path")], msg);
            }
        }
        for (i, d) in s.directories.iter().enumerate() {
            if unit_paths.contains(&d.path) {
                cx.err(&[K("storage"), K("directories"), I(i), K("path")], msg);
            }
        }
        for (i, l) in s.links.iter().enumerate() {
            if unit_paths.contains(&l.path) {
                cx.err(&[K("storage"), K("links"), I(i), K("path")], msg);
            }
        }
    }

    fn ignition(ig: &Ignition, cx: &mut Cx) {
        cx.key("config", |cx| {
            if cx.v >= Version::V3_1 {
                for (i, r) in ig.config.merge.iter().enumerate() {
                    if let Err(e) = required_source(r, cx.v) {
                        cx.err(&[K("merge"), I(i)], e);
                    }
                }
            }
            cx.each("merge", &ig.config.merge, |r, cx| {
                resource(r, Kind::Config, cx)
            });
            cx.key("replace", |cx| {
                resource(&ig.config.replace, Kind::Config, cx)
            });
        });
        if cx.v >= Version::V3_1 {
            cx.key("proxy", |cx| proxy(&ig.proxy, cx));
        }
        cx.key("security", |cx| {
            cx.key("tls", |cx| {
                let cas = &ig.security.tls.certificate_authorities;
                if cx.v >= Version::V3_1 {
                    for (i, r) in cas.iter().enumerate() {
                        if let Err(e) = required_source(r, cx.v) {
                            cx.err(&[K("certificateAuthorities"), I(i)], e);
                        }
                    }
                }
                cx.each("certificateAuthorities", cas, |r, cx| {
                    resource(r, Kind::Ca, cx)
                });
            });
        });
    }

    fn required_source(r: &Resource, v: Version) -> Result<(), String> {
        match r.source.as_deref() {
            None | Some("") => Err("source is required".into()),
            Some(s) => url::validate(s, v).map_err(|e| e.to_string()),
        }
    }

    fn proxy(p: &Proxy, cx: &mut Cx) {
        let check = |s: &Option<String>, key: &'static str, http_ok: bool, cx: &mut Cx| {
            let Some(s) = s else { return };
            match url::parse(s) {
                None => cx.err(&[K(key)], "unable to parse url"),
                Some(u) if u.scheme != "http" && u.scheme != "https" => {
                    cx.err(&[K(key)], "proxies must be http(s)")
                }
                Some(u) if u.scheme == "http" && !http_ok => cx.warn(
                    &[K(key)],
                    "insecure plaintext HTTP proxy specified for HTTPS resources",
                ),
                Some(_) => {}
            }
        };
        check(&p.http_proxy, "httpProxy", true, cx);
        check(&p.https_proxy, "httpsProxy", false, cx);
    }

    /// Where a resource is used: in 3.0 configs and CAs were separate types
    /// with fewer checks.
    #[derive(Clone, Copy, PartialEq, Eq)]
    pub(super) enum Kind {
        Config,
        Ca,
        Contents,
    }

    fn resource(r: &Resource, kind: Kind, cx: &mut Cx) {
        if cx.v == Version::V3_0 && kind != Kind::Contents {
            // ConfigReference and CaReference: only the URL. A CA's source is
            // a plain string there, so an empty one is an invalid scheme.
            let src = match kind {
                Kind::Ca => Some(r.source.clone().unwrap_or_default()),
                _ => r.source.clone().filter(|s| !s.is_empty()),
            };
            if let Some(s) = src
                && let Err(e) = url::validate(&s, cx.v)
            {
                cx.err(&[K("source")], e.to_string());
            }
            verification(&r.verification, cx);
            return;
        }
        if let Some(c) = r.compression.as_deref()
            && !c.is_empty()
            && c != "gzip"
        {
            cx.err(&[K("compression")], "invalid compression method");
        }
        if r.verification.hash.is_some() && r.source.is_none() {
            cx.err(
                &[K("verification"), K("hash")],
                "source must be specified if verification is specified",
            );
        }
        if let Some(s) = r.source.as_deref().filter(|s| !s.is_empty())
            && let Err(e) = url::validate(s, cx.v)
        {
            cx.err(&[K("source")], e.to_string());
        }
        if cx.v >= Version::V3_1 && !r.http_headers.is_empty() {
            match r
                .source
                .as_deref()
                .filter(|s| !s.is_empty())
                .and_then(url::parse)
            {
                None => cx.err(&[K("httpHeaders")], "unable to parse url"),
                Some(u) if u.scheme != "http" && u.scheme != "https" => cx.err(
                    &[K("httpHeaders")],
                    "cannot use HTTP headers with this source scheme",
                ),
                Some(_) => {}
            }
            cx.each("httpHeaders", &r.http_headers, |h, cx| {
                if h.name.is_empty() {
                    cx.err(&[K("name")], "HTTP header name can't be empty");
                }
                if h.value.as_deref() == Some("") {
                    cx.err(&[K("value")], "unable to parse HTTP header");
                }
            });
        }
        verification(&r.verification, cx);
    }

    fn verification(v: &Verification, cx: &mut Cx) {
        let Some(hash) = &v.hash else { return };
        let at = [K("verification"), K("hash")];
        let Some((function, sum)) = hash.split_once('-') else {
            cx.err(&at, "malformed hash specifier");
            return;
        };
        let len = match function {
            "sha512" => 128,
            "sha256" if cx.v >= Version::V3_1 => 64,
            _ => {
                cx.err(&at, "unrecognized hash function");
                return;
            }
        };
        if sum.len() != len {
            cx.err(&at, "incorrect size for hash sum");
        }
    }

    fn storage(s: &Storage, cx: &mut Cx) {
        cross_checks(s, cx);
        cx.each("directories", &s.directories, |d, cx| {
            node_path(&d.path, cx);
            mode(d.mode, cx);
            owner(d.group.id, &d.group.name, "group", cx);
            owner(d.user.id, &d.user.name, "user", cx);
        });
        cx.each("disks", &s.disks, disk);
        cx.each("files", &s.files, |f, cx| {
            node_path(&f.path, cx);
            mode(f.mode, cx);
            if is_true(&f.overwrite) && f.contents.source.is_none() {
                cx.err(
                    &[K("overwrite")],
                    "overwrite must be false if source is unspecified",
                );
            }
            owner(f.group.id, &f.group.name, "group", cx);
            owner(f.user.id, &f.user.name, "user", cx);
            cx.each("append", &f.append, |r, cx| resource(r, Kind::Contents, cx));
            cx.key("contents", |cx| resource(&f.contents, Kind::Contents, cx));
        });
        cx.each("filesystems", &s.filesystems, filesystem);
        cx.each("links", &s.links, |l, cx| {
            node_path(&l.path, cx);
            owner(l.group.id, &l.group.name, "group", cx);
            owner(l.user.id, &l.user.name, "user", cx);
        });
        if cx.v >= Version::V3_2 {
            cx.each("luks", &s.luks, luks);
        }
        cx.each("raid", &s.raid, raid);
    }

    fn node_path(p: &str, cx: &mut Cx) {
        if let Some(e) = path_error(p) {
            cx.err(&[K("path")], e);
        }
    }

    fn mode(m: Option<i64>, cx: &mut Cx) {
        let Some(m) = m else { return };
        if !(0..=0o7777).contains(&m) {
            cx.err(&[K("mode")], "illegal file mode");
        }
        if cx.v < Version::V3_6 && (m as u32) & 0o7000 != 0 {
            cx.warn(
                &[K("mode")],
                "setuid/setgid/sticky bits are not supported or functional in spec versions older than 3.6.0",
            );
        }
    }

    fn owner(id: Option<i64>, name: &Option<String>, key: &'static str, cx: &mut Cx) {
        if id.is_some() && not_empty(name) {
            cx.err(&[K(key)], "cannot set both id and name");
        }
    }

    /// Storage-wide checks: nodes under configured links, link targets,
    /// filesystems on partitioned or wiped disks.
    fn cross_checks(s: &Storage, cx: &mut Cx) {
        let under_link = |p: &str| {
            s.links
                .iter()
                .filter(move |l| p.starts_with(&format!("{}/", l.path)))
                .count()
        };
        if !s.links.is_empty() {
            for (i, d) in s.directories.iter().enumerate() {
                for _ in 0..under_link(&d.path) {
                    cx.err(
                        &[K("directories"), I(i)],
                        "directory path includes link in config",
                    );
                }
            }
            for (i, f) in s.files.iter().enumerate() {
                for _ in 0..under_link(&f.path) {
                    cx.err(&[K("files"), I(i)], "file path includes link in config");
                }
            }
        }
        for (i, l) in s.links.iter().enumerate() {
            for _ in 0..under_link(&l.path) {
                cx.err(&[K("links"), I(i)], "link path includes link in config");
            }
            if cx.v >= Version::V3_3 && nil_or_empty(&l.target) {
                cx.err(&[K("links"), I(i), K("target")], "link target is required");
                continue;
            }
            if !is_true(&l.hard) {
                continue;
            }
            let target = l.target.clone().unwrap_or_default();
            let mut t = clean_path(&target);
            if !t.starts_with('/') {
                t = clean_path(&format!("{}/{}", l.path, target));
            }
            for d in &s.directories {
                if d.path == t {
                    cx.err(&[K("links"), I(i)], "hard link target is a directory");
                }
            }
            let msg = "user/group ignored for hard link";
            if l.user.id.is_some() {
                cx.warn(&[K("links"), I(i), K("user"), K("id")], msg);
            }
            if l.user.name.is_some() {
                cx.warn(&[K("links"), I(i), K("user"), K("name")], msg);
            }
            if l.group.id.is_some() {
                cx.warn(&[K("links"), I(i), K("group"), K("id")], msg);
            }
            if l.group.name.is_some() {
                cx.warn(&[K("links"), I(i), K("group"), K("name")], msg);
            }
        }
        if !s.disks.is_empty() {
            let disks: HashMap<&str, &Disk> =
                s.disks.iter().map(|d| (d.device.as_str(), d)).collect();
            for (i, f) in s.filesystems.iter().enumerate() {
                let Some(d) = disks.get(f.device.as_str()) else {
                    continue;
                };
                let at = [K("filesystems"), I(i), K("device")];
                if !d.partitions.is_empty() {
                    cx.warn(&at, "filesystem overwrites partitioned device");
                } else if is_true(&d.wipe_table) && !is_true(&f.wipe_filesystem) {
                    cx.warn(
                        &at,
                        "device matches disk with wipeTable enabled; filesystem will be wiped",
                    );
                }
            }
        }
    }

    fn disk(d: &Disk, cx: &mut Cx) {
        if d.device.is_empty() {
            cx.err(&[K("device")], "disk device is required");
        } else {
            if let Some(e) = path_error(&d.device) {
                cx.err(&[K("device")], e);
            }
            partition_cross_checks(&d.partitions, cx);
        }
        cx.each("partitions", &d.partitions, partition);
    }

    /// Upstream's overlap check: the first partition `p` (with an extent)
    /// that overlaps another, then the first such other `o`, reported.
    /// `o` overlaps `p` when it covers `p`'s start or end, or lies strictly
    /// inside it. Upstream compares every pair; this takes O(n log n).
    pub(super) fn first_overlap(extents: &[Option<(i64, i64)>]) -> Option<usize> {
        let overlaps = |(ps, pe): (i64, i64), (os, oe): (i64, i64)| {
            (os..=oe).contains(&ps) || (os..=oe).contains(&pe) || (ps < os && pe > oe)
        };
        let all: Vec<(i64, i64)> = extents.iter().flatten().copied().collect();
        // Well-formed extents, for counting how many cover a point.
        let mut starts: Vec<i64> = all.iter().filter(|(s, e)| s <= e).map(|e| e.0).collect();
        let mut ends: Vec<i64> = all.iter().filter(|(s, e)| s <= e).map(|e| e.1).collect();
        starts.sort_unstable();
        ends.sort_unstable();
        let covering =
            |x: i64| starts.partition_point(|&s| s <= x) - ends.partition_point(|&e| e < x);
        // By start, descending: the least end among extents starting after
        // a point.
        let mut by_start = all.clone();
        by_start.sort_unstable_by_key(|e| std::cmp::Reverse(e.0));
        let mut least_end = Vec::with_capacity(by_start.len());
        let mut least = i64::MAX;
        for &(_, e) in &by_start {
            least = least.min(e);
            least_end.push(least);
        }
        let inside = |(ps, pe): (i64, i64)| {
            let n = by_start.partition_point(|&(s, _)| s > ps);
            n > 0 && least_end[n - 1] < pe
        };
        let pi = extents.iter().position(|p| {
            let Some((ps, pe)) = *p else { return false };
            let own = |x: i64| usize::from(ps <= pe && (ps..=pe).contains(&x));
            covering(ps) > own(ps) || covering(pe) > own(pe) || inside((ps, pe))
        })?;
        let p = extents[pi]?;
        extents
            .iter()
            .enumerate()
            .position(|(oi, o)| oi != pi && o.is_some_and(|o| overlaps(p, o)))
    }

    fn partition_cross_checks(parts: &[Partition], cx: &mut Cx) {
        // Numbers: of all numbers used twice, report the one whose second
        // use comes first.
        let mut first_use: HashMap<i64, usize> = HashMap::new();
        let mut collision = None;
        for (i, p) in parts.iter().enumerate() {
            if p.number == 0 {
                continue;
            }
            if first_use.contains_key(&p.number) {
                collision = Some(i);
                break;
            }
            first_use.insert(p.number, i);
        }
        if let Some(i) = collision {
            cx.err(&[K("partitions"), I(i)], "partition numbers collide");
        }
        // Overlaps among partitions with a start and a size.
        let extent = |p: &Partition| match (p.start_mib, p.size_mib) {
            (Some(start), Some(size)) if start != 0 => {
                Some((start, if size == 0 { start } else { start + size - 1 }))
            }
            _ => None,
        };
        if let Some(oi) = first_overlap(&parts.iter().map(extent).collect::<Vec<_>>()) {
            cx.err(&[K("partitions"), I(oi)], "partitions overlap");
        }
        // Deleting a partition while creating one with number 0 is refused
        // (Ignition 2.26; the engine that lifts this is not released yet).
        if parts.iter().any(|p| p.should_exist == Some(false))
            && parts.iter().any(|p| p.number == 0)
        {
            cx.err(
                &[K("partitions")],
                "shouldExist is false for a partition and other partition(s) has start or size 0",
            );
        }
        let mut labels: HashSet<&str> = HashSet::new();
        for (i, p) in parts.iter().enumerate() {
            if let Some(l) = &p.label
                && !labels.insert(l)
            {
                cx.err(
                    &[K("partitions"), I(i)],
                    "cannot use the same partition label twice",
                );
                break;
            }
        }
    }

    fn partition(p: &Partition, cx: &mut Cx) {
        if p.should_exist == Some(false)
            && (p.label.is_some()
                || not_empty(&p.type_guid)
                || not_empty(&p.guid)
                || p.start_mib.is_some()
                || p.size_mib.is_some())
        {
            cx.err(
                &[],
                "shouldExist specified false with other options also specified",
            );
        }
        if p.number == 0 && p.label.is_none() {
            cx.err(&[], "a partition number >= 1 or a label must be specified");
        }
        if let Some(l) = &p.label {
            if l.len() > 36 {
                cx.err(
                    &[K("label")],
                    "partition labels may not exceed 36 characters",
                );
            } else if l.contains(':') {
                cx.err(
                    &[K("label")],
                    "partition label will be truncated to text before the colon",
                );
            }
        }
        for (key, v) in [("guid", &p.guid), ("typeGuid", &p.type_guid)] {
            if let Some(g) = v
                && !g.is_empty()
                && !is_guid(g)
            {
                cx.err(
                    &[K(key)],
                    "doesn't match the form \"01234567-89AB-CDEF-EDCB-A98765432101\"",
                );
            }
        }
    }

    fn is_guid(g: &str) -> bool {
        let b = g.as_bytes();
        b.len() == 36
            && b.iter().enumerate().all(|(i, c)| match i {
                8 | 13 | 18 | 23 => *c == b'-',
                _ => c.is_ascii_hexdigit(),
            })
    }

    fn filesystem(f: &Filesystem, cx: &mut Cx) {
        if let Some(p) = f.path.as_deref().filter(|p| !p.is_empty())
            && let Some(e) = path_error(p)
        {
            cx.err(&[K("path")], e);
        }
        let format = f.format.as_deref().unwrap_or("");
        let virtiofs = cx.v >= Version::V3_7Exp && format == "virtiofs";
        if virtiofs {
            if f.device.is_empty() {
                cx.err(&[K("device")], "device not specified");
            } else if f.device.len() > 36 {
                cx.err(
                    &[K("device")],
                    "virtiofs device tag cannot be longer than 36 bytes",
                );
            }
        } else if let Some(e) = path_error(&f.device) {
            cx.err(&[K("device")], e);
        }
        if format.is_empty() {
            if not_empty(&f.path)
                || not_empty(&f.label)
                || not_empty(&f.uuid)
                || is_true(&f.wipe_filesystem)
                || !f.mount_options.is_empty()
                || !f.options.is_empty()
            {
                cx.err(
                    &[K("format")],
                    "format cannot be empty when path, label, uuid, wipeFilesystem, options, or mountOptions is specified",
                );
            }
        } else {
            let known = match format {
                "ext4" | "btrfs" | "xfs" | "swap" | "vfat" => true,
                "none" => cx.v >= Version::V3_3,
                "virtiofs" => cx.v >= Version::V3_7Exp,
                _ => false,
            };
            if !known {
                cx.err(&[K("format")], "invalid filesystem format");
            }
        }
        if let Some(label) = f.label.as_deref().filter(|l| !l.is_empty()) {
            let limit = match format {
                "ext4" => Some(16),
                "btrfs" => Some(256),
                "xfs" => Some(12),
                "swap" => Some(15),
                "vfat" => Some(11),
                _ => None,
            };
            if format.is_empty() {
                cx.err(
                    &[K("label")],
                    "filesystem must specify format if label is specified",
                );
            } else if let Some(limit) = limit.filter(|&n| label.len() > n) {
                cx.err(
                    &[K("label")],
                    format!("filesystem labels cannot be longer than {limit} characters when using {format}"),
                );
            } else if virtiofs {
                cx.err(
                    &[K("label")],
                    "filesystem labels cannot be set when using virtiofs",
                );
            }
        }
        if virtiofs {
            if not_empty(&f.uuid) {
                cx.err(
                    &[K("uuid")],
                    "filesystem uuid cannot be set for non-block-device filesystems",
                );
            }
            if is_true(&f.wipe_filesystem) {
                cx.err(
                    &[K("wipeFilesystem")],
                    "wipeFilesystem cannot be set for non-block-device filesystems",
                );
            }
            if !f.options.is_empty() {
                cx.err(
                    &[K("options")],
                    "filesystem options (mkfs) cannot be set for non-block-device filesystems",
                );
            }
        }
    }

    fn luks(l: &Luks, cx: &mut Cx) {
        if l.name.contains('/') {
            cx.err(&[K("name")], "device names cannot contain slashes");
        }
        if let Some(label) = &l.label
            && label.len() > 47
        {
            cx.err(
                &[K("label")],
                "luks device labels cannot be longer than 47 characters",
            );
        }
        match l.device.as_deref() {
            None | Some("") => cx.err(&[K("device")], "disk device is required"),
            Some(d) => {
                if let Some(e) = path_error(d) {
                    cx.err(&[K("device")], e);
                }
            }
        }
        let clevis = &l.clevis;
        let custom = &clevis.custom;
        let custom_set = if cx.v == Version::V3_2 {
            custom.pin.is_some() || custom.config.is_some() || custom.needs_network.is_some()
        } else {
            not_empty(&custom.pin)
        };
        let others = !clevis.tang.is_empty()
            || is_true(&clevis.tpm2)
            || clevis.threshold.is_some_and(|t| t != 0);
        if custom_set && others {
            cx.err(
                &[K("clevis")],
                "cannot use custom clevis config with tpm2, tang, or threshold",
            );
        }
        if let Some(src) = l.key_file.source.as_deref().filter(|s| !s.is_empty())
            && url::validate(src, cx.v).is_err()
        {
            // Upstream reports this at a path that does not exist.
            cx.err(&[K("keys")], "invalid key-file source");
        }
        if cx.v >= Version::V3_5 && is_true(&l.cex.enabled) {
            if not_empty(&custom.pin) || others {
                cx.err(&[K("cex")], "cannot use cex with clevis");
            }
            if not_empty(&l.key_file.source) {
                cx.err(&[K("cex")], "cannot use key file with cex");
            }
        }
        cx.key("clevis", |cx| {
            cx.key("custom", |cx| clevis_custom(custom, cx));
            cx.each("tang", &clevis.tang, tang);
        });
        cx.key("keyFile", |cx| resource(&l.key_file, Kind::Contents, cx));
    }

    fn clevis_custom(c: &ClevisCustom, cx: &mut Cx) {
        const PINS: [&str; 3] = ["tpm2", "tang", "sss"];
        if cx.v == Version::V3_2 {
            let pin = c.pin.as_deref().unwrap_or("");
            let config = c.config.as_deref().unwrap_or("");
            if pin.is_empty() && config.is_empty() {
                return;
            }
            if !PINS.contains(&pin) {
                cx.err(&[K("pin")], "unsupported clevis pin");
            }
            if config.is_empty() {
                cx.err(&[K("config")], "missing required custom clevis config");
            }
            return;
        }
        if nil_or_empty(&c.pin) && nil_or_empty(&c.config) && !is_true(&c.needs_network) {
            return;
        }
        match c.pin.as_deref() {
            None | Some("") => cx.err(&[K("pin")], "missing required custom clevis pin"),
            Some(p) if cx.v < Version::V3_6 && !PINS.contains(&p) => {
                cx.err(&[K("pin")], "unsupported clevis pin")
            }
            Some(_) => {}
        }
        if nil_or_empty(&c.config) {
            cx.err(&[K("config")], "missing required custom clevis config");
        }
    }

    fn tang(t: &Tang, cx: &mut Cx) {
        match url::parse(&t.url) {
            None => cx.err(&[K("url")], "unable to parse url"),
            Some(u) if u.scheme != "http" && u.scheme != "https" => {
                cx.err(&[K("url")], "invalid url scheme")
            }
            Some(_) => {}
        }
        if nil_or_empty(&t.thumbprint) {
            cx.err(&[K("thumbprint")], "thumbprint is required");
        }
        if cx.v >= Version::V3_4
            && let Some(a) = t.advertisement.as_deref().filter(|a| !a.is_empty())
            && serde_json::from_str::<serde_json::Value>(a).is_err()
        {
            cx.err(&[K("advertisement")], "advertisement is not valid JSON");
        }
    }

    fn raid(r: &Raid, cx: &mut Cx) {
        let level = r.level.as_deref().unwrap_or("");
        if cx.v >= Version::V3_3 && level.is_empty() {
            cx.err(&[K("level")], "raid level is required");
        } else {
            match level {
                "linear" | "raid0" | "0" | "stripe" => {
                    if r.spares.is_some_and(|s| s != 0) {
                        cx.err(
                            &[K("level")],
                            "spares unsupported for linear and raid0 arrays",
                        );
                    }
                }
                "raid1" | "1" | "mirror" | "raid4" | "4" | "raid5" | "5" | "raid6" | "6"
                | "raid10" | "10" => {}
                _ => cx.err(&[K("level")], "unrecognized raid level"),
            }
        }
        if r.devices.is_empty() {
            cx.err(&[K("devices")], "raid devices required");
        }
        for (j, d) in r.devices.iter().enumerate() {
            if let Some(e) = path_error(d) {
                cx.err(&[K("devices"), I(j)], e);
            }
        }
    }

    fn systemd(s: &Systemd, cx: &mut Cx) {
        templates_without_install(s, cx);
        cx.each("units", &s.units, |u, cx| {
            const EXTS: [&str; 12] = [
                ".service", ".socket", ".device", ".mount", ".automount", ".swap", ".target",
                ".path", ".timer", ".snapshot", ".slice", ".scope",
            ];
            if !EXTS.contains(&ext(&u.name)) {
                cx.err(&[K("name")], "invalid systemd unit extension");
            }
            if let Some(contents) = &u.contents {
                match unit::option_sections(contents) {
                    Err(e) => cx.err(&[K("contents")], format!("invalid unit content: {e}")),
                    Ok(sections) => {
                        if is_true(&u.enabled)
                            && !contents.is_empty()
                            && !sections.iter().any(|s| s == "Install")
                        {
                            cx.warn(
                                &[K("contents")],
                                format!(
                                    "unit {} is enabled, but has no install section so enable does nothing",
                                    util::go_quote(&u.name)
                                ),
                            );
                        }
                    }
                }
            }
            cx.each("dropins", &u.dropins, |d, cx| {
                if let Some(contents) = &d.contents
                    && let Err(e) = unit::option_sections(contents)
                {
                    cx.err(&[K("contents")], format!("invalid unit content: {e}"));
                }
                if ext(&d.name) != ".conf" {
                    cx.err(&[K("name")], "invalid systemd drop-in extension");
                }
            });
        });
    }

    /// An enabled instance of a template whose unit file has no `[Install]`
    /// section does nothing.
    fn templates_without_install(s: &Systemd, cx: &mut Cx) {
        if !s
            .units
            .iter()
            .any(|u| is_true(&u.enabled) && u.name.contains('@'))
        {
            return;
        }
        let by_name: HashMap<&str, &Unit> = s.units.iter().map(|u| (u.name.as_str(), u)).collect();
        for (k, u) in s.units.iter().enumerate() {
            if !is_true(&u.enabled) {
                continue;
            }
            let Some(template) = template_of(&u.name) else {
                continue;
            };
            let Some(t) = by_name.get(template.as_str()) else {
                continue;
            };
            let Some(contents) = t.contents.as_deref().filter(|c| !c.is_empty()) else {
                continue;
            };
            if unit::has_install_section(contents) == Some(false) {
                cx.warn(
                    &[K("units"), I(k), K("contents")],
                    format!(
                        "template unit {} for {} doesn't have Install section",
                        util::go_quote(&template),
                        util::go_quote(&u.name)
                    ),
                );
            }
        }
    }

    /// `foo@bar.service` → `foo@.service`, as upstream's
    /// `^(.+?)@(.+?)\.service$` match.
    fn template_of(name: &str) -> Option<String> {
        let stem = name.strip_suffix(".service")?;
        if name.contains('\n') {
            return None;
        }
        // The shortest non-empty prefix before an '@' that leaves a
        // non-empty instance.
        let at = stem
            .char_indices()
            .skip(1)
            .find(|&(i, c)| c == '@' && i + 1 < stem.len())?
            .0;
        Some(format!("{}@.service", &stem[..at]))
    }
}

/// Duplicate entries in keyed lists, pass two.
mod dups {
    use super::*;

    /// Reports every entry whose key an earlier entry (in this list or an
    /// earlier list sharing the key space) already used.
    fn check<'a, T, K: Eq + std::hash::Hash>(
        seen: &mut HashSet<K>,
        key: &'static str,
        items: &'a [T],
        key_of: impl Fn(&'a T) -> K,
        cx: &mut Cx,
    ) {
        for (i, item) in items.iter().enumerate() {
            if !seen.insert(key_of(item)) {
                cx.err(&[K(key), I(i)], "duplicate entry defined");
            }
        }
    }

    fn list<'a, T, K: Eq + std::hash::Hash>(
        key: &'static str,
        items: &'a [T],
        key_of: impl Fn(&'a T) -> K,
        cx: &mut Cx,
    ) {
        if items.len() > 1 {
            check(&mut HashSet::new(), key, items, key_of, cx);
        }
    }

    fn source(r: &Resource) -> &str {
        r.source.as_deref().unwrap_or("")
    }

    pub(super) fn config(c: &Config, cx: &mut Cx) {
        cx.key("ignition", |cx| {
            let ig = &c.ignition;
            cx.key("config", |cx| {
                list("merge", &ig.config.merge, source, cx);
                cx.each("merge", &ig.config.merge, resource);
                cx.key("replace", |cx| resource(&ig.config.replace, cx));
            });
            if cx.v >= Version::V3_1 {
                cx.key("proxy", |cx| {
                    list("noProxy", &ig.proxy.no_proxy, String::as_str, cx)
                });
            }
            cx.key("security", |cx| {
                cx.key("tls", |cx| {
                    let cas = &ig.security.tls.certificate_authorities;
                    list("certificateAuthorities", cas, source, cx);
                    cx.each("certificateAuthorities", cas, resource);
                });
            });
        });
        if cx.v >= Version::V3_3 {
            cx.key("kernelArguments", |cx| {
                let ka = &c.kernel_arguments;
                let mut seen = HashSet::new();
                check(
                    &mut seen,
                    "shouldExist",
                    &ka.should_exist,
                    String::as_str,
                    cx,
                );
                check(
                    &mut seen,
                    "shouldNotExist",
                    &ka.should_not_exist,
                    String::as_str,
                    cx,
                );
            });
        }
        cx.key("passwd", |cx| {
            list("groups", &c.passwd.groups, |g| g.name.as_str(), cx);
            list("users", &c.passwd.users, |u| u.name.as_str(), cx);
            cx.each("users", &c.passwd.users, |u, cx| {
                list("groups", &u.groups, String::as_str, cx);
                list(
                    "sshAuthorizedKeys",
                    &u.ssh_authorized_keys,
                    String::as_str,
                    cx,
                );
            });
        });
        cx.key("storage", |cx| storage(&c.storage, cx));
        cx.key("systemd", |cx| {
            list("units", &c.systemd.units, |u| u.name.as_str(), cx);
            cx.each("units", &c.systemd.units, |u, cx| {
                list("dropins", &u.dropins, |d| d.name.as_str(), cx);
            });
        });
    }

    fn resource(r: &Resource, cx: &mut Cx) {
        if cx.v >= Version::V3_1 {
            list("httpHeaders", &r.http_headers, |h| h.name.as_str(), cx);
        }
    }

    fn storage(s: &Storage, cx: &mut Cx) {
        // Directories, files and links share the path as key; the lists are
        // checked in spec order, interleaved with the others.
        let mut nodes: HashSet<&str> = HashSet::new();
        check(
            &mut nodes,
            "directories",
            &s.directories,
            |d| d.path.as_str(),
            cx,
        );
        list("disks", &s.disks, |d| d.device.as_str(), cx);
        check(&mut nodes, "files", &s.files, |f| f.path.as_str(), cx);
        list("filesystems", &s.filesystems, |f| f.device.as_str(), cx);
        check(&mut nodes, "links", &s.links, |l| l.path.as_str(), cx);
        if cx.v >= Version::V3_2 {
            list("luks", &s.luks, |l| l.name.as_str(), cx);
        }
        list("raid", &s.raid, |r| r.name.as_str(), cx);
        cx.each("disks", &s.disks, |d, cx| {
            list("partitions", &d.partitions, partition_key, cx)
        });
        cx.each("files", &s.files, |f, cx| {
            cx.each("append", &f.append, resource);
            cx.key("contents", |cx| resource(&f.contents, cx));
        });
        if cx.v >= Version::V3_2 {
            cx.each("luks", &s.luks, |l, cx| {
                if cx.v >= Version::V3_4 {
                    list("openOptions", &l.open_options, String::as_str, cx);
                }
                cx.key("clevis", |cx| {
                    list("tang", &l.clevis.tang, |t| t.url.as_str(), cx)
                });
                cx.key("keyFile", |cx| resource(&l.key_file, cx));
            });
        }
        cx.each("raid", &s.raid, |r, cx| {
            list("devices", &r.devices, String::as_str, cx)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_path_clean() {
        for (i, o) in [
            ("/a/b", "/a/b"),
            ("/a/", "/a"),
            ("/a//b", "/a/b"),
            ("/./a", "/a"),
            ("/a/..", "/"),
            ("/..", "/"),
            ("a/../..", ".."),
            ("", "."),
        ] {
            assert_eq!(clean_path(i), o, "{i}");
        }
    }

    #[test]
    fn extensions() {
        assert_eq!(ext("a.service"), ".service");
        assert_eq!(ext("a"), "");
        assert_eq!(ext("x.d/a"), "");
    }
}

#[cfg(test)]
mod overlap_tests {
    use proptest::prelude::*;

    /// Upstream's pairwise check.
    fn brute(extents: &[Option<(i64, i64)>]) -> Option<usize> {
        for (pi, p) in extents.iter().enumerate() {
            let Some((ps, pe)) = *p else { continue };
            for (oi, o) in extents.iter().enumerate() {
                if oi == pi {
                    continue;
                }
                let Some((os, oe)) = *o else { continue };
                if (os..=oe).contains(&ps) || (os..=oe).contains(&pe) || (ps < os && pe > oe) {
                    return Some(oi);
                }
            }
        }
        None
    }

    proptest! {
        #[test]
        fn first_overlap_is_upstreams(
            extents in proptest::collection::vec(
                proptest::option::of((0i64..40, -5i64..15).prop_map(|(s, len)| (s, s + len))),
                0..12,
            )
        ) {
            prop_assert_eq!(super::checks::first_overlap(&extents), brute(&extents));
        }
    }
}
