//! The scheduler: one task per scheduled pipeline sleeps until the next cron
//! slot (computed in UTC from the recipe's time zone by croner) and queues a
//! run. Pipelines whose start condition checks dependencies
//! (`EXPRESSION_MATCH_AND_DEPENDENCY_UPDATES_AVAILABLE`) are queued "check first",
//! so the worker asks the runner whether anything moved before building.
//!
//! Each intended local slot fires once: a DST gap moves the slot (croner),
//! and in a repeated hour the second occurrence of the same wall-clock time
//! is skipped here. Across the daemons sharing a queue (a cluster), a slot
//! fires once too: runs are queued through [`DaemonState::fire_slot`], keyed
//! by (pipeline, slot), and only the first node's insert queues the run.
//!
//! **Catch-up:** on daemon start (not on reload), a pipeline whose first slot
//! after its newest run has already passed — the daemon was down at the slot
//! — gets one run queued at once (`catch_up`), however many slots were
//! missed; a pipeline with no run yet has missed nothing. `catchUpMissedSlots:
//! false` in the daemon config turns it off. The catch-up is keyed by the
//! missed slot as well, so nodes starting together queue one.

use chrono::{DateTime, NaiveDateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::catalog::ScheduleInfo;
use super::clock::sleep_until;
use super::queue::Enqueued;
use super::run::TriggerKind;
use super::state::DaemonState;

/// Stops the running schedule tasks and starts one per scheduled pipeline of
/// the current catalog; `catch_up` (daemon start) first queues the runs of
/// missed slots.
pub fn restart(state: &DaemonState, catch_up: bool) {
    let stop = state.shared.shutdown.child_token();
    if let Ok(mut current) = state.shared.scheduler.lock()
        && let Some(old) = current.replace(stop.clone())
    {
        old.cancel();
    }
    for p in &state.catalog().pipelines {
        if let Some(schedule) = &p.schedule {
            tokio::spawn(run_schedule(
                state.clone(),
                p.name.clone(),
                schedule.clone(),
                stop.clone(),
                catch_up,
            ));
        }
    }
}

/// The next slot strictly after `after`, skipping a slot whose local wall
/// time equals `last_local` (the repeated hour when clocks go back).
pub fn next_slot(
    schedule: &ScheduleInfo,
    after: DateTime<Utc>,
    last_local: Option<NaiveDateTime>,
) -> Option<DateTime<Utc>> {
    schedule.next_slot(after, last_local)
}

async fn run_schedule(
    state: DaemonState,
    pipeline: String,
    schedule: ScheduleInfo,
    stop: CancellationToken,
    catch_up: bool,
) {
    if catch_up {
        catch_up_missed(&state, &pipeline, &schedule).await;
    }
    let clock = state.clock();
    let mut after = clock.now();
    let mut last_local = None;
    loop {
        let Some(next) = next_slot(&schedule, after, last_local) else {
            tracing::warn!(%pipeline, cron = %schedule.cron, "schedule has no next slot");
            return;
        };
        tracing::debug!(%pipeline, %next, "next scheduled run");
        tokio::select! {
            () = stop.cancelled() => return,
            () = sleep_until(clock.as_ref(), next) => {}
        }
        last_local = Some(next.with_timezone(&schedule.timezone).naive_local());
        after = clock.now().max(next);
        let check = schedule.only_when_dependencies_change;
        let fired = state.fire_slot(&pipeline, (TriggerKind::Schedule, check), next, next);
        match fired.await {
            Ok(Some(Enqueued::Created(run))) => {
                tracing::info!(%pipeline, run = %run.id, slot = %next, "scheduled run queued");
            }
            Ok(Some(Enqueued::Joined(run))) => {
                tracing::info!(%pipeline, run = %run.id, slot = %next,
                    "scheduled slot joined the active run");
            }
            Ok(None) => tracing::debug!(%pipeline, slot = %next, "slot fired by another node"),
            Err(e) => tracing::error!(%pipeline, error = %e, "cannot queue scheduled run"),
        }
    }
}

/// Queues one run when the first slot after the pipeline's newest run has
/// passed.
async fn catch_up_missed(state: &DaemonState, pipeline: &str, schedule: &ScheduleInfo) {
    let last = match state.queue().last_queued_at(pipeline).await {
        Ok(Some(t)) => t,
        Ok(None) => return,
        Err(e) => {
            tracing::error!(%pipeline, error = %e, "cannot read the last run; no catch-up");
            return;
        }
    };
    let now = state.clock().now();
    let Some(missed) = next_slot(schedule, last, None).filter(|slot| *slot <= now) else {
        return;
    };
    let check = schedule.only_when_dependencies_change;
    let fired = state.fire_slot(pipeline, (TriggerKind::CatchUp, check), missed, now);
    match fired.await {
        Ok(Some(e)) => tracing::info!(%pipeline, run = %e.run().id, %missed, %last,
            "slot missed while the daemon was down; one catch-up run queued"),
        Ok(None) => tracing::debug!(%pipeline, %missed, "catch-up queued by another node"),
        Err(e) => tracing::error!(%pipeline, error = %e, "cannot queue the catch-up run"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(cron: &str, tz: chrono_tz::Tz, from: &str, n: usize) -> Vec<String> {
        let s = ScheduleInfo {
            cron: cron.into(),
            timezone: tz,
            only_when_dependencies_change: false,
            start_condition: crate::schedule::StartCondition::ExpressionMatchOnly,
        };
        let mut after = from.parse::<DateTime<Utc>>().unwrap();
        let mut last = None;
        let mut out = Vec::new();
        for _ in 0..n {
            let next = next_slot(&s, after, last).unwrap();
            last = Some(next.with_timezone(&tz).naive_local());
            after = next;
            out.push(next.format("%m-%dT%H:%MZ").to_string());
        }
        out
    }

    #[test]
    fn berlin_spring_forward_fires_once_in_the_gap() {
        // 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist.
        let got = slots(
            "30 2 * * *",
            chrono_tz::Europe::Berlin,
            "2026-03-27T12:00:00Z",
            4,
        );
        assert_eq!(
            got,
            [
                "03-28T01:30Z",
                "03-29T01:00Z",
                "03-30T00:30Z",
                "03-31T00:30Z"
            ]
        );
    }

    #[test]
    fn berlin_fall_back_fires_once_in_the_repeated_hour() {
        // 2026-10-25: 03:00 CEST goes back to 02:00 CET; 02:30 happens twice.
        let got = slots(
            "30 2 * * *",
            chrono_tz::Europe::Berlin,
            "2026-10-23T12:00:00Z",
            4,
        );
        assert_eq!(
            got,
            [
                "10-24T00:30Z",
                "10-25T00:30Z",
                "10-26T01:30Z",
                "10-27T01:30Z"
            ]
        );
    }

    #[test]
    fn image_builder_form_fires_in_the_zone() {
        // Second Tuesday 22:30 Berlin (CET, UTC+1 in December).
        let got = slots(
            "cron(30 22 ? * TUE#2 *)",
            chrono_tz::Europe::Berlin,
            "2026-12-01T00:00:00Z",
            2,
        );
        assert_eq!(got, ["12-08T21:30Z", "01-12T21:30Z"]);
    }
}
