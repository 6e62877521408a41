//! `gs://` resources against a GCS-style server on 127.0.0.1 that also
//! plays the GCE metadata server: a token for the read-only storage scope
//! when the instance "has a service account", and objects that need that
//! token, or none for the public bucket.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use ignition_config::types::{Proxy, Timeouts};
use ignition_engine::gs::{self, Settings};

/// A server answering from `objects` (path -> body and whether it needs
/// the token), with `token_ok` deciding whether a service account exists;
/// records every request target with its Authorization header.
fn serve(
    objects: BTreeMap<String, (Vec<u8>, bool)>,
    token_ok: bool,
) -> (String, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let host = common::serve(move |head| {
        let target = head[0].split_whitespace().nth(1).unwrap_or("").to_string();
        let auth = common::header(head, "authorization");
        seen2.lock().unwrap().push(format!("{target} auth={auth}"));
        if target.starts_with("/computeMetadata/") {
            if common::header(head, "metadata-flavor") != "Google" || !token_ok {
                (404, b"not found".to_vec())
            } else if target.ends_with("/scopes") {
                (
                    200,
                    b"https://www.googleapis.com/auth/devstorage.read_only\n".to_vec(),
                )
            } else if target.contains(
                "/token?scopes=https%3A%2F%2Fwww.googleapis.com%2Fauth%2Fdevstorage.read_only",
            ) {
                (
                    200,
                    br#"{"access_token":"ya29.test-token","expires_in":3599,"token_type":"Bearer"}"#
                        .to_vec(),
                )
            } else {
                (400, b"bad token request".to_vec())
            }
        } else {
            match objects.get(&target) {
                Some((_, true)) if auth != "Bearer ya29.test-token" => (401, b"denied".to_vec()),
                Some((body, _)) => (200, body.clone()),
                None => (404, b"no such object".to_vec()),
            }
        }
    });
    (host, seen)
}

fn quick() -> Timeouts {
    Timeouts {
        http_response_headers: Some(5),
        http_total: Some(1),
    }
}

#[test]
fn uses_the_instances_token_on_gce() {
    let objects = BTreeMap::from([(
        "/private/dir/a%20b.ign".to_string(),
        (b"secret config".to_vec(), true),
    )]);
    let (host, seen) = serve(objects, true);
    let settings = Settings {
        endpoint: Some(format!("http://{host}")),
        metadata_host: Some(host.clone()),
    };
    let got = gs::get(
        "gs://private/dir/a%20b.ign",
        &settings,
        &Proxy::default(),
        &quick(),
        &[],
    )
    .unwrap();
    assert_eq!(got, b"secret config");
    let seen = seen.lock().unwrap();
    assert!(
        seen.iter().any(|l| l.ends_with("/scopes auth=")),
        "{seen:?}"
    );
    assert!(
        seen.last().unwrap() == "/private/dir/a%20b.ign auth=Bearer ya29.test-token",
        "{seen:?}"
    );
}

#[test]
fn anonymous_off_gce_or_without_a_service_account() {
    let objects = BTreeMap::from([
        ("/public/c.ign".to_string(), (b"open".to_vec(), false)),
        ("/private/c.ign".to_string(), (b"closed".to_vec(), true)),
    ]);
    let (host, seen) = serve(objects, false);
    // On GCE without a service account, then off GCE.
    for metadata_host in [Some(host.clone()), None] {
        let settings = Settings {
            endpoint: Some(format!("http://{host}")),
            metadata_host,
        };
        let get =
            |u| gs::get(u, &settings, &Proxy::default(), &quick(), &[]).map_err(|e| e.to_string());
        assert_eq!(get("gs://public/c.ign").unwrap(), b"open");
        let err = get("gs://private/c.ign").unwrap_err();
        assert!(
            err.contains("401") && err.contains("/private/c.ign"),
            "{err}"
        );
        let err = get("gs://public/none.ign").unwrap_err();
        assert!(err.contains("404"), "{err}");
    }
    let seen = seen.lock().unwrap();
    assert!(
        seen.iter()
            .filter(|l| !l.starts_with("/computeMetadata"))
            .all(|l| l.ends_with("auth=")),
        "{seen:?}"
    );
}
