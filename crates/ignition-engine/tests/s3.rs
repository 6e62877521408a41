//! `s3://` and `arn:` resources against an S3-style server on 127.0.0.1
//! that checks every signature with botocore (the AWS SDK for Python's own
//! SigV4 signer), path-style, and serves anonymous requests only from the
//! bucket `public`, as a bucket policy would. Without python3 and botocore
//! the tests print SKIP and pass.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use ignition_config::types::{Proxy, Timeouts};
use ignition_engine::s3::{self, Credentials, Settings};

/// The server script, shared with the oxcore CLI tests.
pub const SERVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/s3_server.py");

struct Server {
    child: Child,
    endpoint: String,
    dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn put(&self, bucket_key: &str, data: &[u8]) {
        let path = self.dir.path().join("data").join(bucket_key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    }
    fn log(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.path().join("log"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

fn server(test: &str) -> Option<Server> {
    let probe = Command::new("python3")
        .args(["-c", "import botocore.auth"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        test_support::skip(&format!(
            "{test}: needs python3 with botocore (Debian package python3-botocore)"
        ));
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    let mut child = Command::new("python3")
        .arg(SERVER)
        .arg(dir.path().join("data"))
        .arg(r#"{"AKIDTEST": "secret/with+chars"}"#)
        .arg(dir.path().join("log"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line.trim().parse().expect("server port");
    Some(Server {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
        dir,
    })
}

fn creds(token: Option<&str>) -> Credentials {
    Credentials {
        access_key_id: "AKIDTEST".into(),
        secret_access_key: "secret/with+chars".into(),
        session_token: token.map(str::to_string),
    }
}

fn quick() -> Timeouts {
    Timeouts {
        http_response_headers: Some(5),
        http_total: Some(1),
    }
}

fn get(url: &str, settings: &Settings) -> Result<Vec<u8>, String> {
    s3::get(url, settings, &Proxy::default(), &quick(), &[]).map_err(|e| e.to_string())
}

#[test]
fn signed_requests_pass_botocores_check() {
    let Some(srv) = server("signed_requests_pass_botocores_check") else {
        return;
    };
    srv.put("private/dir/a b+c.ign", b"{\"x\":1}");
    let settings = |token| Settings {
        credentials: Some(creds(token)),
        region: Some("eu-west-3".into()),
        endpoint: Some(srv.endpoint.clone()),
        imds: None,
    };
    // A key with a space and a plus, a versionId, with and without a
    // session token, and the ARN form.
    let urls = [
        "s3://private/dir/a%20b+c.ign",
        "s3://private/dir/a%20b+c.ign?versionId=3/L4kqtJl+0",
        "arn:aws:s3:::private/dir/a b+c.ign",
    ];
    for url in urls {
        for token in [None, Some("FwoGZXIvYXdzE//token==")] {
            let got = get(url, &settings(token)).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(got, b"{\"x\":1}", "{url}");
        }
    }
    let log = srv.log();
    assert_eq!(log.len(), 6, "{log:?}");
    assert!(log.iter().all(|l| l["verdict"] == "good"), "{log:?}");
    assert_eq!(log[1]["token"], "FwoGZXIvYXdzE//token==");
    assert!(
        log[2]["path"].as_str().unwrap().contains("versionId="),
        "{log:?}"
    );

    // A wrong secret is refused by the server: a final 403, named.
    let mut wrong = settings(None);
    wrong.credentials.as_mut().unwrap().secret_access_key = "nope".into();
    let err = get(urls[0], &wrong).unwrap_err();
    assert!(err.contains("403") && err.contains(&srv.endpoint), "{err}");
    // The secret never shows in an error.
    assert!(!err.contains("nope"));
}

#[test]
fn anonymous_without_credentials() {
    let Some(srv) = server("anonymous_without_credentials") else {
        return;
    };
    srv.put("public/cfg.ign", b"open");
    srv.put("private/cfg.ign", b"closed");
    let anon = Settings {
        endpoint: Some(srv.endpoint.clone()),
        ..Settings::default()
    };
    assert_eq!(get("s3://public/cfg.ign", &anon).unwrap(), b"open");
    let err = get("s3://private/cfg.ign", &anon).unwrap_err();
    assert!(err.contains("403"), "{err}");
    let err = get("s3://public/missing.ign", &anon).unwrap_err();
    assert!(err.contains("404"), "{err}");
    assert!(srv.log().iter().all(|l| l["verdict"] == "anonymous"));
}

/// An EC2 metadata service on 127.0.0.1 (IMDSv2): a session token, the
/// region, and the role's credentials, each only with the token. Records
/// the paths asked for.
fn imds(role: Option<&'static str>) -> (String, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let host = common::serve(move |head| {
        let mut words = head[0].split_whitespace();
        let method = words.next().unwrap_or("").to_string();
        let path = words.next().unwrap_or("").to_string();
        let has_token = common::header(head, "x-aws-ec2-metadata-token") == "imds-session";
        seen2.lock().unwrap().push(format!("{method} {path}"));
        let creds_path = role.map(|r| format!("/latest/meta-data/iam/security-credentials/{r}"));
        let (status, body) = match (method.as_str(), path.as_str()) {
            ("PUT", "/latest/api/token") => (200, "imds-session".to_string()),
            _ if !has_token => (401, String::new()),
            (_, "/latest/meta-data/placement/region") => (200, "eu-north-1".to_string()),
            (_, "/latest/meta-data/iam/security-credentials/") => match role {
                Some(r) => (200, format!("{r}\n")),
                None => (404, String::new()),
            },
            (_, p) if creds_path.as_deref() == Some(p) => (
                200,
                r#"{"Code":"Success","AccessKeyId":"AKIDTEST","SecretAccessKey":"secret/with+chars","Token":"role-session-token","Expiration":"2030-01-01T00:00:00Z"}"#.to_string(),
            ),
            _ => (404, String::new()),
        };
        (status, body.into_bytes())
    });
    (format!("http://{host}"), seen)
}

#[test]
fn the_instance_role_signs_when_there_are_no_credentials() {
    let Some(srv) = server("the_instance_role_signs_when_there_are_no_credentials") else {
        return;
    };
    srv.put("private/role.ign", b"by role");
    let (base, seen) = imds(Some("node-role"));
    let settings = Settings {
        endpoint: Some(srv.endpoint.clone()),
        imds: Some(base),
        ..Settings::default()
    };
    assert_eq!(get("s3://private/role.ign", &settings).unwrap(), b"by role");
    let log = srv.log();
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0]["verdict"], "good");
    assert_eq!(log[0]["token"], "role-session-token");
    let seen = seen.lock().unwrap();
    assert!(
        seen.contains(&"GET /latest/meta-data/iam/security-credentials/node-role".to_string()),
        "{seen:?}"
    );
}

#[test]
fn no_instance_role_means_anonymous() {
    let Some(srv) = server("no_instance_role_means_anonymous") else {
        return;
    };
    srv.put("public/p.ign", b"public");
    let (base, _) = imds(None);
    let settings = Settings {
        endpoint: Some(srv.endpoint.clone()),
        imds: Some(base),
        ..Settings::default()
    };
    assert_eq!(get("s3://public/p.ign", &settings).unwrap(), b"public");
    assert_eq!(srv.log()[0]["verdict"], "anonymous");
}

/// As upstream, the bucket's own region (S3's `x-amz-bucket-region`
/// answer to a HEAD, even a refused one) is the one signed for.
#[test]
fn signs_for_the_region_the_bucket_is_in() {
    let Some(srv) = server("signs_for_the_region_the_bucket_is_in") else {
        return;
    };
    srv.put("moved/o.ign", b"far away");
    srv.put("moved/.region", b"sa-east-1\n");
    srv.put("here/o.ign", b"near");
    let settings = Settings {
        credentials: Some(creds(None)),
        region: Some("eu-west-3".into()),
        endpoint: Some(srv.endpoint.clone()),
        imds: None,
    };
    assert_eq!(get("s3://moved/o.ign", &settings).unwrap(), b"far away");
    assert_eq!(get("s3://here/o.ign", &settings).unwrap(), b"near");
    let log = srv.log();
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(log[0]["region"], "sa-east-1", "{log:?}");
    assert_eq!(log[1]["region"], "eu-west-3", "{log:?}");
    assert!(log.iter().all(|l| l["verdict"] == "good"), "{log:?}");
}
