//! Schedules fire at the right instants (DST included) and up-to-date
//! pipelines are skipped, with time controlled: tokio's clock is paused and
//! auto-advances, and the daemon's clock follows it.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use kiln::daemon::clock::{Clock, FakeClock, sleep_until};
use kiln::daemon::run::{RunState, TriggerKind};
use kiln::daemon::runner::{BuildNeed, EventKind};

use kiln::daemon::DaemonState;
use kiln::state::StateLocation;

use crate::harness::{READER, config, project, seed_run, start, start_on, state_for};
use crate::support::postgres::TestSchema;

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

const BERLIN: &str = "schedule:\n  cron: \"30 2 * * *\"\n  timezone: Europe/Berlin\n  onlyWhenDependenciesChange: false\n";

/// Lets the daemon run for `days` of virtual time from `t0`, then returns
/// the queue times of its scheduled runs, oldest first.
async fn fired(t0: &str, days: i64) -> Vec<String> {
    fired_with(BERLIN, t0, days).await
}

async fn fired_with(schedule: &str, t0: &str, days: i64) -> Vec<String> {
    let clock = Arc::new(FakeClock::starting_at(at(t0)));
    let d = start(project(&[("nightly", Some(schedule))]), clock.clone(), 30).await;
    sleep_until(clock.as_ref(), at(t0) + Duration::days(days)).await;
    let mut runs = d.state.queue().list(None, 100).await.unwrap();
    runs.reverse();
    assert!(runs.iter().all(|r| r.trigger == TriggerKind::Schedule));
    assert!(
        runs.iter().all(|r| r.status == RunState::Passed),
        "{runs:?}"
    );
    assert_eq!(d.runner.run_count(), runs.len());
    d.finish().await;
    runs.iter()
        .map(|r| r.queued_at.format("%m-%dT%H:%M:%SZ").to_string())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn berlin_schedule_fires_once_per_night_when_clocks_go_forward() {
    // 2026-03-29 02:00 CET → 03:00 CEST: 02:30 does not exist that night.
    let got = fired("2026-03-27T12:00:00Z", 4).await;
    assert_eq!(
        got,
        [
            "03-28T01:30:00Z",
            "03-29T01:00:00Z",
            "03-30T00:30:00Z",
            "03-31T00:30:00Z"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn berlin_schedule_fires_once_per_night_when_clocks_go_back() {
    // 2026-10-25 03:00 CEST → 02:00 CET: 02:30 happens twice; fire once.
    let got = fired("2026-10-23T12:00:00Z", 4).await;
    assert_eq!(
        got,
        [
            "10-24T00:30:00Z",
            "10-25T00:30:00Z",
            "10-26T01:30:00Z",
            "10-27T01:30:00Z"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn image_builder_cron_fires_at_the_documented_instants() {
    // The Image Builder guide's "second Tuesday of every month at 10:30 PM
    // (UTC)" example, with Image Builder's start condition spelling.
    let schedule =
        "schedule:\n  cron: \"cron(30 22 ? * tue#2 *)\"\n  startCondition: EXPRESSION_MATCH_ONLY\n";
    let got = fired_with(schedule, "2026-12-01T00:00:00Z", 71).await;
    assert_eq!(
        got,
        ["12-08T22:30:00Z", "01-12T22:30:00Z", "02-09T22:30:00Z"]
    );
}

#[tokio::test(start_paused = true)]
async fn next_fire_time_is_listed_in_utc() {
    let t0 = at("2026-03-28T12:00:00Z");
    let clock = Arc::new(FakeClock::starting_at(t0));
    let d = start(project(&[("nightly", Some(BERLIN))]), clock.clone(), 30).await;
    let body: serde_json::Value = d
        .get("/v1/pipelines", Some(READER))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body[0]["name"], "nightly");
    assert_eq!(body[0]["schedule"]["timezone"], "Europe/Berlin");
    assert_eq!(body[0]["nextRunAt"], "2026-03-29T01:00:00Z");
    d.finish().await;
}

#[tokio::test(start_paused = true)]
async fn up_to_date_pipeline_is_skipped_and_a_moved_parent_builds() {
    let schedule =
        "schedule:\n  cron: \"0 3 * * *\"\n  timezone: UTC\n  onlyWhenDependenciesChange: true\n";
    let t0 = at("2026-05-01T00:00:00Z");
    let clock = Arc::new(FakeClock::starting_at(t0));
    let d = start(project(&[("web", Some(schedule))]), clock.clone(), 30).await;
    *d.runner.need.lock().unwrap() = BuildNeed::UpToDate;

    sleep_until(clock.as_ref(), at("2026-05-01T03:00:01Z")).await;
    let runs = d.state.queue().list(None, 10).await.unwrap();
    assert_eq!(runs.len(), 1);
    let skipped = d.wait_finished(&runs[0].id).await;
    assert_eq!(skipped.status, RunState::UpToDate);
    assert_eq!(
        d.runner.run_count(),
        0,
        "an up-to-date pipeline must not build"
    );
    assert_eq!(d.runner.checks.lock().unwrap().len(), 1);
    assert_eq!(
        d.runner.checks.lock().unwrap()[0].1,
        at("2026-05-01T03:00:00Z")
    );

    *d.runner.need.lock().unwrap() = BuildNeed::Needed("parent kiln/base:1 moved".into());
    sleep_until(clock.as_ref(), at("2026-05-02T03:00:01Z")).await;
    let runs = d.state.queue().list(None, 10).await.unwrap();
    assert_eq!(runs.len(), 2);
    let built = d.wait_finished(&runs[0].id).await;
    assert_eq!(built.status, RunState::Passed);
    assert_eq!(d.runner.run_count(), 1);
    let log = d.state.queue().events_after(&built.id, 0).await.unwrap();
    assert_eq!(log[0].kind, EventKind::Line);
    assert_eq!(log[0].text, "build needed: parent kiln/base:1 moved");
    assert_eq!(clock.now(), at("2026-05-02T03:00:01Z"));
    d.finish().await;
}

const NIGHTLY_UTC: &str =
    "schedule:\n  cron: \"0 3 * * *\"\n  timezone: UTC\n  onlyWhenDependenciesChange: false\n";

/// A project whose `nightly` pipeline last ran at `last` (a row as a
/// previous daemon left it), and its state store.
async fn project_last_run_at(last: &str) -> (tempfile::TempDir, StateLocation, Option<TestSchema>) {
    let dir = project(&[("nightly", Some(NIGHTLY_UTC))]);
    let (location, schema) = state_for(dir.path()).await;
    let old = ("rold", "nightly", "passed");
    seed_run(dir.path(), schema.as_ref(), old, last).await;
    (dir, location, schema)
}

/// The triggers of the runs queued since start, oldest first, after
/// `hours` of virtual time.
pub async fn new_runs(state: &DaemonState, t0: DateTime<Utc>, hours: i64) -> Vec<String> {
    sleep_until(state.clock().as_ref(), t0 + Duration::hours(hours)).await;
    let mut runs = state.queue().list(None, 100).await.unwrap();
    runs.reverse();
    runs.iter()
        .filter(|r| r.id != "rold")
        .map(|r| {
            format!(
                "{} {}",
                r.trigger.as_str(),
                r.queued_at.format("%m-%dT%H:%MZ")
            )
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn missed_slots_are_caught_up_once_on_start_never_as_a_burst() {
    // Last run 05-01 03:00; the daemon was down for the 02, 03 and 04 slots.
    let (dir, location, schema) = project_last_run_at("2026-05-01T03:00:00.000Z").await;
    let t0 = at("2026-05-04T12:00:00Z");
    let clock = Arc::new(FakeClock::starting_at(t0));
    let d = start_on(dir, location, schema, clock, config(30)).await;
    let got = new_runs(&d.state, t0, 16).await;
    assert_eq!(got, ["catch_up 05-04T12:00Z", "schedule 05-05T03:00Z"]);
    assert_eq!(d.runner.run_count(), 2);
    d.finish().await;
}

#[tokio::test(start_paused = true)]
async fn no_catch_up_without_a_missed_slot_or_when_turned_off() {
    // The last run is after the last slot: nothing was missed.
    let (dir, location, schema) = project_last_run_at("2026-05-04T03:00:00.000Z").await;
    let t0 = at("2026-05-04T12:00:00Z");
    let clock = Arc::new(FakeClock::starting_at(t0));
    let d = start_on(dir, location, schema, clock, config(30)).await;
    assert_eq!(new_runs(&d.state, t0, 16).await, ["schedule 05-05T03:00Z"]);
    d.finish().await;

    // Missed slots, but `catchUpMissedSlots: false`.
    let (dir, location, schema) = project_last_run_at("2026-05-01T03:00:00.000Z").await;
    let mut config = config(30);
    config.catch_up_missed_slots = false;
    let clock = Arc::new(FakeClock::starting_at(t0));
    let d = start_on(dir, location, schema, clock, config).await;
    assert_eq!(new_runs(&d.state, t0, 16).await, ["schedule 05-05T03:00Z"]);
    d.finish().await;
}
