//! A TCP relay in front of a server that counts the bytes clients send it:
//! the bytes a registry received, for a registry that has no such metric
//! (Distribution). Every client goes through it alike, so its small cost
//! (one loopback hop, the bench's own CPU) is the same for each.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The relay: clients connect to `base`; it forwards to the server.
pub struct Counted {
    /// `http://127.0.0.1:PORT` of the relay.
    pub base: String,
    sent: Arc<AtomicU64>,
    conns: Arc<AtomicU64>,
}

impl Counted {
    /// Bytes clients have sent the server so far (headers included).
    pub fn bytes_in(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Connections clients have opened so far.
    pub fn connections(&self) -> u64 {
        self.conns.load(Ordering::Relaxed)
    }
}

/// Copies `from` to `to` until EOF, adding what it copied to `count`; then
/// ends the write side of `to`.
fn pump(mut from: TcpStream, mut to: TcpStream, count: Option<Arc<AtomicU64>>) {
    let mut buf = vec![0u8; 256 << 10];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
                if let Some(c) = &count {
                    c.fetch_add(n as u64, Ordering::Relaxed);
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Starts a relay to `server` (`host:port`); it runs until the bench exits.
pub fn relay(server: &str) -> Counted {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (sent, conns) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (s, c, server) = (sent.clone(), conns.clone(), server.to_owned());
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let Ok(upstream) = TcpStream::connect(&server) else {
                continue;
            };
            let _ = (client.set_nodelay(true), upstream.set_nodelay(true));
            c.fetch_add(1, Ordering::Relaxed);
            let (c2, u2) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
            let count = s.clone();
            std::thread::spawn(move || pump(client, upstream, Some(count)));
            std::thread::spawn(move || pump(u2, c2, None));
        }
    });
    Counted { base, sent, conns }
}
