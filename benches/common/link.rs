//! A WAN-like link between the LAN and an upstream: a TCP relay whose
//! upstream-to-client direction shares one bandwidth budget across all its
//! connections, like an office's internet line. Loopback runs show what each
//! registry costs in CPU; runs through a link show what a LAN sees when the
//! upstream is on the far side of a line.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A relay listening on 127.0.0.1; dropping the runtime stops it.
pub struct Link {
    /// `http://127.0.0.1:port` of the relay.
    pub base: String,
}

/// Paces bytes to `rate` per second across every connection: each chunk books
/// the next free slot on one shared clock and waits for it.
struct Pacer {
    rate: f64,
    next: Mutex<Instant>,
}

impl Pacer {
    async fn pass(&self, n: usize) {
        let (at, now) = {
            let mut next = self.next.lock().unwrap();
            let now = Instant::now();
            let start = (*next).max(now);
            *next = start + Duration::from_secs_f64(n as f64 / self.rate);
            (start, now)
        };
        // The timer ticks in milliseconds: sleeping for less would cap every
        // connection at one chunk per tick, so small debts are carried instead.
        if at > now + Duration::from_millis(2) {
            tokio::time::sleep_until(at.into()).await;
        }
    }
}

/// Starts a relay to `target` (`host:port`) limited to `bytes_per_sec` downstream.
pub fn start_link(rt: &tokio::runtime::Runtime, target: &str, bytes_per_sec: f64) -> Link {
    let listener = rt
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .expect("bind link");
    let base = format!("http://{}", listener.local_addr().unwrap());
    let pacer = Arc::new(Pacer {
        rate: bytes_per_sec,
        next: Mutex::new(Instant::now()),
    });
    let target = target.to_owned();
    rt.spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let (pacer, target) = (pacer.clone(), target.clone());
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(&target).await else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let up = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut cr, &mut sw).await;
                    let _ = sw.shutdown().await;
                });
                let mut buf = vec![0u8; 256 * 1024];
                loop {
                    let n = match sr.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    pacer.pass(n).await;
                    if cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                let _ = cw.shutdown().await;
                up.abort();
            });
        }
    });
    Link { base }
}
