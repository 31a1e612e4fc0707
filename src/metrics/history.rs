//! What the cache did over the last hour (per minute) and the last day (per
//! hour): the dashboard's cache hit ratio and bytes served locally against
//! bytes fetched from upstreams. Prometheus keeps history for those who run
//! one; the web page must show it without one.
//!
//! The request path is untouched: it already counts into atomics
//! ([`crate::metrics::Metrics`]). A small task ([`sampler`]) reads those
//! totals every few seconds and adds their differences to two fixed rings
//! (60 one-minute and 24 one-hour buckets), under a mutex only it and page
//! views take. Memory is fixed whatever the traffic. The history starts empty
//! when the process starts and is not persisted: buckets from before the start
//! are marked unrecorded, not shown as zero traffic.

mod ring;
pub mod sampler;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ring::Ring;

/// Buckets of the hour view (one a minute).
pub const MINUTES: usize = 60;
/// Buckets of the day view (one an hour).
pub const HOURS: usize = 24;
const MINUTE: u64 = 60;
const HOUR: u64 = 3600;

/// Where the time comes from: the system clock in the daemon, a hand-moved
/// one in tests (minutes and hours pass without sleeping).
pub trait Clock: Send + Sync {
    /// Seconds since the Unix epoch.
    fn now(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        crate::store::unix_now()
    }
}

/// A clock that moves only when told to (tests; also usable by integration
/// tests that drive a recorder directly).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock showing `unix` seconds.
    pub fn at(unix: u64) -> ManualClock {
        ManualClock(AtomicU64::new(unix))
    }

    /// Moves the clock forward by `secs`.
    pub fn advance(&self, secs: u64) {
        self.0.fetch_add(secs, Ordering::Relaxed);
    }

    /// Sets the clock to `unix` seconds.
    pub fn set(&self, unix: u64) {
        self.0.store(unix, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Counter values the history follows: as totals (what the metrics hold now)
/// or as a bucket's differences. Cache lookups are of mirrored content only
/// (manifests and blobs together); served bytes include hosted content, which
/// is always `local`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Lookups answered from the local cache (`cache_requests{result="HIT"}`).
    pub hit: u64,
    /// Lookups answered from the cache past their TTL because the upstream
    /// failed (`STALE`): served locally, so they count as hits.
    pub stale: u64,
    /// Lookups a LAN peer answered (`PEER`): not in this cache, so misses.
    pub peer: u64,
    /// Lookups fetched from the upstream (`MISS`).
    pub miss: u64,
    /// Body bytes served from the store (`served_bytes{source="local"}`).
    pub served_local: u64,
    /// Body bytes served from a peer's download in flight
    /// (`served_bytes{source="peer"}`).
    pub served_peer: u64,
    /// Body bytes served from an upstream's download in flight
    /// (`served_bytes{source="upstream"}`).
    pub served_upstream: u64,
    /// Blob bytes downloaded from upstreams (`upstream_blob_bytes`, summed
    /// over upstreams): what crossed the internet.
    pub fetched_upstream: u64,
}

impl Counts {
    const FIELDS: usize = 8;

    fn to_array(self) -> [u64; Self::FIELDS] {
        [
            self.hit,
            self.stale,
            self.peer,
            self.miss,
            self.served_local,
            self.served_peer,
            self.served_upstream,
            self.fetched_upstream,
        ]
    }

    fn from_array(a: [u64; Self::FIELDS]) -> Counts {
        let [
            hit,
            stale,
            peer,
            miss,
            served_local,
            served_peer,
            served_upstream,
            fetched_upstream,
        ] = a;
        Counts {
            hit,
            stale,
            peer,
            miss,
            served_local,
            served_peer,
            served_upstream,
            fetched_upstream,
        }
    }

    /// What was counted between the totals `earlier` and `self`. A counter
    /// smaller than before was reset (a new process, a recreated series):
    /// everything it holds now was counted since.
    pub fn since(&self, earlier: &Counts) -> Counts {
        let (now, then) = (self.to_array(), earlier.to_array());
        Counts::from_array(std::array::from_fn(|i| {
            now[i].checked_sub(then[i]).unwrap_or(now[i])
        }))
    }

    /// Adds `other` (saturating: a bucket never wraps to a small number).
    pub fn add(&mut self, other: &Counts) {
        let (a, b) = (self.to_array(), other.to_array());
        *self = Counts::from_array(std::array::from_fn(|i| a[i].saturating_add(b[i])));
    }

    /// Lookups answered locally (`hit` + `stale`).
    pub fn hits(&self) -> u64 {
        self.hit.saturating_add(self.stale)
    }

    /// Lookups of mirrored content, answered locally or not.
    pub fn lookups(&self) -> u64 {
        self.hits()
            .saturating_add(self.miss)
            .saturating_add(self.peer)
    }

    /// Share of lookups answered locally, in 0..=1; `None` without lookups
    /// (no traffic is not a 0% hit ratio).
    pub fn hit_ratio(&self) -> Option<f64> {
        match self.lookups() {
            0 => None,
            n => Some(self.hits() as f64 / n as f64),
        }
    }

    /// Bytes served to clients, from wherever.
    pub fn served(&self) -> u64 {
        self.served_local
            .saturating_add(self.served_peer)
            .saturating_add(self.served_upstream)
    }

    /// Bytes clients received that did not cross the internet: served minus
    /// fetched from upstreams (0 when downloads outran serving).
    pub fn saved(&self) -> u64 {
        self.served().saturating_sub(self.fetched_upstream)
    }
}

/// One bucket of a [`Series`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    /// Unix seconds the bucket starts at.
    pub start: u64,
    /// False for a bucket that ended before recording started (the process
    /// start): nothing is known about it, which is not the same as zero.
    pub recorded: bool,
    /// What was counted in it.
    pub counts: Counts,
}

/// Consecutive buckets of one length, oldest first, the last one being the
/// current (partial) period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    /// Bucket length in seconds (60 or 3600).
    pub step: u64,
    /// The buckets, oldest first.
    pub buckets: Vec<Bucket>,
}

impl Series {
    /// Unix seconds the first bucket starts at (0 when empty).
    pub fn start(&self) -> u64 {
        self.buckets.first().map_or(0, |b| b.start)
    }

    /// Each bucket's hit ratio; `None` where unrecorded or without lookups.
    pub fn hit_ratios(&self) -> Vec<Option<f64>> {
        self.buckets
            .iter()
            .map(|b| b.counts.hit_ratio().filter(|_| b.recorded))
            .collect()
    }

    /// One field of each bucket (0 where unrecorded).
    pub fn values(&self, field: impl Fn(&Counts) -> u64) -> Vec<u64> {
        self.buckets.iter().map(|b| field(&b.counts)).collect()
    }

    /// The sum over the whole window.
    pub fn total(&self) -> Counts {
        let mut sum = Counts::default();
        for b in &self.buckets {
            sum.add(&b.counts);
        }
        sum
    }
}

/// The dashboard's two views.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Unix seconds recording started (the process start).
    pub since: u64,
    /// The last hour, [`MINUTES`] one-minute buckets.
    pub hour: Series,
    /// The last day, [`HOURS`] one-hour buckets.
    pub day: Series,
}

/// The rings and the totals last seen.
#[derive(Debug)]
struct Recorder {
    since: u64,
    last: Counts,
    /// When `last` was read: samples are attributed to a time no earlier,
    /// so a clock stepping back never overwrites newer buckets.
    last_at: u64,
    minutes: Ring<MINUTES>,
    hours: Ring<HOURS>,
}

/// The bounded recorder: fed totals by [`History::record`], read by
/// [`History::snapshot`].
pub struct History {
    clock: Arc<dyn Clock>,
    inner: Mutex<Recorder>,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History").finish_non_exhaustive()
    }
}

impl Default for History {
    fn default() -> Self {
        History::new(Arc::new(SystemClock))
    }
}

impl History {
    /// An empty history starting now on `clock`; counter totals start at 0
    /// (they are this process's).
    pub fn new(clock: Arc<dyn Clock>) -> History {
        let since = clock.now();
        History {
            clock,
            inner: Mutex::new(Recorder {
                since,
                last: Counts::default(),
                last_at: since,
                minutes: Ring::default(),
                hours: Ring::default(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recorder> {
        // A panic under the lock leaves plain numbers: still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds what the counters did since the last call (`totals` are the
    /// counters' current values) to the current minute and hour.
    pub fn record(&self, totals: Counts) {
        let now = self.clock.now();
        let mut r = self.lock();
        let at = now.max(r.last_at);
        let delta = totals.since(&r.last);
        r.last = totals;
        r.last_at = at;
        r.minutes.add(at / MINUTE, &delta);
        r.hours.add(at / HOUR, &delta);
    }

    /// The last hour and the last day as of now (what was recorded; the
    /// caller records fresh totals first for an up-to-the-second view).
    pub fn snapshot(&self) -> Snapshot {
        let now = self.clock.now();
        let r = self.lock();
        let at = now.max(r.last_at);
        let series = |step: u64, window: &mut dyn Iterator<Item = (u64, Counts)>| Series {
            step,
            buckets: window
                .map(|(period, counts)| Bucket {
                    start: period.saturating_mul(step),
                    recorded: period.saturating_add(1).saturating_mul(step) > r.since,
                    counts,
                })
                .collect(),
        };
        Snapshot {
            since: r.since,
            hour: series(MINUTE, &mut r.minutes.window(at / MINUTE)),
            day: series(HOUR, &mut r.hours.window(at / HOUR)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2023-11-14 22:00:00 UTC, on an hour boundary.
    const T0: u64 = 1_700_000_000 - 1_700_000_000 % 3600;

    fn history() -> (Arc<ManualClock>, History) {
        let clock = Arc::new(ManualClock::at(T0));
        (clock.clone(), History::new(clock))
    }

    fn totals(hit: u64, miss: u64, local: u64) -> Counts {
        Counts {
            hit,
            miss,
            served_local: local,
            ..Counts::default()
        }
    }

    fn last(s: &Series) -> Counts {
        s.buckets.last().map(|b| b.counts).unwrap_or_default()
    }

    #[test]
    fn starts_empty_with_earlier_buckets_unrecorded() {
        let (_, h) = history();
        let s = h.snapshot();
        assert_eq!(s.since, T0);
        assert_eq!(s.hour.buckets.len(), MINUTES);
        assert_eq!(s.day.buckets.len(), HOURS);
        assert_eq!(s.hour.total(), Counts::default());
        assert!(s.hour.buckets[..MINUTES - 1].iter().all(|b| !b.recorded));
        assert!(s.hour.buckets[MINUTES - 1].recorded);
        assert_eq!(s.hour.buckets[MINUTES - 1].start, T0);
        assert!(s.hour.hit_ratios().iter().all(Option::is_none));
    }

    #[test]
    fn deltas_land_in_their_minute_and_roll_over() {
        let (clock, h) = history();
        clock.advance(10);
        h.record(totals(3, 1, 100));
        clock.advance(40); // :50 of the first minute
        h.record(totals(5, 1, 150));
        let s = h.snapshot();
        assert_eq!(last(&s.hour), totals(5, 1, 150));
        assert_eq!(s.hour.hit_ratios()[MINUTES - 1], Some(5.0 / 6.0));

        clock.advance(15); // next minute
        h.record(totals(6, 3, 160));
        let s = h.snapshot();
        assert_eq!(last(&s.hour), totals(1, 2, 10));
        assert_eq!(s.hour.buckets[MINUTES - 2].counts, totals(5, 1, 150));
        assert_eq!(s.hour.buckets[MINUTES - 1].start, T0 + 60);
        // Both minutes are in the same hour.
        assert_eq!(last(&s.day), totals(6, 3, 160));
    }

    #[test]
    fn hours_roll_over_and_old_hours_fall_out_of_the_day() {
        let (clock, h) = history();
        for hour in 0..30u64 {
            clock.set(T0 + hour * HOUR + 30);
            h.record(totals(hour + 1, 0, 0));
        }
        let s = h.snapshot();
        assert_eq!(s.day.buckets.len(), HOURS);
        assert_eq!(s.day.buckets[HOURS - 1].start, T0 + 29 * HOUR);
        assert_eq!(s.day.buckets[0].start, T0 + 6 * HOUR);
        // One hit an hour; the first six hours went out of the window.
        assert!(
            s.day
                .buckets
                .iter()
                .all(|b| b.counts.hit == 1 && b.recorded)
        );
        assert_eq!(s.day.total().hit, 24);
        // The hour view holds only the current minute's delta.
        assert_eq!(s.hour.total().hit, 1);
    }

    #[test]
    fn a_gap_reads_as_zeros_not_stale_values() {
        let (clock, h) = history();
        clock.advance(5);
        h.record(totals(10, 0, 1000));
        // Nothing sampled for 10 minutes; then nothing new happened.
        clock.advance(10 * MINUTE);
        h.record(totals(10, 0, 1000));
        let s = h.snapshot();
        let hits: Vec<u64> = s.hour.values(|c| c.hit);
        assert_eq!(hits[MINUTES - 11], 10);
        assert!(hits[MINUTES - 10..].iter().all(|&n| n == 0), "{hits:?}");
        // An hour later every minute slot was recycled or reads as zero:
        // the first minute's 10 hits are not shown again.
        clock.advance(HOUR);
        let s = h.snapshot();
        assert_eq!(s.hour.total(), Counts::default());
        assert!(s.hour.buckets.iter().all(|b| b.recorded));
    }

    #[test]
    fn a_counter_reset_counts_from_zero_not_negative() {
        let (clock, h) = history();
        h.record(totals(100, 50, 1 << 20));
        clock.advance(MINUTE);
        // The totals went down: a reset; what they hold now is new.
        h.record(totals(4, 60, 10));
        let s = h.snapshot();
        assert_eq!(last(&s.hour), totals(4, 10, 10));
        assert_eq!(s.day.total(), totals(104, 60, (1 << 20) + 10));
    }

    #[test]
    fn a_clock_stepping_back_never_overwrites_newer_buckets() {
        let (clock, h) = history();
        clock.advance(2 * MINUTE);
        h.record(totals(1, 0, 0));
        clock.set(T0 + 30);
        h.record(totals(2, 0, 0));
        let s = h.snapshot();
        assert_eq!(last(&s.hour).hit, 2);
        assert_eq!(s.hour.buckets[MINUTES - 1].start, T0 + 2 * MINUTE);
    }

    #[test]
    fn memory_is_bounded_whatever_the_time_span() {
        let (clock, h) = history();
        for i in 0..10_000u64 {
            clock.advance(37);
            h.record(totals(i, i / 2, i * 1000));
        }
        let s = h.snapshot();
        assert_eq!(s.hour.buckets.len(), MINUTES);
        assert_eq!(s.day.buckets.len(), HOURS);
        assert!(std::mem::size_of::<Recorder>() < 16 * 1024);
    }

    #[test]
    fn huge_counts_saturate() {
        let (_, h) = history();
        h.record(totals(0, 0, u64::MAX));
        h.record(totals(0, 0, 5)); // reset: +5 on top of u64::MAX
        let c = last(&h.snapshot().hour);
        assert_eq!(c.served_local, u64::MAX);
        assert_eq!(c.saved(), u64::MAX);
    }

    #[test]
    fn ratio_and_savings() {
        let c = Counts {
            hit: 6,
            stale: 2,
            peer: 1,
            miss: 1,
            served_local: 800,
            served_peer: 100,
            served_upstream: 100,
            fetched_upstream: 150,
        };
        assert_eq!(c.hit_ratio(), Some(0.8));
        assert_eq!(c.served(), 1000);
        assert_eq!(c.saved(), 850);
        assert_eq!(Counts::default().hit_ratio(), None);
    }
}
