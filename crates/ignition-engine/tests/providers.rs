//! The cloud providers against real metadata servers on 127.0.0.1: the
//! exact requests, configs, 404s, and whole fetch stages.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

use ignition_config::types::Timeouts;
use ignition_engine::http::HttpError;
use ignition_engine::providers::{self, ProviderError};
use ignition_engine::resource::Fetcher;
use ignition_engine::stages::{self, Env, Fetched, StageError};

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct Server {
    base: String,
    seen: Arc<Mutex<Vec<Request>>>,
}

impl Server {
    fn requests(&self) -> Vec<Request> {
        self.seen.lock().unwrap().clone()
    }
}

/// A metadata server answering from `route` (the request and how many
/// came before it).
fn serve(route: impl Fn(&Request, usize) -> String + Send + 'static) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let mut parts = line.split_whitespace();
            let method = parts.next().unwrap_or("").to_string();
            let path = parts.next().unwrap_or("").to_string();
            let mut headers = Vec::new();
            loop {
                let mut l = String::new();
                if reader.read_line(&mut l).unwrap_or(0) == 0 || l == "\r\n" {
                    break;
                }
                if let Some((k, v)) = l.trim_end().split_once(':') {
                    headers.push((k.to_string(), v.trim().to_string()));
                }
            }
            let mut req = Request {
                method,
                path,
                headers,
                body: Vec::new(),
            };
            let len: usize = req
                .header("Content-Length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            req.body.resize(len, 0);
            reader.read_exact(&mut req.body).unwrap();
            let n = {
                let mut seen = s.lock().unwrap();
                seen.push(req.clone());
                seen.len() - 1
            };
            let _ = stream.write_all(route(&req, n).as_bytes());
        }
    });
    Server { base, seen }
}

fn ok(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn status(code: u16) -> String {
    format!("HTTP/1.1 {code} Whatever\r\nContent-Length: 0\r\n\r\n")
}

fn fetcher() -> Fetcher {
    Fetcher {
        timeouts: Timeouts {
            http_response_headers: Some(5),
            http_total: Some(5),
        },
        ..Fetcher::default()
    }
}

const CONFIG: &str = r#"{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/from-cloud","contents":{"source":"data:,hi"}}]}}"#;

/// The config `CONFIG` as the body, base64 (Azure's IMDS encoding).
fn base64(data: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn data(u: providers::UserConfig) -> Option<String> {
    u.map(|(d, _)| String::from_utf8(d).unwrap())
}

#[test]
fn aws_uses_an_imdsv2_token() {
    let s = serve(|r, _| match (r.method.as_str(), r.path.as_str()) {
        ("PUT", "/latest/api/token") => ok("tok-123"),
        ("GET", "/2019-10-01/user-data")
            if r.header("X-aws-ec2-metadata-token") == Some("tok-123") =>
        {
            ok(CONFIG)
        }
        _ => status(401),
    });
    let (d, source) = providers::aws(Some(&s.base), &fetcher()).unwrap().unwrap();
    assert_eq!(d, CONFIG.as_bytes());
    assert_eq!(source, format!("{}/2019-10-01/user-data", s.base));
    let reqs = s.requests();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(
        (reqs[0].method.as_str(), reqs[0].path.as_str()),
        ("PUT", "/latest/api/token")
    );
    assert_eq!(
        reqs[0].header("X-aws-ec2-metadata-token-ttl-seconds"),
        Some("21600")
    );
    assert_eq!(reqs[0].header("Content-Length"), Some("0"));
    assert!(reqs[0].body.is_empty());
    assert_eq!(
        (reqs[1].method.as_str(), reqs[1].path.as_str()),
        ("GET", "/2019-10-01/user-data")
    );
    assert_eq!(reqs[1].header("X-aws-ec2-metadata-token"), Some("tok-123"));
    assert_eq!(reqs[1].header("X-aws-ec2-metadata-token-ttl-seconds"), None);
}

#[test]
fn aws_falls_back_to_imdsv1_and_404_is_no_config() {
    // No IMDSv2: the user data is read without a token.
    let s = serve(|r, _| match r.method.as_str() {
        "PUT" => status(404),
        _ if r.header("X-aws-ec2-metadata-token").is_none() => ok(CONFIG),
        _ => status(400),
    });
    assert_eq!(
        data(providers::aws(Some(&s.base), &fetcher()).unwrap()).as_deref(),
        Some(CONFIG)
    );
    // No user data.
    let s = serve(|r, _| match r.method.as_str() {
        "PUT" => ok("t"),
        _ => status(404),
    });
    assert_eq!(providers::aws(Some(&s.base), &fetcher()).unwrap(), None);
    assert_eq!(s.requests().len(), 2);
    // A token refused otherwise is an error, and no user data is asked for.
    let s = serve(|_, _| status(403));
    match providers::aws(Some(&s.base), &fetcher()) {
        Err(ProviderError::Http {
            error: HttpError::Status(403),
            url,
            ..
        }) => assert!(url.ends_with("/latest/api/token"), "{url}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.requests().len(), 1);
}

#[test]
fn gcp_sends_the_metadata_flavor() {
    let s = serve(|r, _| {
        if r.path == "/computeMetadata/v1/instance/attributes/user-data"
            && r.header("Metadata-Flavor") == Some("Google")
        {
            ok(CONFIG)
        } else {
            status(403)
        }
    });
    assert_eq!(
        data(providers::gcp(Some(&s.base), &fetcher()).unwrap()).as_deref(),
        Some(CONFIG)
    );
    assert_eq!(s.requests()[0].method, "GET");
    let s = serve(|_, _| status(404));
    assert_eq!(providers::gcp(Some(&s.base), &fetcher()).unwrap(), None);
}

#[test]
fn digitalocean_treats_404_as_an_error_like_upstream() {
    let s = serve(|r, _| {
        if r.method == "GET" && r.path == "/metadata/v1/user-data" {
            ok(CONFIG)
        } else {
            status(404)
        }
    });
    assert_eq!(
        data(providers::digitalocean(Some(&s.base), &fetcher()).unwrap()).as_deref(),
        Some(CONFIG)
    );
    let s = serve(|_, _| status(404));
    assert!(matches!(
        providers::digitalocean(Some(&s.base), &fetcher()),
        Err(ProviderError::Http {
            error: HttpError::Status(404),
            ..
        })
    ));
}

#[test]
fn openstack_reads_the_config_drive_or_the_metadata_service() {
    let s = serve(|r, _| {
        if r.method == "GET" && r.path == "/openstack/latest/user_data" {
            ok(CONFIG)
        } else {
            status(500)
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let drive = dir.path().join("config-2");
    // No drive mounted there: the metadata service answers.
    let got = providers::openstack("openstack", Some(&s.base), Some(&drive), &fetcher()).unwrap();
    assert_eq!(data(got).as_deref(), Some(CONFIG));
    assert_eq!(s.requests().len(), 1);
    // A drive without user data: no config, and no request.
    std::fs::create_dir_all(drive.join("openstack/latest")).unwrap();
    let got = providers::openstack("openstack", Some(&s.base), Some(&drive), &fetcher()).unwrap();
    assert_eq!(got, None);
    // A drive with user data.
    std::fs::write(drive.join("openstack/latest/user_data"), "drive config").unwrap();
    let (d, source) = providers::openstack("openstack", Some(&s.base), Some(&drive), &fetcher())
        .unwrap()
        .unwrap();
    assert_eq!(d, b"drive config");
    assert!(source.ends_with("openstack/latest/user_data"), "{source}");
    assert_eq!(s.requests().len(), 1);
    // The service without user data: no config.
    let s = serve(|_, _| status(404));
    let missing = dir.path().join("none");
    assert_eq!(
        providers::openstack("openstack", Some(&s.base), Some(&missing), &fetcher()).unwrap(),
        None
    );
}

#[test]
fn azure_decodes_imds_user_data_and_retries_404() {
    let s = serve(|r, n| {
        if r.path != "/metadata/instance/compute/userData?api-version=2021-01-01&format=text"
            || r.header("Metadata") != Some("true")
        {
            return status(400);
        }
        // IMDS answers 404 while it is not ready; upstream retries that.
        if n < 2 {
            status(404)
        } else {
            ok(&base64(CONFIG.as_bytes()))
        }
    });
    assert_eq!(
        data(providers::azure(Some(&s.base), None, &fetcher()).unwrap()).as_deref(),
        Some(CONFIG)
    );
    assert_eq!(s.requests().len(), 3);
    let s = serve(|_, _| ok("not base64!"));
    assert!(matches!(
        providers::azure(Some(&s.base), None, &fetcher()),
        Err(ProviderError::Bad { .. })
    ));
}

#[test]
fn azure_falls_back_to_custom_data_on_the_ovf_cd() {
    let s = serve(|_, _| ok(""));
    let dir = tempfile::tempdir().unwrap();
    let cd = dir.path();
    // Not a provisioning CD.
    assert!(matches!(
        providers::azure(Some(&s.base), Some(cd), &fetcher()),
        Err(ProviderError::Bad { .. })
    ));
    // A CD without custom data: no config.
    std::fs::write(cd.join("ovf-env.xml"), "<Environment/>").unwrap();
    assert_eq!(
        providers::azure(Some(&s.base), Some(cd), &fetcher()).unwrap(),
        None
    );
    std::fs::write(cd.join("CustomData.bin"), CONFIG).unwrap();
    assert_eq!(
        data(providers::azure(Some(&s.base), Some(cd), &fetcher()).unwrap()).as_deref(),
        Some(CONFIG)
    );
}

fn env(dir: &Path, platform: &str, base: &str) -> Env {
    let mut e = Env::new(&dir.join("sysroot"), platform);
    e.config_cache = dir.join("run/ignition.json");
    e.state_file = dir.join("run/ignition/state");
    e.neednet = dir.join("run/ignition/neednet");
    e.system_dirs = vec![dir.join("usr/lib/ignition")];
    e.cmdline = dir.join("cmdline");
    e.boot_id = dir.join("boot_id");
    e.qemu_fw_cfg = dir.join("fw_cfg_raw");
    e.metadata_base = Some(base.to_string());
    e.config_drive = Some(dir.join("no-config-drive"));
    std::fs::write(&e.cmdline, "BOOT_IMAGE=/vmlinuz ignition.firstboot\n").unwrap();
    e
}

/// Serves `CONFIG` where each provider looks for it (AWS with a token).
fn cloud() -> Server {
    serve(|r, _| match (r.method.as_str(), r.path.as_str()) {
        ("PUT", "/latest/api/token") => ok("tok"),
        ("GET", "/2019-10-01/user-data") if r.header("X-aws-ec2-metadata-token") == Some("tok") => {
            ok(CONFIG)
        }
        ("GET", "/computeMetadata/v1/instance/attributes/user-data")
            if r.header("Metadata-Flavor") == Some("Google") =>
        {
            ok(CONFIG)
        }
        ("GET", "/openstack/latest/user_data") | ("GET", "/metadata/v1/user-data") => ok(CONFIG),
        ("GET", "/metadata/instance/compute/userData?api-version=2021-01-01&format=text")
            if r.header("Metadata") == Some("true") =>
        {
            ok(&base64(CONFIG.as_bytes()))
        }
        _ => status(404),
    })
}

#[test]
fn the_fetch_stage_caches_each_providers_config() {
    let s = cloud();
    for platform in ["aws", "gcp", "openstack", "azure", "digitalocean"] {
        let dir = tempfile::tempdir().unwrap();
        let e = env(dir.path(), platform, &s.base);
        let before = s.requests().len();
        assert_eq!(
            stages::fetch(&e, false).unwrap(),
            Fetched::Cached,
            "{platform}"
        );
        let c = stages::cached(&e).unwrap();
        assert_eq!(c.storage.files.len(), 1, "{platform}");
        assert_eq!(c.storage.files[0].path, "/etc/from-cloud", "{platform}");
        let state = std::fs::read_to_string(&e.state_file).unwrap();
        assert!(state.contains("\"kind\":\"user\""), "{platform}: {state}");
        let methods: Vec<String> = s.requests()[before..]
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        let want: &[&str] = match platform {
            // Upstream's AWS initialisation asks for a token first too.
            "aws" => &[
                "PUT /latest/api/token",
                "PUT /latest/api/token",
                "GET /2019-10-01/user-data",
            ],
            "gcp" => &["GET /computeMetadata/v1/instance/attributes/user-data"],
            "openstack" => &["GET /openstack/latest/user_data"],
            "azure" => {
                &["GET /metadata/instance/compute/userData?api-version=2021-01-01&format=text"]
            }
            _ => &["GET /metadata/v1/user-data"],
        };
        assert_eq!(methods, want, "{platform}");
    }
}

#[test]
fn no_user_data_gives_an_empty_config() {
    let s = serve(|r, _| match r.method.as_str() {
        "PUT" => ok("tok"),
        _ => status(404),
    });
    for platform in ["aws", "gcp", "openstack"] {
        let dir = tempfile::tempdir().unwrap();
        let e = env(dir.path(), platform, &s.base);
        assert_eq!(
            stages::fetch(&e, false).unwrap(),
            Fetched::Cached,
            "{platform}"
        );
        assert!(stages::cached(&e).unwrap().storage.files.is_empty());
        let state = std::fs::read_to_string(&e.state_file).unwrap();
        assert!(!state.contains("\"kind\":\"user\""), "{platform}: {state}");
    }
    // DigitalOcean fails instead, as upstream.
    let dir = tempfile::tempdir().unwrap();
    let e = env(dir.path(), "digitalocean", &s.base);
    match stages::fetch(&e, false) {
        Err(StageError::Provider(p)) => assert!(p.to_string().contains("404"), "{p}"),
        other => panic!("{other:?}"),
    }
    assert!(!e.config_cache.exists());
}

#[test]
fn the_openstack_config_drive_wins_in_the_fetch_stage() {
    let s = cloud();
    let dir = tempfile::tempdir().unwrap();
    let mut e = env(dir.path(), "openstack", &s.base);
    let drive = dir.path().join("config-drive");
    std::fs::create_dir_all(drive.join("openstack/latest")).unwrap();
    std::fs::write(
        drive.join("openstack/latest/user_data"),
        r#"{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/from-drive"}]}}"#,
    )
    .unwrap();
    e.config_drive = Some(drive);
    assert_eq!(stages::fetch(&e, false).unwrap(), Fetched::Cached);
    assert_eq!(
        stages::cached(&e).unwrap().storage.files[0].path,
        "/etc/from-drive"
    );
    assert!(s.requests().is_empty());
}

#[test]
fn fetch_offline_on_a_cloud_platform_needs_the_network() {
    let s = cloud();
    for platform in ["aws", "gcp", "openstack", "azure", "digitalocean"] {
        let dir = tempfile::tempdir().unwrap();
        let e = env(dir.path(), platform, &s.base);
        assert_eq!(
            stages::fetch(&e, true).unwrap(),
            Fetched::NeedNet,
            "{platform}"
        );
        assert!(e.neednet.exists(), "{platform}");
        assert!(!e.config_cache.exists(), "{platform}");
        // Then the fetch stage gets it.
        assert_eq!(stages::fetch(&e, false).unwrap(), Fetched::Cached);
    }
    // Offline means offline: nothing was asked before the fetch stages.
    assert_eq!(
        s.requests().iter().filter(|r| r.method == "PUT").count(),
        2,
        "only the aws fetch stage asks for tokens"
    );
}

#[test]
fn a_config_on_the_kernel_command_line_comes_first() {
    let s = cloud();
    let cmdline = "ignition.firstboot ignition.config.url=data:,%7B%22ignition%22%3A%7B%22version%22%3A%223.4.0%22%7D%7D\n";
    // GCP is not asked at all, even offline.
    let dir = tempfile::tempdir().unwrap();
    let e = env(dir.path(), "gcp", &s.base);
    std::fs::write(&e.cmdline, cmdline).unwrap();
    assert_eq!(stages::fetch(&e, true).unwrap(), Fetched::Cached);
    assert!(s.requests().is_empty());
    // AWS's initialisation still needs the network offline, as upstream.
    let dir = tempfile::tempdir().unwrap();
    let e = env(dir.path(), "aws", &s.base);
    std::fs::write(&e.cmdline, cmdline).unwrap();
    assert_eq!(stages::fetch(&e, true).unwrap(), Fetched::NeedNet);
    assert_eq!(stages::fetch(&e, false).unwrap(), Fetched::Cached);
    let reqs: Vec<String> = s.requests().iter().map(|r| r.method.clone()).collect();
    assert_eq!(reqs, ["PUT"]);
}

#[test]
fn other_platforms_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let e = env(dir.path(), "vultr", "http://127.0.0.1:1");
    assert!(matches!(
        stages::fetch(&e, false),
        Err(StageError::Platform(p)) if p == "vultr"
    ));
}
