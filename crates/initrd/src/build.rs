//! Building the initramfs from an OS tree: the static oxcore binary as
//! `/init`, the kernel modules the first boot needs (with their
//! dependencies from `modules.dep`, in load order), the tools Ignition's
//! disks and files stages run with the libraries their ELF headers name,
//! and `/etc/initrd-release`. Everything comes from the tree itself, never
//! from the build host; a path in the tree is resolved inside the tree,
//! so no symbolic link in it can pull a host file in.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{Error, Result, cpio, elf};

/// The modules the first boot may need: virtual and common disks, the
/// filesystems Ignition makes, QEMU's fw_cfg (the `qemu` platform's
/// config), loop devices. Missing ones (not built for this kernel) are
/// reported, not fatal; built-in ones need nothing.
pub const DEFAULT_MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_blk",
    "virtio_scsi",
    "sd_mod",
    "sr_mod",
    "ahci",
    "nvme",
    "ext4",
    "xfs",
    "vfat",
    "nls_cp437",
    "nls_ascii",
    "nls_utf8",
    "qemu_fw_cfg",
    "loop",
];

/// Tools the engine and /init run, which must be there.
pub const REQUIRED_TOOLS: &[&str] = &[
    "blkid",
    "mount",
    "umount",
    "sgdisk",
    "mkfs.ext4",
    "mkfs.xfs",
    "mkfs.fat",
    "mkswap",
    "wipefs",
    "useradd",
    "usermod",
    "groupadd",
    "udevadm",
    "systemd-tmpfiles",
];

/// udev's rules for storage (the `/dev/disk/by-*` links Ignition's configs
/// name), copied when the tree has them; the rest (input, sound, drivers
/// loading) has nothing to do before the root is mounted.
pub const UDEV_RULES: &[&str] = &[
    "50-udev-default.rules",
    "60-block.rules",
    "60-persistent-storage.rules",
    "60-persistent-storage-dm.rules",
    "63-md-raid-arrays.rules",
    "64-btrfs.rules",
    "64-md-raid-assembly.rules",
    "55-dm.rules",
    "95-dm-notify.rules",
];
/// The helpers those rules run.
pub const UDEV_HELPERS: &[&str] = &["ata_id", "scsi_id"];
/// Tools copied when the tree has them (LUKS, RAID, btrfs).
pub const OPTIONAL_TOOLS: &[&str] = &[
    "mkfs.vfat",
    "partx",
    "cryptsetup",
    "mdadm",
    "mkfs.btrfs",
    "tune2fs",
    "xfs_admin",
];

/// What to build.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The OS tree.
    pub tree: PathBuf,
    /// The kernel version (default: the only one in `usr/lib/modules`).
    pub kver: Option<String>,
    /// Modules to load (with their dependencies).
    pub modules: Vec<String>,
    /// Extra tools to copy (names looked up in the tree's PATH).
    pub extra_tools: Vec<String>,
    /// The mtime every entry carries.
    pub mtime: u32,
}

impl Spec {
    /// The defaults for `tree`.
    pub fn new(tree: &Path) -> Spec {
        Spec {
            tree: tree.to_path_buf(),
            kver: None,
            modules: DEFAULT_MODULES.iter().map(|s| s.to_string()).collect(),
            extra_tools: Vec::new(),
            mtime: 0,
        }
    }
}

/// What was built.
#[derive(Debug, Default)]
pub struct Summary {
    /// The kernel version.
    pub kver: String,
    /// Modules in load order (relative paths).
    pub modules: Vec<String>,
    /// Wanted modules this kernel does not have.
    pub missing_modules: Vec<String>,
    /// Tools copied.
    pub tools: Vec<String>,
    /// Entries in the archive.
    pub entries: usize,
    /// Bytes before compression.
    pub bytes: u64,
}

/// A node of the image.
#[derive(Debug, Clone)]
enum Node {
    Dir(u32),
    File { src: PathBuf, perm: u32 },
    Data(Vec<u8>, u32),
    Link(String),
    CharDev(u32, u32, u32),
}

/// The image being assembled: paths (relative, no leading `/`) to nodes.
struct Image<'a> {
    tree: &'a Path,
    nodes: BTreeMap<String, Node>,
}

fn err(s: impl Into<String>) -> Error {
    Error::Msg(s.into())
}

fn io(p: &Path, e: std::io::Error) -> Error {
    Error::Msg(format!("{}: {e}", p.display()))
}

/// Normalizes `path` (absolute, inside the tree) into components,
/// refusing `..` above the root by clamping as the kernel does at `/`.
fn components(path: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c.to_string()),
        }
    }
    out
}

impl<'a> Image<'a> {
    fn add_parents(&mut self, path: &str) {
        let parts: Vec<&str> = path.split('/').collect();
        for i in 1..parts.len() {
            let p = parts[..i].join("/");
            self.nodes.entry(p).or_insert(Node::Dir(0o755));
        }
    }

    fn put(&mut self, path: &str, node: Node) {
        self.add_parents(path);
        self.nodes.insert(path.to_string(), node);
    }

    /// Resolves `path` inside the tree, adding every symbolic link met on
    /// the way to the image; returns the real path (relative).
    fn resolve(&mut self, path: &str) -> Result<String> {
        let mut todo = components(path);
        let mut done: Vec<String> = Vec::new();
        let mut hops = 0;
        while !todo.is_empty() {
            let c = todo.remove(0);
            done.push(c);
            let rel = done.join("/");
            let host = self.tree.join(&rel);
            let meta = fs::symlink_metadata(&host).map_err(|e| io(&host, e))?;
            if meta.file_type().is_symlink() {
                hops += 1;
                if hops > 40 {
                    return Err(err(format!("{}: too many levels of links", host.display())));
                }
                let target = fs::read_link(&host).map_err(|e| io(&host, e))?;
                let target = target.to_string_lossy().into_owned();
                self.put(&rel, Node::Link(target.clone()));
                done.pop();
                let base = if target.starts_with('/') {
                    String::new()
                } else {
                    done.join("/")
                };
                let mut next = components(&format!("/{base}/{target}"));
                next.extend(todo);
                todo = next;
                done.clear();
            }
        }
        Ok(done.join("/"))
    }

    /// Adds the file at `path` (following links inside the tree) and, for
    /// an ELF program or library, what it needs.
    fn add_file(&mut self, path: &str, seen: &mut BTreeSet<String>) -> Result<()> {
        let real = self.resolve(path)?;
        if !seen.insert(real.clone()) {
            return Ok(());
        }
        let host = self.tree.join(&real);
        let meta = fs::metadata(&host).map_err(|e| io(&host, e))?;
        if !meta.is_file() {
            return Err(err(format!("{}: not a regular file", host.display())));
        }
        use std::os::unix::fs::PermissionsExt;
        self.put(
            &real,
            Node::File {
                src: host.clone(),
                perm: meta.permissions().mode() & 0o7777,
            },
        );
        let head = read_head(&host)?;
        if !elf::is_elf(&head) {
            return Ok(());
        }
        let bytes = fs::read(&host).map_err(|e| io(&host, e))?;
        let needs =
            elf::needs(&bytes).ok_or_else(|| err(format!("{}: unreadable ELF", host.display())))?;
        if let Some(interp) = &needs.interp {
            self.add_file(interp, seen)?;
        }
        // The file's own search path first (`$ORIGIN` is its directory in
        // the tree), then the system's.
        let origin = real.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        let runpath: Vec<String> = needs
            .runpath
            .iter()
            .map(|d| {
                let d = d.replace("${ORIGIN}", &format!("/{origin}"));
                d.replace("$ORIGIN", &format!("/{origin}"))
            })
            .filter(|d| d.starts_with('/'))
            .map(|d| components(&d).join("/"))
            .collect();
        for lib in &needs.needed {
            let found = runpath
                .iter()
                .map(String::as_str)
                .chain(LIB_DIRS.iter().copied())
                .map(|d| format!("{d}/{lib}"))
                .find(|p| self.tree.join(p).exists())
                .ok_or_else(|| {
                    err(format!(
                        "{}: needs {lib}, which is not in the tree's library directories",
                        host.display()
                    ))
                })?;
            self.add_file(&found, seen)?;
        }
        Ok(())
    }
}

const LIB_DIRS: &[&str] = &[
    "usr/lib/x86_64-linux-gnu",
    "lib/x86_64-linux-gnu",
    "usr/lib/aarch64-linux-gnu",
    "usr/lib64",
    "lib64",
    "usr/lib",
    "lib",
];

const TOOL_DIRS: &[&str] = &["usr/sbin", "usr/bin", "sbin", "bin"];

fn read_head(p: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut f = fs::File::open(p).map_err(|e| io(p, e))?;
    let mut b = vec![0; 64];
    let n = f.read(&mut b).map_err(|e| io(p, e))?;
    b.truncate(n);
    Ok(b)
}

/// The kernel version of the tree: the only `usr/lib/modules/*` with a
/// `modules.dep`.
pub fn kernel_version(tree: &Path) -> Result<String> {
    let dir = tree.join("usr/lib/modules");
    let mut found = Vec::new();
    for e in fs::read_dir(&dir).map_err(|e| io(&dir, e))? {
        let e = e.map_err(|e| io(&dir, e))?;
        if e.path().join("modules.dep").is_file() {
            found.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(err(format!(
            "{}: no kernel (no */modules.dep)",
            dir.display()
        ))),
        _ => Err(err(format!(
            "{}: several kernels ({}); choose one",
            dir.display(),
            found.join(", ")
        ))),
    }
}

fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let base = file.split(".ko").next().unwrap_or(file);
    base.replace('-', "_")
}

/// The modules to load for `wanted`, dependencies first, as paths
/// relative to the kernel's module directory; and the wanted ones this
/// kernel has neither built in nor as a module.
pub fn module_order(moddir: &Path, wanted: &[String]) -> Result<(Vec<String>, Vec<String>)> {
    let dep_file = moddir.join("modules.dep");
    let text = fs::read_to_string(&dep_file).map_err(|e| io(&dep_file, e))?;
    let mut deps: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    for line in text.lines() {
        let Some((m, d)) = line.split_once(':') else {
            continue;
        };
        deps.insert(
            module_name(m),
            (
                m.to_string(),
                d.split_whitespace().map(str::to_string).collect(),
            ),
        );
    }
    let builtin: BTreeSet<String> = fs::read_to_string(moddir.join("modules.builtin"))
        .unwrap_or_default()
        .lines()
        .map(module_name)
        .collect();
    let mut order = Vec::new();
    let mut missing = Vec::new();
    fn visit(
        name: &str,
        deps: &BTreeMap<String, (String, Vec<String>)>,
        order: &mut Vec<String>,
        depth: usize,
    ) {
        let Some((path, ds)) = deps.get(name) else {
            return;
        };
        if order.contains(path) || depth > 64 {
            return;
        }
        for d in ds {
            visit(&module_name(d), deps, order, depth + 1);
        }
        if !order.contains(path) {
            order.push(path.clone());
        }
    }
    for w in wanted {
        let name = module_name(w);
        if deps.contains_key(&name) {
            visit(&name, &deps, &mut order, 0);
        } else if !builtin.contains(&name) {
            missing.push(w.clone());
        }
    }
    Ok((order, missing))
}

/// Builds the initramfs for `spec` and writes it, gzip-compressed, to
/// `output` (through a temporary file renamed into place).
pub fn build(spec: &Spec, output: &Path) -> Result<Summary> {
    let tree = &spec.tree;
    let kver = match &spec.kver {
        Some(k) => k.clone(),
        None => kernel_version(tree)?,
    };
    let mut img = Image {
        tree,
        nodes: BTreeMap::new(),
    };
    let mut seen = BTreeSet::new();
    let mut summary = Summary {
        kver: kver.clone(),
        ..Summary::default()
    };

    // /init: the static oxcore binary (nothing else is there to load a
    // dynamic one).
    let oxcore = tree.join("usr/bin/oxcore");
    let bytes = fs::read(&oxcore).map_err(|e| io(&oxcore, e))?;
    let needs = elf::needs(&bytes)
        .ok_or_else(|| err(format!("{}: not an ELF64 program", oxcore.display())))?;
    if needs.interp.is_some() {
        return Err(err(format!(
            "{}: dynamically linked; /init runs before any library can be loaded, so oxcore \
             must be built static (RUSTFLAGS='-C target-feature=+crt-static')",
            oxcore.display()
        )));
    }
    img.add_file("usr/bin/oxcore", &mut seen)?;
    img.put("init", Node::Link("usr/bin/oxcore".into()));

    // Merged /usr: keep the tree's top-level links.
    for top in ["bin", "sbin", "lib", "lib64"] {
        if let Ok(t) = fs::read_link(tree.join(top)) {
            img.put(top, Node::Link(t.to_string_lossy().into_owned()));
        }
    }

    // Tools.
    let find_tool = |name: &str| {
        TOOL_DIRS
            .iter()
            .map(|d| format!("{d}/{name}"))
            .find(|p| tree.join(p).symlink_metadata().is_ok())
    };
    for (name, required) in REQUIRED_TOOLS
        .iter()
        .map(|n| (n.to_string(), true))
        .chain(OPTIONAL_TOOLS.iter().map(|n| (n.to_string(), false)))
        .chain(spec.extra_tools.iter().map(|n| (n.clone(), true)))
    {
        match find_tool(&name) {
            Some(p) => {
                img.add_file(&p, &mut seen)?;
                summary.tools.push(name);
            }
            None if required => {
                return Err(err(format!(
                    "{}: no {name} in {}: Ignition's stages run it",
                    tree.display(),
                    TOOL_DIRS.join(", ")
                )));
            }
            None => {}
        }
    }
    // udev: its daemon (the by-* links appear as upstream's initramfs
    // makes them, also for the partitions the disks stage creates).
    let udevd = "usr/lib/systemd/systemd-udevd";
    if tree.join(udevd).symlink_metadata().is_err() {
        return Err(err(format!(
            "{}: no {udevd}: the initramfs runs udev for the /dev/disk/by-* links",
            tree.display()
        )));
    }
    img.add_file(udevd, &mut seen)?;
    for rule in UDEV_RULES {
        let p = format!("usr/lib/udev/rules.d/{rule}");
        if tree.join(&p).is_file() {
            img.add_file(&p, &mut seen)?;
        }
    }
    for helper in UDEV_HELPERS {
        let p = format!("usr/lib/udev/{helper}");
        if tree.join(&p).is_file() {
            img.add_file(&p, &mut seen)?;
        }
    }
    // Their configuration, from /etc or OSTree's /usr/etc.
    for conf in ["mke2fs.conf"] {
        for base in ["etc", "usr/etc"] {
            let p = tree.join(base).join(conf);
            if p.is_file() {
                let data = fs::read(&p).map_err(|e| io(&p, e))?;
                img.put(&format!("etc/{conf}"), Node::Data(data, 0o644));
                break;
            }
        }
    }

    // Modules.
    let moddir_rel = format!("usr/lib/modules/{kver}");
    let moddir = tree.join(&moddir_rel);
    let (order, missing) = module_order(&moddir, &spec.modules)?;
    for m in &order {
        img.add_file(&format!("{moddir_rel}/{m}"), &mut seen)?;
    }
    let mut list = String::new();
    for m in &order {
        list.push_str(&format!("{moddir_rel}/{m}\n"));
    }
    img.put(
        "etc/oxcore-initrd/modules",
        Node::Data(list.into_bytes(), 0o644),
    );
    summary.modules = order;
    summary.missing_modules = missing;

    img.put(
        "etc/initrd-release",
        Node::Data(
            b"NAME=\"oxcore initramfs\"\nID=oxcore\nVARIANT_ID=initrd\nPRETTY_NAME=\"oxcore initramfs\"\n"
                .to_vec(),
            0o644,
        ),
    );
    for d in ["dev", "proc", "sys", "run", "tmp", "sysroot", "mnt", "root"] {
        img.put(d, Node::Dir(0o755));
    }
    img.put("tmp", Node::Dir(0o1777));
    img.put("dev/console", Node::CharDev(0o600, 5, 1));
    img.put("dev/null", Node::CharDev(0o666, 1, 3));

    // Write.
    let dir = output.parent().filter(|p| !p.as_os_str().is_empty());
    let dir = dir.unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| io(dir, e))?;
    let gz = flate2::write::GzEncoder::new(
        std::io::BufWriter::new(tmp.as_file()),
        flate2::Compression::new(6),
    );
    let mut w = cpio::Writer::new(gz, spec.mtime);
    let wr = |e: std::io::Error| io(output, e);
    for (path, node) in &img.nodes {
        summary.entries += 1;
        match node {
            Node::Dir(perm) => w.dir(path, *perm).map_err(wr)?,
            Node::Link(t) => w.symlink(path, t).map_err(wr)?,
            Node::CharDev(perm, ma, mi) => w.char_dev(path, *perm, *ma, *mi).map_err(wr)?,
            Node::Data(data, perm) => {
                summary.bytes += data.len() as u64;
                w.file(path, *perm, data).map_err(wr)?
            }
            Node::File { src, perm } => {
                let data = fs::read(src).map_err(|e| io(src, e))?;
                summary.bytes += data.len() as u64;
                w.file(path, *perm, &data).map_err(wr)?
            }
        }
    }
    let gz = w.finish().map_err(wr)?;
    let mut buf = gz.finish().map_err(wr)?;
    buf.flush().map_err(wr)?;
    drop(buf);
    tmp.as_file().sync_all().map_err(wr)?;
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o644)).map_err(wr)?;
    tmp.persist(output).map_err(|e| io(output, e.error))?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_order_puts_dependencies_first() {
        let d = tempfile::tempdir().unwrap();
        fs::write(
            d.path().join("modules.dep"),
            "kernel/fs/xfs/xfs.ko: kernel/lib/libcrc32c.ko\nkernel/lib/libcrc32c.ko:\n\
             kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio_ring.ko\n\
             kernel/drivers/virtio/virtio_ring.ko:\nkernel/fs/fat/vfat.ko.xz: kernel/fs/fat/fat.ko.xz\n\
             kernel/fs/fat/fat.ko.xz:\n",
        )
        .unwrap();
        fs::write(d.path().join("modules.builtin"), "kernel/fs/ext4/ext4.ko\n").unwrap();
        let want: Vec<String> = ["xfs", "ext4", "virtio-blk", "vfat", "nope"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (order, missing) = module_order(d.path(), &want).unwrap();
        assert_eq!(
            order,
            [
                "kernel/lib/libcrc32c.ko",
                "kernel/fs/xfs/xfs.ko",
                "kernel/drivers/virtio/virtio_ring.ko",
                "kernel/drivers/block/virtio_blk.ko",
                "kernel/fs/fat/fat.ko.xz",
                "kernel/fs/fat/vfat.ko.xz"
            ]
        );
        assert_eq!(missing, ["nope"]);
    }

    #[test]
    fn links_resolve_inside_the_tree() {
        let d = tempfile::tempdir().unwrap();
        let t = d.path();
        fs::create_dir_all(t.join("usr/sbin")).unwrap();
        std::os::unix::fs::symlink("usr/sbin", t.join("sbin")).unwrap();
        fs::write(t.join("usr/sbin/mke2fs"), "x").unwrap();
        std::os::unix::fs::symlink("mke2fs", t.join("usr/sbin/mkfs.ext4")).unwrap();
        // An absolute link is read inside the tree, never on the host.
        std::os::unix::fs::symlink("/../../usr/sbin/mke2fs", t.join("usr/sbin/abs")).unwrap();
        let mut img = Image {
            tree: t,
            nodes: BTreeMap::new(),
        };
        assert_eq!(img.resolve("/sbin/mkfs.ext4").unwrap(), "usr/sbin/mke2fs");
        assert!(matches!(img.nodes.get("sbin"), Some(Node::Link(l)) if l == "usr/sbin"));
        assert!(
            matches!(img.nodes.get("usr/sbin/mkfs.ext4"), Some(Node::Link(l)) if l == "mke2fs")
        );
        assert_eq!(img.resolve("usr/sbin/abs").unwrap(), "usr/sbin/mke2fs");
        std::os::unix::fs::symlink("loop", t.join("loop")).unwrap();
        assert!(img.resolve("loop").is_err());
    }
}
