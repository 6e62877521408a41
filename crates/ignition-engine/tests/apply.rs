//! Applying configs to scratch roots, judged by what is on disk.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

fn config(json: &str) -> ignition_config::Config {
    match ignition_config::parse(json.as_bytes()) {
        Ok((c, _)) => c,
        Err(f) => panic!("{f}"),
    }
}

fn skeleton(root: &Path) {
    let etc = root.join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    for (name, text, mode) in [
        ("passwd", "root:x:0:0:root:/root:/bin/bash\n", 0o644),
        ("group", "root:x:0:\nwheel:x:10:\nusers:x:100:\n", 0o644),
        ("shadow", "root:*:19000:0:99999:7:::\n", 0o600),
        ("gshadow", "root:*::\nwheel:*::\nusers:*::\n", 0o600),
    ] {
        std::fs::write(etc.join(name), text).unwrap();
        std::fs::set_permissions(etc.join(name), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    std::fs::create_dir_all(root.join("home")).unwrap();
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

use test_support::skip;

fn have_shadow_tools() -> bool {
    let ok = Path::new("/usr/sbin/useradd").exists() && rustix_is_root();
    if !ok {
        skip("users and groups need root and the shadow tools (useradd, groupadd)");
    }
    ok
}

fn apply_opts(
    c: &ignition_config::Config,
    root: &Path,
    opts: &ignition_engine::Options,
) -> Result<ignition_engine::Applied, ignition_engine::ApplyError> {
    let fetcher = ignition_engine::resource::Fetcher::for_config(c, true);
    ignition_engine::apply_opts(c, root, &fetcher, opts)
}

fn rustix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

#[test]
fn files_directories_and_links() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/existing"), "old\n").unwrap();
    std::fs::set_permissions(
        root.join("etc/existing"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let c = config(
        r#"{"ignition":{"version":"3.6.0"},"storage":{
        "files":[
          {"path":"/etc/motd","mode":420,"contents":{"source":"data:,hello%0A"}},
          {"path":"/opt/app/bin/run","mode":2541,"user":{"id":12},"group":{"id":34},"contents":{"source":"data:,x"}},
          {"path":"/etc/existing","append":[{"source":"data:,more%0A"}]},
          {"path":"/etc/empty"},
          {"path":"/etc/gz","contents":{"compression":"gzip","source":"data:;base64,H4sIAAAAAAACA8vI5AIAenpv7QMAAAA="}}
        ],
        "directories":[{"path":"/var/lib/app","mode":448},{"path":"/etc","mode":493}],
        "links":[
          {"path":"/etc/localtime","target":"../usr/share/zoneinfo/UTC"},
          {"path":"/etc/motd.hard","target":"/etc/motd","hard":true}
        ]}}"#,
    );
    let applied = ignition_engine::apply(&c, root).unwrap();
    assert_eq!(applied.nodes, 9);
    assert_eq!(
        std::fs::read_to_string(root.join("etc/motd")).unwrap(),
        "hello\n"
    );
    assert_eq!(mode(&root.join("etc/motd")), 0o644);
    // 3.6.0 applies the setuid bit; the owner is by id; parents are 0755.
    let run = root.join("opt/app/bin/run");
    assert_eq!(mode(&run), 0o4755);
    let m = std::fs::metadata(&run).unwrap();
    assert_eq!((m.uid(), m.gid()), (12, 34));
    assert_eq!(mode(&root.join("opt/app")), 0o755);
    // No contents: the existing file is kept, appended to, its mode kept.
    assert_eq!(
        std::fs::read_to_string(root.join("etc/existing")).unwrap(),
        "old\nmore\n"
    );
    assert_eq!(mode(&root.join("etc/existing")), 0o600);
    assert_eq!(std::fs::read(root.join("etc/empty")).unwrap(), b"");
    assert_eq!(
        std::fs::read_to_string(root.join("etc/gz")).unwrap(),
        "hi\n"
    );
    assert_eq!(mode(&root.join("var/lib/app")), 0o700);
    assert_eq!(
        std::fs::read_link(root.join("etc/localtime")).unwrap(),
        Path::new("../usr/share/zoneinfo/UTC")
    );
    assert_eq!(
        std::fs::metadata(root.join("etc/motd.hard")).unwrap().ino(),
        std::fs::metadata(root.join("etc/motd")).unwrap().ino()
    );
}

#[test]
fn refuses_to_overwrite_and_writes_nothing_on_bad_hash() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/hosts"), "keep").unwrap();
    let c = config(
        r#"{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/hosts","contents":{"source":"data:,new"}}]}}"#,
    );
    let e = ignition_engine::apply(&c, root).unwrap_err().to_string();
    assert!(
        e.contains("$.storage.files.0") && e.contains("overwrite is false"),
        "{e}"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/hosts")).unwrap(),
        "keep"
    );

    let bad = format!(
        r#"{{"ignition":{{"version":"3.4.0"}},"storage":{{"files":[{{"path":"/etc/new","contents":{{"source":"data:,x","verification":{{"hash":"sha256-{}"}}}}}}]}}}}"#,
        "0".repeat(64)
    );
    let e = ignition_engine::apply(&config(&bad), root)
        .unwrap_err()
        .to_string();
    assert!(e.contains("do not match the expected hash"), "{e}");
    assert!(!root.join("etc/new").exists());
    let names: Vec<_> = std::fs::read_dir(root.join("etc"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["hosts"]);
}

#[test]
fn symlinks_in_the_target_never_lead_out() {
    let outside = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::os::unix::fs::symlink(outside.path(), root.join("etc")).unwrap();
    let c = config(
        r#"{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/passwd","contents":{"source":"data:,pwned"}}],
        "directories":[{"path":"/etc/sub"}]}}"#,
    );
    ignition_engine::apply(&c, root).unwrap();
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    let inside = root.join(outside.path().strip_prefix("/").unwrap());
    assert_eq!(
        std::fs::read_to_string(inside.join("passwd")).unwrap(),
        "pwned"
    );
}

#[test]
fn units_dropins_masks_and_presets() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let c = config(
        r#"{"ignition":{"version":"3.4.0"},"systemd":{"units":[
        {"name":"a.service","enabled":true,"contents":"[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n",
         "dropins":[{"name":"10-x.conf","contents":"[Service]\nEnvironment=A=1\n"},{"name":"20-empty.conf"}]},
        {"name":"b.service","mask":true},
        {"name":"getty@tty1.service","enabled":true},
        {"name":"getty@tty2.service","enabled":true},
        {"name":"c.service","enabled":false}]}}"#,
    );
    ignition_engine::apply(&c, root).unwrap();
    let sys = root.join("etc/systemd/system");
    assert!(
        std::fs::read_to_string(sys.join("a.service"))
            .unwrap()
            .contains("ExecStart=/bin/true")
    );
    assert_eq!(
        std::fs::read_to_string(sys.join("a.service.d/10-x.conf")).unwrap(),
        "[Service]\nEnvironment=A=1\n"
    );
    assert!(!sys.join("a.service.d/20-empty.conf").exists());
    assert_eq!(
        std::fs::read_link(sys.join("b.service")).unwrap(),
        Path::new("/dev/null")
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/systemd/system-preset/20-ignition.preset")).unwrap(),
        "enable a.service\nenable getty@.service tty1 tty2\n"
    );
}

#[test]
fn users_groups_and_ssh_keys() {
    if !have_shadow_tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    skeleton(root);
    let c = config(
        r#"{"ignition":{"version":"3.4.0"},"passwd":{
        "groups":[{"name":"ops","gid":4242}],
        "users":[
          {"name":"core","uid":1000,"gecos":"CoreOS Admin","groups":["wheel","ops"],"shell":"/bin/sh",
           "passwordHash":"$6$salt$hashhashhash","sshAuthorizedKeys":["ssh-ed25519 AAAA one","ssh-rsa BBBB two"]},
          {"name":"svc","system":true,"noCreateHome":true,"homeDir":"/var/empty"}]},
        "storage":{"files":[{"path":"/home/core/owned","user":{"name":"core"},"group":{"name":"ops"},"contents":{"source":"data:,x"}}]}}"#,
    );
    ignition_engine::apply(&c, root).unwrap();
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    let core = passwd.lines().find(|l| l.starts_with("core:")).unwrap();
    let f: Vec<&str> = core.split(':').collect();
    assert_eq!(
        (f[2], f[4], f[5], f[6]),
        ("1000", "CoreOS Admin", "/home/core", "/bin/sh")
    );
    let group = std::fs::read_to_string(root.join("etc/group")).unwrap();
    assert!(
        group
            .lines()
            .any(|l| l.starts_with("ops:x:4242:") && l.ends_with("core")),
        "{group}"
    );
    assert!(
        group
            .lines()
            .any(|l| l.starts_with("wheel:") && l.ends_with("core")),
        "{group}"
    );
    let shadow = std::fs::read_to_string(root.join("etc/shadow")).unwrap();
    assert!(
        shadow
            .lines()
            .any(|l| l.starts_with("core:$6$salt$hashhashhash:"))
    );
    assert!(
        passwd
            .lines()
            .any(|l| l.starts_with("svc:") && l.contains(":/var/empty:"))
    );
    assert!(!root.join("var/empty").exists());
    let keys = root.join("home/core/.ssh/authorized_keys.d/ignition");
    assert_eq!(
        std::fs::read_to_string(&keys).unwrap(),
        "ssh-ed25519 AAAA one\nssh-rsa BBBB two\n"
    );
    assert_eq!(mode(&keys), 0o600);
    assert_eq!(mode(&root.join("home/core/.ssh")), 0o700);
    assert_eq!(std::fs::metadata(&keys).unwrap().uid(), 1000);
    let owned = std::fs::metadata(root.join("home/core/owned")).unwrap();
    assert_eq!((owned.uid(), owned.gid()), (1000, 4242));

    // shouldExist: false removes; a failing tool is reported without the hash.
    let c = config(
        r#"{"ignition":{"version":"3.4.0"},"passwd":{"users":[{"name":"svc","shouldExist":false}]}}"#,
    );
    ignition_engine::apply(&c, root).unwrap();
    assert!(
        !std::fs::read_to_string(root.join("etc/passwd"))
            .unwrap()
            .contains("svc:")
    );
    let c = config(
        r#"{"ignition":{"version":"3.4.0"},"passwd":{"users":[{"name":"bad","primaryGroup":"nosuchgroup","passwordHash":"$6$secret$value"}]}}"#,
    );
    let e = ignition_engine::apply(&c, root).unwrap_err().to_string();
    assert!(
        e.contains("$.passwd.users.0") && e.contains("useradd"),
        "{e}"
    );
    assert!(
        !e.contains("$6$secret$value") && e.contains("<redacted>"),
        "{e}"
    );
}

#[test]
fn groups_without_a_hash_get_the_tools_locked_password() {
    if !have_shadow_tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    skeleton(root);
    let c = config(
        r#"{"ignition":{"version":"3.4.0"},"passwd":{"groups":[
          {"name":"research","gid":5100},
          {"name":"hashed","passwordHash":"$6$salt$grouphash"},
          {"name":"wheel","gid":4010}]}}"#,
    );
    ignition_engine::apply(&c, root).unwrap();
    let gshadow = std::fs::read_to_string(root.join("etc/gshadow")).unwrap();
    // What upstream's root has: groupadd without --password writes `!`.
    assert!(gshadow.lines().any(|l| l == "research:!::"), "{gshadow}");
    assert!(
        gshadow.lines().any(|l| l == "hashed:$6$salt$grouphash::"),
        "{gshadow}"
    );
    // An existing group is changed with groupmod, as upstream.
    let group = std::fs::read_to_string(root.join("etc/group")).unwrap();
    assert!(group.lines().any(|l| l == "wheel:x:4010:"), "{group}");
    assert!(group.lines().any(|l| l == "research:x:5100:"), "{group}");
}

#[test]
fn ssh_keys_go_to_authorized_keys_when_the_fragment_is_off() {
    if !have_shadow_tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    skeleton(root);
    let c = config(
        r#"{"ignition":{"version":"3.4.0"},"passwd":{"users":[
          {"name":"core","uid":1000,"sshAuthorizedKeys":["ssh-ed25519 AAAA one"]}]}}"#,
    );
    let opts = ignition_engine::Options {
        authorized_keys_fragment: false,
        ..Default::default()
    };
    apply_opts(&c, root, &opts).unwrap();
    let keys = root.join("home/core/.ssh/authorized_keys");
    assert_eq!(
        std::fs::read_to_string(&keys).unwrap(),
        "ssh-ed25519 AAAA one\n"
    );
    assert_eq!(std::fs::metadata(&keys).unwrap().uid(), 1000);
    assert!(!root.join("home/core/.ssh/authorized_keys.d").exists());
}

#[test]
fn a_home_on_a_mount_point_becomes_the_users_and_0700() {
    if !have_shadow_tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    skeleton(root);
    // What the mount stage leaves: the mount point made 0755 by root.
    std::fs::create_dir_all(root.join("home/tester/data")).unwrap();
    for d in ["home/tester", "home/tester/data"] {
        std::fs::set_permissions(root.join(d), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let c = config(
        r#"{"ignition":{"version":"3.4.0"},"passwd":{"users":[{"name":"tester","uid":1500}]}}"#,
    );
    let opts = ignition_engine::Options {
        notated_directories: vec!["/home/tester".into(), "/home/tester/data".into()],
        ..Default::default()
    };
    apply_opts(&c, root, &opts).unwrap();
    for d in ["home/tester", "home/tester/data"] {
        let m = std::fs::metadata(root.join(d)).unwrap();
        assert_eq!(mode(&root.join(d)), 0o700, "{d}");
        assert_eq!(m.uid(), 1500, "{d}");
    }
    // /home itself was there before: untouched.
    assert_eq!(std::fs::metadata(root.join("home")).unwrap().uid(), 0);
}

#[test]
fn an_empty_source_writes_an_empty_file_over_a_link() {
    // Upstream's links.sym.writeover: overwrite a symlink with "".
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("usr")).unwrap();
    std::fs::write(root.join("usr/rofile"), "keep").unwrap();
    std::os::unix::fs::symlink("/usr/rofile", root.join("etc/file")).unwrap();
    let c = config(
        r#"{"ignition":{"version":"3.0.0"},"storage":{"files":[
          {"path":"/etc/file","mode":420,"overwrite":true,"contents":{"source":""}}]}}"#,
    );
    ignition_engine::apply(&c, root).unwrap();
    let m = std::fs::symlink_metadata(root.join("etc/file")).unwrap();
    assert!(m.is_file());
    assert_eq!(m.len(), 0);
    assert_eq!(std::fs::read(root.join("usr/rofile")).unwrap(), b"keep");
}

#[test]
fn existing_links_that_match_are_kept_and_others_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(root.join("target"), "t").unwrap();
    std::fs::write(root.join("other"), "o").unwrap();
    std::fs::hard_link(root.join("target"), root.join("existing")).unwrap();
    std::os::unix::fs::symlink("/target", root.join("sym")).unwrap();
    let c = config(
        r#"{"ignition":{"version":"3.4.0"},"storage":{"links":[
          {"path":"/existing","target":"/target","hard":true},
          {"path":"/sym","target":"/./target"}]}}"#,
    );
    ignition_engine::apply(&c, root).unwrap();
    assert_eq!(
        std::fs::metadata(root.join("existing")).unwrap().ino(),
        std::fs::metadata(root.join("target")).unwrap().ino()
    );
    // A hard link to another file, or a symlink elsewhere, is refused.
    for (json, path) in [
        (
            r#"{"path":"/existing","target":"/other","hard":true}"#,
            "hard link /existing",
        ),
        (r#"{"path":"/sym","target":"/other"}"#, "symlink /sym"),
    ] {
        let c = config(&format!(
            r#"{{"ignition":{{"version":"3.4.0"}},"storage":{{"links":[{json}]}}}}"#
        ));
        let e = ignition_engine::apply(&c, root).unwrap_err().to_string();
        assert!(e.contains(path) && e.contains("overwrite is false"), "{e}");
    }
}

#[test]
fn a_link_made_anew_gets_its_owner() {
    if !rustix_is_root() {
        skip("chown needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    // The link is there already, owned by root, with the same target.
    std::os::unix::fs::symlink("/usr/share/zoneinfo/UTC", root.join("etc/localtime")).unwrap();
    let c = config(
        r#"{"ignition":{"version":"3.4.0"},"storage":{"links":[
          {"path":"/etc/localtime","target":"/usr/share/zoneinfo/UTC","overwrite":true,
           "user":{"id":1000},"group":{"id":1001}}]}}"#,
    );
    ignition_engine::apply(&c, root).unwrap();
    let m = std::fs::symlink_metadata(root.join("etc/localtime")).unwrap();
    assert_eq!((m.uid(), m.gid()), (1000, 1001));
}

#[test]
fn entries_meeting_through_a_symlink_are_refused() {
    // Upstream's SymlinkResolutionCausesConflicts: /foo -> /.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::os::unix::fs::symlink("/", root.join("foo")).unwrap();
    let c = config(
        r#"{"ignition":{"version":"3.4.0"},"storage":{"files":[
          {"path":"/foo/bar/baz","contents":{"source":"data:,1"}},
          {"path":"/bar/baz","contents":{"source":"data:,2"}}]}}"#,
    );
    let e = ignition_engine::apply(&c, root).unwrap_err().to_string();
    assert!(
        e.contains("$.storage.files.1")
            && e.contains("resolved to /bar/baz after symlink chasing")
            && e.contains("/foo/bar/baz"),
        "{e}"
    );
    assert!(!root.join("bar").exists(), "nothing is written");
    // A relative link, a dangling one and a directory/link pair too.
    std::os::unix::fs::symlink("../nowhere/x", root.join("rel")).unwrap();
    let c = config(
        r#"{"ignition":{"version":"3.4.0"},"storage":{
          "directories":[{"path":"/nowhere/x/d"}],
          "links":[{"path":"/rel/d","target":"/etc"}]}}"#,
    );
    let e = ignition_engine::apply(&c, root).unwrap_err().to_string();
    assert!(
        e.contains("$.storage.links.0") && e.contains("/nowhere/x/d"),
        "{e}"
    );
}

#[test]
fn presets_are_sorted_as_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let c = config(
        r#"{"ignition":{"version":"3.4.0"},"systemd":{"units":[
          {"name":"zeta.service","enabled":true},
          {"name":"echo@bar.service","enabled":true},
          {"name":"alpha.service","enabled":true},
          {"name":"echo@foo.service","enabled":true}]}}"#,
    );
    ignition_engine::apply(&c, root).unwrap();
    assert_eq!(
        std::fs::read_to_string(root.join("etc/systemd/system-preset/20-ignition.preset")).unwrap(),
        "enable alpha.service\nenable echo@.service bar foo\nenable zeta.service\n"
    );
}

/// A root with `on.service` enabled (a link in multi-user.target.wants)
/// and `off.service` installed but not enabled.
fn enablement_root(root: &Path) {
    let sys = root.join("etc/systemd/system");
    std::fs::create_dir_all(sys.join("multi-user.target.wants")).unwrap();
    for u in ["on.service", "off.service"] {
        std::fs::write(
            sys.join(u),
            "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n",
        )
        .unwrap();
    }
    std::os::unix::fs::symlink(
        "/etc/systemd/system/on.service",
        sys.join("multi-user.target.wants/on.service"),
    )
    .unwrap();
}

const DISABLE_BOTH: &str = r#"{"ignition":{"version":"3.4.0"},"systemd":{"units":[
  {"name":"on.service","enabled":false},{"name":"off.service","enabled":false}]}}"#;

#[test]
fn disabling_asks_systemctl_and_removes_the_links() {
    let Some(systemctl) = ignition_engine::find_tool("systemctl") else {
        skip("systemctl is not installed (Debian's systemd package)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    enablement_root(root);
    let opts = ignition_engine::Options {
        systemctl: Some(systemctl),
        ..Default::default()
    };
    apply_opts(&config(DISABLE_BOTH), root, &opts).unwrap();
    // Only the enabled unit gets a line, and its link is gone.
    assert_eq!(
        std::fs::read_to_string(root.join("etc/systemd/system-preset/20-ignition.preset")).unwrap(),
        "disable on.service\n"
    );
    assert!(
        std::fs::symlink_metadata(
            root.join("etc/systemd/system/multi-user.target.wants/on.service")
        )
        .is_err()
    );
}

#[test]
fn disabling_without_systemctl_reads_the_links() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    enablement_root(root);
    let opts = ignition_engine::Options {
        systemctl: None,
        ..Default::default()
    };
    apply_opts(&config(DISABLE_BOTH), root, &opts).unwrap();
    assert_eq!(
        std::fs::read_to_string(root.join("etc/systemd/system-preset/20-ignition.preset")).unwrap(),
        "disable on.service\n"
    );
    assert!(
        std::fs::symlink_metadata(
            root.join("etc/systemd/system/multi-user.target.wants/on.service")
        )
        .is_err()
    );
    // Nothing enabled: no preset file at all.
    let dir = tempfile::tempdir().unwrap();
    apply_opts(&config(DISABLE_BOTH), dir.path(), &opts).unwrap();
    assert!(!dir.path().join("etc/systemd/system-preset").exists());
}
