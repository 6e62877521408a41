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

fn have_shadow_tools() -> bool {
    let ok = Path::new("/usr/sbin/useradd").exists() && rustix_is_root();
    if !ok {
        eprintln!("SKIP: users and groups need root and the shadow tools (useradd, groupadd)");
    }
    ok
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
        "enable a.service\nenable getty@.service tty1 tty2\ndisable c.service\n"
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
