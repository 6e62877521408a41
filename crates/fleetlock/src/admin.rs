//! `status` and manual `release` for the command line, on the backend the
//! configuration names: etcd directly; the embedded store directly when no
//! server holds it, else through the running server's status listener
//! (`/v1/status`, and `/v1/release`, which it takes from loopback only).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::backend::{Backend, BackendError};
use crate::config::{BackendConfig, Config};
use crate::semaphore::{Request, Semaphore};

/// Why status or release failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The group is not in the configuration.
    #[error("unknown group {0:?}")]
    UnknownGroup(String),
    /// A server holds the embedded store and cannot be asked.
    #[error("{0}")]
    Server(String),
}

/// Every configured group's semaphore.
pub fn status(config: &Config) -> Result<BTreeMap<String, Semaphore>, AdminError> {
    // No store yet: nothing is held, and looking creates nothing.
    if let BackendConfig::Embedded { path } = &config.backend
        && !path.exists()
    {
        return Ok(config
            .groups
            .iter()
            .map(|(name, g)| (name.clone(), Semaphore::new(g.slots)))
            .collect());
    }
    match direct(config, |backend, config| async move {
        let mut out = BTreeMap::new();
        for (name, g) in &config.groups {
            let a = backend.transact(name, g, Request::Read, now()).await?;
            out.insert(name.clone(), a.semaphore);
        }
        Ok(out)
    }) {
        Err(AdminError::Backend(BackendError::Busy(_))) => {
            let (code, body) = ask_server(config, "GET", "/v1/status", "")?;
            if code != 200 {
                return Err(AdminError::Server(format!(
                    "the server answered {code}: {}",
                    body.trim()
                )));
            }
            parse_status(&body)
        }
        other => other,
    }
}

/// Gives `id`'s slot in `group` back; returns whether it held one.
pub fn release(config: &Config, group: &str, id: &str) -> Result<bool, AdminError> {
    if !config.groups.contains_key(group) {
        return Err(AdminError::UnknownGroup(group.to_string()));
    }
    let (g, i) = (group.to_string(), id.to_string());
    match direct(config, move |backend, config| async move {
        let policy = &config.groups[&g];
        let before = backend.transact(&g, policy, Request::Read, now()).await?;
        backend
            .transact(&g, policy, Request::Unlock(i.clone()), now())
            .await?;
        Ok(before.semaphore.holders.contains(&i))
    }) {
        Err(AdminError::Backend(BackendError::Busy(_))) => {
            let held = status(config)?
                .get(group)
                .is_some_and(|s| s.holders.iter().any(|h| h == id));
            let body = serde_json::json!({"client_params": {"group": group, "id": id}}).to_string();
            let (code, answer) = ask_server(config, "POST", "/v1/release", &body)?;
            if code != 200 {
                return Err(AdminError::Server(format!(
                    "the server answered {code}: {}",
                    answer.trim()
                )));
            }
            Ok(held)
        }
        other => other,
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Runs `f` on the backend opened here.
fn direct<T, F, Fut>(config: &Config, f: F) -> Result<T, AdminError>
where
    F: FnOnce(std::sync::Arc<Backend>, std::sync::Arc<Config>) -> Fut,
    Fut: std::future::Future<Output = Result<T, BackendError>>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| AdminError::Server(format!("starting a runtime: {e}")))?;
    rt.block_on(async {
        let backend = std::sync::Arc::new(Backend::open(&config.backend).await?);
        Ok(f(backend, std::sync::Arc::new(config.clone())).await?)
    })
}

/// One request to the running server's status listener, on this machine.
fn ask_server(
    config: &Config,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(u16, String), AdminError> {
    let store = match &config.backend {
        BackendConfig::Embedded { path } => path.display().to_string(),
        BackendConfig::Etcd { .. } => "the store".into(),
    };
    let Some((host, port)) = config.status.clone().filter(|(_, p)| *p != 0) else {
        return Err(AdminError::Server(format!(
            "{store} is held by a running server, and the configuration enables no status listener with a fixed port to ask it through"
        )));
    };
    let host = match host.as_str() {
        "" | "0.0.0.0" => "127.0.0.1".to_string(),
        "::" | "[::]" => "::1".to_string(),
        h => h.trim_start_matches('[').trim_end_matches(']').to_string(),
    };
    let fail = |e: std::io::Error| {
        AdminError::Server(format!(
            "{store} is held by a running server; asking it at {host}:{port}: {e}"
        ))
    };
    let addr = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(fail)?
        .next()
        .ok_or_else(|| fail(std::io::ErrorKind::NotFound.into()))?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(fail)?;
    s.set_read_timeout(Some(Duration::from_secs(15)))
        .map_err(fail)?;
    s.set_write_timeout(Some(Duration::from_secs(15)))
        .map_err(fail)?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nfleet-lock-protocol: true\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).map_err(fail)?;
    let mut raw = Vec::new();
    s.take(1 << 20).read_to_end(&mut raw).map_err(fail)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| AdminError::Server(format!("the server's answer is not HTTP: {head:?}")))?;
    Ok((code, body.to_string()))
}

/// Reads the server's `/v1/status` document back into semaphores.
fn parse_status(body: &str) -> Result<BTreeMap<String, Semaphore>, AdminError> {
    let bad = |why: &str| AdminError::Server(format!("the server's status is not readable: {why}"));
    let v: serde_json::Value = serde_json::from_str(body).map_err(|e| bad(&e.to_string()))?;
    let groups = v["groups"].as_object().ok_or_else(|| bad("no groups"))?;
    let mut out = BTreeMap::new();
    for (name, g) in groups {
        let mut sem = Semaphore::new(g["slots"].as_u64().ok_or_else(|| bad("no slots"))?);
        for h in g["holders"].as_array().ok_or_else(|| bad("no holders"))? {
            let id = h["id"].as_str().ok_or_else(|| bad("a holder without id"))?;
            sem.holders.push(id.to_string());
            if let (Some(since), Some(renewed)) = (h["since"].as_u64(), h["renewed"].as_u64()) {
                sem.leases
                    .insert(id.to_string(), crate::semaphore::Lease { since, renewed });
            }
        }
        out.insert(name.clone(), sem);
    }
    Ok(out)
}
