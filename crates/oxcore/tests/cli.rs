//! The oxcore command line: links, demo, help.

mod common;

use common::oxcore;
use std::process::Command;

#[test]
fn install_links_creates_working_links_and_refuses_to_clobber() {
    let dir = tempfile::tempdir().unwrap();
    let out = oxcore()
        .arg("install-links")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let link = dir.path().join("ignition-validate");
    let target = std::fs::read_link(&link).unwrap();
    assert_eq!(
        target.canonicalize().unwrap(),
        std::path::Path::new(env!("CARGO_BIN_EXE_oxcore"))
            .canonicalize()
            .unwrap()
    );
    // The link behaves as the upstream tool.
    let usage = Command::new(&link).output().unwrap();
    assert_eq!(usage.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&usage.stderr).contains("[flags] config.ign"));

    let again = oxcore()
        .arg("install-links")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists; use --force"));
    let forced = oxcore()
        .args(["install-links", "--force"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(forced.status.success());
    // No temporary link is left behind.
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "airlock",
            "butane",
            "ignition",
            "ignition-validate",
            "ostree",
            "zincati"
        ]
    );

    let missing = oxcore()
        .arg("install-links")
        .arg(dir.path().join("nope"))
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not a directory"));
}

#[test]
fn demo_runs_on_embedded_defaults() {
    let out = oxcore().arg("demo").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("valid, no warnings"), "{text}");
    assert!(text.contains("unit hello.service (enabled)"), "{text}");
    // The update flow: the provisioned /etc survives the upgrade, the new
    // release's defaults arrive, and the rollback puts the first release first.
    assert!(
        text.contains("kept:     /etc/hostname = \"oxcore-demo\""),
        "{text}"
    );
    assert!(
        text.contains("kept:     /etc/passwd core = core:"),
        "{text}"
    );
    assert!(
        text.contains("updated:  /etc/motd = \"Welcome to Fedora CoreOS 41.20261209.3.0\""),
        "{text}"
    );
    // One reboot slot: the second node waits until the first is back.
    assert!(
        text.contains("node-a pre-reboot:   200\n   node-b pre-reboot:   500 {\"kind\":\"failed_lock\",\"value\":\"all 1 semaphore slots currently locked\"}\n   node-a steady-state: 200\n   node-b pre-reboot:   200"),
        "{text}"
    );
    // The update agent respects the rollback, then applies the update on
    // trial and marks it good after the reboot.
    for want in [
        "check: no update: every update offered is denylisted: 41.20261209.3.0 (left by a person's rollback)",
        "check: update finalized: 41.20261209.3.0 (on trial: 3 boot tries); rebooting (true)",
        "boot entries: ostree-1-fedora-coreos.conf, ostree-2-fedora-coreos+3.conf",
        "boot entries: ostree-1-fedora-coreos.conf, ostree-2-fedora-coreos+2-1.conf",
        "check: no update: booted release 41.20261209.3.0 is the newest offered",
        "boot entries: ostree-1-fedora-coreos.conf, ostree-2-fedora-coreos.conf (healthy: marked good)",
    ] {
        assert!(text.contains(want), "{want} not in {text}");
    }
    let rollback = text.split("9. Roll back").nth(1).unwrap();
    let first = rollback.find("41.20261125.3.0").unwrap();
    assert!(
        first < rollback.find("41.20261209.3.0").unwrap(),
        "{rollback}"
    );
    // The graph server on the composed releases, asked as two nodes.
    assert!(
        text.contains(
            "an eager node (wariness 0.1): 2 releases in the graph, may update to 41.20261209.3.0"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "a wary node (wariness 0.9): 2 releases in the graph, must wait for the rollout"
        ),
        "{text}"
    );
    assert!(text.contains("dashboard: http://127.0.0.1:"), "{text}");
}

#[test]
fn help_and_version() {
    let out = oxcore().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["demo", "ignition", "install-links"] {
        assert!(text.contains(cmd), "{text}");
    }
    let out = oxcore().arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("oxcore "));
    let bad = oxcore().arg("frobnicate").output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

/// `oxcore ignition --stage NAME` on the `file` platform with every path
/// under `d` (root `sysroot`, `run/`, kernel command line `cmdline`, user
/// config `config.ign`).
fn file_stage(d: &std::path::Path, name: &str) -> std::process::Command {
    let mut cmd = oxcore();
    cmd.args(["ignition", "--stage", name, "--platform", "file"])
        .arg("--root")
        .arg(d.join("sysroot"))
        .arg("--config-cache")
        .arg(d.join("run/ignition.json"))
        .arg("--state-file")
        .arg(d.join("run/state"))
        .arg("--neednet")
        .arg(d.join("run/neednet"))
        .arg("--system-config-dir")
        .arg(d.join("none"))
        .arg("--cmdline")
        .arg(d.join("cmdline"))
        .env("IGNITION_CONFIG_FILE", d.join("config.ign"));
    cmd
}

#[test]
fn ignition_stages_run_once_on_first_boot() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("sysroot")).unwrap();
    std::fs::write(d.join("config.ign"), r#"{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/hello","contents":{"source":"data:,hi"}}]}}"#).unwrap();
    let stage = |name: &str, cmdline: &str| {
        std::fs::write(d.join("cmdline"), cmdline).unwrap();
        file_stage(d, name).output().unwrap()
    };
    // Not the first boot: nothing happens.
    let out = stage("fetch-offline", "root=/dev/sda\n");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("not the first boot"));
    assert!(!d.join("run/ignition.json").exists());
    for name in [
        "fetch-offline",
        "kargs",
        "disks",
        "mount",
        "files",
        "umount",
    ] {
        let out = stage(name, "ignition.firstboot\n");
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        std::fs::read_to_string(d.join("sysroot/etc/hello")).unwrap(),
        "hi"
    );
    assert!(d.join("sysroot/etc/.ignition-result.json").exists());
}

/// The engine's notes (`tracing` events in the library) reach stderr bare,
/// as upstream prints them: an empty user config is ignored, saying so.
#[test]
fn ignition_notes_reach_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("config.ign"), "").unwrap();
    std::fs::write(d.join("cmdline"), "ignition.firstboot\n").unwrap();
    let out = file_stage(d, "fetch-offline").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let note = format!(
        "{}: not a config (empty): ignoring user-provided config\n",
        d.join("config.ign").display()
    );
    assert!(
        stderr.lines().any(|l| format!("{l}\n") == note),
        "no bare note in: {stderr}"
    );
}

/// `s3://` resources take their credentials, region and endpoint from the
/// environment as the AWS SDKs do; the S3-style test server checks each
/// signature with botocore and refuses anonymous reads of this bucket.
#[test]
fn ignition_apply_fetches_s3_with_credentials_from_the_environment() {
    use std::io::BufRead;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../ignition-engine/tests/s3_server.py"
    );
    let probe = Command::new("python3")
        .args(["-c", "import botocore.auth"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        test_support::skip("s3 apply test: needs python3 with botocore (python3-botocore)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("private")).unwrap();
    std::fs::write(data.join("private/motd"), "from s3\n").unwrap();
    let mut server = Command::new("python3")
        .arg(script)
        .arg(&data)
        .arg(r#"{"AKIDCLI": "cli-secret"}"#)
        .arg(dir.path().join("log"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut port = String::new();
    std::io::BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut port)
        .unwrap();
    let endpoint = format!("http://127.0.0.1:{}", port.trim());
    let config = dir.path().join("c.ign");
    std::fs::write(
        &config,
        r#"{"ignition":{"version":"3.4.0","timeouts":{"httpTotal":2}},
            "storage":{"files":[{"path":"/etc/motd","contents":{"source":"s3://private/motd"}}]}}"#,
    )
    .unwrap();
    let apply = |root: &std::path::Path, secret: Option<&str>| {
        std::fs::create_dir_all(root).unwrap();
        let mut cmd = oxcore();
        cmd.args(["ignition", "apply", "--root"])
            .arg(root)
            .arg(&config)
            .env("AWS_ENDPOINT_URL_S3", &endpoint)
            .env("AWS_REGION", "ap-south-1")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_SESSION_TOKEN");
        if let Some(secret) = secret {
            cmd.env("AWS_ACCESS_KEY_ID", "AKIDCLI")
                .env("AWS_SECRET_ACCESS_KEY", secret);
        }
        cmd.output().unwrap()
    };
    let signed = apply(&dir.path().join("signed"), Some("cli-secret"));
    let anonymous = apply(&dir.path().join("anonymous"), None);
    let wrong = apply(&dir.path().join("wrong"), Some("not-the-secret"));
    let _ = server.kill();
    let _ = server.wait();

    assert!(
        signed.status.success(),
        "{}",
        String::from_utf8_lossy(&signed.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("signed/etc/motd")).unwrap(),
        "from s3\n"
    );
    for (out, what) in [(&anonymous, "anonymous"), (&wrong, "wrong")] {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: {stderr}");
        assert!(
            stderr.contains("s3://private/motd") && stderr.contains("403"),
            "{what}: {stderr}"
        );
        assert!(!stderr.contains("not-the-secret"), "{stderr}");
        assert!(!dir.path().join(what).join("etc/motd").exists(), "{what}");
    }
}

/// An error's cause is printed once: libraries put the cause in their
/// message and do not also expose it as a `source` that `{:#}` would print
/// a second time.
#[test]
fn errors_say_their_cause_once() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("f");
    std::fs::write(&file, "").unwrap();
    let out = oxcore()
        .args(["ostree", &format!("--repo={}", file.display()), "init"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim(),
        format!(
            "error: {}/objects: Not a directory (os error 20)",
            file.display()
        )
    );
    let root = tmp.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    std::os::unix::fs::symlink("/nonexistent", root.join("boot")).unwrap();
    let out = oxcore()
        .args(["ostree", "admin", "init-fs", root.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("File exists").count(), 1, "{err}");
}

/// `oxcore ignition apply` renders `ignition.config.merge` and `replace`
/// as the stages do; offline, a child that needs the network is named.
#[test]
fn ignition_apply_renders_merged_and_replaced_configs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // data: URLs of child configs, percent-encoded.
    let child = |path: &str| {
        let json = format!(
            r#"{{"ignition":{{"version":"3.4.0"}},"storage":{{"files":[{{"path":"{path}","contents":{{"source":"data:,child"}}}}]}}}}"#
        );
        let enc: String = json
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        format!("data:,{enc}")
    };
    let apply = |root: &std::path::Path, config: &str, offline: bool| {
        std::fs::create_dir_all(root).unwrap();
        std::fs::write(d.join("c.ign"), config).unwrap();
        let mut cmd = oxcore();
        cmd.args(["ignition", "apply", "--root"]).arg(root);
        if offline {
            cmd.arg("--offline");
        }
        cmd.arg(d.join("c.ign")).output().unwrap()
    };
    let merged = d.join("merged");
    let out = apply(
        &merged,
        &format!(
            r#"{{"ignition":{{"version":"3.4.0","config":{{"merge":[{{"source":"{}"}}]}}}},
               "storage":{{"files":[{{"path":"/etc/parent","contents":{{"source":"data:,parent"}}}}]}}}}"#,
            child("/etc/merged")
        ),
        true,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(merged.join("etc/merged")).unwrap(),
        "child"
    );
    assert_eq!(
        std::fs::read_to_string(merged.join("etc/parent")).unwrap(),
        "parent"
    );

    let replaced = d.join("replaced");
    let out = apply(
        &replaced,
        &format!(
            r#"{{"ignition":{{"version":"3.4.0","config":{{"replace":{{"source":"{}"}}}}}},
               "storage":{{"files":[{{"path":"/etc/parent","contents":{{"source":"data:,parent"}}}}]}}}}"#,
            child("/etc/replacement")
        ),
        true,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(replaced.join("etc/replacement").exists());
    assert!(!replaced.join("etc/parent").exists(), "replace replaces");

    let remote = d.join("remote");
    let out = apply(
        &remote,
        r#"{"ignition":{"version":"3.4.0","config":{"merge":[{"source":"data:,%7B%22ignition%22%3A%7B%22version%22%3A%223.4.0%22%7D%7D"},{"source":"http://127.0.0.1:9/child.ign"}]}},
           "storage":{"files":[{"path":"/etc/parent","contents":{"source":"data:,parent"}}]}}"#,
        true,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("$.ignition.config.merge.1")
            && stderr.contains("http://127.0.0.1:9/child.ign"),
        "{stderr}"
    );
    assert!(!remote.join("etc/parent").exists(), "nothing is written");
}

/// Run through a link named `ignition`, oxcore is upstream's binary:
/// single-dash flags, `IGNITION_*` variables, no first-boot check, exit 2
/// for a usage error. `oxcore ignition` takes the same flags.
#[test]
fn the_ignition_link_takes_upstreams_flags_and_environment() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let bin = d.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_oxcore"), bin.join("ignition")).unwrap();
    let sys = d.join("system");
    std::fs::create_dir_all(sys.join("base.d")).unwrap();
    std::fs::write(
        sys.join("base.d/10-base.ign"),
        r#"{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/base","contents":{"source":"data:,base"}}]}}"#,
    )
    .unwrap();
    // The `file` platform reads config.ign in the working directory.
    std::fs::write(
        d.join("config.ign"),
        r#"{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/user","contents":{"source":"data:,user"}}]}}"#,
    )
    .unwrap();
    let root = d.join("root");
    std::fs::create_dir_all(&root).unwrap();
    let ignition = |stage: &str, root: &str| {
        Command::new(bin.join("ignition"))
            .current_dir(d)
            .args([
                "-platform",
                "file",
                "-stage",
                stage,
                "-root",
                root,
                "-log-to-stdout",
            ])
            .arg("-config-cache")
            .arg(d.join("ignition.json"))
            .arg(format!("-neednet={}", d.join("neednet").display()))
            .arg("-state-file")
            .arg(d.join("state"))
            .env("IGNITION_SYSTEM_CONFIG_DIR", &sys)
            .env_remove("IGNITION_CONFIG_FILE")
            .output()
            .unwrap()
    };
    for (stage, r) in [("fetch", ""), ("files", root.to_str().unwrap())] {
        let out = ignition(stage, r);
        assert!(
            out.status.success(),
            "{stage}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        std::fs::read_to_string(root.join("etc/base")).unwrap(),
        "base"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/user")).unwrap(),
        "user"
    );

    let usage = Command::new(bin.join("ignition"))
        .args(["-stage", "files"])
        .output()
        .unwrap();
    assert_eq!(usage.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&usage.stderr).contains("'--platform' must be provided"));

    // `oxcore ignition` itself: single-dash flags, and a Go duration.
    std::fs::write(d.join("cmdline"), "ignition.firstboot\n").unwrap();
    let out = oxcore()
        .current_dir(d)
        .args([
            "ignition",
            "-stage=fetch-offline",
            "-platform",
            "file",
            "-fetch-timeout",
            "1m30s",
        ])
        .arg(format!("-config-cache={}", d.join("again.json").display()))
        .arg("-state-file")
        .arg(d.join("state2"))
        .arg("-neednet")
        .arg(d.join("neednet2"))
        .arg("--cmdline")
        .arg(d.join("cmdline"))
        .env("IGNITION_SYSTEM_CONFIG_DIR", &sys)
        .env_remove("IGNITION_CONFIG_FILE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cached = std::fs::read_to_string(d.join("again.json")).unwrap();
    assert!(
        cached.contains("/etc/base") && cached.contains("/etc/user"),
        "{cached}"
    );
}

/// Every tool the stages run has a deadline: a tool that never returns is
/// killed and the stage fails naming it.
#[test]
fn a_tool_that_never_returns_fails_the_stage_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let bin = d.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let hang = bin.join("sgdisk");
    std::fs::write(&hang, "#!/bin/sh\nexec sleep 1000\n").unwrap();
    std::fs::set_permissions(
        &hang,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755),
    )
    .unwrap();
    // An image file stands for the disk: wipeTable runs sgdisk --zap-all.
    let image = d.join("disk.img");
    std::fs::write(&image, vec![0u8; 1 << 20]).unwrap();
    std::fs::write(
        d.join("ignition.json"),
        format!(
            r#"{{"ignition":{{"version":"3.4.0"}},"storage":{{"disks":[{{"device":"{}","wipeTable":true}}]}}}}"#,
            image.display()
        ),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = oxcore()
        .args([
            "ignition",
            "--stage",
            "disks",
            "--force",
            "--root",
            "/nonexistent",
        ])
        .arg("--config-cache")
        .arg(d.join("ignition.json"))
        .arg("--state-file")
        .arg(d.join("state"))
        .env("PATH", path)
        .env("OXCORE_IGNITION_COMMAND_TIMEOUT", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("sgdisk --zap-all") && stderr.contains("did not finish within 1s"),
        "{stderr}"
    );
}

/// `OXCORE_IGNITION_SHADOW_TOOL_SUFFIX` names other shadow tools (upstream's
/// blackbox suite has `groupadd-stub` and friends); they get upstream's
/// arguments: no `--password` for a group without a hash.
#[test]
fn shadow_tools_can_be_stand_ins_and_get_upstreams_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let bin = d.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let tool = bin.join("groupadd-rec");
    std::fs::write(
        &tool,
        format!("#!/bin/sh\necho \"$@\" >> {}\n", d.join("args").display()),
    )
    .unwrap();
    std::fs::set_permissions(
        &tool,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755),
    )
    .unwrap();
    let root = d.join("root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(
        d.join("c.ign"),
        r#"{"ignition":{"version":"3.4.0"},"passwd":{"groups":[
            {"name":"research","gid":5100},{"name":"ops","system":true,"passwordHash":"$6$x$y"}]}}"#,
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = oxcore()
        .args(["ignition", "apply", "--offline", "--root"])
        .arg(&root)
        .arg(d.join("c.ign"))
        .env("PATH", path)
        .env("OXCORE_IGNITION_SHADOW_TOOL_SUFFIX", "-rec")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = root.display();
    assert_eq!(
        std::fs::read_to_string(d.join("args")).unwrap(),
        format!("--root {r} --gid 5100 research\n--root {r} --password $6$x$y --system ops\n")
    );
}

/// Man pages and completions come from the clap definitions that parse the
/// command lines, and `--version` names the commit.
#[test]
fn man_pages_completions_and_version() {
    let v = String::from_utf8(oxcore().arg("--version").output().unwrap().stdout).unwrap();
    assert!(v.starts_with("oxcore 0."), "{v}");
    assert!(v.contains("(commit "), "{v}");
    let tmp = tempfile::tempdir().unwrap();
    let (bin, man, comp) = (
        tmp.path().join("bin"),
        tmp.path().join("man"),
        tmp.path().join("completions"),
    );
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&man).unwrap();
    let out = oxcore()
        .arg("install-links")
        .arg(&bin)
        .arg("--man-dir")
        .arg(&man)
        .arg("--completions-dir")
        .arg(&comp)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (page, title) in [
        ("oxcore.8", ".TH oxcore 8"),
        ("oxcore-upgrade.8", ".TH oxcore-upgrade 8"),
        ("oxcore-ostree.8", ".TH oxcore-ostree 8"),
        ("ostree.1", ".TH ostree 1"),
        ("butane.1", ".TH butane 1"),
        ("ignition-validate.1", ".TH ignition-validate 1"),
        ("ignition.8", ".TH ignition 8"),
        ("airlock.8", ".TH airlock 8"),
        ("oxcore-fleetlock.8", ".TH oxcore-fleetlock 8"),
    ] {
        let text = std::fs::read_to_string(man.join(page)).unwrap();
        assert!(
            text.contains(title),
            "{page}: {}",
            &text[..200.min(text.len())]
        );
    }
    // Each page documents its real options.
    let upgrade = std::fs::read_to_string(man.join("oxcore-upgrade.8")).unwrap();
    assert!(upgrade.contains("allow\\-downgrade"), "{upgrade}");
    let butane = std::fs::read_to_string(comp.join("bash/butane.bash")).unwrap();
    assert!(butane.contains("--files-dir"), "{butane}");
    let ostree = std::fs::read_to_string(comp.join("zsh/_ostree")).unwrap();
    assert!(ostree.contains("checkout"), "zsh completion lists verbs");
    let fish = std::fs::read_to_string(comp.join("fish/oxcore.fish")).unwrap();
    assert!(fish.contains("upgrade"));
}
