//! The /etc three-way merge, case by case: old defaults, the live /etc a
//! user changed, the new release's defaults, and what the new /etc must be.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use sysroot::etc_merge::{MergeReport, merge};

#[derive(Clone, Copy)]
enum E {
    File(&'static str, u32),
    Link(&'static str),
    Dir,
}

fn build(root: &Path, entries: &[(&str, E)]) {
    fs::create_dir_all(root).unwrap();
    for (path, e) in entries {
        let p = root.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        match e {
            E::File(data, mode) => {
                fs::write(&p, data).unwrap();
                fs::set_permissions(&p, fs::Permissions::from_mode(*mode)).unwrap();
            }
            E::Link(t) => std::os::unix::fs::symlink(t, &p).unwrap(),
            E::Dir => fs::create_dir_all(&p).unwrap(),
        }
    }
}

fn describe(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for p in names {
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let m = fs::symlink_metadata(&p).unwrap();
            if m.file_type().is_symlink() {
                out.push(format!("{rel} -> {}", fs::read_link(&p).unwrap().display()));
            } else if m.is_dir() {
                out.push(format!("{rel}/ {:o}", m.permissions().mode() & 0o7777));
                walk(root, &p, out);
            } else {
                out.push(format!(
                    "{rel} {:o} {}",
                    m.permissions().mode() & 0o7777,
                    fs::read_to_string(&p).unwrap()
                ));
            }
        }
    }
    walk(root, root, &mut out);
    out
}

struct Case {
    name: &'static str,
    old_defaults: Vec<(&'static str, E)>,
    local: Vec<(&'static str, E)>,
    new_defaults: Vec<(&'static str, E)>,
    want: Result<Vec<&'static str>, &'static str>,
}

fn run(case: &Case) -> (Result<MergeReport, String>, Vec<String>) {
    let tmp = tempfile::tempdir().unwrap();
    let (orig, modified, new) = (
        tmp.path().join("orig"),
        tmp.path().join("etc"),
        tmp.path().join("new"),
    );
    build(&orig, &case.old_defaults);
    build(&modified, &case.local);
    build(&new, &case.new_defaults);
    let r = merge(&orig, &modified, &new).map_err(|e| e.to_string());
    (r, describe(&new))
}

#[test]
fn merge_cases() {
    use E::*;
    let cases = vec![
        Case {
            name: "untouched file follows the new release",
            old_defaults: vec![("motd", File("v1", 0o644))],
            local: vec![("motd", File("v1", 0o644))],
            new_defaults: vec![("motd", File("v2", 0o644))],
            want: Ok(vec!["motd 644 v2"]),
        },
        Case {
            name: "modified file is kept over a new default",
            old_defaults: vec![("motd", File("v1", 0o644))],
            local: vec![("motd", File("mine", 0o644))],
            new_defaults: vec![("motd", File("v2", 0o644))],
            want: Ok(vec!["motd 644 mine"]),
        },
        Case {
            name: "added file is kept",
            old_defaults: vec![],
            local: vec![("hostname", File("node1", 0o644))],
            new_defaults: vec![("motd", File("v2", 0o644))],
            want: Ok(vec!["hostname 644 node1", "motd 644 v2"]),
        },
        Case {
            name: "deleted file stays deleted",
            old_defaults: vec![("issue", File("v1", 0o644)), ("motd", File("v1", 0o644))],
            local: vec![("motd", File("v1", 0o644))],
            new_defaults: vec![("issue", File("v2", 0o644)), ("motd", File("v2", 0o644))],
            want: Ok(vec!["motd 644 v2"]),
        },
        Case {
            name: "a default dropped by the new release goes, one changed locally stays",
            old_defaults: vec![("a", File("1", 0o644)), ("b", File("1", 0o644))],
            local: vec![("a", File("1", 0o644)), ("b", File("mine", 0o644))],
            new_defaults: vec![],
            want: Ok(vec!["b 644 mine"]),
        },
        Case {
            name: "permissions changed locally are kept",
            old_defaults: vec![("secret", File("s", 0o644))],
            local: vec![("secret", File("s", 0o600))],
            new_defaults: vec![("secret", File("s2", 0o644))],
            want: Ok(vec!["secret 600 s"]),
        },
        Case {
            name: "symlink retargeted locally is kept; untouched one follows",
            old_defaults: vec![("localtime", Link("UTC")), ("alt", Link("a1"))],
            local: vec![("localtime", Link("Europe/Paris")), ("alt", Link("a1"))],
            new_defaults: vec![("localtime", Link("UTC")), ("alt", Link("a2"))],
            want: Ok(vec!["alt -> a2", "localtime -> Europe/Paris"]),
        },
        Case {
            name: "added directory with contents merges into the new one",
            old_defaults: vec![("ssh/ssh_config", File("d", 0o644))],
            local: vec![
                ("ssh/ssh_config", File("d", 0o644)),
                ("ssh/sshd_config.d/10-mine.conf", File("x", 0o600)),
            ],
            new_defaults: vec![("ssh/ssh_config", File("d2", 0o644))],
            want: Ok(vec![
                "ssh/ 755",
                "ssh/ssh_config 644 d2",
                "ssh/sshd_config.d/ 755",
                "ssh/sshd_config.d/10-mine.conf 600 x",
            ]),
        },
        Case {
            name: "an empty directory added locally is kept; one removed locally stays removed",
            old_defaults: vec![("old.d", Dir)],
            local: vec![("cron.d", Dir)],
            new_defaults: vec![("old.d/new-default", File("n", 0o644))],
            want: Ok(vec!["cron.d/ 755"]),
        },
        Case {
            name: "a local file where the new release has a directory is a conflict",
            old_defaults: vec![],
            local: vec![("conf", File("mine", 0o644))],
            new_defaults: vec![("conf/a", File("new", 0o644))],
            want: Err(
                "/etc merge conflict at /etc/conf: it is a file in the local /etc but a directory in the new release",
            ),
        },
        Case {
            name: "a local directory where the new release has a file is a conflict",
            old_defaults: vec![],
            local: vec![("conf/a", File("mine", 0o644))],
            new_defaults: vec![("conf", File("new", 0o644))],
            want: Err(
                "/etc merge conflict at /etc/conf: it is a directory in the local /etc but a file in the new release",
            ),
        },
        Case {
            name: "a file the user turned into a directory meets the new default file",
            old_defaults: vec![("x", File("1", 0o644))],
            local: vec![("x/inner", File("i", 0o644))],
            new_defaults: vec![("x", File("2", 0o644))],
            want: Err(
                "/etc merge conflict at /etc/x: it is a directory in the local /etc but a file in the new release",
            ),
        },
    ];
    for case in &cases {
        let (r, tree) = run(case);
        match (&case.want, r) {
            (Ok(want), Ok(_)) => assert_eq!(tree, *want, "{}", case.name),
            (Err(want), Err(got)) => assert_eq!(got, *want, "{}", case.name),
            (want, got) => panic!(
                "{}: want {want:?}, got {got:?} with tree {tree:?}",
                case.name
            ),
        }
    }
}

#[test]
fn report_names_what_was_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let (orig, modified, new) = (
        tmp.path().join("o"),
        tmp.path().join("m"),
        tmp.path().join("n"),
    );
    build(
        &orig,
        &[("a", E::File("1", 0o644)), ("b", E::File("1", 0o644))],
    );
    build(
        &modified,
        &[("a", E::File("2", 0o644)), ("c", E::File("3", 0o644))],
    );
    build(
        &new,
        &[("a", E::File("9", 0o644)), ("b", E::File("9", 0o644))],
    );
    let r = merge(&orig, &modified, &new).unwrap();
    assert_eq!(r.modified, vec!["a"]);
    assert_eq!(r.added, vec!["c"]);
    assert_eq!(r.removed, vec!["b"]);
}
