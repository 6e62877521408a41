//! A tiny HTTP/1.1 server on 127.0.0.1 for the tests that play a cloud
//! service: each request's head (request line, then header lines) goes to
//! `answer`, whose status and body are sent back.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

/// Starts the server; returns its `127.0.0.1:PORT`.
pub fn serve<F>(answer: F) -> String
where
    F: Fn(&[String]) -> (u16, Vec<u8>) + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = Vec::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push(line.trim_end().to_string());
            }
            if head.is_empty() {
                continue;
            }
            let (status, body) = answer(&head);
            let _ = stream.write_all(
                format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            );
            let _ = stream.write_all(&body);
        }
    });
    host
}

/// The value of header `name` in a request head, or "".
pub fn header(head: &[String], name: &str) -> String {
    head.iter()
        .skip(1)
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
        .unwrap_or_default()
}
