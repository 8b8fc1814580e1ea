//! Time as the daemon sees it. Wall time comes from a [`Clock`]; waiting is
//! done with `tokio::time`, so tests pause tokio's clock and use a
//! [`FakeClock`] that moves with it — no test sleeps through real minutes.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// The current time in UTC.
pub trait Clock: Send + Sync + 'static {
    /// Now.
    fn now(&self) -> DateTime<Utc>;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that starts at a chosen instant and then follows tokio's clock,
/// so `tokio::time::pause()` / `advance` (or auto-advance) move it.
#[derive(Debug, Clone, Copy)]
pub struct FakeClock {
    base: DateTime<Utc>,
    start: tokio::time::Instant,
}

impl FakeClock {
    /// A clock reading `base` now.
    pub fn starting_at(base: DateTime<Utc>) -> FakeClock {
        FakeClock {
            base,
            start: tokio::time::Instant::now(),
        }
    }
}

impl Clock for FakeClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = tokio::time::Instant::now() - self.start;
        self.base + chrono::Duration::from_std(elapsed).unwrap_or(chrono::TimeDelta::MAX)
    }
}

/// Longest single sleep: wall time can jump (suspend, NTP), so a long wait is
/// taken in naps and re-checked against the clock.
const MAX_NAP: Duration = Duration::from_secs(60);

/// Sleeps until `clock` reads at least `at`.
pub async fn sleep_until(clock: &dyn Clock, at: DateTime<Utc>) {
    loop {
        let now = clock.now();
        if now >= at {
            return;
        }
        let left = (at - now).to_std().unwrap_or(Duration::ZERO);
        tokio::time::sleep(left.min(MAX_NAP)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn fake_clock_follows_paused_tokio_time() {
        let t0 = "2026-03-29T00:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let c = FakeClock::starting_at(t0);
        tokio::time::advance(Duration::from_secs(90)).await;
        assert_eq!((c.now() - t0).num_seconds(), 90);
        sleep_until(&c, t0 + chrono::Duration::hours(5)).await;
        assert_eq!((c.now() - t0).num_hours(), 5);
    }
}
