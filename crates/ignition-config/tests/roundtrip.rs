//! Property: serializing any config and parsing it back gives the same
//! config, and serialization is stable.

use ignition_config::types::*;
use ignition_config::{parse_unvalidated, to_json};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z/._-]{0,12}",
        "\\PC{0,8}",
        Just(String::new()),
        Just("data:,x%20y".to_string()),
    ]
}

fn resource() -> impl Strategy<Value = Resource> {
    (
        option::of(prop_oneof![Just("gzip".to_string()), text()]),
        vec((text(), option::of(text())), 0..3),
        option::of(text()),
        option::of(text()),
    )
        .prop_map(|(compression, headers, source, hash)| Resource {
            compression,
            http_headers: headers
                .into_iter()
                .map(|(name, value)| HttpHeader { name, value })
                .collect(),
            source,
            verification: Verification { hash },
        })
}

fn owner() -> impl Strategy<Value = (Option<i64>, Option<String>)> {
    (option::of(any::<i64>()), option::of(text()))
}

fn file() -> impl Strategy<Value = File> {
    (
        text(),
        option::of(any::<bool>()),
        option::of(0i64..0o10000),
        resource(),
        vec(resource(), 0..2),
        owner(),
        owner(),
    )
        .prop_map(|(path, overwrite, mode, contents, append, u, g)| File {
            group: NodeGroup { id: g.0, name: g.1 },
            overwrite,
            path,
            user: NodeUser { id: u.0, name: u.1 },
            append,
            contents,
            mode,
        })
}

fn link() -> impl Strategy<Value = Link> {
    (text(), option::of(text()), option::of(any::<bool>())).prop_map(|(path, target, hard)| Link {
        path,
        target,
        hard,
        ..Link::default()
    })
}

fn partition() -> impl Strategy<Value = Partition> {
    (
        any::<i64>(),
        option::of(text()),
        option::of(any::<i64>()),
        option::of(any::<i64>()),
        option::of(any::<bool>()),
        option::of(text()),
    )
        .prop_map(
            |(number, label, start_mib, size_mib, should_exist, type_guid)| Partition {
                number,
                label,
                start_mib,
                size_mib,
                should_exist,
                type_guid,
                ..Partition::default()
            },
        )
}

fn user() -> impl Strategy<Value = PasswdUser> {
    (
        text(),
        vec(text(), 0..3),
        vec(text(), 0..3),
        option::of(any::<i64>()),
        option::of(any::<bool>()),
    )
        .prop_map(
            |(name, ssh_authorized_keys, groups, uid, should_exist)| PasswdUser {
                name,
                ssh_authorized_keys,
                groups,
                uid,
                should_exist,
                ..PasswdUser::default()
            },
        )
}

fn unit() -> impl Strategy<Value = Unit> {
    (
        text(),
        option::of(text()),
        option::of(any::<bool>()),
        option::of(any::<bool>()),
        vec((text(), option::of(text())), 0..2),
    )
        .prop_map(|(name, contents, enabled, mask, dropins)| Unit {
            name,
            contents,
            enabled,
            mask,
            dropins: dropins
                .into_iter()
                .map(|(name, contents)| Dropin { name, contents })
                .collect(),
        })
}

fn luks() -> impl Strategy<Value = Luks> {
    (
        text(),
        option::of(text()),
        resource(),
        vec(text(), 0..2),
        option::of(any::<bool>()),
        vec((text(), option::of(text()), option::of(text())), 0..2),
        option::of(any::<bool>()),
    )
        .prop_map(|(name, device, key_file, options, tpm2, tang, cex)| Luks {
            name,
            device,
            key_file,
            open_options: options.clone(),
            options,
            clevis: Clevis {
                tpm2,
                tang: tang
                    .into_iter()
                    .map(|(url, thumbprint, advertisement)| Tang {
                        url,
                        thumbprint,
                        advertisement,
                    })
                    .collect(),
                ..Clevis::default()
            },
            cex: Cex { enabled: cex },
            ..Luks::default()
        })
}

fn config() -> impl Strategy<Value = Config> {
    (
        prop_oneof![Just("3.6.0"), Just("3.7.0-experimental")],
        vec(resource(), 0..2),
        vec(file(), 0..3),
        vec(link(), 0..2),
        vec(
            (text(), vec(partition(), 0..3), option::of(any::<bool>())),
            0..2,
        ),
        vec(user(), 0..2),
        vec(unit(), 0..2),
        vec(luks(), 0..2),
        (vec(text(), 0..2), vec(text(), 0..2)),
    )
        .prop_map(
            |(version, merge, files, links, disks, users, units, luks, kargs)| {
                let mut c = Config::default();
                c.ignition.version = version.to_string();
                c.ignition.config.merge = merge;
                c.storage.files = files;
                c.storage.links = links;
                c.storage.disks = disks
                    .into_iter()
                    .map(|(device, partitions, wipe_table)| Disk {
                        device,
                        partitions,
                        wipe_table,
                    })
                    .collect();
                c.storage.luks = luks;
                c.passwd.users = users;
                c.systemd.units = units;
                c.kernel_arguments = KernelArguments {
                    should_exist: kargs.0,
                    should_not_exist: kargs.1,
                };
                c
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn serialize_then_parse_gives_the_config_back(c in config()) {
        let json = to_json(&c);
        let (back, report) = parse_unvalidated(json.as_bytes()).map_err(|f| TestCaseError::fail(format!("{f}\n{json}")))?;
        prop_assert!(report.is_empty(), "{report}");
        prop_assert_eq!(&back, &c);
        prop_assert_eq!(to_json(&back), json);
    }
}
