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
/// ones the daemon drives) are renewed.
pub(super) struct Housekeeping {
    pub cluster: Cluster,
    pub node: String,
    pub lease: Duration,
    pub held: Held,
    pub events: mpsc::UnboundedSender<QueueEvent>,
    pub wake: Arc<Notify>,
}

impl Housekeeping {
    /// A round every third of the lease until `stop`.
    pub(super) async fn run(self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.lease / 3);
        let mut last_ok = Instant::now();
        let mut asked = HashSet::new();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.cancelled() => return,
            }
            self.heartbeat(&mut last_ok).await;
            self.cancels(&mut asked).await;
            self.reap().await;
        }
    }

    /// Renews the leases; a held run not renewed is lost. When no heartbeat
    /// reached the database for a whole lease, every held run is lost: the
    /// node can no longer prove it holds them.
    async fn heartbeat(&self, last_ok: &mut Instant) {
        let snapshot: Vec<(String, i64)> = self.held_runs();
        let ids: Vec<String> = snapshot.iter().map(|r| r.0.clone()).collect();
        match self
            .cluster
            .heartbeat_runs(&self.node, &ids, self.lease)
            .await
        {
            Ok(renewed) => {
                *last_ok = Instant::now();
                let lost = snapshot.into_iter().filter(|r| !renewed.contains(r));
                self.lose(lost, "its lease lapsed and it was taken from this node");
            }
            Err(e) if last_ok.elapsed() >= self.lease => {
                tracing::error!(node = %self.node, error = %crate::pipeline::chain(&e),
                    "no heartbeat for a whole lease; stopping this node's runs");
                self.lose(
                    snapshot.into_iter(),
                    "no heartbeat reached the database for a whole lease",
                );
            }
            Err(e) => tracing::warn!(node = %self.node, error = %crate::pipeline::chain(&e),
                "heartbeat failed; retrying"),
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
        match self.cluster.cancels_for(&self.node).await {
            Ok(runs) => {
                for run in runs {
                    if asked.insert(run.clone()) {
                        let _ = self.events.send(QueueEvent::CancelRequested { run });
                    }
                }
            }
            Err(e) => tracing::warn!(error = %crate::pipeline::chain(&e), "cannot read cancels"),
        }
    }

    /// Re-queues the runs whose lease lapsed (on any node).
    async fn reap(&self) {
        match self.cluster.reap().await {
            Ok(reaped) => {
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
            Err(e) => tracing::warn!(error = %crate::pipeline::chain(&e), "reaping failed"),
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
