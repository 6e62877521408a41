//! The running agent's control socket (`/run/oxcore-agent/control.sock`,
//! root only): `update-now` asks it to run a cycle at once (check, stage,
//! and finalize and reboot if the strategy allows) and answers with what
//! it decided; `status` answers with its status. One short line in, one
//! answer out; a client that sends nothing is dropped after five seconds.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use crate::agent::Agent;
use crate::state::Status;
use crate::{Error, Result, Root};

/// The control socket.
pub const SOCKET: &str = "/run/oxcore-agent/control.sock";
/// How long a client may take to ask, and the agent to answer an
/// `update-now` (a pull can take a while).
const ASK_TIMEOUT: Duration = Duration::from_secs(5);
const ANSWER_TIMEOUT: Duration = Duration::from_secs(3600);

/// A request from the socket to the agent's loop.
pub struct UpdateNow {
    /// Where the decision goes.
    pub reply: mpsc::Sender<String>,
}

/// Listens on the control socket under `root`; `update-now` requests are
/// sent to `tx`.
pub fn listen(root: &Root, tx: mpsc::Sender<UpdateNow>) -> Result<PathBuf> {
    let path = root.path(SOCKET);
    let dir = path.parent().expect("has a parent");
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(|e| Error::io(&path, e))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io(&path, e))?;
    let root = root.clone();
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(c) = conn else { continue };
                let tx = tx.clone();
                let root = root.clone();
                // One thread per client: a slow one holds up no other.
                let _ = std::thread::Builder::new()
                    .name("control-client".into())
                    .spawn(move || serve(c, &root, &tx));
            }
        })
        .map_err(|e| Error::io(&path, e))?;
    Ok(path)
}

fn serve(mut c: UnixStream, root: &Root, tx: &mpsc::Sender<UpdateNow>) {
    let _ = c.set_read_timeout(Some(ASK_TIMEOUT));
    let _ = c.set_write_timeout(Some(ASK_TIMEOUT));
    let mut line = String::new();
    let read = BufReader::new((&c).take(256)).read_line(&mut line);
    let answer = match (read, line.trim()) {
        (Err(e), _) => format!("error: {e}"),
        (Ok(_), "status") => match Status::load(root) {
            Ok(Some(s)) => serde_json::to_string(&s).unwrap_or_default(),
            Ok(None) => "error: no status yet".into(),
            Err(e) => format!("error: {e}"),
        },
        (Ok(_), "update-now") => {
            let (reply, rx) = mpsc::channel();
            if tx.send(UpdateNow { reply }).is_err() {
                "error: the agent is stopping".into()
            } else {
                rx.recv_timeout(ANSWER_TIMEOUT)
                    .unwrap_or_else(|_| "error: no answer from the agent".into())
            }
        }
        (Ok(_), other) => {
            format!("error: unknown request '{other}' (expected status or update-now)")
        }
    };
    let _ = c.write_all(answer.as_bytes());
    let _ = c.write_all(b"\n");
}

/// Asks the agent under `root`: sends `request`, returns the answer.
pub fn ask(root: &Root, request: &str) -> Result<String> {
    let path = root.path(SOCKET);
    let mut c = UnixStream::connect(&path).map_err(|e| {
        Error::Invalid(format!(
            "{}: cannot reach the agent: {e} (is oxcore-agent.service running?)",
            path.display()
        ))
    })?;
    c.set_read_timeout(Some(ANSWER_TIMEOUT))
        .map_err(|e| Error::io(&path, e))?;
    c.write_all(format!("{request}\n").as_bytes())
        .map_err(|e| Error::io(&path, e))?;
    let mut answer = String::new();
    c.take(1 << 20)
        .read_to_string(&mut answer)
        .map_err(|e| Error::io(&path, e))?;
    let answer = answer.trim_end().to_string();
    match answer.strip_prefix("error: ") {
        Some(e) => Err(Error::Invalid(e.to_string())),
        None => Ok(answer),
    }
}

/// Runs the agent until killed: a cycle, then a pause (its length set by
/// the cycle), cut short by `update-now`.
pub fn run(agent: &mut Agent, rx: &mpsc::Receiver<UpdateNow>) -> Result<()> {
    let mut pending: Vec<UpdateNow> = Vec::new();
    loop {
        let cycle = match agent.cycle() {
            Ok(c) => c,
            Err(e @ Error::State { .. }) => return Err(e),
            Err(e) => {
                tracing::error!("{e}");
                let line = format!("error: {e}");
                for p in pending.drain(..) {
                    let _ = p.reply.send(line.clone());
                }
                match rx.recv_timeout(Duration::from_secs(300)) {
                    Ok(req) => pending.push(req),
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
                }
                continue;
            }
        };
        for p in pending.drain(..) {
            let _ = p.reply.send(cycle.decision.clone());
        }
        match rx.recv_timeout(cycle.next) {
            Ok(req) => pending.push(req),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
        }
    }
}
