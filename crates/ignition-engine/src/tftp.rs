//! A TFTP client (RFC 1350, read requests in octet mode) for `tftp://`
//! resources, as upstream Ignition fetches them: the host defaults to port
//! 69 and the URL's path, leading slash included, is the file name asked
//! for.
//!
//! The transfer is lock-step: each DATA block is acknowledged, a block
//! shorter than 512 bytes ends it, and a lost packet is recovered by
//! sending the last request or acknowledgement again after a timeout.
//! Packets from any other address than the one that answered first are
//! refused with error 5 (unknown transfer ID) and otherwise ignored.

use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

const RRQ: u16 = 1;
const DATA: u16 = 3;
const ACK: u16 = 4;
const ERROR: u16 = 5;
const BLOCK: usize = 512;
/// Sends of the same packet before the transfer is given up, and the wait
/// for an answer to each: the defaults of the client upstream uses.
const ATTEMPTS: u32 = 5;
/// See [`ATTEMPTS`].
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Why a TFTP fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum TftpError {
    /// The URL cannot be used.
    #[error("invalid tftp URL: {0}")]
    Url(String),
    /// A socket operation failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The server answered with an error packet.
    #[error("server error ({code}): {message}")]
    Server {
        /// The TFTP error code.
        code: u16,
        /// The server's message.
        message: String,
    },
    /// No answer after every retransmission.
    #[error("timed out waiting for block {0}")]
    Timeout(u16),
    /// The server sent something that is not TFTP.
    #[error("malformed packet from the server")]
    Malformed,
    /// The file is larger than a fetch into memory may hold.
    #[error("file larger than {0} bytes")]
    TooLarge(u64),
}

/// Splits `tftp://host[:port]/path` into the server's address and the file
/// name.
fn parse(url: &str) -> Result<(String, String), TftpError> {
    let rest = url
        .get(..7)
        .filter(|s| s.eq_ignore_ascii_case("tftp://"))
        .map(|_| &url[7..])
        .ok_or_else(|| TftpError::Url(url.to_string()))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if host.is_empty() || path.len() <= 1 {
        return Err(TftpError::Url(url.to_string()));
    }
    // Port 69 unless one is given ("[v6]:port" or "host:port").
    let has_port = match host.rfind(']') {
        Some(i) => host[i..].contains(':'),
        None => host.contains(':'),
    };
    let host = if has_port {
        host.to_string()
    } else {
        format!("{host}:69")
    };
    Ok((host, unescape_path(path)))
}

/// The path as Go's `url.URL.Path` has it: query and fragment cut off,
/// `%XX` escapes decoded.
fn unescape_path(path: &str) -> String {
    util::percent_decode(path.split(['?', '#']).next().unwrap_or(""))
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_be_bytes([b[i], b[i + 1]])
}

fn error_packet(code: u16, message: &str) -> Vec<u8> {
    let mut p = Vec::with_capacity(5 + message.len());
    p.extend_from_slice(&ERROR.to_be_bytes());
    p.extend_from_slice(&code.to_be_bytes());
    p.extend_from_slice(message.as_bytes());
    p.push(0);
    p
}

/// Fetches `url`, waiting at most `timeout` for each packet.
pub fn get(url: &str, timeout: Duration) -> Result<Vec<u8>, TftpError> {
    let (host, file) = parse(url)?;
    let server: SocketAddr = host
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| TftpError::Url(url.to_string()))?;
    let socket = UdpSocket::bind(if server.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    })?;

    let mut request = Vec::with_capacity(file.len() + 10);
    request.extend_from_slice(&RRQ.to_be_bytes());
    request.extend_from_slice(file.as_bytes());
    request.push(0);
    request.extend_from_slice(b"octet\0");

    let mut out = Vec::new();
    // The packet to send again on a timeout, and where to.
    let mut last = request;
    let mut dest = server;
    // The transfer ID: the server's address once it has answered.
    let mut peer: Option<SocketAddr> = None;
    let mut want: u16 = 1;
    let mut buf = vec![0u8; BLOCK + 4 + 1];
    'blocks: loop {
        for _ in 0..ATTEMPTS {
            socket.send_to(&last, dest)?;
            let deadline = Instant::now() + timeout;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                socket.set_read_timeout(Some(left))?;
                let (n, from) = match socket.recv_from(&mut buf) {
                    Ok(r) => r,
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        break;
                    }
                    Err(e) => return Err(e.into()),
                };
                if peer.is_some_and(|p| p != from) || from.ip() != server.ip() {
                    let _ = socket.send_to(&error_packet(5, "Unknown transfer ID"), from);
                    continue;
                }
                let p = &buf[..n];
                if n < 4 {
                    return Err(TftpError::Malformed);
                }
                match u16_at(p, 0) {
                    ERROR => {
                        let message = &p[4..];
                        let end = message
                            .iter()
                            .position(|&b| b == 0)
                            .unwrap_or(message.len());
                        return Err(TftpError::Server {
                            code: u16_at(p, 2),
                            message: String::from_utf8_lossy(&message[..end]).into_owned(),
                        });
                    }
                    DATA if n <= BLOCK + 4 => {
                        let block = u16_at(p, 2);
                        peer = Some(from);
                        dest = from;
                        if block != want {
                            // A duplicate of a block already had: the
                            // server missed our acknowledgement.
                            if block == want.wrapping_sub(1) {
                                socket.send_to(&last, dest)?;
                            }
                            continue;
                        }
                        out.extend_from_slice(&p[4..]);
                        // Block numbers wrap: only this bounds the size.
                        if out.len() as u64 > crate::http::DEFAULT_LIMIT {
                            return Err(TftpError::TooLarge(crate::http::DEFAULT_LIMIT));
                        }
                        let mut ack = Vec::with_capacity(4);
                        ack.extend_from_slice(&ACK.to_be_bytes());
                        ack.extend_from_slice(&block.to_be_bytes());
                        if n < BLOCK + 4 {
                            socket.send_to(&ack, dest)?;
                            return Ok(out);
                        }
                        last = ack;
                        want = want.wrapping_add(1);
                        continue 'blocks;
                    }
                    _ => return Err(TftpError::Malformed),
                }
            }
        }
        return Err(TftpError::Timeout(want));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let p = |u| parse(u).unwrap();
        assert_eq!(
            p("tftp://10.0.0.1/x.ign"),
            ("10.0.0.1:69".into(), "/x.ign".into())
        );
        assert_eq!(
            p("TFTP://h:6969/a/b%20c"),
            ("h:6969".into(), "/a/b c".into())
        );
        assert_eq!(p("tftp://h/f?x=1#y"), ("h:69".into(), "/f".into()));
        assert_eq!(p("tftp://[::1]/f"), ("[::1]:69".into(), "/f".into()));
        assert_eq!(p("tftp://[::1]:70/f"), ("[::1]:70".into(), "/f".into()));
        for bad in [
            "tftp://",
            "tftp://h",
            "tftp://h/",
            "tftp:///f",
            "http://h/f",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
