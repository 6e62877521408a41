//! The state of a sysroot as a typed value, and as `rpm-ostree status
//! --json` prints it: the format Zincati (and scripts) parse.
//!
//! rpm-ostree's JSON is its D-Bus variant per deployment turned into JSON
//! by json-glib: strings, booleans and numbers as themselves, `ay` as an
//! array of numbers, dictionaries as objects. Per deployment it holds
//! `id` (`<osname>-<checksum>.<serial>`), `osname`, `checksum`, `serial`,
//! `booted`, `staged` (and `finalization-locked` when held), `pinned`,
//! `unlocked`, the origin's package requests (always present, empty
//! here), `regenerate-initramfs`, `base-commit-meta` (the commit's whole
//! metadata: `version`, `fedora-coreos.stream`,
//! `coreos-assembler.basearch`, …), `version` and `timestamp`, `origin`
//! for an OSTree refspec (or `container-image-reference` for an image),
//! `pending-base-checksum`/`-version`/`-timestamp` when the origin's ref
//! names a newer commit than the deployment's, `endoflife` when the
//! commit says so, and the layering fields (`packages`,
//! `base-removals`, …, empty). `base-checksum` appears, as in rpm-ostree,
//! only for a layered deployment (none here yet): Zincati reads the
//! deployment's `checksum` then. At the top: `deployments`, `transaction`
//! and `cached-update` (null), and `update-driver`, the agent that
//! registered in `/run/rpm-ostree/update-driver.gv`.

use std::path::Path;

use ostree_store::Checksum;
use ostree_store::gvariant::Value;
use serde_json::{Map, Value as Json, json};

use crate::{Deployment, Result, Sysroot, io_err};

/// Where rpm-ostree records the update agent that drives updates.
const UPDATE_DRIVER: &str = "run/rpm-ostree/update-driver.gv";

/// A sysroot's deployments and update driver.
#[derive(Debug, Clone)]
pub struct Status {
    /// In boot order, a staged deployment first.
    pub deployments: Vec<DeploymentStatus>,
    /// The agent that registered as the driver of updates.
    pub update_driver: Option<UpdateDriver>,
}

/// The agent that drives updates (`rpm-ostree deploy --register-driver`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateDriver {
    /// Its name (`Zincati`).
    pub name: String,
    /// Its systemd unit (`zincati.service`).
    pub unit: String,
}

/// One deployment and what is known of it.
#[derive(Debug, Clone)]
pub struct DeploymentStatus {
    /// The deployment.
    pub deployment: Deployment,
    /// The running system's.
    pub booted: bool,
    /// Staged, finalized at shutdown.
    pub staged: bool,
    /// Staged and held back from finalization.
    pub finalization_locked: bool,
    /// Queued before the booted one (the next boot's).
    pub pending: bool,
    /// After the booted one (or any after the first when none is booted).
    pub rollback: bool,
    /// Its commit's time.
    pub timestamp: Option<u64>,
    /// Its commit's metadata.
    pub commit_meta: Vec<(String, Value)>,
    /// A newer commit the origin's ref names: (checksum, version, time).
    pub pending_base: Option<(Checksum, Option<String>, u64)>,
}

impl Sysroot {
    /// The deployments with their state, as `status` lists them.
    pub fn status(&self) -> Result<Status> {
        let mut list = self.deployments()?;
        let booted = self.booted_index(&list)?;
        let staged = self.staged()?;
        let has_staged = staged.is_some();
        if let Some(s) = staged {
            list.insert(0, s);
        }
        let booted = booted.map(|b| b + usize::from(has_staged));
        let locked = self.finalization_locked();
        let mut deployments = Vec::with_capacity(list.len());
        for (i, d) in list.into_iter().enumerate() {
            let commit = self.repo().load_commit(&d.checksum).ok();
            let pending_base = d
                .refspec()
                .and_then(|r| self.repo().resolve_rev(r).ok())
                .filter(|c| *c != d.checksum)
                .and_then(|c| {
                    let pc = self.repo().load_commit(&c).ok()?;
                    Some((c, pc.version().map(str::to_string), pc.timestamp))
                });
            let staged_here = has_staged && i == 0;
            deployments.push(DeploymentStatus {
                booted: Some(i) == booted,
                staged: staged_here,
                finalization_locked: staged_here && locked,
                pending: booted.is_some_and(|b| i < b),
                rollback: booted.is_some_and(|b| i > b) || (booted.is_none() && i > 0),
                timestamp: commit.as_ref().map(|c| c.timestamp),
                commit_meta: commit.map(|c| c.metadata).unwrap_or_default(),
                pending_base,
                deployment: d,
            });
        }
        Ok(Status {
            deployments,
            update_driver: read_update_driver(&self.path().join(UPDATE_DRIVER))?,
        })
    }

    /// Records `name` (systemd unit `unit`) as the agent that drives
    /// updates, where rpm-ostree keeps it, so `status` names it.
    pub fn register_update_driver(&self, name: &str, unit: &str) -> Result<()> {
        let path = self.path().join(UPDATE_DRIVER);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        }
        let entry = |k: &str, v: &str| {
            Value::DictEntry(
                Box::new(Value::Str(k.into())),
                Box::new(Value::Variant(Box::new(Value::Str(v.into())))),
            )
        };
        let dict = Value::Array(
            ostree_store::gvariant::Type::parse("{sv}").expect("static type"),
            vec![entry("driver-name", name), entry("driver-sd-unit", unit)],
        );
        util::write_atomic(&path, &dict.to_bytes(), 0o644, true).map_err(|e| io_err(&path, e))
    }
}

fn read_update_driver(path: &Path) -> Result<Option<UpdateDriver>> {
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path, e)),
    };
    let dict = ostree_store::object::parse_vardict(&data)
        .map_err(|e| crate::Error::Msg(format!("{}: {e}", path.display())))?;
    let get = |k: &str| {
        dict.iter()
            .find(|(n, _)| n == k)
            .and_then(|(_, v)| v.as_str())
            .map(str::to_string)
    };
    Ok(match (get("driver-name"), get("driver-sd-unit")) {
        (Some(name), Some(unit)) => Some(UpdateDriver { name, unit }),
        _ => None,
    })
}

/// A GVariant value as json-glib serializes it.
pub(crate) fn value_to_json(v: &Value) -> Json {
    match v {
        Value::Bool(b) => json!(b),
        Value::Byte(n) => json!(n),
        Value::I16(n) => json!(n),
        Value::U16(n) => json!(n),
        Value::I32(n) => json!(n),
        Value::U32(n) => json!(n),
        Value::I64(n) => json!(n),
        Value::U64(n) => json!(n),
        Value::F64(n) => json!(n),
        Value::Str(s) | Value::ObjectPath(s) | Value::Signature(s) => json!(s),
        Value::Variant(inner) => value_to_json(inner),
        Value::Bytes(b) => json!(b),
        Value::Maybe(_, None) => Json::Null,
        Value::Maybe(_, Some(inner)) => value_to_json(inner),
        Value::Tuple(items) => Json::Array(items.iter().map(value_to_json).collect()),
        Value::DictEntry(k, v) => json!([value_to_json(k), value_to_json(v)]),
        Value::Array(_, items) => {
            let entries: Option<Map<String, Json>> = items
                .iter()
                .map(|e| match e {
                    Value::DictEntry(k, v) => Some((k.as_str()?.to_string(), value_to_json(v))),
                    _ => None,
                })
                .collect();
            match entries {
                Some(m) if !items.is_empty() => Json::Object(m),
                _ => Json::Array(items.iter().map(value_to_json).collect()),
            }
        }
    }
}

impl Status {
    /// `rpm-ostree status --json`.
    pub fn to_rpm_ostree_json(&self) -> Json {
        let deployments: Vec<Json> = self.deployments.iter().map(deployment_json).collect();
        json!({
            "deployments": deployments,
            "transaction": null,
            "cached-update": null,
            "update-driver": self.update_driver.as_ref().map(|d| json!({
                "driver-name": d.name,
                "driver-sd-unit": d.unit,
            })),
        })
    }
}

fn deployment_json(s: &DeploymentStatus) -> Json {
    let d = &s.deployment;
    let mut m = Map::new();
    let mut put = |k: &str, v: Json| {
        m.insert(k.to_string(), v);
    };
    put("id", json!(format!("{}-{}.{}", d.os, d.checksum, d.serial)));
    put("osname", json!(d.os));
    put("checksum", json!(d.checksum.to_hex()));
    put("serial", json!(d.serial));
    put("booted", json!(s.booted));
    put("staged", json!(s.staged));
    if s.finalization_locked {
        put("finalization-locked", json!(true));
    }
    put("pinned", json!(d.pinned()));
    put("unlocked", json!("none"));
    // The origin's package requests: always present in rpm-ostree's output.
    put("requested-packages", json!([]));
    put("requested-local-packages", json!([]));
    put("requested-local-fileoverride-packages", json!([]));
    put("requested-base-removals", json!([]));
    put("requested-base-local-replacements", json!([]));
    put("regenerate-initramfs", json!(false));
    let meta: Map<String, Json> = s
        .commit_meta
        .iter()
        .map(|(k, v)| (k.clone(), value_to_json(v)))
        .collect();
    if let Some(eol) = meta.get("ostree.endoflife") {
        put("endoflife", eol.clone());
    }
    put("base-commit-meta", Json::Object(meta));
    if let Some(v) = &d.version {
        put("version", json!(v));
    }
    if let Some(t) = s.timestamp {
        put("timestamp", json!(t));
    }
    if let Some(r) = d.refspec() {
        put("origin", json!(r));
    }
    if let Some((c, version, t)) = &s.pending_base {
        put("pending-base-checksum", json!(c.to_hex()));
        if let Some(v) = version {
            put("pending-base-version", json!(v));
        }
        put("pending-base-timestamp", json!(t));
    }
    put("packages", json!([]));
    put("base-removals", json!([]));
    put("base-local-replacements", json!([]));
    put("base-remote-replacements", json!({}));
    Json::Object(m)
}
