//! What a password check may cost. bcrypt is slow on purpose, so an attacker's
//! wrong passwords are cheap for them and expensive here. Before any bcrypt run:
//! a client address may have only so many logins in flight, each run is charged
//! to the address's budget first (a burst, then a steady rate), and all runs
//! share a small pool of threads, so one address cannot starve another's login.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// bcrypt runs one client address may start in a burst.
pub const ATTEMPT_BURST: u32 = 10;
/// bcrypt runs per minute per client address after the burst.
pub const ATTEMPTS_PER_MINUTE: u32 = 20;
/// Logins one address may have waiting or running at once (requests presenting
/// the same credential wait for one run, so a CI farm behind one address fits).
pub const IN_FLIGHT_PER_CLIENT: usize = 64;
/// How long a login waits for a bcrypt thread before it is told to retry.
const POOL_WAIT: Duration = Duration::from_secs(10);
/// Addresses the attempt budget remembers before it forgets the settled ones.
const REMEMBERED_ADDRESSES: usize = 100_000;

/// Why a login is not checked now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TryLater {
    /// Seconds to wait before retrying.
    pub retry_after: u64,
}

/// The budgets and the bcrypt pool.
pub struct LoginGuard {
    attempts: DefaultKeyedRateLimiter<IpAddr>,
    in_flight: Mutex<HashMap<IpAddr, usize>>,
    pool: tokio::sync::Semaphore,
}

/// One admitted login; releases its in-flight slot when dropped.
pub struct Admitted<'a> {
    guard: &'a LoginGuard,
    ip: IpAddr,
}

impl Default for LoginGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl LoginGuard {
    /// Budgets as documented on the constants; the pool has a thread per core.
    pub fn new() -> LoginGuard {
        let quota =
            Quota::per_minute(NonZeroU32::new(ATTEMPTS_PER_MINUTE).unwrap_or(NonZeroU32::MIN))
                .allow_burst(NonZeroU32::new(ATTEMPT_BURST).unwrap_or(NonZeroU32::MIN));
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        LoginGuard {
            attempts: RateLimiter::keyed(quota),
            in_flight: Mutex::new(HashMap::new()),
            pool: tokio::sync::Semaphore::new(threads),
        }
    }

    /// Admits a login from `ip` if it has fewer than [`IN_FLIGHT_PER_CLIENT`]
    /// in flight.
    pub fn admit(&self, ip: IpAddr) -> Result<Admitted<'_>, TryLater> {
        let busy = TryLater { retry_after: 1 };
        let mut map = self.in_flight.lock().map_err(|_| busy)?;
        let n = map.entry(ip).or_insert(0);
        if *n >= IN_FLIGHT_PER_CLIENT {
            return Err(busy);
        }
        *n += 1;
        Ok(Admitted { guard: self, ip })
    }

    /// Charges one bcrypt run to `ip`'s budget, or says how long to wait.
    pub fn charge(&self, ip: IpAddr) -> Result<(), TryLater> {
        if self.attempts.len() > REMEMBERED_ADDRESSES {
            self.attempts.retain_recent();
        }
        self.attempts.check_key(&ip).map_err(|not_until| TryLater {
            retry_after: not_until
                .wait_time_from(DefaultClock::default().now())
                .as_secs()
                .max(1),
        })
    }

    /// Waits for a bcrypt thread (bounded), so concurrent logins queue fairly
    /// instead of each taking a blocking thread.
    pub async fn pool_slot(&self) -> Result<tokio::sync::SemaphorePermit<'_>, TryLater> {
        match tokio::time::timeout(POOL_WAIT, self.pool.acquire()).await {
            Ok(Ok(p)) => Ok(p),
            _ => Err(TryLater { retry_after: 1 }),
        }
    }
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        if let Ok(mut map) = self.guard.in_flight.lock() {
            if let Some(n) = map.get_mut(&self.ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    map.remove(&self.ip);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_is_charged_per_address() {
        let g = LoginGuard::new();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..ATTEMPT_BURST {
            assert!(g.charge(a).is_ok());
        }
        let wait = g.charge(a).unwrap_err();
        assert!(wait.retry_after >= 1);
        assert!(g.charge(b).is_ok(), "another address has its own budget");
    }

    #[test]
    fn in_flight_is_bounded_and_released() {
        let g = LoginGuard::new();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let held: Vec<_> = (0..IN_FLIGHT_PER_CLIENT)
            .map(|_| g.admit(a).unwrap())
            .collect();
        assert!(g.admit(a).is_err());
        drop(held);
        assert!(g.admit(a).is_ok());
        assert!(g.in_flight.lock().unwrap().is_empty());
    }
}
