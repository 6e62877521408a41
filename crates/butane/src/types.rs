//! Butane's config types: the superset of every base and variant version.
//!
//! Field names are the snake_case forms of Ignition's, in upstream's
//! declaration order; each records the version that introduced it, so that
//! a newer key in an older config is an `unused key`.

use crate::decode::{Base, Since, bu_struct};

const B1: Since = Since::Base(Base::V0_1);
const B2: Since = Since::Base(Base::V0_2);
const B3: Since = Since::Base(Base::V0_3);
const B4: Since = Since::Base(Base::V0_4);
const B5: Since = Since::Base(Base::V0_5);
const B6: Since = Since::Base(Base::V0_6);
const B7: Since = Since::Base(Base::V0_7);
const B8: Since = Since::Base(Base::V0_8);
const F3: Since = Since::Fcos(3);
const F5: Since = Since::Fcos(5);
const F6: Since = Since::Fcos(6);

bu_struct! {
    /// A whole Butane config.
    Config(Base) {
        /// Config version, e.g. `1.5.0`.
        version: String = "version" @ B1,
        /// Variant, e.g. `fcos`.
        variant: String = "variant" @ B1,
        /// The `ignition` section.
        ignition: Ignition = "ignition" @ B1,
        /// Kernel arguments.
        kernel_arguments: KernelArguments = "kernel_arguments" @ B4,
        /// Users and groups.
        passwd: Passwd = "passwd" @ B1,
        /// Storage.
        storage: Storage = "storage" @ B1,
        /// systemd.
        systemd: Systemd = "systemd" @ B1,
        /// fcos: the boot disk (LUKS, mirroring).
        boot_device: BootDevice = "boot_device" @ F3,
        /// fcos: GRUB users.
        grub: Grub = "grub" @ F5,
        /// openshift: MachineConfig metadata.
        metadata: Metadata = "metadata" @ Since::Openshift,
        /// openshift: MachineConfig settings.
        openshift: OpenShift = "openshift" @ Since::Openshift,
    }
}

bu_struct! {
    /// The `ignition` section.
    Ignition(Base) {
        /// Configs to merge or replace.
        config: IgnitionConfig = "config" @ B1,
        /// Proxies.
        proxy: Proxy = "proxy" @ B2,
        /// TLS.
        security: Security = "security" @ B1,
        /// Timeouts.
        timeouts: Timeouts = "timeouts" @ B1,
    }
}

bu_struct! {
    /// Other configs.
    IgnitionConfig(Base) {
        /// Merged configs.
        merge: Vec<Resource> = "merge" @ B1,
        /// Replacing config.
        replace: Resource = "replace" @ B1,
    }
}

bu_struct! {
    /// Proxies.
    Proxy(Base) {
        /// HTTP proxy.
        http_proxy: Option<String> = "http_proxy" @ B2,
        /// HTTPS proxy.
        https_proxy: Option<String> = "https_proxy" @ B2,
        /// No-proxy hosts.
        no_proxy: Vec<String> = "no_proxy" @ B2,
    }
}

bu_struct! {
    /// Security.
    Security(Base) {
        /// TLS.
        tls: Tls = "tls" @ B1,
    }
}

bu_struct! {
    /// TLS.
    Tls(Base, "TLS") {
        /// CA certificates.
        certificate_authorities: Vec<Resource> = "certificate_authorities" @ B1,
    }
}

bu_struct! {
    /// Timeouts.
    Timeouts(Base) {
        /// Header timeout.
        http_response_headers: Option<i64> = "http_response_headers" @ B1,
        /// Total timeout.
        http_total: Option<i64> = "http_total" @ B1,
    }
}

bu_struct! {
    /// A resource, with Butane's `inline` and `local`.
    Resource(Base) {
        /// Compression of the source.
        compression: Option<String> = "compression" @ Since::Contents,
        /// HTTP headers.
        http_headers: Vec<HttpHeader> = "http_headers" @ B2,
        /// Source URL.
        source: Option<String> = "source" @ B1,
        /// Inline contents.
        inline: Option<String> = "inline" @ Since::Contents,
        /// A file under `--files-dir`.
        local: Option<String> = "local" @ B2,
        /// Hash.
        verification: Verification = "verification" @ B1,
    }
}

bu_struct! {
    /// An HTTP header.
    HttpHeader(Base, "HTTPHeader") {
        /// Name.
        name: String = "name" @ B2,
        /// Value.
        value: Option<String> = "value" @ B2,
    }
}

bu_struct! {
    /// Verification.
    Verification(Base) {
        /// Hash.
        hash: Option<String> = "hash" @ B1,
    }
}

bu_struct! {
    /// Kernel arguments.
    KernelArguments(Base) {
        /// Present.
        should_exist: Vec<String> = "should_exist" @ B4,
        /// Absent.
        should_not_exist: Vec<String> = "should_not_exist" @ B4,
    }
}

bu_struct! {
    /// Users and groups.
    Passwd(Base) {
        /// Groups.
        groups: Vec<PasswdGroup> = "groups" @ B1,
        /// Users.
        users: Vec<PasswdUser> = "users" @ B1,
    }
}

bu_struct! {
    /// A group.
    PasswdGroup(Base) {
        /// GID.
        gid: Option<i64> = "gid" @ B1,
        /// Name.
        name: String = "name" @ B1,
        /// Password hash.
        password_hash: Option<String> = "password_hash" @ B1,
        /// Delete when false.
        should_exist: Option<bool> = "should_exist" @ B3,
        /// System group.
        system: Option<bool> = "system" @ B1,
    }
}

bu_struct! {
    /// A user.
    PasswdUser(Base) {
        /// GECOS.
        gecos: Option<String> = "gecos" @ B1,
        /// Groups.
        groups: Vec<String> = "groups" @ B1,
        /// Home.
        home_dir: Option<String> = "home_dir" @ B1,
        /// Name.
        name: String = "name" @ B1,
        /// No home.
        no_create_home: Option<bool> = "no_create_home" @ B1,
        /// No log init.
        no_log_init: Option<bool> = "no_log_init" @ B1,
        /// No user group.
        no_user_group: Option<bool> = "no_user_group" @ B1,
        /// Password hash.
        password_hash: Option<String> = "password_hash" @ B1,
        /// Primary group.
        primary_group: Option<String> = "primary_group" @ B1,
        /// Delete when false.
        should_exist: Option<bool> = "should_exist" @ B3,
        /// SSH keys.
        ssh_authorized_keys: Vec<String> = "ssh_authorized_keys" @ B1,
        /// Files of SSH keys under `--files-dir`.
        ssh_authorized_keys_local: Vec<String> = "ssh_authorized_keys_local" @ B5,
        /// Shell.
        shell: Option<String> = "shell" @ B1,
        /// System user.
        system: Option<bool> = "system" @ B1,
        /// UID.
        uid: Option<i64> = "uid" @ B1,
    }
}

bu_struct! {
    /// Storage.
    Storage(Base) {
        /// Directories.
        directories: Vec<Directory> = "directories" @ B1,
        /// Disks.
        disks: Vec<Disk> = "disks" @ B1,
        /// Files.
        files: Vec<File> = "files" @ B1,
        /// Filesystems.
        filesystems: Vec<Filesystem> = "filesystems" @ B1,
        /// Links.
        links: Vec<Link> = "links" @ B1,
        /// LUKS volumes.
        luks: Vec<Luks> = "luks" @ B3,
        /// RAID arrays.
        raid: Vec<Raid> = "raid" @ B1,
        /// Local directory trees to copy.
        trees: Vec<Tree> = "trees" @ B2,
    }
}

bu_struct! {
    /// A directory.
    Directory(Base) {
        /// Group.
        group: NodeGroup = "group" @ B1,
        /// Overwrite.
        overwrite: Option<bool> = "overwrite" @ B1,
        /// Path.
        path: String = "path" @ B1,
        /// User.
        user: NodeUser = "user" @ B1,
        /// Mode.
        mode: Option<i64> = "mode" @ B1,
    }
}

bu_struct! {
    /// A disk.
    Disk(Base) {
        /// Device.
        device: String = "device" @ B1,
        /// Partitions.
        partitions: Vec<Partition> = "partitions" @ B1,
        /// Wipe the table.
        wipe_table: Option<bool> = "wipe_table" @ B1,
    }
}

bu_struct! {
    /// A file.
    File(Base) {
        /// Group.
        group: NodeGroup = "group" @ B1,
        /// Overwrite.
        overwrite: Option<bool> = "overwrite" @ B1,
        /// Path.
        path: String = "path" @ B1,
        /// User.
        user: NodeUser = "user" @ B1,
        /// Appended contents.
        append: Vec<Resource> = "append" @ B1,
        /// Contents.
        contents: Resource = "contents" @ B1,
        /// Mode.
        mode: Option<i64> = "mode" @ B1,
    }
}

bu_struct! {
    /// A filesystem.
    Filesystem(Base) {
        /// Device.
        device: String = "device" @ B1,
        /// Format.
        format: Option<String> = "format" @ B1,
        /// Label.
        label: Option<String> = "label" @ B1,
        /// Mount options.
        mount_options: Vec<String> = "mount_options" @ B2,
        /// mkfs options.
        options: Vec<String> = "options" @ B1,
        /// Mount point.
        path: Option<String> = "path" @ B1,
        /// UUID.
        uuid: Option<String> = "uuid" @ B1,
        /// Wipe.
        wipe_filesystem: Option<bool> = "wipe_filesystem" @ B1,
        /// Generate a mount (or swap) unit.
        with_mount_unit: Option<bool> = "with_mount_unit" @ B2,
    }
}

bu_struct! {
    /// A link.
    Link(Base) {
        /// Group.
        group: NodeGroup = "group" @ B1,
        /// Overwrite.
        overwrite: Option<bool> = "overwrite" @ B1,
        /// Path.
        path: String = "path" @ B1,
        /// User.
        user: NodeUser = "user" @ B1,
        /// Hard link.
        hard: Option<bool> = "hard" @ B1,
        /// Target.
        target: Option<String> = "target" @ B1,
    }
}

bu_struct! {
    /// A LUKS volume.
    Luks(Base) {
        /// CEX.
        cex: Cex = "cex" @ B6,
        /// Clevis.
        clevis: Clevis = "clevis" @ B3,
        /// Device.
        device: Option<String> = "device" @ B3,
        /// Discard.
        discard: Option<bool> = "discard" @ B5,
        /// Key file.
        key_file: Resource = "key_file" @ B3,
        /// Label.
        label: Option<String> = "label" @ B3,
        /// Name.
        name: String = "name" @ B3,
        /// Open options.
        open_options: Vec<String> = "open_options" @ B5,
        /// Format options.
        options: Vec<String> = "options" @ B3,
        /// UUID.
        uuid: Option<String> = "uuid" @ B3,
        /// Wipe.
        wipe_volume: Option<bool> = "wipe_volume" @ B3,
    }
}

bu_struct! {
    /// CEX.
    Cex(Base) {
        /// Enabled.
        enabled: Option<bool> = "enabled" @ B6,
    }
}

bu_struct! {
    /// Clevis.
    Clevis(Base) {
        /// Custom pin.
        custom: ClevisCustom = "custom" @ B3,
        /// Tang servers.
        tang: Vec<Tang> = "tang" @ B3,
        /// Threshold.
        threshold: Option<i64> = "threshold" @ B3,
        /// TPM2.
        tpm2: Option<bool> = "tpm2" @ B3,
    }
}

bu_struct! {
    /// A custom Clevis pin.
    ClevisCustom(Base) {
        /// Config.
        config: Option<String> = "config" @ B3,
        /// Needs network.
        needs_network: Option<bool> = "needs_network" @ B3,
        /// Pin.
        pin: Option<String> = "pin" @ B3,
    }
}

bu_struct! {
    /// A Tang server.
    Tang(Base) {
        /// Thumbprint.
        thumbprint: Option<String> = "thumbprint" @ B3,
        /// URL.
        url: String = "url" @ B3,
        /// Advertisement.
        advertisement: Option<String> = "advertisement" @ B5,
    }
}

bu_struct! {
    /// Owner of a node.
    NodeUser(Base) {
        /// ID.
        id: Option<i64> = "id" @ B1,
        /// Name.
        name: Option<String> = "name" @ B1,
    }
}

bu_struct! {
    /// Group of a node.
    NodeGroup(Base) {
        /// ID.
        id: Option<i64> = "id" @ B1,
        /// Name.
        name: Option<String> = "name" @ B1,
    }
}

bu_struct! {
    /// A partition.
    Partition(Base) {
        /// GUID.
        guid: Option<String> = "guid" @ B1,
        /// Label.
        label: Option<String> = "label" @ B1,
        /// Number.
        number: i64 = "number" @ B1,
        /// Resize.
        resize: Option<bool> = "resize" @ B3,
        /// Delete when false.
        should_exist: Option<bool> = "should_exist" @ B1,
        /// Size.
        size_mib: Option<i64> = "size_mib" @ B1,
        /// Start.
        start_mib: Option<i64> = "start_mib" @ B1,
        /// Type GUID.
        type_guid: Option<String> = "type_guid" @ B1,
        /// Replace a mismatching entry.
        wipe_partition_entry: Option<bool> = "wipe_partition_entry" @ B1,
    }
}

bu_struct! {
    /// A RAID array.
    Raid(Base) {
        /// Devices.
        devices: Vec<String> = "devices" @ B1,
        /// Level.
        level: Option<String> = "level" @ B1,
        /// Name.
        name: String = "name" @ B1,
        /// Options.
        options: Vec<String> = "options" @ B1,
        /// Spares.
        spares: Option<i64> = "spares" @ B1,
    }
}

bu_struct! {
    /// A local directory tree to copy into the config.
    Tree(Base) {
        /// Owner group (1.7).
        group: NodeGroup = "group" @ B7,
        /// Directory under `--files-dir`.
        local: String = "local" @ B2,
        /// Destination, default `/`.
        path: Option<String> = "path" @ B2,
        /// Owner (1.7).
        user: NodeUser = "user" @ B7,
        /// Mode of every file (1.7).
        file_mode: Option<i64> = "file_mode" @ B7,
        /// Mode of every directory (1.7).
        dir_mode: Option<i64> = "dir_mode" @ B7,
    }
}

bu_struct! {
    /// systemd.
    Systemd(Base) {
        /// Units.
        units: Vec<Unit> = "units" @ B1,
        /// Podman quadlets (experimental).
        quadlets: Vec<Quadlet> = "quadlets" @ B8,
    }
}

bu_struct! {
    /// A unit.
    Unit(Base) {
        /// Contents.
        contents: Option<String> = "contents" @ B1,
        /// Contents from a file under `--files-dir`.
        contents_local: Option<String> = "contents_local" @ B5,
        /// Drop-ins.
        dropins: Vec<Dropin> = "dropins" @ B1,
        /// Enabled.
        enabled: Option<bool> = "enabled" @ B1,
        /// Masked.
        mask: Option<bool> = "mask" @ B1,
        /// Name.
        name: String = "name" @ B1,
    }
}

bu_struct! {
    /// A drop-in.
    Dropin(Base) {
        /// Contents.
        contents: Option<String> = "contents" @ B1,
        /// Contents from a file under `--files-dir`.
        contents_local: Option<String> = "contents_local" @ B5,
        /// Name.
        name: String = "name" @ B1,
    }
}

bu_struct! {
    /// A Podman quadlet.
    Quadlet(Base) {
        /// Contents.
        contents: Option<String> = "contents" @ B8,
        /// Contents from a file under `--files-dir`.
        contents_local: Option<String> = "contents_local" @ B8,
        /// File name with its extension.
        name: String = "name" @ B8,
        /// System-wide instead of per-user.
        rootful: bool = "rootful" @ B8,
        /// Drop-ins.
        dropins: Vec<Dropin> = "dropins" @ B8,
    }
}

bu_struct! {
    /// fcos: the boot disk.
    BootDevice(Fcos) {
        /// Architecture layout.
        layout: Option<String> = "layout" @ F3,
        /// Encrypt the root filesystem.
        luks: BootDeviceLuks = "luks" @ F3,
        /// Mirror the boot disk.
        mirror: BootDeviceMirror = "mirror" @ F3,
    }
}

bu_struct! {
    /// fcos: LUKS on the root filesystem.
    BootDeviceLuks(Fcos) {
        /// CEX (1.6).
        cex: Cex = "cex" @ F6,
        /// Discard (1.5).
        discard: Option<bool> = "discard" @ F5,
        /// Device (1.6).
        device: Option<String> = "device" @ F6,
        /// Tang servers.
        tang: Vec<Tang> = "tang" @ F3,
        /// Threshold.
        threshold: Option<i64> = "threshold" @ F3,
        /// TPM2.
        tpm2: Option<bool> = "tpm2" @ F3,
    }
}

bu_struct! {
    /// fcos: boot disk mirroring.
    BootDeviceMirror(Fcos) {
        /// The disks.
        devices: Vec<String> = "devices" @ F3,
    }
}

bu_struct! {
    /// fcos: GRUB.
    Grub(Fcos) {
        /// Users.
        users: Vec<GrubUser> = "users" @ F5,
    }
}

bu_struct! {
    /// fcos: a GRUB user.
    GrubUser(Fcos) {
        /// Name.
        name: String = "name" @ F5,
        /// PBKDF2 hash.
        password_hash: Option<String> = "password_hash" @ F5,
    }
}

bu_struct! {
    /// openshift: MachineConfig metadata.
    Metadata(Openshift) {
        /// Name.
        name: String = "name" @ Since::Openshift,
        /// Labels.
        labels: Labels = "labels" @ Since::Openshift,
    }
}

bu_struct! {
    /// openshift: MachineConfig settings.
    OpenShift(Openshift) {
        /// Kernel arguments.
        kernel_arguments: Option<Vec<String>> = "kernel_arguments" @ Since::Openshift,
        /// RHCOS extensions.
        extensions: Option<Vec<String>> = "extensions" @ Since::Openshift,
        /// FIPS mode.
        fips: Option<bool> = "fips" @ Since::Openshift,
        /// Kernel type.
        kernel_type: Option<String> = "kernel_type" @ Since::Openshift,
    }
}

/// openshift: MachineConfig labels, a string map in source order.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Labels(pub Vec<(String, String)>);

impl crate::decode::Slot for Labels {
    fn fill(&mut self, node: &crate::yaml::Node, d: &mut crate::decode::Decoder) {
        use crate::yaml::Kind;
        d.visit(node, |d, node| match &node.kind {
            Kind::Map(m) => {
                if d.map_duplicates(m) {
                    return;
                }
                // A later value of a key replaces the earlier and moves to
                // the end, as a Go map re-encoded in source order.
                let mut slots: Vec<Option<(String, String)>> =
                    std::mem::take(&mut self.0).into_iter().map(Some).collect();
                let mut index: std::collections::HashMap<String, usize> = slots
                    .iter()
                    .enumerate()
                    .filter_map(|(i, s)| s.as_ref().map(|(k, _)| (k.clone(), i)))
                    .collect();
                for (k, v) in m.iter() {
                    if d.visit(k, |_, _| ()).is_none() {
                        return;
                    }
                    let key = match &k.kind {
                        Kind::Scalar(s) => s.text.clone(),
                        _ => continue,
                    };
                    if let Some(value) = <String as crate::decode::Decode>::decode(v, d) {
                        if let Some(old) = index.insert(key.clone(), slots.len()) {
                            slots[old] = None;
                        }
                        slots.push(Some((key, value)));
                    }
                }
                self.0 = slots.into_iter().flatten().collect();
            }
            _ if crate::yaml::is_null(node) => {}
            _ => d.mismatch(node, "map[string]string"),
        });
    }
}
