//! Merge and translation with upstream's semantics.

use ignition_config::{Config, Version, merge, parse, to_json, translate};

fn cfg(json: &str) -> Config {
    match parse(json.as_bytes()) {
        Ok((c, _)) => c,
        Err(f) => panic!("{f}\n{json}"),
    }
}

#[test]
fn child_fields_override_and_parent_fields_stay() {
    let parent = cfg(
        r#"{"ignition":{"version":"3.4.0","timeouts":{"httpTotal":10,"httpResponseHeaders":5}},
        "storage":{"files":[{"path":"/a","mode":420,"overwrite":true,"contents":{"source":"data:,p"}}]}}"#,
    );
    let child = cfg(
        r#"{"ignition":{"version":"3.4.0","timeouts":{"httpTotal":20}},
        "storage":{"files":[{"path":"/a","mode":384}]}}"#,
    );
    let m = merge(&parent, &child);
    assert_eq!(m.ignition.timeouts.http_total, Some(20));
    assert_eq!(m.ignition.timeouts.http_response_headers, Some(5));
    assert_eq!(m.storage.files.len(), 1);
    assert_eq!(m.storage.files[0].mode, Some(0o600));
    assert_eq!(m.storage.files[0].overwrite, Some(true));
    assert_eq!(
        m.storage.files[0].contents.source.as_deref(),
        Some("data:,p")
    );
}

#[test]
fn files_directories_and_links_share_one_key_space() {
    let parent = cfg(r#"{"ignition":{"version":"3.4.0"},
        "storage":{"files":[{"path":"/a"},{"path":"/b"}],"directories":[{"path":"/c"}]}}"#);
    let child = cfg(r#"{"ignition":{"version":"3.4.0"},
        "storage":{"links":[{"path":"/a","target":"/x"}],"files":[{"path":"/c"},{"path":"/d"}]}}"#);
    let m = merge(&parent, &child);
    let paths = |v: Vec<&str>| v.into_iter().map(String::from).collect::<Vec<_>>();
    assert_eq!(
        m.storage
            .files
            .iter()
            .map(|f| f.path.clone())
            .collect::<Vec<_>>(),
        paths(vec!["/b", "/c", "/d"])
    );
    assert!(m.storage.directories.is_empty());
    assert_eq!(m.storage.links.len(), 1);
    assert_eq!(m.storage.links[0].path, "/a");
}

#[test]
fn lists_merge_by_key_parent_order_first() {
    let parent = cfg(r#"{"ignition":{"version":"3.4.0"},"passwd":{"users":[
        {"name":"core","sshAuthorizedKeys":["k1"],"groups":["wheel"]},{"name":"other"}]}}"#);
    let child = cfg(r#"{"ignition":{"version":"3.4.0"},"passwd":{"users":[
        {"name":"new"},{"name":"core","sshAuthorizedKeys":["k2","k1"],"shell":"/bin/zsh"}]}}"#);
    let m = merge(&parent, &child);
    let names: Vec<&str> = m.passwd.users.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["core", "other", "new"]);
    let core = &m.passwd.users[0];
    assert_eq!(core.ssh_authorized_keys, ["k1", "k2"]);
    assert_eq!(core.groups, ["wheel"]);
    assert_eq!(core.shell.as_deref(), Some("/bin/zsh"));
}

#[test]
fn option_lists_are_appended() {
    let parent = cfg(
        r#"{"ignition":{"version":"3.4.0"},"storage":{"filesystems":[
        {"device":"/dev/a","format":"ext4","options":["-b","4096"],"mountOptions":["noatime"]}],
        "files":[{"path":"/f","append":[{"source":"data:,1"}]}]}}"#,
    );
    let child = cfg(
        r#"{"ignition":{"version":"3.4.0"},"storage":{"filesystems":[
        {"device":"/dev/a","format":"xfs","options":["-b","4096"],"mountOptions":["ro"]}],
        "files":[{"path":"/f","append":[{"source":"data:,1"}]}]}}"#,
    );
    let m = merge(&parent, &child);
    assert_eq!(
        m.storage.filesystems[0].options,
        ["-b", "4096", "-b", "4096"]
    );
    assert_eq!(m.storage.filesystems[0].mount_options, ["noatime", "ro"]);
    assert_eq!(m.storage.filesystems[0].format.as_deref(), Some("xfs"));
    assert_eq!(m.storage.files[0].append.len(), 2);
}

#[test]
fn header_without_value_removes_parents_header() {
    let parent = cfg(
        r#"{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/f","contents":{
        "source":"https://x","httpHeaders":[{"name":"A","value":"1"},{"name":"B","value":"2"}]}}]}}"#,
    );
    let child = cfg(
        r#"{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/f","contents":{
        "source":"https://x","httpHeaders":[{"name":"A"},{"name":"B","value":"3"},{"name":"C","value":"4"}]}}]}}"#,
    );
    let m = merge(&parent, &child);
    let h: Vec<(String, Option<String>)> = m.storage.files[0]
        .contents
        .http_headers
        .iter()
        .map(|h| (h.name.clone(), h.value.clone()))
        .collect();
    assert_eq!(
        h,
        [
            ("B".into(), Some("3".into())),
            ("C".into(), Some("4".into()))
        ]
    );
}

#[test]
fn kernel_arguments_share_one_key_space() {
    let parent =
        cfg(r#"{"ignition":{"version":"3.4.0"},"kernelArguments":{"shouldExist":["a","b"]}}"#);
    let child =
        cfg(r#"{"ignition":{"version":"3.4.0"},"kernelArguments":{"shouldNotExist":["a"]}}"#);
    let m = merge(&parent, &child);
    assert_eq!(m.kernel_arguments.should_exist, ["b"]);
    assert_eq!(m.kernel_arguments.should_not_exist, ["a"]);
}

#[test]
fn partitions_merge_by_number_then_label() {
    let parent = cfg(
        r#"{"ignition":{"version":"3.4.0"},"storage":{"disks":[{"device":"/dev/a","partitions":[
        {"number":1,"sizeMiB":10},{"label":"data","sizeMiB":20}]}]}}"#,
    );
    let child = cfg(
        r#"{"ignition":{"version":"3.4.0"},"storage":{"disks":[{"device":"/dev/a","wipeTable":true,"partitions":[
        {"number":1,"label":"boot"},{"label":"data","sizeMiB":0}]}]}}"#,
    );
    let m = merge(&parent, &child);
    let d = &m.storage.disks[0];
    assert_eq!(d.wipe_table, Some(true));
    assert_eq!(d.partitions.len(), 2);
    assert_eq!(d.partitions[0].label.as_deref(), Some("boot"));
    assert_eq!(d.partitions[0].size_mib, Some(10));
    assert_eq!(d.partitions[1].size_mib, Some(0));
}

#[test]
fn empty_child_section_keeps_parent_section() {
    let parent = cfg(
        r#"{"ignition":{"version":"3.4.0"},"systemd":{"units":[{"name":"a.service","mask":true}]}}"#,
    );
    let child = cfg(r#"{"ignition":{"version":"3.4.0"}}"#);
    let m = merge(&parent, &child);
    assert_eq!(m.systemd, parent.systemd);
    assert_eq!(merge(&child, &parent).systemd, parent.systemd);
}

#[test]
fn translate_sets_version_and_upgrades_values() {
    let old = cfg(
        r#"{"ignition":{"version":"3.0.0","security":{"tls":{"certificateAuthorities":[{"source":"http://ca"}]}}},
        "storage":{"files":[{"path":"/s","mode":2541}],"directories":[{"path":"/d","mode":1023}],
        "links":[{"path":"/l","target":"/t"}],"raid":[{"name":"md","level":"raid1","devices":["/dev/a","/dev/b"]}]}}"#,
    );
    let t = translate(old.clone(), Version::V3_6).unwrap();
    assert_eq!(t.ignition.version, "3.6.0");
    // 3.6.0 clears the special bits that older specs never applied.
    assert_eq!(t.storage.files[0].mode, Some(0o755));
    assert_eq!(t.storage.directories[0].mode, Some(0o777));
    // The result is a valid 3.6.0 config.
    let (back, report) = parse(to_json(&t).as_bytes()).unwrap();
    assert!(report.is_empty(), "{report}");
    assert_eq!(back, t);

    let same = translate(old.clone(), Version::V3_5).unwrap();
    assert_eq!(same.storage.files[0].mode, Some(0o4755));
    assert!(translate(t, Version::V3_0).is_err());
}

#[test]
fn translate_makes_pre_3_3_plain_strings_present() {
    let old = cfg(
        r#"{"ignition":{"version":"3.2.0"},"storage":{"links":[{"path":"/l","hard":false,"target":"/t"},{"path":"/m","target":""}],
        "raid":[{"name":"md","level":"raid1","devices":["/dev/a"]}]}}"#,
    );
    let mut no_target = old.clone();
    no_target.storage.links[1].target = None;
    let t = translate(no_target, Version::V3_3).unwrap();
    assert_eq!(t.storage.links[1].target.as_deref(), Some(""));
    assert_eq!(t.storage.raid[0].level.as_deref(), Some("raid1"));
}

#[test]
fn tang_advertisement_survives_translation() {
    let c = cfg(
        r#"{"ignition":{"version":"3.4.0"},"storage":{"luks":[{"name":"r","device":"/dev/a",
        "clevis":{"tang":[{"url":"https://t","thumbprint":"x","advertisement":"{}"}]}}]}}"#,
    );
    let t = translate(c, Version::V3_6).unwrap();
    assert_eq!(
        t.storage.luks[0].clevis.tang[0].advertisement.as_deref(),
        Some("{}")
    );
}
