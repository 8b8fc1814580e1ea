//! A cluster node's background work, on a small runtime of its own: the
//! heartbeat (which renews the leases of the runs the node holds and tells
//! it which it lost), the reaper (any node re-queues runs whose lease
//! lapsed), and wake-ups when another node queues a run (LISTEN on
//! `kiln_runs`, plus a poll: NOTIFY only wakes, the table is the truth).
//!
//! On the node's own [`crate::postgres::Engine`] because a lease must not
//! depend on how busy the daemon's runtime is (builds, log floods, a paused
//! test clock): every database call of the node runs there.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt as _;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_postgres::AsyncMessage;
use tokio_util::sync::CancellationToken;

use super::{Claim, Cluster};
use crate::daemon::queue::QueueEvent;

/// The runs this node holds, by run id.
pub(super) type Held = Arc<Mutex<HashMap<String, Claim>>>;

/// The heartbeat and the reaper of one node. Only the runs in `held` (the
/// ones the daemon drives) are renewed. `cluster` is a handle with a pool
/// of its own ([`Cluster::dedicated`]), so log batches and API reads that
/// fill the node's shared pool cannot delay a heartbeat.
pub(super) struct Housekeeping {
    pub cluster: Cluster,
    pub node: String,
    pub lease: Duration,
    pub held: Held,
    pub events: mpsc::UnboundedSender<QueueEvent>,
    pub wake: Arc<Notify>,
}

impl Housekeeping {
    /// Until `stop`: a heartbeat every third of the lease, and, beside it,
    /// the cancels and the reaper as often. Each database call is bounded
    /// by [`Housekeeping::call_timeout`], so a call on a connection whose
    /// peer went silent (packets dropped, nothing closed) cannot hold the
    /// rounds back, and the heartbeat never waits on the other chores.
    pub(super) async fn run(self, stop: CancellationToken) {
        tokio::join!(self.beat(stop.clone()), self.chores(stop));
    }

    /// How long one housekeeping call may take: a third of the lease, so
    /// a node that cannot reach the database tries again within the lease.
    fn call_timeout(&self) -> Duration {
        self.lease / 3
    }

    fn ticks(&self) -> tokio::time::Interval {
        let mut tick = tokio::time::interval(self.lease / 3);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick
    }

    /// Heartbeats until `stop`, judging the last successful one by its own
    /// clock.
    async fn beat(&self, stop: CancellationToken) {
        let mut tick = self.ticks();
        let mut last_ok = Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.cancelled() => return,
            }
            self.heartbeat(&mut last_ok).await;
        }
    }

    /// Reads cancels and reaps until `stop`.
    async fn chores(&self, stop: CancellationToken) {
        let mut tick = self.ticks();
        let mut asked = HashSet::new();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.cancelled() => return,
            }
            self.cancels(&mut asked).await;
            self.reap().await;
        }
    }

    /// Renews the leases; a held run not renewed is lost. When no heartbeat
    /// reached the database for a whole lease, every held run is lost: the
    /// node can no longer prove it holds them.
    ///
    /// `last_ok` is when the last successful heartbeat was *sent* (the
    /// database renewed the leases by its `now()` at or after that moment,
    /// so they hold at least a lease from it); a call still unanswered at
    /// `last_ok + lease` is given up then, not a third of a lease later.
    async fn heartbeat(&self, last_ok: &mut Instant) {
        let snapshot: Vec<(String, i64)> = self.held_runs();
        let ids: Vec<String> = snapshot.iter().map(|r| r.0.clone()).collect();
        let sent = Instant::now();
        // Cut short at the end of the lease it could still prove, once.
        let lapses = *last_ok + self.lease;
        let mut deadline = sent + self.call_timeout();
        if lapses > sent {
            deadline = deadline.min(lapses);
        }
        let call = self.cluster.heartbeat_runs(&self.node, &ids, self.lease);
        let failure = match tokio::time::timeout_at(deadline, call).await {
            Ok(Ok(renewed)) => {
                *last_ok = sent;
                let lost = snapshot.into_iter().filter(|r| !renewed.contains(r));
                self.lose(lost, "its lease lapsed and it was taken from this node");
                return;
            }
            Ok(Err(e)) => crate::pipeline::chain(&e),
            Err(_) => format!(
                "no answer from {} within {:?}",
                self.cluster.target(),
                deadline - sent
            ),
        };
        if last_ok.elapsed() >= self.lease {
            tracing::error!(node = %self.node, error = %failure,
                "no heartbeat for a whole lease; stopping this node's runs");
            self.lose(
                snapshot.into_iter(),
                "no heartbeat reached the database for a whole lease",
            );
        } else {
            tracing::warn!(node = %self.node, error = %failure, "heartbeat failed; retrying");
        }
    }

    fn held_runs(&self) -> Vec<(String, i64)> {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.values().map(|c| (c.run.clone(), c.epoch)).collect()
    }

    /// Forgets `runs` (still held) and reports them lost.
    fn lose(&self, runs: impl Iterator<Item = (String, i64)>, why: &str) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        for (run, epoch) in runs {
            if held.get(&run).is_some_and(|c| c.epoch == epoch) {
                held.remove(&run);
                let why = why.to_string();
                let _ = self.events.send(QueueEvent::Lost { run, why });
            }
        }
    }

    /// Reports cancels asked (through any node) of runs held here, once.
    async fn cancels(&self, asked: &mut HashSet<String>) {
        let call = self.cluster.cancels_for(&self.node);
        match tokio::time::timeout(self.call_timeout(), call).await {
            Ok(Ok(runs)) => {
                for run in runs {
                    if asked.insert(run.clone()) {
                        let _ = self.events.send(QueueEvent::CancelRequested { run });
                    }
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %crate::pipeline::chain(&e), "cannot read cancels")
            }
            Err(_) => tracing::warn!(database = %self.cluster.target(),
                "cannot read cancels: no answer in time"),
        }
    }

    /// Re-queues the runs whose lease lapsed (on any node).
    async fn reap(&self) {
        match tokio::time::timeout(self.call_timeout(), self.cluster.reap()).await {
            Ok(Ok(reaped)) => {
                for r in reaped {
                    if r.retry.is_some() {
                        self.wake.notify_one();
                    }
                    let _ = self.events.send(QueueEvent::Reaped {
                        run: r.run,
                        node: r.node,
                        retry: r.retry,
                    });
                }
            }
            Ok(Err(e)) => tracing::warn!(error = %crate::pipeline::chain(&e), "reaping failed"),
            Err(_) => tracing::warn!(database = %self.cluster.target(),
                "reaping failed: no answer in time"),
        }
    }
}

/// Wakes the dispatcher on every `kiln_runs` notification, and every
/// `poll` in any case, until `stop`. Reconnects after a lost connection.
pub(super) async fn wake_on_runs(
    url: String,
    wake: Arc<Notify>,
    poll: Duration,
    stop: CancellationToken,
) {
    let polling = {
        let (wake, stop) = (wake.clone(), stop.clone());
        async move {
            let mut tick = tokio::time::interval(poll);
            while tokio::select! { _ = tick.tick() => true, () = stop.cancelled() => false } {
                wake.notify_one();
            }
        }
    };
    let listening = async {
        loop {
            if let Err(e) = listen(&url, &wake).await {
                tracing::warn!(error = %e, "LISTEN kiln_runs lost; polling until it is back");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    };
    tokio::select! {
        () = polling => {}
        () = listening => {}
        () = stop.cancelled() => {}
    }
}

/// One LISTEN connection, until it fails.
async fn listen(url: &str, wake: &Arc<Notify>) -> Result<(), tokio_postgres::Error> {
    let (client, mut conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    let (failed, mut failure) = tokio::sync::oneshot::channel();
    let wake = wake.clone();
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(m) = messages.next().await {
            match m {
                Ok(AsyncMessage::Notification(_)) => wake.notify_one(),
                Ok(_) => {}
                Err(e) => {
                    let _ = failed.send(e);
                    return;
                }
            }
        }
    });
    client.batch_execute("LISTEN kiln_runs").await?;
    let result = match (&mut failure).await {
        Ok(e) => Err(e),
        Err(_) => Ok(()),
    };
    driver.abort();
    result
}
