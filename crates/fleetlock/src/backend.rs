//! Where the semaphores live: an etcd3 cluster with airlock's key layout
//! and compare-and-swap, or a redb file on this machine. Both apply a
//! request with [`semaphore::apply`]; state lives only there, so a
//! restarted server loses no lock.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use etcd_client::{Compare, CompareOp, ConnectOptions, Txn, TxnOp};
use redb::{Database, ReadableTable, TableDefinition};
use tokio::sync::oneshot;

use crate::config::{BackendConfig, Group};
use crate::semaphore::{self, Applied, Request, Semaphore};

/// How often a lost compare-and-swap is tried again, after a short random
/// pause, within the request's time (airlock: never; under contention
/// its clients see `conflict on semaphore detected`).
const CAS_ATTEMPTS: usize = 64;

/// Requests the embedded store's writer takes into one transaction.
const BATCH: usize = 512;

/// The embedded store's table: group name to the semaphore's JSON.
const SEMAPHORES: TableDefinition<&str, &[u8]> = TableDefinition::new("semaphores");

/// Why the backend could not answer.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// etcd did not answer in time or refused (down, no leader, TLS).
    #[error("{0}")]
    Unavailable(String),
    /// Other writers kept changing the semaphore between read and write.
    #[error("conflict on semaphore detected, aborting")]
    Conflict,
    /// The stored value is not a semaphore: refused, never overwritten.
    #[error("semaphore of group {group:?} is not readable: {message}")]
    Corrupt {
        /// The group.
        group: String,
        /// Why.
        message: String,
    },
    /// The embedded store is open in another process (a running server).
    #[error("{}: the store is open in another process", .0.display())]
    Busy(PathBuf),
    /// The embedded store failed (disk full, I/O error, damaged file).
    #[error("{}: {message}", .path.display())]
    Store {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
}

/// The key airlock keeps a group's semaphore under.
pub fn semaphore_key(group: &str) -> String {
    format!(
        "com.coreos.airlock/groups/{}/v1/semaphore",
        query_escape(group)
    )
}

/// Go's `url.QueryEscape`: unreserved bytes stay, a space is `+`, the
/// rest `%XX` in upper case.
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A connected backend.
pub enum Backend {
    /// An etcd3 cluster.
    Etcd(Box<Etcd>),
    /// A redb file.
    Embedded(Embedded),
}

impl Backend {
    /// Connects (etcd: lazily, so a server starts while etcd is down and
    /// serves once it is back) or opens the store.
    pub async fn open(config: &BackendConfig) -> Result<Backend, BackendError> {
        match config {
            BackendConfig::Etcd {
                endpoints,
                transaction_timeout,
                client_cert,
                ca_cert,
            } => Ok(Backend::Etcd(Box::new(
                Etcd::connect(
                    endpoints,
                    *transaction_timeout,
                    client_cert.as_ref(),
                    ca_cert.as_deref(),
                )
                .await?,
            ))),
            BackendConfig::Embedded { path } => Ok(Backend::Embedded(Embedded::open(path)?)),
        }
    }

    /// Applies `request` to `group`'s semaphore (made with the group's
    /// slots when missing), at `now` (epoch seconds).
    pub async fn transact(
        &self,
        group: &str,
        policy: &Group,
        request: Request,
        now: u64,
    ) -> Result<Applied, BackendError> {
        match self {
            Backend::Etcd(e) => e.transact(group, policy, &request, now).await,
            Backend::Embedded(e) => e.transact(group, policy, request, now).await,
        }
    }

    /// Where the semaphores are, for messages.
    pub fn describe(&self) -> String {
        match self {
            Backend::Etcd(e) => format!("etcd3 {}", e.endpoints.join(",")),
            Backend::Embedded(e) => format!("embedded {}", e.path.display()),
        }
    }
}

/// An etcd3 cluster, reached through one long-lived client (airlock makes
/// a new one per request).
///
/// Each group has one queue and one task that serves it: it takes every
/// request waiting, applies them in order to the value it read, and writes
/// the result with one compare-and-swap (a race lost to another server is
/// tried again from a fresh read). This server's own requests never race
/// each other, and many requests cost one read and one write.
pub struct Etcd {
    client: etcd_client::Client,
    timeout: Duration,
    endpoints: Vec<String>,
    queues: std::sync::Mutex<
        std::collections::HashMap<String, tokio::sync::mpsc::UnboundedSender<EtcdJob>>,
    >,
}

/// One request for a group's queue.
struct EtcdJob {
    policy: Group,
    request: Request,
    now: u64,
    /// Not applied when its turn comes after this.
    deadline: tokio::time::Instant,
    reply: oneshot::Sender<Result<Applied, BackendError>>,
}

impl Etcd {
    async fn connect(
        endpoints: &[String],
        timeout: Duration,
        client_cert: Option<&(PathBuf, PathBuf)>,
        ca_cert: Option<&Path>,
    ) -> Result<Etcd, BackendError> {
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_timeout(timeout)
            .with_keep_alive(Duration::from_secs(10), timeout);
        // As airlock, the first endpoint's scheme decides: https (or none)
        // speaks TLS with the system's roots and the client certificate.
        let tls = !endpoints.first().is_some_and(|e| e.starts_with("http://"));
        if tls {
            let read = |p: &Path| {
                std::fs::read(p)
                    .map_err(|e| BackendError::Unavailable(format!("reading {}: {e}", p.display())))
            };
            let mut t = etcd_client::TlsOptions::new().with_native_roots();
            if let Some((cert, key)) = client_cert {
                t = t.identity(etcd_client::Identity::from_pem(read(cert)?, read(key)?));
            }
            if let Some(ca) = ca_cert {
                t = t.ca_certificate(etcd_client::Certificate::from_pem(read(ca)?));
            }
            opts = opts.with_tls(t);
        }
        let client = etcd_client::Client::connect(endpoints, Some(opts))
            .await
            .map_err(|e| BackendError::Unavailable(e.to_string()))?;
        Ok(Etcd {
            client,
            timeout,
            endpoints: endpoints.to_vec(),
            queues: Default::default(),
        })
    }

    /// Queues the request on its group and waits for its answer, which
    /// comes by the request's deadline (`transaction_timeout_ms`).
    async fn transact(
        &self,
        group: &str,
        policy: &Group,
        request: &Request,
        now: u64,
    ) -> Result<Applied, BackendError> {
        let (reply, answer) = oneshot::channel();
        let job = EtcdJob {
            policy: policy.clone(),
            request: request.clone(),
            now,
            deadline: tokio::time::Instant::now() + self.timeout,
            reply,
        };
        {
            let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
            let queue = queues.entry(group.to_string()).or_insert_with(|| {
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                tokio::spawn(serve_group(
                    self.client.clone(),
                    group.to_string(),
                    self.timeout,
                    rx,
                ));
                tx
            });
            queue
                .send(job)
                .map_err(|_| BackendError::Unavailable("the group's queue stopped".into()))?;
        }
        answer
            .await
            .map_err(|_| BackendError::Unavailable("the group's queue stopped".into()))?
    }
}

/// Serves one group's queue until the backend is dropped.
async fn serve_group(
    client: etcd_client::Client,
    group: String,
    timeout: Duration,
    mut jobs: tokio::sync::mpsc::UnboundedReceiver<EtcdJob>,
) {
    // The value and version last read or written: a batch is then one
    // round trip (compare-and-put, or on a lost race the fresh value).
    let mut cache: Option<(Semaphore, i64)> = None;
    while let Some(first) = jobs.recv().await {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match jobs.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        // What waited past its deadline is answered, not applied.
        let now = tokio::time::Instant::now();
        let (late, batch): (Vec<_>, Vec<_>) = batch.into_iter().partition(|j| j.deadline <= now);
        for j in late {
            let _ = j.reply.send(Err(BackendError::Unavailable(format!(
                "etcd did not answer within {} ms",
                timeout.as_millis()
            ))));
        }
        let Some(deadline) = batch.iter().map(|j| j.deadline).min() else {
            continue;
        };
        let lost = std::sync::atomic::AtomicUsize::new(0);
        let outcome =
            tokio::time::timeout_at(deadline, cas(&client, &group, &batch, &mut cache, &lost))
                .await;
        let outcome = match outcome {
            Ok(r) => r,
            // Out of time while losing races to other servers: a conflict,
            // not an etcd that is away.
            Err(_) if lost.load(std::sync::atomic::Ordering::Relaxed) > 0 => {
                Err(BackendError::Conflict)
            }
            Err(_) => Err(BackendError::Unavailable(format!(
                "etcd did not answer within {} ms",
                timeout.as_millis()
            ))),
        };
        match outcome {
            Ok(answers) => {
                for (j, a) in batch.into_iter().zip(answers) {
                    let _ = j.reply.send(Ok(a));
                }
            }
            Err(e) => {
                let text = e.to_string();
                for j in batch {
                    let _ = j.reply.send(Err(match &e {
                        BackendError::Conflict => BackendError::Conflict,
                        BackendError::Corrupt { group, message } => BackendError::Corrupt {
                            group: group.clone(),
                            message: message.clone(),
                        },
                        _ => BackendError::Unavailable(text.clone()),
                    }));
                }
            }
        }
    }
}

/// Applies every job in order to the group's semaphore and writes it back
/// only if the key's version is still the one it was computed from
/// (airlock's compare-and-swap). The value comes from `cache` (what this
/// server last read or wrote) or a read; the compare is made even when
/// nothing changed, so no answer rests on a stale value. A lost race
/// returns the current value in the same round trip, and is tried again.
async fn cas(
    client: &etcd_client::Client,
    group: &str,
    batch: &[EtcdJob],
    cache: &mut Option<(Semaphore, i64)>,
    lost: &std::sync::atomic::AtomicUsize,
) -> Result<Vec<Applied>, BackendError> {
    let key = semaphore_key(group);
    let mut client = client.clone();
    let unavailable = |e: etcd_client::Error| BackendError::Unavailable(e.to_string());
    let decode = |kv: Option<&etcd_client::KeyValue>| -> Result<(Semaphore, i64), BackendError> {
        match kv {
            Some(kv) => Ok((
                Semaphore::from_json(kv.value()).map_err(|e| BackendError::Corrupt {
                    group: group.to_string(),
                    message: e.to_string(),
                })?,
                kv.version(),
            )),
            None => Ok((Semaphore::new(batch[0].policy.slots), 0)),
        }
    };
    for _ in 0..CAS_ATTEMPTS {
        let (mut sem, version) = match cache.take() {
            Some(c) => c,
            None => {
                let got = client
                    .get(key.as_bytes(), None)
                    .await
                    .map_err(unavailable)?;
                decode(got.kvs().first())?
            }
        };
        let mut changed = version == 0;
        let mut answers = Vec::with_capacity(batch.len());
        for j in batch {
            let (applied, c) = semaphore::apply(&mut sem, &j.policy, &j.request, j.now);
            changed |= c;
            answers.push(applied);
        }
        let put = if changed {
            vec![TxnOp::put(key.as_bytes(), sem.to_json(), None)]
        } else {
            Vec::new()
        };
        let txn = Txn::new()
            .when([Compare::version(key.as_bytes(), CompareOp::Equal, version)])
            .and_then(put)
            .or_else([TxnOp::get(key.as_bytes(), None)]);
        let r = client.txn(txn).await.map_err(unavailable)?;
        if r.succeeded() {
            *cache = Some((sem, if changed { version + 1 } else { version }));
            return Ok(answers);
        }
        let current = r.op_responses().into_iter().find_map(|op| match op {
            etcd_client::TxnOpResponse::Get(g) => Some(g),
            _ => None,
        });
        *cache = match current {
            Some(g) => Some(decode(g.kvs().first())?),
            None => None,
        };
        lost.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tokio::time::sleep(Duration::from_micros(200 + jitter() % 1800)).await;
    }
    Err(BackendError::Conflict)
}

/// A few random bits (the clock's nanoseconds), to spread retries.
fn jitter() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()))
}

/// One request for the embedded store's writer.
struct Job {
    group: String,
    policy: Group,
    request: Request,
    now: u64,
    reply: oneshot::Sender<Result<Applied, BackendError>>,
}

/// A redb file: one writer thread applies the requests that arrive
/// together in one transaction and answers each once it is on disk.
pub struct Embedded {
    path: PathBuf,
    jobs: Option<mpsc::Sender<Job>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Embedded {
    /// Closes the queue and waits for the writer, so that the store is
    /// closed (and can be opened again) once the backend is gone.
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

impl Embedded {
    /// Opens (or creates, with its directory) the store.
    pub fn open(path: &Path) -> Result<Embedded, BackendError> {
        let store_err = |message: String| BackendError::Store {
            path: path.to_path_buf(),
            message,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| store_err(e.to_string()))?;
        }
        let db = match Database::create(path) {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(BackendError::Busy(path.to_path_buf()));
            }
            Err(e) => return Err(store_err(e.to_string())),
        };
        // The table exists from the start, so readers never race its
        // creation.
        let init = || -> Result<(), redb::Error> {
            let txn = db.begin_write()?;
            txn.open_table(SEMAPHORES)?;
            txn.commit()?;
            Ok(())
        };
        init().map_err(|e| store_err(e.to_string()))?;
        let (jobs, rx) = mpsc::channel();
        let p = path.to_path_buf();
        let writer = std::thread::Builder::new()
            .name("fleetlock-store".into())
            .spawn(move || writer(db, &p, rx))
            .map_err(|e| store_err(e.to_string()))?;
        Ok(Embedded {
            path: path.to_path_buf(),
            jobs: Some(jobs),
            writer: Some(writer),
        })
    }

    async fn transact(
        &self,
        group: &str,
        policy: &Group,
        request: Request,
        now: u64,
    ) -> Result<Applied, BackendError> {
        let (reply, answer) = oneshot::channel();
        let gone = || BackendError::Store {
            path: self.path.clone(),
            message: "the store's writer stopped".into(),
        };
        self.jobs
            .as_ref()
            .ok_or_else(gone)?
            .send(Job {
                group: group.to_string(),
                policy: policy.clone(),
                request,
                now,
                reply,
            })
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

/// The embedded store's writer: takes every job waiting (up to [`BATCH`]),
/// applies them in order in one write transaction, commits once (durable
/// before any answer), then answers each.
fn writer(db: Database, path: &Path, jobs: mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match jobs.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let outcome = (|| -> Result<Vec<Result<Applied, BackendError>>, redb::Error> {
            let txn = db.begin_write()?;
            let mut answers = Vec::with_capacity(batch.len());
            let mut dirty = false;
            {
                let mut table = txn.open_table(SEMAPHORES)?;
                for j in &batch {
                    let stored = table.get(j.group.as_str())?.map(|v| v.value().to_vec());
                    let (mut sem, fresh) = match stored {
                        Some(bytes) => match Semaphore::from_json(&bytes) {
                            Ok(s) => (s, false),
                            Err(e) => {
                                answers.push(Err(BackendError::Corrupt {
                                    group: j.group.clone(),
                                    message: e.to_string(),
                                }));
                                continue;
                            }
                        },
                        None => (Semaphore::new(j.policy.slots), true),
                    };
                    let (applied, changed) =
                        semaphore::apply(&mut sem, &j.policy, &j.request, j.now);
                    if changed || fresh {
                        table.insert(j.group.as_str(), sem.to_json().as_slice())?;
                        dirty = true;
                    }
                    answers.push(Ok(applied));
                }
            }
            if dirty {
                txn.commit()?;
            } else {
                txn.abort()?;
            }
            Ok(answers)
        })();
        match outcome {
            Ok(answers) => {
                for (j, a) in batch.into_iter().zip(answers) {
                    let _ = j.reply.send(a);
                }
            }
            Err(e) => {
                tracing::error!(store = %path.display(), error = %e, "the fleetlock store failed; nothing of this batch was written");
                for j in batch {
                    let _ = j.reply.send(Err(BackendError::Store {
                        path: path.to_path_buf(),
                        message: e.to_string(),
                    }));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_airlocks() {
        assert_eq!(
            semaphore_key("default"),
            "com.coreos.airlock/groups/default/v1/semaphore"
        );
        assert_eq!(
            semaphore_key("a b/c~d.e-f_g"),
            "com.coreos.airlock/groups/a+b%2Fc~d.e-f_g/v1/semaphore"
        );
        assert_eq!(query_escape("ü"), "%C3%BC");
    }
}
