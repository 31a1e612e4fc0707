//! The systemd watchdog (`WatchdogSec=`): `WATCHDOG=1` every half period, but
//! only while the daemon really works. Before each ping the accept loop must
//! have beaten its [`Heartbeat`] recently (it ticks it from its own `select!`,
//! so a wedged loop stops it) and the index must answer a read and commit a
//! write through its writer thread (bounded by a timeout). If either is stuck,
//! the pings stop and systemd kills and restarts the process: a registry that
//! accepts TCP but never answers is worse than one that restarts.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::{Notice, notify};
use crate::shutdown::until_shutdown;
use crate::store::{Store, StoreError};

/// The longest the accept loop waits between beats, whatever the watchdog.
pub const MAX_BEAT: Duration = Duration::from_secs(1);

/// The shortest watchdog period wharf honours. Below it a liveness check
/// (an index commit) cannot finish within half a period, so every check would
/// fail and log, about a thousand times a second: such a `WATCHDOG_USEC` is a
/// mistake, refused with one warning.
pub const MIN_PERIOD: Duration = Duration::from_millis(100);

/// The watchdog period systemd asks for (`WATCHDOG_USEC`, honouring
/// `WATCHDOG_PID`), when it listens (`NOTIFY_SOCKET`); None otherwise, and
/// None (with a warning) for a period shorter than [`MIN_PERIOD`].
pub fn period() -> Option<Duration> {
    if !super::enabled() {
        return None;
    }
    let period = sd_notify::watchdog_enabled().filter(|d| !d.is_zero())?;
    if period < MIN_PERIOD {
        tracing::warn!(
            ?period,
            min = ?MIN_PERIOD,
            "WATCHDOG_USEC is shorter than wharf can prove liveness in; no watchdog pings (set WatchdogSec= to a few seconds or more)"
        );
        return None;
    }
    Some(period)
}

/// How often the accept loop beats for a watchdog `period`: a quarter of it
/// (two beats per ping), at most [`MAX_BEAT`].
pub fn beat_every(period: Option<Duration>) -> Duration {
    period.map_or(MAX_BEAT, |p| {
        (p / 4).clamp(Duration::from_millis(1), MAX_BEAT)
    })
}

/// Proof of life from a loop that is otherwise idle: the loop calls
/// [`Heartbeat::beat`] every [`Heartbeat::every`], the watchdog reads its age.
#[derive(Debug)]
pub struct Heartbeat {
    start: Instant,
    every: Duration,
    /// Milliseconds from `start` to the last beat.
    last: AtomicU64,
}

impl Heartbeat {
    /// A heartbeat expected every `every`; it counts as beaten now.
    pub fn new(every: Duration) -> Arc<Heartbeat> {
        Arc::new(Heartbeat {
            start: Instant::now(),
            every,
            last: AtomicU64::new(0),
        })
    }

    /// How often the loop should beat.
    pub fn every(&self) -> Duration {
        self.every
    }

    /// The loop is alive now.
    pub fn beat(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Release);
    }

    /// Time since the last beat.
    pub fn age(&self) -> Duration {
        let last = Duration::from_millis(self.last.load(Ordering::Acquire));
        self.start.elapsed().saturating_sub(last)
    }
}

/// Why a ping was withheld.
#[derive(Debug, thiserror::Error)]
pub enum Stuck {
    /// The accept loop has not beaten for too long.
    #[error("the accept loop has not run for {0:?}")]
    AcceptLoop(Duration),
    /// The index did not answer within the limit.
    #[error("the index did not answer within {0:?}")]
    IndexTimeout(Duration),
    /// The index answered with an error.
    #[error("the index failed: {0}")]
    Index(#[from] StoreError),
}

/// One liveness check: the heartbeat is younger than `limit`, and the index
/// reads and commits within `limit`.
pub async fn check(store: &Store, heartbeat: &Heartbeat, limit: Duration) -> Result<(), Stuck> {
    let age = heartbeat.age();
    if age > limit {
        return Err(Stuck::AcceptLoop(age));
    }
    match tokio::time::timeout(limit, store.alive()).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(Stuck::IndexTimeout(limit)),
    }
}

/// Pings every half `period` while [`check`] passes, until shutdown (systemd
/// stops watching a service once it is stopping).
pub async fn run(
    period: Duration,
    store: Arc<Store>,
    heartbeat: Arc<Heartbeat>,
    mut shutdown: watch::Receiver<bool>,
) {
    let every = period / 2;
    tracing::info!(?period, "systemd watchdog enabled");
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut healthy = true;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = until_shutdown(&mut shutdown) => return,
        }
        match check(&store, &heartbeat, every).await {
            Ok(()) => {
                notify(Notice::Watchdog).await;
                if !healthy {
                    tracing::info!("liveness restored; watchdog pings resumed");
                    notify(Notice::Status("serving".into())).await;
                    healthy = true;
                }
            }
            Err(why) => {
                tracing::error!(error = %why, "liveness check failed; withholding the watchdog ping");
                notify(Notice::Status(format!("unhealthy: {why}"))).await;
                healthy = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beats_four_times_a_period_at_most_once_a_second() {
        assert_eq!(beat_every(None), MAX_BEAT);
        assert_eq!(
            beat_every(Some(Duration::from_secs(2))),
            Duration::from_millis(500)
        );
        assert_eq!(beat_every(Some(Duration::from_secs(30))), MAX_BEAT);
    }

    #[test]
    fn a_heartbeat_ages_until_it_beats() {
        let h = Heartbeat::new(Duration::from_millis(10));
        h.beat();
        assert!(h.age() < Duration::from_secs(5));
        let old = Heartbeat {
            start: Instant::now() - Duration::from_secs(60),
            every: Duration::from_millis(10),
            last: AtomicU64::new(0),
        };
        assert!(old.age() >= Duration::from_secs(60));
        old.beat();
        assert!(old.age() < Duration::from_secs(5));
    }
}
