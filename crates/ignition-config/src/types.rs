//! The Ignition config types: one superset of every spec version.
//!
//! Each field records the spec version that introduced it; when a config of
//! an older version uses a newer field, the decoder reports it as an unused
//! key and leaves it unset, exactly as upstream's per-version Go types do. No
//! field was ever removed from the 3.x specs, so a config of any version is a
//! value of these types, and translation to a newer version only changes
//! `ignition.version`.
//!
//! Field order is upstream's Go struct order, which is also the order of the
//! keys in serialized JSON. Spec: <https://coreos.github.io/ignition/specs/>.

use crate::json::spec_struct;

spec_struct! {
    /// A whole config.
    Config {
        /// Metadata about the config itself.
        ignition: Ignition = "ignition" @ V3_0,
        /// Kernel arguments that must or must not be present.
        kernel_arguments: KernelArguments = "kernelArguments" @ V3_3,
        /// Users and groups.
        passwd: Passwd = "passwd" @ V3_0,
        /// Disks, filesystems, files, directories and links.
        storage: Storage = "storage" @ V3_0,
        /// systemd units.
        systemd: Systemd = "systemd" @ V3_0,
    }
}

spec_struct! {
    /// The `ignition` section.
    Ignition {
        /// Configs to merge with or replace this one.
        config: IgnitionConfig = "config" @ V3_0,
        /// Proxies for fetching resources.
        proxy: Proxy = "proxy" @ V3_1,
        /// TLS settings.
        security: Security = "security" @ V3_0,
        /// Fetch timeouts.
        timeouts: Timeouts = "timeouts" @ V3_0,
        /// The spec version, e.g. `3.4.0`.
        version: String = "version" @ V3_0,
    }
}

spec_struct! {
    /// Other configs to merge or to replace this one with.
    IgnitionConfig {
        /// Configs merged on top of this one, in order.
        merge: Vec<Resource> = "merge" @ V3_0,
        /// A config that replaces this one.
        replace: Resource = "replace" @ V3_0,
    }
}

spec_struct! {
    /// HTTP proxy settings.
    Proxy {
        /// Proxy for `http` URLs.
        http_proxy: Option<String> = "httpProxy" @ V3_1,
        /// Proxy for `https` URLs.
        https_proxy: Option<String> = "httpsProxy" @ V3_1,
        /// Hosts that bypass the proxy.
        no_proxy: Vec<String> = "noProxy" @ V3_1 as "[]types.NoProxyItem",
    }
}

spec_struct! {
    /// Security settings.
    Security {
        /// TLS settings.
        tls: Tls = "tls" @ V3_0,
    }
}

spec_struct! {
    /// TLS settings.
    Tls as "TLS" {
        /// Extra certificate authorities for https fetches.
        certificate_authorities: Vec<Resource> = "certificateAuthorities" @ V3_0,
    }
}

spec_struct! {
    /// Fetch timeouts, in seconds.
    Timeouts {
        /// Time to wait for response headers.
        http_response_headers: Option<i64> = "httpResponseHeaders" @ V3_0,
        /// Time for a whole request.
        http_total: Option<i64> = "httpTotal" @ V3_0,
    }
}

spec_struct! {
    /// A remote or inline resource: file contents, configs, CAs, key files.
    Resource {
        /// `gzip` or unset.
        compression: Option<String> = "compression" @ V3_0,
        /// Extra HTTP headers for `http`/`https` sources.
        http_headers: Vec<HttpHeader> = "httpHeaders" @ V3_1 as "types.HTTPHeaders",
        /// The URL.
        source: Option<String> = "source" @ V3_0,
        /// Expected hash of the (decompressed) contents.
        verification: Verification = "verification" @ V3_0,
    }
}

spec_struct! {
    /// One HTTP header.
    HttpHeader as "HTTPHeader" {
        /// Header name.
        name: String = "name" @ V3_1,
        /// Header value; unset or empty removes a parent's header in merges.
        value: Option<String> = "value" @ V3_1,
    }
}

spec_struct! {
    /// Content verification.
    Verification {
        /// `sha512-HEX` or (from 3.1.0) `sha256-HEX`.
        hash: Option<String> = "hash" @ V3_0,
    }
}

spec_struct! {
    /// Kernel arguments.
    KernelArguments {
        /// Arguments that must be present.
        should_exist: Vec<String> = "shouldExist" @ V3_3 as "[]types.KernelArgument",
        /// Arguments that must be absent.
        should_not_exist: Vec<String> = "shouldNotExist" @ V3_3 as "[]types.KernelArgument",
    }
}

spec_struct! {
    /// Users and groups.
    Passwd {
        /// Groups.
        groups: Vec<PasswdGroup> = "groups" @ V3_0,
        /// Users.
        users: Vec<PasswdUser> = "users" @ V3_0,
    }
}

spec_struct! {
    /// A group.
    PasswdGroup {
        /// Group ID.
        gid: Option<i64> = "gid" @ V3_0,
        /// Group name.
        name: String = "name" @ V3_0,
        /// Password hash for the group.
        password_hash: Option<String> = "passwordHash" @ V3_0,
        /// `false` deletes the group.
        should_exist: Option<bool> = "shouldExist" @ V3_2,
        /// A system group.
        system: Option<bool> = "system" @ V3_0,
    }
}

spec_struct! {
    /// A user.
    PasswdUser {
        /// GECOS field.
        gecos: Option<String> = "gecos" @ V3_0,
        /// Supplementary groups.
        groups: Vec<String> = "groups" @ V3_0 as "[]types.Group",
        /// Home directory.
        home_dir: Option<String> = "homeDir" @ V3_0,
        /// User name.
        name: String = "name" @ V3_0,
        /// Do not create the home directory.
        no_create_home: Option<bool> = "noCreateHome" @ V3_0,
        /// Do not add the user to lastlog/faillog.
        no_log_init: Option<bool> = "noLogInit" @ V3_0,
        /// Do not create a group named after the user.
        no_user_group: Option<bool> = "noUserGroup" @ V3_0,
        /// Password hash.
        password_hash: Option<String> = "passwordHash" @ V3_0,
        /// Primary group.
        primary_group: Option<String> = "primaryGroup" @ V3_0,
        /// SSH public keys.
        ssh_authorized_keys: Vec<String> = "sshAuthorizedKeys" @ V3_0 as "[]types.SSHAuthorizedKey",
        /// Login shell.
        shell: Option<String> = "shell" @ V3_0,
        /// `false` deletes the user.
        should_exist: Option<bool> = "shouldExist" @ V3_2,
        /// A system user.
        system: Option<bool> = "system" @ V3_0,
        /// User ID.
        uid: Option<i64> = "uid" @ V3_0,
    }
}

spec_struct! {
    /// Storage.
    Storage {
        /// Directories.
        directories: Vec<Directory> = "directories" @ V3_0,
        /// Disks to partition.
        disks: Vec<Disk> = "disks" @ V3_0,
        /// Files.
        files: Vec<File> = "files" @ V3_0,
        /// Filesystems.
        filesystems: Vec<Filesystem> = "filesystems" @ V3_0,
        /// Links.
        links: Vec<Link> = "links" @ V3_0,
        /// LUKS volumes.
        luks: Vec<Luks> = "luks" @ V3_2,
        /// RAID arrays.
        raid: Vec<Raid> = "raid" @ V3_0,
    }
}

spec_struct! {
    /// A disk and its partitions.
    Disk {
        /// Path of the block device.
        device: String = "device" @ V3_0,
        /// Partitions.
        partitions: Vec<Partition> = "partitions" @ V3_0,
        /// Wipe the partition table first.
        wipe_table: Option<bool> = "wipeTable" @ V3_0,
    }
}

spec_struct! {
    /// A GPT partition.
    Partition {
        /// Unique partition GUID.
        guid: Option<String> = "guid" @ V3_0,
        /// Partition label.
        label: Option<String> = "label" @ V3_0,
        /// Partition number; 0 means the next free one.
        number: i64 = "number" @ V3_0,
        /// Allow growing an existing partition.
        resize: Option<bool> = "resize" @ V3_2,
        /// `false` deletes the partition.
        should_exist: Option<bool> = "shouldExist" @ V3_0,
        /// Size in MiB; 0 fills the free space.
        size_mib: Option<i64> = "sizeMiB" @ V3_0,
        /// Start in MiB; 0 means the first free aligned place.
        start_mib: Option<i64> = "startMiB" @ V3_0,
        /// Partition type GUID.
        type_guid: Option<String> = "typeGuid" @ V3_0,
        /// Allow replacing a mismatching partition.
        wipe_partition_entry: Option<bool> = "wipePartitionEntry" @ V3_0,
    }
}

spec_struct! {
    /// A RAID array.
    Raid {
        /// Member devices.
        devices: Vec<String> = "devices" @ V3_0 as "[]types.Device",
        /// `linear`, `raid0`, `raid1`, `raid4`, `raid5`, `raid6`, `raid10`.
        level: Option<String> = "level" @ V3_0,
        /// Array name (`/dev/md/NAME`).
        name: String = "name" @ V3_0,
        /// Extra `mdadm` options.
        options: Vec<String> = "options" @ V3_0 as "[]types.RaidOption",
        /// Number of spares.
        spares: Option<i64> = "spares" @ V3_0,
    }
}

spec_struct! {
    /// A LUKS volume.
    Luks {
        /// IBM CEX secure key.
        cex: Cex = "cex" @ V3_5,
        /// Clevis binding.
        clevis: Clevis = "clevis" @ V3_2,
        /// Underlying device.
        device: Option<String> = "device" @ V3_2,
        /// Issue discards.
        discard: Option<bool> = "discard" @ V3_4,
        /// Key file.
        key_file: Resource = "keyFile" @ V3_2,
        /// LUKS label.
        label: Option<String> = "label" @ V3_2,
        /// Mapped device name (`/dev/mapper/NAME`).
        name: String = "name" @ V3_2,
        /// Options for opening.
        open_options: Vec<String> = "openOptions" @ V3_4 as "[]types.OpenOption",
        /// Extra `cryptsetup luksFormat` options.
        options: Vec<String> = "options" @ V3_2 as "[]types.LuksOption",
        /// LUKS UUID.
        uuid: Option<String> = "uuid" @ V3_2,
        /// Wipe an existing volume.
        wipe_volume: Option<bool> = "wipeVolume" @ V3_2,
    }
}

spec_struct! {
    /// IBM CEX settings.
    Cex {
        /// Use a CEX secure key.
        enabled: Option<bool> = "enabled" @ V3_5,
    }
}

spec_struct! {
    /// Clevis binding of a LUKS volume.
    Clevis {
        /// A custom pin.
        custom: ClevisCustom = "custom" @ V3_2,
        /// Tang servers.
        tang: Vec<Tang> = "tang" @ V3_2,
        /// How many pins must succeed.
        threshold: Option<i64> = "threshold" @ V3_2,
        /// Bind to the TPM2.
        tpm2: Option<bool> = "tpm2" @ V3_2,
    }
}

spec_struct! {
    /// A custom Clevis pin.
    ClevisCustom {
        /// The pin's JSON config.
        config: Option<String> = "config" @ V3_2,
        /// Whether the pin needs the network.
        needs_network: Option<bool> = "needsNetwork" @ V3_2,
        /// `tpm2`, `tang` or `sss`.
        pin: Option<String> = "pin" @ V3_2,
    }
}

spec_struct! {
    /// A Tang server.
    Tang {
        /// The server's advertisement (JSON), for offline provisioning.
        advertisement: Option<String> = "advertisement" @ V3_4,
        /// The server's key thumbprint.
        thumbprint: Option<String> = "thumbprint" @ V3_2,
        /// The server URL.
        url: String = "url" @ V3_2,
    }
}

spec_struct! {
    /// A filesystem.
    Filesystem {
        /// Block device.
        device: String = "device" @ V3_0,
        /// `ext4`, `btrfs`, `xfs`, `vfat`, `swap`, `none` (3.3.0).
        format: Option<String> = "format" @ V3_0,
        /// Filesystem label.
        label: Option<String> = "label" @ V3_0,
        /// Mount options.
        mount_options: Vec<String> = "mountOptions" @ V3_1 as "[]types.MountOption",
        /// Extra mkfs options.
        options: Vec<String> = "options" @ V3_0 as "[]types.FilesystemOption",
        /// Mount point during provisioning.
        path: Option<String> = "path" @ V3_0,
        /// Filesystem UUID.
        uuid: Option<String> = "uuid" @ V3_0,
        /// Wipe an existing filesystem.
        wipe_filesystem: Option<bool> = "wipeFilesystem" @ V3_0,
    }
}

spec_struct! {
    /// Owner of a node, by ID or name.
    NodeUser {
        /// Numeric ID.
        id: Option<i64> = "id" @ V3_0,
        /// Name, resolved in the target root.
        name: Option<String> = "name" @ V3_0,
    }
}

spec_struct! {
    /// Group of a node, by ID or name.
    NodeGroup {
        /// Numeric ID.
        id: Option<i64> = "id" @ V3_0,
        /// Name, resolved in the target root.
        name: Option<String> = "name" @ V3_0,
    }
}

spec_struct! {
    /// A regular file.
    File {
        /// Group.
        group: NodeGroup = "group" @ V3_0 in "Node",
        /// Replace an existing node.
        overwrite: Option<bool> = "overwrite" @ V3_0 in "Node",
        /// Absolute path.
        path: String = "path" @ V3_0 in "Node",
        /// Owner.
        user: NodeUser = "user" @ V3_0 in "Node",
        /// Contents appended to the file.
        append: Vec<Resource> = "append" @ V3_0 in "FileEmbedded1",
        /// Contents.
        contents: Resource = "contents" @ V3_0 in "FileEmbedded1",
        /// Permission bits (decimal in JSON).
        mode: Option<i64> = "mode" @ V3_0 in "FileEmbedded1",
    }
}

spec_struct! {
    /// A directory.
    Directory {
        /// Group.
        group: NodeGroup = "group" @ V3_0 in "Node",
        /// Replace an existing node.
        overwrite: Option<bool> = "overwrite" @ V3_0 in "Node",
        /// Absolute path.
        path: String = "path" @ V3_0 in "Node",
        /// Owner.
        user: NodeUser = "user" @ V3_0 in "Node",
        /// Permission bits (decimal in JSON).
        mode: Option<i64> = "mode" @ V3_0 in "DirectoryEmbedded1",
    }
}

spec_struct! {
    /// A symbolic or hard link.
    Link {
        /// Group.
        group: NodeGroup = "group" @ V3_0 in "Node",
        /// Replace an existing node.
        overwrite: Option<bool> = "overwrite" @ V3_0 in "Node",
        /// Absolute path.
        path: String = "path" @ V3_0 in "Node",
        /// Owner.
        user: NodeUser = "user" @ V3_0 in "Node",
        /// A hard link instead of a symbolic one.
        hard: Option<bool> = "hard" @ V3_0 in "LinkEmbedded1",
        /// Link target.
        target: Option<String> = "target" @ V3_0 in "LinkEmbedded1",
    }
}

spec_struct! {
    /// systemd settings.
    Systemd {
        /// Units.
        units: Vec<Unit> = "units" @ V3_0,
    }
}

spec_struct! {
    /// A systemd unit.
    Unit {
        /// Unit file contents.
        contents: Option<String> = "contents" @ V3_0,
        /// Drop-ins.
        dropins: Vec<Dropin> = "dropins" @ V3_0,
        /// Enable (or with `false`, disable) the unit.
        enabled: Option<bool> = "enabled" @ V3_0,
        /// Mask the unit.
        mask: Option<bool> = "mask" @ V3_0,
        /// Unit name with its extension.
        name: String = "name" @ V3_0,
    }
}

spec_struct! {
    /// A unit drop-in.
    Dropin {
        /// Drop-in contents.
        contents: Option<String> = "contents" @ V3_0,
        /// File name, ending in `.conf`.
        name: String = "name" @ V3_0,
    }
}
