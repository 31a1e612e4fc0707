//! HTTP/1.1 spoken by hand over a raw TCP connection, for tests that must
//! control exactly what goes on one connection (pipelining, hang-ups,
//! Content-Length framing).

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// One response read off a raw connection.
pub struct Raw {
    /// The status code (0 when the status line does not parse).
    pub status: u16,
    /// The status line and headers, as received.
    pub head: String,
    /// The Content-Length framed body.
    pub body: Vec<u8>,
}

impl Raw {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// A connection to `addr` whose reads give up after 30 s instead of hanging.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s
}

/// A GET of `path`, with `Range: bytes=<range>` when given.
pub fn get_request(path: &str, range: Option<&str>) -> String {
    let range = range
        .map(|r| format!("Range: bytes={r}\r\n"))
        .unwrap_or_default();
    format!("GET {path} HTTP/1.1\r\nHost: wharf\r\n{range}\r\n")
}

/// Reads one response's head from `s` (after what is left in `rest`).
pub fn read_head(s: &mut TcpStream, rest: &mut Vec<u8>) -> (u16, String) {
    let mut chunk = vec![0u8; 1 << 16];
    let end = loop {
        if let Some(i) = rest.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).expect("read headers");
        assert!(n > 0, "connection closed before the headers");
        rest.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&rest[..end]).into_owned();
    rest.drain(..end);
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head)
}

/// Reads one Content-Length framed response (no body for HEAD or 1xx),
/// keeping whatever follows it in `rest`.
pub fn read_response(s: &mut TcpStream, rest: &mut Vec<u8>, head_request: bool) -> Raw {
    let (status, head) = read_head(s, rest);
    let mut raw = Raw {
        status,
        head,
        body: Vec::new(),
    };
    let len: usize = if head_request || (100..200).contains(&status) {
        0
    } else {
        raw.header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let mut chunk = vec![0u8; 1 << 16];
    while rest.len() < len {
        let n = s.read(&mut chunk).expect("read body");
        assert!(
            n > 0,
            "connection closed {} bytes into a {len}-byte body",
            rest.len()
        );
        rest.extend_from_slice(&chunk[..n]);
    }
    raw.body = rest.drain(..len).collect();
    raw
}
