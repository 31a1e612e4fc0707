//! Background workers, all in one shape: a [`Worker`] does one pass in
//! [`Worker::run_once`] (what tests and the admin API call), and [`drive`] runs
//! passes beside the server on the worker's interval, when kicked, and until
//! shutdown, logging and counting failures and retrying them with backoff. Each
//! worker's [`Control`] keeps its last report, next run and progress, which is
//! what `wharf status` and the web page show.

pub mod access;
pub mod backup;
pub mod evict;
pub mod gc;
pub mod import;
pub mod lifecycle;
pub mod live_set;
pub mod replicate;
pub mod sync;
pub mod uploads;
pub mod verify;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{Notify, watch};

use crate::metrics::Metrics;
use crate::store::{StoreError, unix_now};

/// Why a pass failed. The loop logs it, counts it and tries again later.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WorkerError {
    /// The index or the content files failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Anything else, said in words (an upstream, a target registry).
    #[error("{0}")]
    Other(String),
    /// A registry the pass talks to (an upstream, a target) failed; the
    /// message says which and how, and is safe to show an admin.
    #[error("{0}")]
    Upstream(String),
    /// A pass asked for on demand is already waiting or running; asking again
    /// would only queue more of the same work.
    #[error("a {0} pass asked for on demand is already waiting or running; wait for it to finish")]
    Busy(&'static str),
    /// The pass was asked for something it cannot do (an import of a
    /// directory that is not a `registry:2` storage root); the message says
    /// what, for the admin (the API answers 400).
    #[error("{0}")]
    Refused(String),
}

/// One background job.
pub trait Worker: Send + Sync + 'static {
    /// What one pass did (serialised into `wharf status` and the admin API).
    type Report: Serialize + Send + Sync + 'static;

    /// Stable lowercase name (`gc`, `evict`, ...): the metric label, the admin
    /// API's key and the CLI's column.
    fn name(&self) -> &'static str;

    /// How long to wait between passes; `None` runs only when kicked.
    fn interval(&self) -> Option<Duration>;

    /// One pass.
    fn run_once(&self) -> impl Future<Output = Result<Self::Report, WorkerError>> + Send;

    /// Where a long pass publishes how far it got, if it does.
    fn progress(&self) -> Option<Arc<Progress>> {
        None
    }
}

/// How far a running pass has got (items done of a total), for progress bars.
#[derive(Debug, Default)]
pub struct Progress {
    done: AtomicU64,
    total: AtomicU64,
}

impl Progress {
    /// Starts a pass over `total` items.
    pub fn start(&self, total: u64) {
        self.done.store(0, Ordering::Relaxed);
        self.total.store(total, Ordering::Relaxed);
    }

    /// Counts `n` more items done.
    pub fn advance(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }

    /// (done, total).
    pub fn get(&self) -> (u64, u64) {
        (
            self.done.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
        )
    }
}

/// What `wharf status` shows for one worker.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Status {
    /// The worker's name.
    pub name: &'static str,
    /// A pass is running now.
    pub running: bool,
    /// Unix seconds when the last pass started.
    pub last_run: Option<u64>,
    /// How long the last pass took, in milliseconds.
    pub last_duration_ms: Option<u64>,
    /// "ok" or "error" for the last pass.
    pub last_result: Option<&'static str>,
    /// The last pass's error, if it failed.
    pub last_error: Option<String>,
    /// The last successful pass's report.
    pub last_report: Option<serde_json::Value>,
    /// Unix seconds of the next scheduled pass (`None`: only when kicked).
    pub next_run: Option<u64>,
    /// Passes run since start.
    pub runs: u64,
    /// Passes that failed since start.
    pub failures: u64,
    /// (done, total) of the running pass, when the worker reports progress.
    pub progress: Option<(u64, u64)>,
}

/// One worker's switchboard: kick it, read its status, run a pass now. Passes
/// of one worker never overlap, whoever starts them.
pub struct Control {
    name: &'static str,
    kick: Notify,
    status: Mutex<Status>,
    running: AtomicBool,
    /// Serialises passes (the loop's and the admin API's).
    turn: tokio::sync::Mutex<()>,
    /// On-demand passes waiting or running (at most one: see [`Handle::run_detached`]).
    on_demand: std::sync::atomic::AtomicUsize,
    progress: Option<Arc<Progress>>,
    metrics: Arc<Metrics>,
}

impl Control {
    fn new(name: &'static str, progress: Option<Arc<Progress>>, metrics: Arc<Metrics>) -> Control {
        Control {
            name,
            kick: Notify::new(),
            status: Mutex::new(Status {
                name,
                ..Status::default()
            }),
            running: AtomicBool::new(false),
            turn: tokio::sync::Mutex::new(()),
            on_demand: std::sync::atomic::AtomicUsize::new(0),
            progress,
            metrics,
        }
    }

    /// The worker's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Asks the loop for a pass as soon as it can (a push that enqueued work,
    /// `wharf sync --now`); kicks while a pass runs fold into one more pass.
    pub fn kick(&self) {
        self.kick.notify_one();
    }

    /// A snapshot of the worker's state.
    pub fn status(&self) -> Status {
        let mut s = self.status.lock().map(|s| s.clone()).unwrap_or_default();
        s.name = self.name;
        s.running = self.running.load(Ordering::Relaxed);
        s.progress = match (&self.progress, s.running) {
            (Some(p), true) => Some(p.get()),
            _ => None,
        };
        s
    }

    fn set_next(&self, next: Option<Duration>) {
        if let Ok(mut s) = self.status.lock() {
            s.next_run = next.map(|d| unix_now() + d.as_secs());
        }
    }

    /// Runs one pass of `worker` now (after any pass already running) and
    /// records it; what the drive loop calls.
    pub async fn run<W: Worker>(&self, worker: &W) -> Result<W::Report, WorkerError> {
        self.run_with(|| worker.run_once()).await
    }

    /// Runs `pass` as one of this worker's passes: after any pass already
    /// running (the scheduled one included), never beside one, and recorded in
    /// the status and the metrics like any other. What the admin API uses for
    /// a pass with arguments (`wharf gc --dry-run` runs `Gc::pass(true)`).
    pub async fn run_with<R, F, Fut>(&self, pass: F) -> Result<R, WorkerError>
    where
        R: Serialize,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<R, WorkerError>>,
    {
        let _turn = self.turn.lock().await;
        let running = Running::start(&self.running);
        let started = Instant::now();
        let started_at = unix_now();
        let result = pass().await;
        drop(running);
        let ok = result.is_ok();
        self.metrics
            .observe_worker_run(self.name, if ok { "ok" } else { "error" });
        if let Ok(mut s) = self.status.lock() {
            s.last_run = Some(started_at);
            s.last_duration_ms = Some(started.elapsed().as_millis() as u64);
            s.runs += 1;
            match &result {
                Ok(report) => {
                    s.last_result = Some("ok");
                    s.last_error = None;
                    s.last_report = serde_json::to_value(report).ok();
                }
                Err(e) => {
                    s.last_result = Some("error");
                    s.last_error = Some(e.to_string());
                    s.failures += 1;
                }
            }
        }
        if let Err(e) = &result {
            tracing::warn!(worker = self.name, error = %e, "worker pass failed");
        }
        result
    }
}

/// Marks a pass as running while it lives: a pass cut short (shutdown drops
/// the loop's future) does not leave the worker "running" forever.
struct Running<'a>(&'a AtomicBool);

impl<'a> Running<'a> {
    fn start(flag: &'a AtomicBool) -> Running<'a> {
        flag.store(true, Ordering::Relaxed);
        Running(flag)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

/// A worker together with its control: what the composition root hands to the
/// admin API so that it can run a pass and return its report.
pub struct Handle<W: Worker> {
    /// The worker (tests call `run_once` on it directly).
    pub worker: Arc<W>,
    /// Its switchboard.
    pub control: Arc<Control>,
}

impl<W: Worker> Clone for Handle<W> {
    fn clone(&self) -> Self {
        Handle {
            worker: self.worker.clone(),
            control: self.control.clone(),
        }
    }
}

impl<W: Worker> Handle<W> {
    /// Wraps `worker` with a fresh control.
    pub fn new(worker: W, metrics: Arc<Metrics>) -> Handle<W> {
        let progress = worker.progress();
        let control = Arc::new(Control::new(worker.name(), progress, metrics));
        Handle {
            worker: Arc::new(worker),
            control,
        }
    }

    /// Runs one pass now and records it.
    pub async fn run_now(&self) -> Result<W::Report, WorkerError> {
        self.control.run(self.worker.as_ref()).await
    }

    /// Runs `pass` (given the worker) as one of its passes
    /// ([`Control::run_with`]) in a task of its own, and waits for its report.
    /// One such pass per worker at a time: another request meanwhile gets
    /// [`WorkerError::Busy`] (the admin API answers 429).
    /// The task is not tied to the caller: an admin client that disconnects
    /// or gives up does not cut a collection short between its row commit
    /// and its file removals; the pass finishes and `status` shows it.
    pub async fn run_detached<R, F, Fut>(&self, pass: F) -> Result<R, WorkerError>
    where
        R: Serialize + Send + 'static,
        F: FnOnce(Arc<W>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<R, WorkerError>> + Send + 'static,
    {
        // One on-demand pass at a time: requests that pile up (a client that
        // retries, hangs up and retries) get Busy rather than queue passes.
        let name = self.worker.name();
        if self.control.on_demand.fetch_add(1, Ordering::AcqRel) > 0 {
            self.control.on_demand.fetch_sub(1, Ordering::AcqRel);
            return Err(WorkerError::Busy(name));
        }
        let slot = OnDemandSlot(self.control.clone());
        let h = self.clone();
        tokio::spawn(async move {
            let _slot = slot;
            h.control.run_with(|| pass(h.worker.clone())).await
        })
        .await
        .map_err(|e| WorkerError::Other(format!("the {} pass stopped: {e}", self.worker.name())))?
    }

    /// Spawns the loop: a pass every interval and on every kick, until shutdown.
    pub fn spawn(&self, shutdown: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(drive(self.clone(), shutdown))
    }
}

/// The one on-demand pass of a worker, released when its task ends (or panics).
struct OnDemandSlot(Arc<Control>);

impl Drop for OnDemandSlot {
    fn drop(&mut self) {
        self.0.on_demand.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Longest wait after failures, whatever the interval.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// First wait after a failure.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// The one loop every worker runs in: wait for the interval (or a kick), run a
/// pass, record it; after a failure wait 1 s, 2 s, 4 s … (never longer than the
/// interval or 5 min) before the next try.
pub async fn drive<W: Worker>(handle: Handle<W>, mut shutdown: watch::Receiver<bool>) {
    let interval = handle.worker.interval();
    let mut backoff: Option<Duration> = None;
    loop {
        let wait = match (backoff, interval) {
            (Some(b), Some(i)) => Some(b.min(i)),
            (Some(b), None) => Some(b),
            (None, i) => i,
        };
        handle.control.set_next(wait);
        let sleep = async {
            match wait {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sleep => {}
            _ = handle.control.kick.notified() => {}
            _ = crate::shutdown::until_shutdown(&mut shutdown) => return,
        }
        let pass = handle.run_now();
        let result = tokio::select! {
            r = pass => r,
            _ = crate::shutdown::until_shutdown(&mut shutdown) => return,
        };
        backoff = match result {
            Ok(_) => None,
            Err(_) => Some(
                backoff
                    .map(|b| (b * 2).min(MAX_BACKOFF))
                    .unwrap_or(FIRST_BACKOFF),
            ),
        };
    }
}

/// Every worker's control, for `wharf status` and the web page.
#[derive(Default, Clone)]
pub struct Registry {
    controls: Vec<Arc<Control>>,
}

impl Registry {
    /// Lists `control` in status reports.
    pub fn add(&mut self, control: Arc<Control>) {
        self.controls.push(control);
    }

    /// The control of the worker called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Control>> {
        self.controls.iter().find(|c| c.name() == name)
    }

    /// Every worker's status, in registration order.
    pub fn statuses(&self) -> Vec<Status> {
        self.controls.iter().map(|c| c.status()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts passes; fails while `fail` is set.
    struct Counting {
        passes: AtomicU64,
        fail: AtomicBool,
        done: Notify,
    }

    impl Worker for Counting {
        type Report = u64;
        fn name(&self) -> &'static str {
            "counting"
        }
        fn interval(&self) -> Option<Duration> {
            None
        }
        async fn run_once(&self) -> Result<u64, WorkerError> {
            let n = self.passes.fetch_add(1, Ordering::SeqCst) + 1;
            self.done.notify_one();
            if self.fail.load(Ordering::SeqCst) {
                return Err(WorkerError::Other("told to fail".into()));
            }
            Ok(n)
        }
    }

    fn counting(fail: bool) -> Handle<Counting> {
        Handle::new(
            Counting {
                passes: AtomicU64::new(0),
                fail: AtomicBool::new(fail),
                done: Notify::new(),
            },
            Arc::new(Metrics::new()),
        )
    }

    #[tokio::test]
    async fn a_kick_runs_a_pass_and_the_status_keeps_its_report() {
        let h = counting(false);
        let (tx, rx) = watch::channel(false);
        let task = h.spawn(rx);
        let done = h.worker.done.notified();
        h.control.kick();
        done.await;
        // The pass is recorded after run_once returns: run another through the
        // same turn, which waits for the first to be recorded.
        let second = h.run_now().await.unwrap();
        assert_eq!(second, 2);
        let s = h.control.status();
        assert_eq!(s.runs, 2);
        assert_eq!(s.last_result, Some("ok"));
        assert_eq!(s.last_report, Some(serde_json::json!(2)));
        assert_eq!(s.next_run, None, "no interval: runs only when kicked");
        tx.send(true).unwrap();
        task.await.unwrap();
    }

    /// Starts an on-demand pass that answers `report` once `gate` is
    /// notified, and waits until it runs.
    async fn held_pass(
        h: &Handle<Counting>,
        report: u64,
    ) -> (
        Arc<Notify>,
        tokio::task::JoinHandle<Result<u64, WorkerError>>,
    ) {
        let gate = Arc::new(Notify::new());
        let g = gate.clone();
        let first = tokio::spawn({
            let h = h.clone();
            async move {
                h.run_detached(move |_| async move {
                    g.notified().await;
                    Ok(report)
                })
                .await
            }
        });
        while !h.control.status().running {
            tokio::task::yield_now().await;
        }
        (gate, first)
    }

    #[tokio::test]
    async fn a_custom_pass_takes_its_turn_and_is_recorded() {
        let h = counting(false);
        let (gate, first) = held_pass(&h, 41u64).await;
        let second = tokio::spawn({
            let h = h.clone();
            async move { h.run_now().await }
        });
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            h.worker.passes.load(Ordering::SeqCst),
            0,
            "the worker's own pass waits for the custom one"
        );
        gate.notify_one();
        assert_eq!(first.await.unwrap().unwrap(), 41);
        assert_eq!(second.await.unwrap().unwrap(), 1);
        let s = h.control.status();
        assert_eq!(s.runs, 2);
        assert!(!s.running);
        assert_eq!(s.last_report, Some(serde_json::json!(1)));
    }

    #[tokio::test]
    async fn on_demand_passes_do_not_pile_up() {
        let h = counting(false);
        let (gate, first) = held_pass(&h, 1u64).await;
        for _ in 0..3 {
            let again = h.run_detached(|_| async { Ok(2u64) }).await;
            assert!(
                matches!(again, Err(WorkerError::Busy("counting"))),
                "{again:?}"
            );
        }
        gate.notify_one();
        assert_eq!(first.await.unwrap().unwrap(), 1);
        // The slot is free again once the pass is over.
        assert_eq!(h.run_detached(|_| async { Ok(3u64) }).await.unwrap(), 3);
        assert_eq!(h.control.status().runs, 2);
    }

    #[tokio::test]
    async fn a_pass_cut_short_is_not_left_running() {
        let h = counting(false);
        let mut pass = Box::pin(
            h.control
                .run_with(std::future::pending::<Result<u64, WorkerError>>),
        );
        tokio::select! {
            biased;
            _ = &mut pass => unreachable!("the pass never ends"),
            _ = async {} => {}
        }
        assert!(h.control.status().running);
        drop(pass);
        assert!(!h.control.status().running);
    }

    #[tokio::test]
    async fn a_failed_pass_is_recorded_and_retried_with_backoff() {
        let h = counting(true);
        let (tx, rx) = watch::channel(false);
        let task = h.spawn(rx);
        let done = h.worker.done.notified();
        h.control.kick();
        done.await;
        // The retry comes by itself (backoff), without another kick.
        let retried = h.worker.done.notified();
        retried.await;
        let s = h.control.status();
        assert!(s.failures >= 1);
        assert_eq!(s.last_result, Some("error"));
        assert_eq!(s.last_error.as_deref(), Some("told to fail"));
        tx.send(true).unwrap();
        task.await.unwrap();
    }
}
