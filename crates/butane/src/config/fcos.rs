//! The fcos variant (1.0.0 to 1.7.0, 1.8.0-experimental): `boot_device`
//! (LUKS and mirroring of the boot disk), the partition warnings,
//! `grub.users`, and the fcos config checks. openshift uses this sugar and
//! these checks too, at the fcos version it builds on. Upstream:
//! `config/fcos/v1_*`.

use ignition_config::types as ign;

use crate::report::{Path, Report, p};
use crate::sugar::merge_generated;
use crate::translate::{self, Cx};
use crate::types::*;
use crate::variant::Target;

/// The fcos config hook (1.6 and later, fcos only).
pub(crate) fn config_hook(c: &Config, _t: &Target, r: &mut Report) {
    let mirror: std::collections::HashSet<&String> = c.boot_device.mirror.devices.iter().collect();
    for (i, d) in c.storage.disks.iter().enumerate() {
        if d.device == "/dev/disk/by-id/coreos-boot-disk"
            || d.wipe_table == Some(true)
            || mirror.contains(&d.device)
        {
            continue;
        }
        for (j, part) in d.partitions.iter().enumerate() {
            if part.number == 0 && part.label.is_some() {
                r.warn(
                    p!["storage", "disks", i, "partitions", j, "number"],
                    "partitions cannot be reused by label; number must be specified except on boot disk (/dev/disk/by-id/coreos-boot-disk) or when wipe_table is true",
                );
            }
        }
    }
    for (i, fs) in c.storage.filesystems.iter().enumerate() {
        let Some(path) = &fs.path else { continue };
        let under = path == "/etc"
            || path == "/var"
            || path.starts_with("/etc/")
            || path.starts_with("/var/");
        if !under && fs.with_mount_unit == Some(true) {
            r.error(
                p!["storage", "filesystems", i, "path"],
                "path must be under /etc or /var if with_mount_unit is true",
            );
        }
    }
}

fn minor(t: &Target) -> u32 {
    t.fcos_minor
}

/// boot_device and grub checks.
pub(crate) fn validate(c: &Config, t: &Target, r: &mut Report) {
    let m = minor(t);
    if m >= 3 {
        let b = &c.boot_device;
        let layout = b.layout.as_deref();
        let mirrors = &b.mirror.devices;
        if !mirrors.is_empty() && layout.is_none() {
            let msg = "boot_device.layout should be specified when boot_device.mirror is specified";
            if m >= 7 {
                r.error(p!["boot_device", "mirror"], msg);
            } else {
                r.warn(p!["boot_device", "mirror"], msg);
            }
        }
        if let Some(l) = layout {
            let ok = if m >= 6 {
                matches!(
                    l,
                    "aarch64" | "ppc64le" | "x86_64" | "s390x-eckd" | "s390x-virt" | "s390x-zfcp"
                )
            } else {
                matches!(l, "aarch64" | "ppc64le" | "x86_64")
            };
            if !ok {
                let msg = if m >= 6 {
                    "layout must be one of: aarch64, ppc64le, s390x-eckd, s390x-virt, s390x-zfcp, x86_64"
                } else {
                    "layout must be one of: aarch64, ppc64le, x86_64"
                };
                r.error(p!["boot_device", "layout"], msg);
            }
            if m >= 6 {
                let dev = b.luks.device.as_deref().unwrap_or("");
                let check = |prefix: &str| {
                    let bytes = dev.as_bytes();
                    let n = bytes.len();
                    n > prefix.len()
                        && dev[..n - 1].ends_with(prefix)
                        && bytes[n - 1].is_ascii_lowercase()
                };
                for (name, prefix) in [("s390x-eckd", "/dev/dasd"), ("s390x-zfcp", "/dev/sd")] {
                    if l == name {
                        if dev.is_empty() {
                            r.error(
                                p!["boot_device", "layout"],
                                "device is required for layouts: s390x-eckd, s390x-zfcp",
                            );
                        } else if !check(prefix) {
                            r.error(
                                p!["boot_device", "layout"],
                                "device name must start with /dev/dasd on s390x-eckd layout or /dev/sd on s390x-zfcp layout",
                            );
                        }
                    }
                }
                if l.starts_with("s390x") && !mirrors.is_empty() {
                    r.error(
                        p!["boot_device", "layout"],
                        "mirroring not supported on layouts: s390x-eckd, s390x-zfcp, s390x-virt",
                    );
                }
            }
        }
        if m >= 6 && b.luks.cex.enabled == Some(true) {
            let msg = "when using cex the targeted architecture must match s390x";
            match layout {
                None => r.error(p!["boot_device", "luks", "cex"], msg),
                Some(l) if !l.starts_with("s390x") => r.error(p!["boot_device", "layout"], msg),
                _ => {}
            }
            if !b.luks.tang.is_empty() || b.luks.tpm2 == Some(true) {
                r.error(p!["boot_device", "luks"], "cannot use cex with clevis");
            }
        }
        if mirrors.len() == 1 {
            // Upstream reports this twice (the device's and the mirror's hooks).
            r.error(
                p!["boot_device", "mirror", "devices"],
                "mirroring requires at least two devices",
            );
        }
        if m >= 7 && b.luks.device.as_deref().is_some_and(|d| !d.is_empty()) {
            let tang =
                b.luks.tang.iter().any(|t| {
                    !t.url.is_empty() || t.thumbprint.is_some() || t.advertisement.is_some()
                });
            if !tang && b.luks.tpm2 != Some(true) && b.luks.cex.enabled != Some(true) {
                r.error(
                    p!["boot_device", "luks", "luks"],
                    "no method specified for luks",
                );
            }
        }
        if mirrors.len() == 1 {
            r.error(
                p!["boot_device", "mirror", "devices"],
                "mirroring requires at least two devices",
            );
        }
    }
    if m >= 5 {
        for (i, u) in c.grub.users.iter().enumerate() {
            if u.name.is_empty() {
                r.error(p!["grub", "users", i, "name"], "field \"name\" is required");
            }
            if u.password_hash.as_deref().is_none_or(str::is_empty) {
                r.error(
                    p!["grub", "users", i, "password_hash"],
                    "field \"password_hash\" is required",
                );
            }
        }
    }
}

const BIOS_GUID: &str = "21686148-6449-6E6F-744E-656564454649";
const PREP_GUID: &str = "9E1A2D38-C612-4316-AA26-8B49521E5A8B";
const RESERVED_GUID: &str = "8DA63339-0007-60C0-C436-083AC8230908";
const ESP_GUID: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";

/// fcos translation steps after the base sugar.
pub(crate) fn translate(c: &Config, out: &mut ign::Config, cx: &mut Cx<'_>) {
    let m = minor(&cx.target);
    if m >= 3 {
        boot_device(c, out, cx);
    }
    partition_warnings(out, cx);
    if m >= 5 {
        grub(c, out, cx);
    }
}

fn boot_device(c: &Config, out: &mut ign::Config, cx: &mut Cx<'_>) {
    let b = &c.boot_device;
    let m = minor(&cx.target);
    let want_luks = b.luks.tpm2 == Some(true)
        || !b.luks.tang.is_empty()
        || (m >= 6 && b.luks.cex.enabled == Some(true));
    let want_mirror = !b.mirror.devices.is_empty();
    if !want_luks && !want_mirror {
        return;
    }
    let layout = b.layout.as_deref().unwrap_or("x86_64");
    let (bios, esp, prep) = match layout {
        "x86_64" => (true, true, false),
        "aarch64" => (false, true, false),
        "ppc64le" => (false, false, true),
        _ => (false, false, false),
    };
    let mut parent = ign::Config::default();
    let mut sources: Vec<(Path, Path)> = Vec::new();
    let mut fields: Vec<(Path, Path)> = Vec::new();
    let part = |label: String, size: Option<i64>, guid: Option<&str>| ign::Partition {
        label: Some(label),
        size_mib: size,
        type_guid: guid.map(str::to_string),
        ..ign::Partition::default()
    };
    if want_mirror {
        for (i, dev) in b.mirror.devices.iter().enumerate() {
            let k = i + 1;
            let mut parts = Vec::new();
            if bios {
                parts.push(part(format!("bios-{k}"), Some(1), Some(BIOS_GUID)));
            } else if prep {
                parts.push(part(format!("prep-{k}"), Some(4), Some(PREP_GUID)));
            } else {
                parts.push(part(format!("reserved-{k}"), Some(1), Some(RESERVED_GUID)));
            }
            if esp {
                parts.push(part(format!("esp-{k}"), Some(127), Some(ESP_GUID)));
            } else {
                parts.push(part(format!("reserved-{k}"), Some(1), Some(RESERVED_GUID)));
            }
            parts.push(part(format!("boot-{k}"), Some(384), None));
            parts.push(part(format!("root-{k}"), None, None));
            sources.push((
                p!["storage", "disks", parent.storage.disks.len()],
                p!["boot_device", "mirror", "devices", i],
            ));
            parent.storage.disks.push(ign::Disk {
                device: dev.clone(),
                partitions: parts,
                wipe_table: Some(true),
            });
            if esp {
                sources.push((
                    p!["storage", "filesystems", parent.storage.filesystems.len()],
                    p!["boot_device", "mirror", "devices", i],
                ));
                parent.storage.filesystems.push(ign::Filesystem {
                    device: format!("/dev/disk/by-partlabel/esp-{k}"),
                    format: Some("vfat".into()),
                    label: Some(format!("esp-{k}")),
                    wipe_filesystem: Some(true),
                    ..ign::Filesystem::default()
                });
            }
        }
        let n = b.mirror.devices.len();
        let labels = |what: &str| {
            (1..=n)
                .map(|k| format!("/dev/disk/by-partlabel/{what}-{k}"))
                .collect::<Vec<_>>()
        };
        sources.push((p!["storage", "raid", 0], p!["boot_device", "mirror"]));
        sources.push((p!["storage", "raid", 1], p!["boot_device", "mirror"]));
        parent.storage.raid.push(ign::Raid {
            devices: labels("boot"),
            level: Some("raid1".into()),
            name: "md-boot".into(),
            options: vec!["--metadata=1.0".into()],
            spares: None,
        });
        parent.storage.raid.push(ign::Raid {
            devices: labels("root"),
            level: Some("raid1".into()),
            name: "md-root".into(),
            options: Vec::new(),
            spares: None,
        });
        sources.push((
            p!["storage", "filesystems", parent.storage.filesystems.len()],
            p!["boot_device", "mirror"],
        ));
        parent.storage.filesystems.push(ign::Filesystem {
            device: "/dev/md/md-boot".into(),
            format: Some("ext4".into()),
            label: Some("boot".into()),
            wipe_filesystem: Some(true),
            ..ign::Filesystem::default()
        });
    }
    if want_luks {
        let device = match layout {
            "s390x-eckd" => format!("{}2", b.luks.device.as_deref().unwrap_or("")),
            "s390x-zfcp" => format!("{}4", b.luks.device.as_deref().unwrap_or("")),
            _ if want_mirror => "/dev/md/md-root".into(),
            _ => "/dev/disk/by-partlabel/root".into(),
        };
        let cex = m >= 6 && b.luks.cex.enabled == Some(true);
        let luks = if cex {
            ign::Luks {
                cex: ign::Cex {
                    enabled: Some(true),
                },
                device: Some(device),
                discard: b.luks.discard,
                label: Some("luks-root".into()),
                name: "root".into(),
                wipe_volume: Some(true),
                ..ign::Luks::default()
            }
        } else {
            ign::Luks {
                clevis: ign::Clevis {
                    tang: b.luks.tang.iter().map(translate::tang).collect(),
                    threshold: b.luks.threshold,
                    tpm2: b.luks.tpm2,
                    ..ign::Clevis::default()
                },
                device: Some(device),
                discard: if m >= 5 { b.luks.discard } else { None },
                label: Some("luks-root".into()),
                name: "root".into(),
                wipe_volume: Some(true),
                ..ign::Luks::default()
            }
        };
        sources.push((p!["storage", "luks", 0], p!["boot_device", "luks"]));
        for (json, yaml) in [
            (
                p!["storage", "luks", 0, "clevis", "tang"],
                p!["boot_device", "luks", "tang"],
            ),
            (
                p!["storage", "luks", 0, "clevis", "threshold"],
                p!["boot_device", "luks", "threshold"],
            ),
            (
                p!["storage", "luks", 0, "clevis", "tpm2"],
                p!["boot_device", "luks", "tpm2"],
            ),
            (
                p!["storage", "luks", 0, "discard"],
                p!["boot_device", "luks", "discard"],
            ),
            (
                p!["storage", "luks", 0, "cex"],
                p!["boot_device", "luks", "cex"],
            ),
        ] {
            fields.push((json, yaml));
        }
        parent.storage.luks.push(luks);
    }
    sources.push((
        p!["storage", "filesystems", parent.storage.filesystems.len()],
        p!["boot_device"],
    ));
    parent.storage.filesystems.push(ign::Filesystem {
        device: if want_luks {
            "/dev/mapper/root".into()
        } else {
            "/dev/md/md-root".into()
        },
        format: Some("xfs".into()),
        label: Some("root".into()),
        wipe_filesystem: Some(true),
        ..ign::Filesystem::default()
    });
    parent.ignition.version = out.ignition.version.clone();
    // Generated entries map whole to their source; the LUKS settings the
    // user wrote map field by field.
    merge_generated(&parent, out, &mut cx.ts, &sources);
    for (j, y) in fields {
        cx.ts.add(j, y);
    }
}

fn partition_warnings(out: &ign::Config, cx: &mut Cx<'_>) {
    let m = minor(&cx.target);
    let auto = |q: &ign::Partition| q.start_mib.is_none_or(|s| s == 0);
    for (i, d) in out.storage.disks.iter().enumerate() {
        let autos = d.partitions.iter().filter(|q| auto(q)).count();
        for (pi, part) in d.partitions.iter().enumerate() {
            let Some(label) = &part.label else { continue };
            if m >= 3 && label == "root" {
                match part.size_mib {
                    None | Some(0) => {
                        // Another auto-positioned partition than this one.
                        let later_auto = autos > usize::from(auto(part));
                        if later_auto {
                            let y =
                                cx.ts
                                    .map(&p!["storage", "disks", i, "partitions", pi, "label"]);
                            cx.report.warn(
                                y,
                                "root partition cannot expand; it is set to fill available space but is followed by an auto-positioned partition",
                            );
                        }
                    }
                    Some(s) if s < 8192 => {
                        let y = cx
                            .ts
                            .map(&p!["storage", "disks", i, "partitions", pi, "sizeMiB"]);
                        cx.report.warn(y, "root should have 8GiB of space assigned");
                    }
                    _ => {}
                }
            }
            if d.wipe_table != Some(true) {
                let want = match label.as_str() {
                    "BIOS-BOOT" | "PowerPC-PReP-boot" => Some(1),
                    "EFI-SYSTEM" => Some(2),
                    "boot" => Some(3),
                    "root" => Some(4),
                    _ => None,
                };
                if want.is_some_and(|n| n != part.number) {
                    let y = cx
                        .ts
                        .map(&p!["storage", "disks", i, "partitions", pi, "label"]);
                    cx.report.warn(y, "incorrect partition number; a new partition will be created using reserved label");
                }
            }
        }
    }
}

fn grub(c: &Config, out: &mut ign::Config, cx: &mut Cx<'_>) {
    if c.grub.users.is_empty() {
        return;
    }
    let names: Vec<&str> = c.grub.users.iter().map(|u| u.name.as_str()).collect();
    let lines: Vec<String> = c
        .grub
        .users
        .iter()
        .map(|u| {
            format!(
                "password_pbkdf2 {} {}",
                u.name,
                u.password_hash.as_deref().unwrap_or("")
            )
        })
        .collect();
    let text = format!(
        "# Generated by Butane\n\nset superusers=\"{}\"\n{}\n",
        names.join(" "),
        lines.join("\n")
    );
    let (url, compression) =
        crate::files::make_data_url(text.as_bytes(), None, cx.allow_compression);
    let mut parent = ign::Config::default();
    parent.ignition.version = out.ignition.version.clone();
    parent.storage.filesystems.push(ign::Filesystem {
        device: "/dev/disk/by-label/boot".into(),
        format: Some("ext4".into()),
        path: Some("/boot".into()),
        ..ign::Filesystem::default()
    });
    parent.storage.files.push(ign::File {
        path: "/boot/grub2/user.cfg".into(),
        append: vec![ign::Resource {
            compression,
            source: Some(url),
            ..ign::Resource::default()
        }],
        ..ign::File::default()
    });
    let mut generated = vec![(p!["storage", "filesystems", 0], p!["grub", "users"])];
    // The user may have replaced the generated file with a link.
    if !out
        .storage
        .links
        .iter()
        .any(|l| l.path == "/boot/grub2/user.cfg")
        && !out
            .storage
            .directories
            .iter()
            .any(|d| d.path == "/boot/grub2/user.cfg")
    {
        generated.push((p!["storage", "files", 0], p!["grub", "users"]));
    }
    merge_generated(&parent, out, &mut cx.ts, &generated);
}
