//! [`Pace`]: a byte-rate limit for long reads of content (verify re-hashes
//! every blob without starving the disk for pulls). It lives with the content
//! seam because backends apply it between the steps of their reads.

use std::time::{Duration, Instant};

/// A byte-rate limit for a long read: after each step, waits until the bytes
/// so far are within `rate` per second since the start.
#[derive(Debug)]
pub struct Pace {
    rate: u64,
    started: Instant,
    bytes: u64,
}

impl Pace {
    /// At most `bytes_per_sec` (0: unlimited).
    pub fn new(bytes_per_sec: u64) -> Pace {
        Pace {
            rate: bytes_per_sec,
            started: Instant::now(),
            bytes: 0,
        }
    }

    /// No limit: for reads that only want the answer.
    pub fn unlimited() -> Pace {
        Pace::new(0)
    }

    /// Counts `n` bytes and sleeps as long as the rate asks.
    pub async fn wait(&mut self, n: u64) {
        self.bytes += n;
        if self.rate == 0 {
            return;
        }
        let due = Duration::from_secs_f64(self.bytes as f64 / self.rate as f64);
        let spent = self.started.elapsed();
        if due > spent {
            tokio::time::sleep(due - spent).await;
        }
    }
}
