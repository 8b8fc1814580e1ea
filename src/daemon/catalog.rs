//! The pipelines the daemon knows: every recipe in `recipes/`, loaded at
//! start and on `POST /v1/config/reload`. A recipe that fails to load is
//! listed with its error (and never scheduled) rather than hidden.

use chrono::{DateTime, Timelike as _, Utc};
use serde::Serialize;

use crate::load::{self, Schedule};
use crate::project::Project;
use crate::schedule::{StartCondition, next_slot};
use crate::schedule::{next_after, parse_cron};

/// One pipeline as the daemon sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineInfo {
    /// Recipe name.
    pub name: String,
    /// Recipe version, when it loaded.
    pub version: Option<String>,
    /// Its schedule, when it has one.
    pub schedule: Option<ScheduleInfo>,
    /// Why the recipe does not load, when it does not.
    pub error: Option<String>,
    /// The platform it builds, when it loaded.
    #[serde(skip)]
    pub platform: Option<String>,
}

/// A pipeline's schedule.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleInfo {
    /// Cron expression.
    pub cron: String,
    /// IANA time zone.
    #[serde(serialize_with = "tz_name")]
    #[schema(value_type = String)]
    pub timezone: chrono_tz::Tz,
    /// Ask the runner whether anything changed before building.
    pub only_when_dependencies_change: bool,
    /// The same, in Image Builder's spelling.
    #[serde(serialize_with = "condition_name")]
    #[schema(value_type = String)]
    pub start_condition: StartCondition,
}

fn condition_name<S: serde::Serializer>(c: &StartCondition, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(c.as_str())
}

fn tz_name<S: serde::Serializer>(tz: &chrono_tz::Tz, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(tz.name())
}

impl From<&Schedule> for ScheduleInfo {
    fn from(s: &Schedule) -> Self {
        ScheduleInfo {
            cron: s.cron.clone(),
            timezone: s.timezone,
            only_when_dependencies_change: s.start_condition.checks_dependencies(),
            start_condition: s.start_condition,
        }
    }
}

impl ScheduleInfo {
    /// The first firing strictly after `after` (UTC), if the cron parses.
    /// Sub-second parts of `after` are dropped first: croner would carry
    /// them into the result (02:00:00.116 instead of 02:00:00).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let cron = parse_cron(&self.cron).ok()?;
        let after = after.with_nanosecond(0).unwrap_or(after);
        next_after(&cron, self.timezone, after)
    }

    /// The next slot after `after`, skipping a repeat of `last_local`
    /// ([`crate::schedule::next_slot`]).
    pub fn next_slot(
        &self,
        after: DateTime<Utc>,
        last_local: Option<chrono::NaiveDateTime>,
    ) -> Option<DateTime<Utc>> {
        let cron = parse_cron(&self.cron).ok()?;
        next_slot(&cron, self.timezone, after, last_local)
    }
}

/// Every pipeline, sorted by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalog {
    /// The pipelines.
    pub pipelines: Vec<PipelineInfo>,
}

impl Catalog {
    /// Loads every recipe of the project.
    pub fn load(project: &Project) -> Catalog {
        let pipelines = load::list_recipes(project)
            .into_iter()
            .map(|name| match load::load_recipe(project, &name) {
                Ok(r) => PipelineInfo {
                    name: r.name,
                    version: Some(r.version.to_string()),
                    schedule: r.schedule.as_ref().map(ScheduleInfo::from),
                    error: None,
                    platform: Some(r.platform.clone()),
                },
                Err(e) => PipelineInfo {
                    name,
                    version: None,
                    schedule: None,
                    error: Some(e.to_string()),
                    platform: None,
                },
            })
            .collect();
        Catalog { pipelines }
    }

    /// One pipeline by name.
    pub fn get(&self, name: &str) -> Option<&PipelineInfo> {
        self.pipelines.iter().find(|p| p.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_fire_time_is_on_the_second() {
        let s = ScheduleInfo {
            cron: "0 3 * * *".into(),
            timezone: chrono_tz::Europe::Berlin,
            only_when_dependencies_change: true,
            start_condition: StartCondition::ExpressionMatchAndDependencyUpdatesAvailable,
        };
        let after = "2026-11-27T19:50:01.116535588Z".parse().unwrap();
        let next = s.next_after(after).unwrap();
        assert_eq!(next.to_rfc3339(), "2026-11-28T02:00:00+00:00");
    }
}
