//! The recipe's `schedule` section: the cron expression in either spelling
//! (`crate::schedule`), the time zone, and the start condition with its
//! `onlyWhenDependenciesChange` alias (both given and disagreeing = error).

use super::model::Schedule;
use super::recipe::ScheduleSpec;
use super::recipe_check::Checker;
use crate::schedule::{StartCondition, parse_cron};

/// Validates `schedule`; `None` (with diagnostics) when it is wrong.
pub(super) fn check(cx: &mut Checker<'_>, spec: Option<&ScheduleSpec>) -> Option<Schedule> {
    let s = spec?;
    let cron = match parse_cron(&s.cron.value) {
        Ok(_) => Some(s.cron.value.trim().to_string()),
        Err(e) => {
            let msg = format!("invalid cron `{}`: {e}", s.cron.value.escape_debug());
            cx.at(&s.cron, msg).hint = Some(e.hint().into());
            None
        }
    };
    let timezone = match &s.timezone {
        None => Some(chrono_tz::UTC),
        Some(t) => t.value.parse::<chrono_tz::Tz>().ok().or_else(|| {
            let msg = format!(
                "unknown time zone `{}` (IANA names such as `Europe/Berlin`)",
                t.value.escape_debug()
            );
            cx.at(t, msg);
            None
        }),
    };
    let start_condition = start_condition(cx, s)?;
    Some(Schedule {
        cron: cron?,
        timezone: timezone?,
        start_condition,
    })
}

fn start_condition(cx: &mut Checker<'_>, s: &ScheduleSpec) -> Option<StartCondition> {
    let alias = s
        .only_when_dependencies_change
        .as_ref()
        .map(|b| StartCondition::from_only_when_dependencies_change(b.value));
    let Some(written) = &s.start_condition else {
        return Some(alias.unwrap_or(StartCondition::ExpressionMatchAndDependencyUpdatesAvailable));
    };
    let Some(condition) = StartCondition::parse(&written.value) else {
        let msg = format!("unknown startCondition `{}`", written.value.escape_debug());
        cx.at(written, msg).hint = Some(
            "EXPRESSION_MATCH_ONLY or EXPRESSION_MATCH_AND_DEPENDENCY_UPDATES_AVAILABLE".into(),
        );
        return None;
    };
    if let (Some(a), Some(b)) = (alias, &s.only_when_dependencies_change)
        && a != condition
    {
        let msg = format!(
            "onlyWhenDependenciesChange: {} contradicts startCondition: {}",
            b.value,
            condition.as_str()
        );
        cx.at(b, msg).hint =
            Some("onlyWhenDependenciesChange is an alias of startCondition; keep one".into());
        return None;
    }
    Some(condition)
}
