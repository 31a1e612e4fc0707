//! Pacing for background scans (gc's mark, eviction's choice): a pass that
//! walks the whole index must not take a core away from the pulls it runs
//! beside. The scan runs on a blocking thread; every [`CHUNK`] items the pacer
//! sleeps there for [`REST_PER_WORK`] times as long as the chunk took, so a
//! pass uses at most a fifth of one core and finishes five times later than
//! flat out (still about a second for 100,000 blobs). Measured with
//! `cargo bench --bench lifecycle` on 2 cores: pulls beside back-to-back gc
//! passes kept 0.74× of their throughput at a rest of 2, 0.84× at 4.

use std::time::{Duration, Instant};

/// Items between rests.
const CHUNK: u32 = 4096;
/// Rest per unit of work.
const REST_PER_WORK: u32 = 4;
/// Longest single rest (a slow disk must not stretch a pass without bound).
const MAX_REST: Duration = Duration::from_millis(200);

/// Counts items of a scan and rests between chunks.
pub(super) struct Pacer {
    since: Instant,
    n: u32,
}

impl Pacer {
    /// A pacer for one scan.
    pub(super) fn new() -> Pacer {
        Pacer {
            since: Instant::now(),
            n: 0,
        }
    }

    /// Counts one item; after a chunk, rests. Blocking: call it only inside
    /// a read job (a blocking thread of its own), never in a write job, where
    /// every write in the process would wait behind the rest.
    pub(super) fn tick(&mut self) {
        self.n += 1;
        if self.n < CHUNK {
            return;
        }
        let rest = (self.since.elapsed() * REST_PER_WORK).min(MAX_REST);
        std::thread::sleep(rest);
        self.n = 0;
        self.since = Instant::now();
    }
}
