//! Shared lookups: the `HEAD` digest of a reference and its pin for a
//! platform, answered once for every caller of a client that asks within
//! a short TTL (the runs of one scheduled slot, the recipes of one
//! `kiln resolve --check`).
//!
//! - **Single flight:** concurrent lookups of one key await one request.
//!   A failure is an answer too (a refused or missing reference): it is
//!   shared like a digest, so a slot of runs on a refused parent asks once.
//! - **TTL** (`lookup_ttl`, default 60 s) counted from when the request began.
//! - **Never older than the asker:** an answer is served only to a lookup
//!   whose [`LookupScope::since`] is not later than the moment its request
//!   began, so a run queued after a parent moved cannot see the old digest.
//! - **Bounded:** at most `lookup_concurrency` (default 8) lookup requests
//!   in flight per registry host; every request first waits out a
//!   rate-limit pause of its host ([`super::throttle`]).

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use tokio::sync::{OnceCell, Semaphore};
use tokio::time::Instant;

use super::RegistryClient;
use super::error::RegistryError;
use super::manifest::{ManifestHead, ResolvedManifest};
use super::platform::Platform;
use super::throttle::{ThrottleStats, ThrottleWait};
use crate::reference::ImageReference;

/// Past this many entries a map drops the ones whose TTL has passed.
const PRUNE_AT: usize = 4096;

/// Reports a wait for a paused registry (to a run's log).
pub type OnWait = Arc<dyn Fn(&ThrottleWait) + Send + Sync>;

/// Who is asking: answers must come from requests begun at or after
/// `since`; waits for a paused registry are reported to `on_wait`.
#[derive(Clone)]
pub struct LookupScope {
    /// The earliest moment an answer may have been asked for (a run's
    /// queue time, a command's start).
    pub since: Instant,
    /// Told about every wait for a rate-limited registry.
    pub on_wait: Option<OnWait>,
}

impl std::fmt::Debug for LookupScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LookupScope")
            .field("since", &self.since)
            .finish_non_exhaustive()
    }
}

impl LookupScope {
    /// Answers from now on, no wait reports.
    pub fn now() -> Self {
        LookupScope {
            since: Instant::now(),
            on_wait: None,
        }
    }
}

/// What the lookups of one registry host cost, for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LookupCounts {
    /// `HEAD` lookups sent.
    pub heads: u64,
    /// Pin lookups sent (manifest `GET`s, plus the platform manifest for an index).
    pub pins: u64,
    /// Lookups answered by another caller's request (single flight or TTL).
    pub shared: u64,
    /// `HEAD`s answered without `Docker-Content-Digest`, so a `GET` decided.
    pub head_fallbacks: u64,
}

/// The lookup and rate-limit figures of one registry host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryStats {
    /// The host.
    pub registry: String,
    /// Lookups.
    pub lookups: LookupCounts,
    /// Rate limits.
    pub throttle: ThrottleStats,
}

type Answer<T> = Result<T, Arc<RegistryError>>;

struct Flight<T> {
    started: Instant,
    cell: Arc<OnceCell<Answer<T>>>,
}

/// The caches and limits behind [`RegistryClient::lookup_head`] and
/// [`RegistryClient::lookup_pin`].
#[derive(Default)]
pub(crate) struct Lookups {
    /// `None`: the `HEAD` carried no digest.
    heads: Mutex<HashMap<String, Flight<Option<ManifestHead>>>>,
    /// Keyed by (reference, platform).
    pins: Mutex<HashMap<(String, String), Flight<ResolvedManifest>>>,
    /// Why: a slot of hundreds of runs must not open hundreds of requests
    /// to one registry.
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
    counts: Mutex<HashMap<String, LookupCounts>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Lookups {
    fn count(&self, host: &str, f: impl FnOnce(&mut LookupCounts)) {
        f(lock(&self.counts).entry(host.to_string()).or_default());
    }

    fn host_limit(&self, host: &str, permits: usize) -> Arc<Semaphore> {
        lock(&self.hosts)
            .entry(host.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(permits.max(1))))
            .clone()
    }
}

impl RegistryClient {
    /// The registry's digest claim for `reference` (one `HEAD`, shared).
    /// `Ok(None)` when the registry's `HEAD` carries no digest: the caller
    /// must decide with [`RegistryClient::lookup_pin`] (counted as a fallback).
    pub async fn lookup_head(
        &self,
        reference: &ImageReference,
        scope: &LookupScope,
    ) -> Result<Option<ManifestHead>, RegistryError> {
        let host = reference.registry.clone();
        let fetch = || async {
            self.inner.lookups.count(&host, |c| c.heads += 1);
            match self.head_manifest(reference).await {
                Ok(h) => Ok(Some(h)),
                Err(RegistryError::MissingDigest { .. }) => {
                    self.inner.lookups.count(&host, |c| c.head_fallbacks += 1);
                    Ok(None)
                }
                Err(e) => Err(e),
            }
        };
        let key = reference.to_string();
        self.shared_lookup(&self.inner.lookups.heads, key, &host, scope, fetch)
            .await
    }

    /// `reference` resolved for `platform` with digests computed from the
    /// bytes (manifest `GET`s), shared like [`RegistryClient::lookup_head`].
    pub async fn lookup_pin(
        &self,
        reference: &ImageReference,
        platform: &Platform,
        scope: &LookupScope,
    ) -> Result<ResolvedManifest, RegistryError> {
        let host = reference.registry.clone();
        let fetch = || async {
            self.inner.lookups.count(&host, |c| c.pins += 1);
            self.resolve_platform(reference, platform).await
        };
        let key = (reference.to_string(), platform.to_string());
        self.shared_lookup(&self.inner.lookups.pins, key, &host, scope, fetch)
            .await
    }

    /// Lookup and rate-limit figures per registry host, sorted by host.
    pub fn stats(&self) -> Vec<RegistryStats> {
        let mut out: HashMap<String, RegistryStats> = HashMap::new();
        for (host, c) in lock(&self.inner.lookups.counts).iter() {
            out.entry(host.clone()).or_default().lookups = c.clone();
        }
        for (host, t) in self.inner.throttle.snapshot() {
            out.entry(host).or_default().throttle = t;
        }
        let mut v: Vec<RegistryStats> = out
            .into_iter()
            .map(|(registry, s)| RegistryStats { registry, ..s })
            .collect();
        v.sort_by(|a, b| a.registry.cmp(&b.registry));
        v
    }

    /// Single flight + TTL + "not older than the asker" over `map`; the
    /// request runs under the host's concurrency limit, after any pause.
    async fn shared_lookup<K, T, F, Fut>(
        &self,
        map: &Mutex<HashMap<K, Flight<T>>>,
        key: K,
        host: &str,
        scope: &LookupScope,
        fetch: F,
    ) -> Result<T, RegistryError>
    where
        K: Hash + Eq + Clone,
        T: Clone,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, RegistryError>>,
    {
        let inner = &self.inner;
        let pauses = inner.throttle.pauses(host);
        let t0 = Instant::now();
        let waited = inner
            .throttle
            .wait(host, inner.config.max_throttle_wait)
            .await?;
        let (cell, joined) = {
            let mut m = lock(map);
            let now = Instant::now();
            let ttl = inner.config.lookup_ttl;
            let fresh = |f: &Flight<T>| f.started >= scope.since && now - f.started <= ttl;
            match m.get(&key) {
                Some(f) if fresh(f) => (f.cell.clone(), true),
                _ => {
                    if m.len() >= PRUNE_AT {
                        m.retain(|_, f| now - f.started <= ttl);
                    }
                    let cell = Arc::new(OnceCell::new());
                    let flight = Flight {
                        started: now,
                        cell: cell.clone(),
                    };
                    m.insert(key.clone(), flight);
                    (cell, false)
                }
            }
        };
        if joined {
            inner.lookups.count(host, |c| c.shared += 1);
        }
        let limit = inner
            .lookups
            .host_limit(host, inner.config.lookup_concurrency);
        let answer = cell
            .get_or_init(|| async move {
                let _permit = limit.acquire_owned().await;
                fetch().await.map_err(Arc::new)
            })
            .await
            .clone();
        self.report_wait(host, scope, waited, pauses, t0);
        answer.map_err(RegistryError::Shared)
    }

    /// Tells the asker when its lookup waited for a paused registry: before
    /// it began, or because the registry paused while it was in flight.
    fn report_wait(
        &self,
        host: &str,
        scope: &LookupScope,
        waited: Option<ThrottleWait>,
        pauses_before: u64,
        t0: Instant,
    ) {
        let Some(on_wait) = &scope.on_wait else {
            return;
        };
        let throttle = &self.inner.throttle;
        let wait = match waited {
            Some(w) => Some(ThrottleWait {
                waited: t0.elapsed(),
                ..w
            }),
            None if throttle.pauses(host) != pauses_before => Some(ThrottleWait {
                registry: host.to_string(),
                waited: t0.elapsed(),
                reason: throttle.reason(host),
            }),
            None => None,
        };
        if let Some(w) = wait {
            on_wait(&w);
        }
    }
}
