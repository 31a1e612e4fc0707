//! A per-upstream circuit breaker: after repeated failures the upstream is
//! skipped for a while, so during an outage cached content answers at local
//! speed instead of after a timeout each time. After the pause one request
//! probes; success closes the breaker, failure doubles the pause.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures in a row that open the breaker.
pub const THRESHOLD: u32 = 3;
/// First pause.
const MIN_PAUSE: Duration = Duration::from_secs(5);
/// Longest pause.
const MAX_PAUSE: Duration = Duration::from_secs(300);

#[derive(Debug)]
struct State {
    failures: u32,
    open_until: Option<Instant>,
    pause: Duration,
    probing: bool,
}

/// The breaker of one upstream.
#[derive(Debug)]
pub struct Breaker {
    state: Mutex<State>,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            state: Mutex::new(State {
                failures: 0,
                open_until: None,
                pause: MIN_PAUSE,
                probing: false,
            }),
        }
    }
}

impl Breaker {
    /// Ok to call the upstream (true when this call is the one probe after
    /// a pause), or how long until it is tried again.
    pub fn admit(&self) -> Result<bool, Duration> {
        let Ok(mut s) = self.state.lock() else {
            return Ok(false);
        };
        match s.open_until {
            None => Ok(false),
            Some(until) => {
                let now = Instant::now();
                if now < until {
                    Err(until - now)
                } else if s.probing {
                    Err(Duration::from_secs(1))
                } else {
                    s.probing = true;
                    Ok(true)
                }
            }
        }
    }

    /// Records the outcome of an admitted call.
    pub fn record(&self, ok: bool) {
        let Ok(mut s) = self.state.lock() else { return };
        if ok {
            s.failures = 0;
            s.open_until = None;
            s.pause = MIN_PAUSE;
            s.probing = false;
            return;
        }
        s.failures = s.failures.saturating_add(1);
        if s.probing {
            s.probing = false;
            s.pause = (s.pause * 2).min(MAX_PAUSE);
            s.open_until = Some(Instant::now() + s.pause);
        } else if s.failures >= THRESHOLD {
            s.open_until = Some(Instant::now() + s.pause);
        }
    }

    /// The probe (an admitted call [`Breaker::admit`] called one) ended
    /// without an outcome, because its caller went away: the counts stay as
    /// they were, but the probe slot is released, or the breaker would wait
    /// for that probe's verdict forever.
    pub fn abandon(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.probing = false;
        }
    }

    /// Opens at once (a source that sent bad bytes is not asked again soon).
    pub fn trip(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.failures = THRESHOLD;
            s.probing = false;
            s.open_until = Some(Instant::now() + s.pause);
        }
    }

    /// Whether calls are currently being skipped.
    pub fn is_open(&self) -> bool {
        self.state
            .lock()
            .map(|s| s.open_until.is_some())
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_closes_on_success() {
        let b = Breaker::default();
        for _ in 0..THRESHOLD - 1 {
            assert!(b.admit().is_ok());
            b.record(false);
        }
        assert!(b.admit().is_ok());
        b.record(false);
        assert!(b.is_open());
        assert!(b.admit().is_err());
        // Force the pause to be over and probe successfully.
        b.state.lock().unwrap().open_until = Some(Instant::now());
        assert!(b.admit().is_ok(), "one probe");
        assert!(b.admit().is_err(), "only one probe at a time");
        b.record(true);
        assert!(!b.is_open());
        assert!(b.admit().is_ok());
    }

    #[test]
    fn failed_probe_doubles_the_pause() {
        let b = Breaker::default();
        for _ in 0..THRESHOLD {
            b.record(false);
        }
        b.state.lock().unwrap().open_until = Some(Instant::now());
        assert!(b.admit().is_ok());
        b.record(false);
        let s = b.state.lock().unwrap();
        assert_eq!(s.pause, MIN_PAUSE * 2);
        assert!(s.open_until.unwrap() > Instant::now() + MIN_PAUSE);
    }

    #[test]
    fn an_abandoned_probe_frees_the_slot() {
        let b = Breaker::default();
        for _ in 0..THRESHOLD {
            b.record(false);
        }
        b.state.lock().unwrap().open_until = Some(Instant::now());
        assert_eq!(b.admit(), Ok(true), "the probe");
        assert!(b.admit().is_err());
        b.abandon();
        assert_eq!(b.admit(), Ok(true), "another probe may go");
    }
}
