//! How long an upstream may keep a client waiting, and when to try again.
//!
//! Every upstream call runs against a [`Deadline`]: the time by which the
//! response headers (and, for small bodies such as manifests, tag lists and
//! token responses, the whole body) must be in, across retries, the auth
//! challenge and the token fetch. Each exchange also has its own
//! time-to-headers limit, so one hung connection does not use the whole
//! budget. A retry is made only while the wait before it still leaves time for
//! an attempt; a 429 asking for longer is passed on to the client. A call that
//! runs out of time counts as an outage for the circuit breaker, like a
//! connect error.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use backon::ExponentialBuilder;
use tokio::time::Instant;

use super::breaker::Breaker;
use super::error::UpstreamError;

/// The budget of one client request's upstream calls: a client on a cold
/// miss has its answer (the content, the upstream's 429, or a 503) within
/// this plus local work, whatever the upstream does.
pub const CALL_BUDGET: Duration = Duration::from_secs(10);
/// Longest wait for one exchange's response headers (a token response's body
/// included): a hung connection is given up while the budget still allows
/// another attempt.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// No attempt starts with less budget left than this: it could not succeed.
pub const MIN_ATTEMPT: Duration = Duration::from_secs(1);
/// Retries after the first attempt, budget permitting.
const MAX_RETRIES: usize = 2;

/// The instant by which an upstream call must have its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline(Instant);

impl Deadline {
    /// [`CALL_BUDGET`] from now: what a request that has to ask the upstream
    /// gets, shared by all the calls it makes.
    pub fn for_call() -> Deadline {
        Deadline::after(CALL_BUDGET)
    }

    /// `budget` from now (at most a day).
    pub fn after(budget: Duration) -> Deadline {
        let now = Instant::now();
        let day = Duration::from_secs(24 * 60 * 60);
        Deadline(now.checked_add(budget.min(day)).unwrap_or(now))
    }

    /// Time left; zero once passed.
    pub fn remaining(&self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    /// The instant itself, for `tokio::time` functions.
    pub fn instant(&self) -> Instant {
        self.0
    }

    /// The exponential backoff between attempts (each wait is then checked
    /// against the budget by [`next_wait`]).
    pub(super) fn backoff() -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_secs(2))
            .with_max_times(MAX_RETRIES)
            .with_jitter()
    }
}

/// The wait before the next attempt, or None to give up now. `backoff` is
/// backon's proposal, None once its retries are used up (then nothing
/// changes that). A 429's `Retry-After` replaces the backoff; any wait is
/// taken only when an attempt still fits in `remaining` after it.
pub(super) fn next_wait(
    err: &UpstreamError,
    backoff: Option<Duration>,
    remaining: Duration,
) -> Option<Duration> {
    let backoff = backoff?;
    let wait = match err {
        UpstreamError::TooManyRequests {
            retry_after: Some(s),
        } => Duration::from_secs(*s),
        _ => backoff,
    };
    (wait.saturating_add(MIN_ATTEMPT) <= remaining).then_some(wait)
}

/// The error of a call that ran out of time.
fn timed_out(what: &str, after: Duration) -> UpstreamError {
    UpstreamError::Unavailable(format!("no {what} within {:.0}s", after.as_secs_f64()))
}

/// Waits at most [`ATTEMPT_TIMEOUT`] for one exchange (a send, or a token
/// fetch with its body).
pub(super) async fn exchange<T>(
    fut: impl Future<Output = Result<T, UpstreamError>>,
) -> Result<T, UpstreamError> {
    tokio::time::timeout(ATTEMPT_TIMEOUT, fut)
        .await
        .unwrap_or_else(|_| Err(timed_out("response headers", ATTEMPT_TIMEOUT)))
}

/// Runs one upstream call behind `breaker` and within `deadline` (none starts
/// with less than [`MIN_ATTEMPT`] left), and tells the breaker how it went:
/// an outage (connect error, 5xx, 429, timeout, wherever in the call it
/// happened) or not. `throttled` is set by the call when it gave up waiting
/// for the local rate limit: that is no outage of the upstream, and is not
/// counted.
pub(super) async fn guarded<T>(
    breaker: &Breaker,
    deadline: Deadline,
    throttled: &AtomicBool,
    call: impl Future<Output = Result<T, UpstreamError>>,
) -> Result<T, UpstreamError> {
    if deadline.remaining() < MIN_ATTEMPT {
        // Spent waiting for another request's call: asking now could not
        // succeed, and is no news about the upstream.
        return Err(UpstreamError::Unavailable(
            "no time left to ask the upstream".into(),
        ));
    }
    let probe = match breaker.admit() {
        Ok(probe) => probe,
        Err(wait) => return Err(UpstreamError::CircuitOpen(wait.as_secs().max(1))),
    };
    let admitted = Admitted {
        breaker: Some(breaker),
        probe,
    };
    let budget = deadline.remaining();
    let result = tokio::time::timeout_at(deadline.instant(), call)
        .await
        .unwrap_or_else(|_| Err(timed_out("answer", budget)));
    if !throttled.load(Ordering::Relaxed) {
        admitted.record(!matches!(&result, Err(e) if e.is_outage()));
    }
    result
}

/// An admitted call; dropped without a verdict (its caller went away, or it
/// was only throttled locally), the breaker's probe slot it held is released.
struct Admitted<'a> {
    breaker: Option<&'a Breaker>,
    probe: bool,
}

impl Admitted<'_> {
    fn record(mut self, ok: bool) {
        if let Some(b) = self.breaker.take() {
            b.record(ok);
        }
    }
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        if let Some(b) = self.breaker.take().filter(|_| self.probe) {
            b.abandon();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limited(s: u64) -> UpstreamError {
        UpstreamError::TooManyRequests {
            retry_after: Some(s),
        }
    }

    #[test]
    fn exhausted_retries_stay_exhausted_whatever_the_retry_after() {
        let ten = Duration::from_secs(10);
        assert_eq!(next_wait(&limited(2), None, ten), None);
        assert_eq!(next_wait(&limited(0), None, ten), None);
    }

    #[test]
    fn a_short_retry_after_is_waited_within_the_budget() {
        let ms = Duration::from_millis(150);
        let ten = Duration::from_secs(10);
        assert_eq!(
            next_wait(&limited(2), Some(ms), ten),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            next_wait(&limited(2), Some(ms), Duration::from_millis(2500)),
            None,
            "no attempt would fit after the wait"
        );
        assert_eq!(next_wait(&limited(60), Some(ms), ten), None, "passed on");
        assert_eq!(
            next_wait(&limited(u64::MAX), Some(ms), ten),
            None,
            "no overflow"
        );
    }

    #[test]
    fn backoff_waits_only_while_budget_remains() {
        let ms = Duration::from_millis(150);
        let e = UpstreamError::Unavailable("503".into());
        assert_eq!(next_wait(&e, Some(ms), Duration::from_secs(5)), Some(ms));
        assert_eq!(next_wait(&e, Some(ms), Duration::from_millis(900)), None);
        assert_eq!(next_wait(&e, Some(ms), Duration::ZERO), None);
        let no_header = UpstreamError::TooManyRequests { retry_after: None };
        assert_eq!(
            next_wait(&no_header, Some(ms), Duration::from_secs(5)),
            Some(ms)
        );
    }

    #[test]
    fn deadlines_never_overflow() {
        let d = Deadline::after(Duration::MAX);
        assert!(d.remaining() <= Duration::from_secs(24 * 60 * 60));
        assert!(Deadline::after(Duration::ZERO).remaining().is_zero());
    }

    #[tokio::test]
    async fn a_hung_call_is_an_outage_and_a_local_throttle_is_not() {
        use super::super::breaker::THRESHOLD;
        use std::sync::Arc;
        let b = Arc::new(Breaker::default());
        // THRESHOLD hung calls at once, each with the least budget allowed.
        let deadline = Deadline::after(MIN_ATTEMPT + Duration::from_millis(50));
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..THRESHOLD {
            let b = b.clone();
            calls.spawn(async move {
                let no = AtomicBool::new(false);
                guarded(&b, deadline, &no, std::future::pending::<Result<(), _>>()).await
            });
        }
        while let Some(r) = calls.join_next().await {
            let r = r.unwrap();
            assert!(matches!(r, Err(UpstreamError::Unavailable(_))), "{r:?}");
        }
        assert!(b.is_open(), "timeouts opened the breaker");

        let b = Breaker::default();
        let throttled = AtomicBool::new(true);
        for _ in 0..THRESHOLD {
            let r: Result<(), _> = guarded(
                &b,
                Deadline::after(Duration::from_secs(5)),
                &throttled,
                async { Err(limited(1)) },
            )
            .await;
            assert!(r.is_err());
        }
        assert!(!b.is_open(), "a local rate limit is no outage");

        let b = Breaker::default();
        let no = AtomicBool::new(false);
        for _ in 0..THRESHOLD {
            let r: Result<(), _> =
                guarded(&b, Deadline::after(Duration::ZERO), &no, async { Ok(()) }).await;
            assert!(r.is_err(), "no time left: not even asked");
        }
        assert!(!b.is_open(), "and not counted");
    }
}
