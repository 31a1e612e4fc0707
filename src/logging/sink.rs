//! Where the daemon's log lines go: a bounded in-memory buffer that a thread
//! of its own writes to stderr, so no request ever waits on stderr (a slow
//! journald, a full pipe) and a busy registry costs one `write(2)` per batch
//! of lines instead of one per request.
//!
//! - Every line is appended whole under one lock (tracing-subscriber hands
//!   the writer one complete event per `write`), so lines never interleave
//!   or tear.
//! - The flusher writes what has gathered every [`FLUSH_EVERY`], sooner when
//!   [`FLUSH_AT`] bytes wait, and once more when the [`SinkGuard`] drops at
//!   shutdown.
//! - The buffer holds at most [`CAPACITY`] bytes. While the sink is stuck and
//!   the buffer is full, new lines are **dropped**, whole, and counted
//!   ([`dropped_lines`], exported as `wharf_log_lines_dropped_total`): logging
//!   never blocks serving.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// Most bytes of log lines waiting to be written.
pub const CAPACITY: usize = 1 << 20;
/// Waiting lines are written at least this often.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// This many waiting bytes wake the flusher early.
pub const FLUSH_AT: usize = 64 << 10;
/// How long shutdown waits for the last lines to be written.
const FINAL_FLUSH_WAIT: Duration = Duration::from_secs(2);

/// Lines dropped because the buffer was full (the sink was stuck).
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Log lines dropped since start because stderr did not keep up.
pub fn dropped_lines() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

struct Shared {
    buf: Mutex<Vec<u8>>,
    wake: Condvar,
    closed: AtomicBool,
}

/// The `MakeWriter` handed to tracing-subscriber (cheap to clone).
#[derive(Clone)]
pub struct Sink {
    shared: Arc<Shared>,
}

/// Keeps the flusher running; dropping it writes what is left (waiting at
/// most a couple of seconds for a stuck stderr) and stops the thread.
pub struct SinkGuard {
    shared: Arc<Shared>,
    done: Option<std::sync::mpsc::Receiver<()>>,
}

/// Starts the flusher thread writing to `out` (stderr in the daemon).
pub fn start<W: Write + Send + 'static>(out: W) -> std::io::Result<(Sink, SinkGuard)> {
    let shared = Arc::new(Shared {
        buf: Mutex::new(Vec::with_capacity(FLUSH_AT)),
        wake: Condvar::new(),
        closed: AtomicBool::new(false),
    });
    let (tx, rx) = std::sync::mpsc::channel();
    let s = shared.clone();
    std::thread::Builder::new()
        .name("wharf-log".into())
        .spawn(move || {
            flush_loop(&s, out);
            let _ = tx.send(());
        })?;
    Ok((
        Sink {
            shared: shared.clone(),
        },
        SinkGuard {
            shared,
            done: Some(rx),
        },
    ))
}

fn flush_loop<W: Write>(shared: &Shared, mut out: W) {
    let mut spare = Vec::with_capacity(FLUSH_AT);
    loop {
        let closed = shared.closed.load(Ordering::Acquire);
        let batch = {
            let Ok(mut buf) = shared.buf.lock() else {
                return;
            };
            if !closed && buf.len() < FLUSH_AT {
                buf = match shared.wake.wait_timeout(buf, FLUSH_EVERY) {
                    Ok((b, _)) => b,
                    Err(_) => return,
                };
            }
            std::mem::replace(&mut *buf, std::mem::take(&mut spare))
        };
        if !batch.is_empty() {
            // Nothing to report a failure to: stderr is where it would go.
            let _ = out.write_all(&batch);
            let _ = out.flush();
        }
        spare = batch;
        spare.clear();
        if closed {
            return;
        }
    }
}

impl Sink {
    /// Appends one whole line (or drops and counts it when the buffer is full).
    pub(super) fn append(&self, line: &[u8]) {
        let Ok(mut buf) = self.shared.buf.lock() else {
            DROPPED.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if buf.len() + line.len() > CAPACITY {
            DROPPED.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let before = buf.len();
        buf.extend_from_slice(line);
        if before < FLUSH_AT && buf.len() >= FLUSH_AT {
            self.shared.wake.notify_one();
        }
    }
}

/// One event's writer: appends each `write` whole.
pub struct LineWriter<'a> {
    sink: &'a Sink,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        self.sink.append(line);
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Sink {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter { sink: self }
    }
}

impl Drop for SinkGuard {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.wake.notify_one();
        if let Some(done) = self.done.take() {
            let _ = done.recv_timeout(FINAL_FLUSH_WAIT);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer tests can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_arrive_whole_and_in_order_within_the_interval_and_at_drop() {
        let out = Shared::default();
        let (sink, guard) = start(out.clone()).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let sink = sink.clone();
                std::thread::spawn(move || {
                    for i in 0..500 {
                        let line = format!("t{t} line {i} {}\n", "x".repeat(i % 50));
                        sink.make_writer().write_all(line.as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // Written by the flusher, without a drop, within a few intervals.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while out.0.lock().unwrap().is_empty() {
            assert!(std::time::Instant::now() < deadline, "never flushed");
            std::thread::sleep(Duration::from_millis(10));
        }
        sink.make_writer().write_all(b"last\n").unwrap();
        drop(guard);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2001);
        assert_eq!(lines.last(), Some(&"last"));
        for t in 0..4 {
            let mine: Vec<&str> = lines
                .iter()
                .copied()
                .filter(|l| l.starts_with(&format!("t{t} ")))
                .collect();
            assert_eq!(mine.len(), 500);
            for (i, l) in mine.iter().enumerate() {
                assert_eq!(*l, format!("t{t} line {i} {}", "x".repeat(i % 50)));
            }
        }
    }

    /// Takes nothing until released (the sink is stuck), then everything.
    struct Stuck(Mutex<std::sync::mpsc::Receiver<()>>);

    impl Write for Stuck {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let _ = self.0.lock().unwrap().recv();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stuck_sink_drops_whole_lines_and_counts_them() {
        let (release, stuck) = std::sync::mpsc::channel();
        let (sink, guard) = start(Stuck(Mutex::new(stuck))).unwrap();
        let before = dropped_lines();
        let line = vec![b'x'; 1023];
        // More than the buffer holds, arriving while the flusher is stuck
        // (it may take a first batch, then it waits for the release).
        for _ in 0..(3 * CAPACITY / 1024) {
            sink.make_writer().write_all(&line).unwrap();
        }
        assert!(dropped_lines() - before >= (CAPACITY / 1024) as u64);
        assert!(sink.shared.buf.lock().unwrap().len() <= CAPACITY);
        drop(release);
        drop(guard);
    }
}
