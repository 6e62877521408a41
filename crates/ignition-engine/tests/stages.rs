//! The stages, run one after another against scratch paths.

use std::path::Path;

use ignition_engine::stages::{self, Env, Fetched, Stage};

fn env(dir: &Path, platform: &str) -> Env {
    let mut e = Env::new(&dir.join("sysroot"), platform);
    e.config_cache = dir.join("run/ignition.json");
    e.state_file = dir.join("run/ignition/state");
    e.neednet = dir.join("run/ignition/neednet");
    e.system_dirs = vec![dir.join("usr/lib/ignition")];
    e.cmdline = dir.join("cmdline");
    e.boot_id = dir.join("boot_id");
    e.qemu_fw_cfg = dir.join("fw_cfg_raw");
    std::fs::create_dir_all(&e.root).unwrap();
    std::fs::write(&e.cmdline, "BOOT_IMAGE=/vmlinuz ignition.firstboot\n").unwrap();
    std::fs::write(&e.boot_id, "0123-abcd\n").unwrap();
    e
}

#[test]
fn fetch_merges_base_and_user_configs_then_files_writes_them() {
    let dir = tempfile::tempdir().unwrap();
    let e = env(dir.path(), "qemu");
    let sys = dir.path().join("usr/lib/ignition");
    std::fs::create_dir_all(sys.join("base.d")).unwrap();
    std::fs::create_dir_all(sys.join("base.platform.d/qemu")).unwrap();
    std::fs::write(
        sys.join("base.d/10-base.ign"),
        r#"{"ignition":{"version":"3.0.0"},"storage":{"files":[{"path":"/etc/base","contents":{"source":"data:,base"}}]}}"#,
    )
    .unwrap();
    std::fs::write(
        sys.join("base.platform.d/qemu/20-qemu.ign"),
        r#"{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/platform","contents":{"source":"data:,qemu"}}]}}"#,
    )
    .unwrap();
    // The user config comes from fw_cfg and merges another config.
    std::fs::write(
        &e.qemu_fw_cfg,
        r#"{"ignition":{"version":"3.4.0","config":{"merge":[{"source":"data:,%7B%22ignition%22%3A%7B%22version%22%3A%223.4.0%22%7D%2C%22storage%22%3A%7B%22files%22%3A%5B%7B%22path%22%3A%22%2Fetc%2Fmerged%22%7D%5D%7D%7D"}]}},
          "storage":{"files":[{"path":"/etc/base","overwrite":true,"contents":{"source":"data:,user"}}]}}"#,
    )
    .unwrap();
    assert_eq!(stages::fetch(&e, true).unwrap(), Fetched::Cached);
    assert!(!e.neednet.exists());
    let c = stages::cached(&e).unwrap();
    let paths: Vec<&str> = c.storage.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["/etc/base", "/etc/platform", "/etc/merged"]);
    stages::run(Stage::Files, &e).unwrap();
    assert_eq!(
        std::fs::read_to_string(e.root.join("etc/base")).unwrap(),
        "user"
    );
    assert_eq!(
        std::fs::read_to_string(e.root.join("etc/platform")).unwrap(),
        "qemu"
    );
    assert!(e.root.join("etc/merged").exists());
    let result = std::fs::read_to_string(e.root.join("etc/.ignition-result.json")).unwrap();
    assert!(
        result.contains("\"provisioningBootID\": \"0123-abcd\""),
        "{result}"
    );
    assert!(result.contains("\"userConfigProvided\": true"), "{result}");
}

#[test]
fn fetch_offline_signals_that_the_network_is_needed() {
    let dir = tempfile::tempdir().unwrap();
    let e = env(dir.path(), "metal");
    std::fs::write(
        &e.cmdline,
        "ignition.firstboot ignition.config.url=http://127.0.0.1:1/config.ign\n",
    )
    .unwrap();
    assert_eq!(stages::fetch(&e, true).unwrap(), Fetched::NeedNet);
    assert!(e.neednet.exists());
    assert!(!e.config_cache.exists());
}

#[test]
fn kargs_edit_the_boot_entries() {
    let dir = tempfile::tempdir().unwrap();
    let e = env(dir.path(), "metal");
    let entries = e.root.join("boot/loader/entries");
    std::fs::create_dir_all(&entries).unwrap();
    std::fs::write(
        entries.join("ostree-1-fedora-coreos.conf"),
        "title Fedora CoreOS\nlinux /vmlinuz\noptions root=UUID=x rw quiet mitigations=auto\n",
    )
    .unwrap();
    std::fs::write(
        &e.cmdline,
        "ignition.firstboot ignition.config.url=data:,%7B%22ignition%22%3A%7B%22version%22%3A%223.4.0%22%7D%2C%22kernelArguments%22%3A%7B%22shouldExist%22%3A%5B%22console%3DttyS0%22%5D%2C%22shouldNotExist%22%3A%5B%22quiet%22%5D%7D%7D\n",
    )
    .unwrap();
    assert_eq!(stages::fetch(&e, true).unwrap(), Fetched::Cached);
    stages::run(Stage::Kargs, &e).unwrap();
    let text = std::fs::read_to_string(entries.join("ostree-1-fedora-coreos.conf")).unwrap();
    assert_eq!(
        text,
        "title Fedora CoreOS\nlinux /vmlinuz\noptions root=UUID=x rw mitigations=auto console=ttyS0\n"
    );
}

#[test]
fn an_invalid_user_config_fails_the_fetch_with_its_source() {
    let dir = tempfile::tempdir().unwrap();
    let e = env(dir.path(), "metal");
    std::fs::write(&e.cmdline, "ignition.firstboot ignition.config.url=data:,%7B%22ignition%22%3A%7B%22version%22%3A%222.2.0%22%7D%7D\n").unwrap();
    let err = stages::fetch(&e, true).unwrap_err().to_string();
    assert!(
        err.contains("data:,") && err.contains("unsupported config version"),
        "{err}"
    );
    assert!(!e.config_cache.exists());
}

/// A mount path through a symlink in the root is refused before `mount`
/// runs (which would follow the link on the host), as upstream refuses it.
#[test]
fn mount_paths_through_symlinks_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let e = env(dir.path(), "file");
    std::os::unix::fs::symlink("/", e.root.join("tmp0")).unwrap();
    std::fs::create_dir_all(e.config_cache.parent().unwrap()).unwrap();
    std::fs::write(
        &e.config_cache,
        r#"{"ignition":{"version":"3.4.0"},"storage":{"filesystems":[
            {"device":"/dev/oxcore-test-none","format":"ext4","path":"/tmp0/sub"}]}}"#,
    )
    .unwrap();
    let err = stages::run(Stage::Mount, &e).unwrap_err().to_string();
    assert!(
        err.contains(r#"mount path "/tmp0/sub" contains non-directory component "/tmp0""#),
        "{err}"
    );
    assert!(!e.root.join("sub").exists() && !Path::new("/sub").exists());
}
