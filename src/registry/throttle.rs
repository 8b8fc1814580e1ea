//! Registry rate limits, shared by every request of a client: a 429 with
//! `Retry-After` (or `RateLimit-Reset`), or `ratelimit-remaining: 0` on any
//! answer, pauses that registry host until the stated time. Every request to
//! the host waits for the pause first, so a storm of runs sends nothing while
//! it lasts; a pause longer than `max_throttle_wait` fails fast instead.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use tokio::time::Instant;

use super::error::RegistryError;
use super::retry::parse_retry_after;

/// How long to pause when a registry says "no allowance left" without saying
/// until when.
const UNSTATED_PAUSE: Duration = Duration::from_secs(60);

/// What one host told us about its limits.
#[derive(Debug, Default, Clone)]
struct HostLimits {
    paused_until: Option<Instant>,
    /// Why the last pause began, for logs (`429 with Retry-After: 3`).
    reason: String,
    /// Pauses begun so far.
    pauses: u64,
    /// Time requests spent waiting for pauses, summed over requests.
    waited: Duration,
    /// The last `ratelimit-remaining` / `ratelimit-limit` values sent.
    remaining: Option<u64>,
    limit: Option<u64>,
}

/// A wait a request made because its registry was paused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThrottleWait {
    /// The registry host.
    pub registry: String,
    /// How long the request waited.
    pub waited: Duration,
    /// Why the registry was paused.
    pub reason: String,
}

/// Per-host pause state.
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    hosts: Mutex<HashMap<String, HostLimits>>,
}

/// The leading number of a `ratelimit-*` value (`76;w=21600` → 76) and its
/// window (`w=`), if any.
fn limit_value(headers: &HeaderMap, name: &str) -> Option<(u64, Option<u64>)> {
    let v = headers.get(name)?.to_str().ok()?;
    let mut parts = v.split(';');
    let n = parts.next()?.trim().parse().ok()?;
    let window = parts
        .filter_map(|p| p.trim().strip_prefix("w="))
        .find_map(|w| w.trim().parse().ok());
    Some((n, window))
}

/// The pause a response asks for, with the reason, if any.
pub(crate) fn requested_pause(
    status: StatusCode,
    headers: &HeaderMap,
) -> Option<(Duration, String)> {
    let retry_after = headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let reset = limit_value(headers, "ratelimit-reset").map(|(n, _)| Duration::from_secs(n));
    let remaining = limit_value(headers, "ratelimit-remaining");
    if status == StatusCode::TOO_MANY_REQUESTS {
        let (d, why) = match (retry_after, reset) {
            (Some(d), _) => (d, format!("Retry-After: {}", d.as_secs())),
            (None, Some(d)) => (d, format!("RateLimit-Reset: {}", d.as_secs())),
            (None, None) => (UNSTATED_PAUSE, "no Retry-After".to_string()),
        };
        return Some((d, format!("answered 429 Too Many Requests ({why})")));
    }
    let (0, window) = remaining? else {
        return None;
    };
    let d = retry_after
        .or(reset)
        .or(window.map(Duration::from_secs))
        .unwrap_or(UNSTATED_PAUSE);
    Some((
        d,
        format!(
            "sent ratelimit-remaining: 0 (allowance back in {} s)",
            d.as_secs()
        ),
    ))
}

impl Throttle {
    /// Notes what a response says about the host's limits; starts or
    /// extends a pause when it asks for one.
    pub(crate) fn observe(&self, host: &str, status: StatusCode, headers: &HeaderMap) {
        let remaining = limit_value(headers, "ratelimit-remaining").map(|(n, _)| n);
        let limit = limit_value(headers, "ratelimit-limit").map(|(n, _)| n);
        let pause = requested_pause(status, headers);
        if remaining.is_none() && limit.is_none() && pause.is_none() {
            return;
        }
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        let h = hosts.entry(host.to_string()).or_default();
        h.remaining = remaining.or(h.remaining);
        h.limit = limit.or(h.limit);
        if let Some((d, reason)) = pause {
            let until = Instant::now() + d;
            if h.paused_until.is_none_or(|u| u < until) {
                tracing::warn!(
                    registry = host,
                    reason,
                    seconds = d.as_secs(),
                    "registry paused"
                );
                h.paused_until = Some(until);
                h.reason = reason;
                h.pauses += 1;
            }
        }
    }

    /// Pauses begun so far for `host`: a lookup compares this before and
    /// after to learn that it was throttled.
    pub(crate) fn pauses(&self, host: &str) -> u64 {
        let hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        hosts.get(host).map_or(0, |h| h.pauses)
    }

    /// Why `host` was last paused.
    pub(crate) fn reason(&self, host: &str) -> String {
        let hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        hosts
            .get(host)
            .map(|h| h.reason.clone())
            .unwrap_or_default()
    }

    /// Waits until `host` is not paused. A pause that ends later than
    /// `max_wait` from now fails at once with [`RegistryError::Throttled`].
    pub(crate) async fn wait(
        &self,
        host: &str,
        max_wait: Duration,
    ) -> Result<Option<ThrottleWait>, RegistryError> {
        let t0 = Instant::now();
        // Why the request slept, once it has: only a real pause is a wait.
        let mut slept_for: Option<String> = None;
        loop {
            let (until, reason) = {
                let hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
                match hosts.get(host) {
                    Some(h) => (h.paused_until, h.reason.clone()),
                    None => (None, String::new()),
                }
            };
            let now = Instant::now();
            let Some(until) = until.filter(|u| *u > now) else {
                let Some(reason) = slept_for else {
                    return Ok(None);
                };
                let waited = now - t0;
                self.add_wait(host, waited);
                return Ok(Some(ThrottleWait {
                    registry: host.to_string(),
                    waited,
                    reason,
                }));
            };
            if until - now > max_wait {
                return Err(RegistryError::Throttled {
                    registry: host.to_string(),
                    reason,
                    seconds: (until - now).as_secs(),
                });
            }
            slept_for = Some(reason);
            tokio::time::sleep_until(until).await;
        }
    }

    fn add_wait(&self, host: &str, waited: Duration) {
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        hosts.entry(host.to_string()).or_default().waited += waited;
    }

    /// A snapshot per host, for metrics.
    pub(crate) fn snapshot(&self) -> Vec<(String, ThrottleStats)> {
        let hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        hosts
            .iter()
            .map(|(host, h)| {
                let stats = ThrottleStats {
                    pauses: h.pauses,
                    waited: h.waited,
                    paused_for: h
                        .paused_until
                        .map(|u| u.saturating_duration_since(now))
                        .unwrap_or_default(),
                    remaining: h.remaining,
                    limit: h.limit,
                };
                (host.clone(), stats)
            })
            .collect()
    }
}

/// Rate-limit figures of one registry host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThrottleStats {
    /// Pauses begun (429s and exhausted allowances).
    pub pauses: u64,
    /// Time requests spent waiting for pauses, summed over requests.
    pub waited: Duration,
    /// How much of the current pause is left (zero when not paused).
    pub paused_for: Duration,
    /// The last `ratelimit-remaining` the registry sent.
    pub remaining: Option<u64>,
    /// The last `ratelimit-limit` the registry sent.
    pub limit: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn pauses_come_from_429_and_exhausted_allowances() {
        let ok = StatusCode::OK;
        let tmr = StatusCode::TOO_MANY_REQUESTS;
        let p = requested_pause(tmr, &headers(&[("retry-after", "3")])).unwrap();
        assert_eq!(p.0, Duration::from_secs(3));
        assert!(p.1.contains("Retry-After: 3"), "{}", p.1);
        assert_eq!(
            requested_pause(tmr, &headers(&[])).unwrap().0,
            UNSTATED_PAUSE
        );
        let hub = headers(&[
            ("ratelimit-limit", "100;w=21600"),
            ("ratelimit-remaining", "0;w=21600"),
        ]);
        assert_eq!(
            requested_pause(ok, &hub).unwrap().0,
            Duration::from_secs(21600)
        );
        let reset = headers(&[("ratelimit-remaining", "0"), ("ratelimit-reset", "7")]);
        assert_eq!(
            requested_pause(ok, &reset).unwrap().0,
            Duration::from_secs(7)
        );
        assert!(requested_pause(ok, &headers(&[("ratelimit-remaining", "5;w=60")])).is_none());
        assert!(requested_pause(ok, &headers(&[("retry-after", "5")])).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn requests_wait_for_a_pause_and_long_pauses_fail_fast() {
        let t = Throttle::default();
        let tmr = StatusCode::TOO_MANY_REQUESTS;
        t.observe("r.io", tmr, &headers(&[("retry-after", "3")]));
        assert_eq!(t.pauses("r.io"), 1);
        let t0 = Instant::now();
        let w = t.wait("r.io", Duration::from_secs(60)).await.unwrap();
        assert_eq!(t0.elapsed(), Duration::from_secs(3));
        assert_eq!(w.unwrap().waited, Duration::from_secs(3));
        assert_eq!(t.wait("r.io", Duration::from_secs(60)).await.unwrap(), None);
        assert_eq!(t.wait("other.io", Duration::ZERO).await.unwrap(), None);
        t.observe("r.io", tmr, &headers(&[("retry-after", "3600")]));
        let e = t.wait("r.io", Duration::from_secs(60)).await.unwrap_err();
        assert!(e.to_string().contains("r.io"), "{e}");
        let ok = headers(&[
            ("ratelimit-remaining", "42;w=60"),
            ("ratelimit-limit", "100"),
        ]);
        t.observe("hub.io", StatusCode::OK, &ok);
        let (_, s) = t
            .snapshot()
            .into_iter()
            .find(|(h, _)| h == "hub.io")
            .unwrap();
        assert_eq!((s.remaining, s.limit, s.pauses), (Some(42), Some(100), 0));
    }
}
