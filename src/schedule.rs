//! Cron schedules in two spellings, and the next firing instants in a time
//! zone, computed in UTC.
//!
//! - kiln's form: five fields, `minute hour day-of-month month day-of-week`
//!   (standard cron: weekdays 0–7 with 0 and 7 = Sunday, or names).
//! - Image Builder's form: `cron(minute hour day month day-of-week year)`,
//!   with `?`, `L`, `W` and `#`; at most one day field restricted.
//!
//! Six bare fields are refused: they read as seconds-first cron and as Image
//! Builder's year-last form (`30 2 * * 5 *`), and a schedule must never be
//! reinterpreted. Image Builder's documentation numbers weekdays two ways
//! (its table: 1–7 = SUN–SAT; its examples: `1-5` = weekdays), so inside
//! `cron(…)` weekdays must be names (`MON-FRI`, `TUE#2`, `FRIL`).
//! DST gaps and repeats are handled by `croner` plus [`next_slot`]: each
//! intended local slot fires once.

use chrono::{DateTime, NaiveDateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// How a cron expression was spelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CronForm {
    /// Five fields.
    Kiln,
    /// `cron(…)`, six fields with a year.
    ImageBuilder,
}

/// A parsed cron expression.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    /// How it was written.
    pub form: CronForm,
    cron: Cron,
}

/// Why a cron expression was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    /// Nothing written.
    #[error("the cron expression is empty")]
    Empty,
    /// Six bare fields: seconds-first or year-last?
    #[error("six fields are ambiguous: seconds first, or Image Builder's year last?")]
    AmbiguousSixFields,
    /// Not five fields.
    #[error("expected 5 fields (minute hour day-of-month month day-of-week), found {found}")]
    FieldCount {
        /// Fields written.
        found: usize,
    },
    /// `cron(…)` without six fields.
    #[error("`cron(…)` takes 6 fields (minute hour day month day-of-week year), found {found}")]
    ImageBuilderFieldCount {
        /// Fields written.
        found: usize,
    },
    /// A `rate(…)` expression.
    #[error("`rate(…)` expressions are not supported by Image Builder pipelines nor kiln")]
    Rate,
    /// Both or neither of Image Builder's day fields are `?`.
    #[error(
        "in `cron(…)` day-of-month (`{dom}`) and day-of-week (`{dow}`) cannot both be set, nor both `?`"
    )]
    DayFields {
        /// Day-of-month field.
        dom: String,
        /// Day-of-week field.
        dow: String,
    },
    /// A numeric or bare-`L` weekday inside `cron(…)`.
    #[error(
        "day-of-week `{value}` in `cron(…)`: weekday numbers mean different days in Image Builder's documentation"
    )]
    NumericWeekday {
        /// The field.
        value: String,
    },
    /// A year outside 1970–2199.
    #[error("year `{value}` is outside 1970-2199")]
    Year {
        /// The field.
        value: String,
    },
    /// A kiln expression Image Builder's form cannot say.
    #[error("`{expr}` has no Image Builder form: {reason}")]
    NotExpressible {
        /// The expression.
        expr: String,
        /// Why.
        reason: &'static str,
    },
    /// The cron library refused the expression.
    #[error("{message}")]
    Syntax {
        /// croner's message.
        message: String,
    },
}

impl CronError {
    /// What to write instead.
    pub fn hint(&self) -> &'static str {
        match self {
            CronError::AmbiguousSixFields => {
                "for Image Builder's form write `cron(30 2 ? * FRI *)`; for kiln's form write 5 fields `30 2 * * 5`"
            }
            CronError::NumericWeekday { .. } => {
                "write weekday names: `MON-FRI`, `TUE#2`, `SAT#2,4`, `FRIL` (last Friday)"
            }
            CronError::DayFields { .. } => {
                "e.g. `cron(0 8 1 * ? *)` (day 1 of the month) or `cron(0 10 ? * MON-FRI *)`"
            }
            CronError::ImageBuilderFieldCount { .. } => {
                "`cron(minute hour day month day-of-week year)`, e.g. `cron(0 10 * * ? *)`"
            }
            _ => {
                "5 fields `minute hour day-of-month month day-of-week` (e.g. `0 3 * * *`) or Image Builder's `cron(0 3 * * ? *)`"
            }
        }
    }
}

/// Parses kiln's 5-field form or Image Builder's `cron(…)` form.
pub fn parse_cron(expr: &str) -> Result<CronSchedule, CronError> {
    let expr = expr.trim();
    if expr.is_empty() {
        return Err(CronError::Empty);
    }
    if expr.starts_with("rate(") {
        return Err(CronError::Rate);
    }
    if let Some(inner) = expr.strip_prefix("cron(").and_then(|e| e.strip_suffix(')')) {
        return parse_image_builder(inner);
    }
    let fields: Vec<&str> = expr.split_whitespace().collect();
    match fields.len() {
        5 => {}
        6 => return Err(CronError::AmbiguousSixFields),
        found => return Err(CronError::FieldCount { found }),
    }
    let cron = CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(expr)
        .map_err(syntax)?;
    Ok(CronSchedule {
        form: CronForm::Kiln,
        cron,
    })
}

fn syntax(e: croner::errors::CronError) -> CronError {
    CronError::Syntax {
        message: e.to_string(),
    }
}

/// `minute hour day month day-of-week year` with Image Builder's rules.
fn parse_image_builder(inner: &str) -> Result<CronSchedule, CronError> {
    let f: Vec<&str> = inner.split_whitespace().collect();
    if f.len() != 6 {
        return Err(CronError::ImageBuilderFieldCount { found: f.len() });
    }
    let (dom, dow) = (f[2], f[4]);
    // Image Builder's rule is "`?` in the other day field"; its own examples
    // also write `*` there (`cron(0 0 * * SUN *)`), which reads the same.
    let restricted = |f: &str| f != "?" && f != "*";
    if (dom == "?" && dow == "?") || (restricted(dom) && restricted(dow)) {
        return Err(CronError::DayFields {
            dom: dom.into(),
            dow: dow.into(),
        });
    }
    let dow_text = if dow == "?" {
        "*".to_string()
    } else {
        weekdays(dow)?
    };
    check_years(f[5])?;
    // croner wants a seconds field when a year is present.
    let pattern = format!(
        "0 {} {} {} {} {} {}",
        f[0],
        f[1],
        if dom == "?" { "*" } else { dom },
        f[3],
        dow_text,
        f[5]
    );
    let cron = CronParser::builder()
        .seconds(Seconds::Required)
        .year(Year::Required)
        .build()
        .parse(&pattern)
        .map_err(syntax)?;
    Ok(CronSchedule {
        form: CronForm::ImageBuilder,
        cron,
    })
}

/// Checks that the day-of-week field names its days, and spells Image
/// Builder's `SAT#2,4` (second and fourth Saturday) as `SAT#2,SAT#4`.
fn weekdays(dow: &str) -> Result<String, CronError> {
    let numeric = || CronError::NumericWeekday { value: dow.into() };
    let upper = dow.to_ascii_uppercase();
    let mut out = Vec::new();
    let mut nth_of: Option<String> = None;
    for item in upper.split(',') {
        if let Some((day, n)) = item.split_once('#') {
            if !is_day_name(day) {
                return Err(numeric());
            }
            nth_of = Some(day.to_string());
            out.push(format!("{day}#{n}"));
        } else if item.len() == 1 && item.as_bytes()[0].is_ascii_digit() && nth_of.is_some() {
            out.push(format!("{}#{item}", nth_of.as_deref().unwrap_or_default()));
        } else if item.chars().any(|c| c.is_ascii_digit()) || item == "L" {
            return Err(numeric());
        } else {
            nth_of = None;
            out.push(item.to_string());
        }
    }
    Ok(out.join(","))
}

fn is_day_name(s: &str) -> bool {
    ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"].contains(&s)
}

fn check_years(field: &str) -> Result<(), CronError> {
    let out_of_range = field
        .split([',', '-', '/'])
        .filter_map(|p| p.parse::<u32>().ok())
        .enumerate()
        // After a `/` the number is a step, not a year.
        .any(|(i, y)| !((1970..=2199).contains(&y) || field.contains('/') && i > 0));
    if out_of_range {
        return Err(CronError::Year {
            value: field.into(),
        });
    }
    Ok(())
}

/// The same schedule in Image Builder's `cron(…)` form: one day field
/// becomes `?`, weekday numbers become names (0 and 7 = `SUN`), a year `*`
/// is added. An expression already in that form is returned as written.
pub fn to_image_builder(expr: &str) -> Result<String, CronError> {
    let cron = parse_cron(expr)?;
    let expr = expr.trim();
    if cron.form == CronForm::ImageBuilder {
        return Ok(expr.to_string());
    }
    let not = |reason| CronError::NotExpressible {
        expr: expr.into(),
        reason,
    };
    let f: Vec<&str> = expr.split_whitespace().collect();
    let (mut dom, mut dow) = (f[2].to_string(), f[4].to_string());
    if dow == "*" || dow == "?" {
        dow = "?".into();
        if dom == "?" {
            dom = "*".into();
        }
    } else if dom == "*" || dom == "?" {
        dom = "?".into();
        dow = weekday_names(&dow).ok_or_else(|| not("day-of-week steps or bare `L`"))?;
    } else {
        return Err(not(
            "it restricts both day fields (cron fires when either matches; Image Builder allows one)",
        ));
    }
    Ok(format!("cron({} {} {dom} {} {dow} *)", f[0], f[1], f[3]))
}

/// `1-5` → `MON-FRI`, `5#2` → `FRI#2`, `5L` → `FRIL`; `None` for steps.
fn weekday_names(dow: &str) -> Option<String> {
    const NAMES: [&str; 8] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"];
    let name = |t: &str| -> Option<String> {
        match t.parse::<usize>() {
            Ok(n) => NAMES.get(n).map(|s| s.to_string()),
            Err(_) if t.len() == 3 && t.chars().all(|c| c.is_ascii_alphabetic()) => {
                Some(t.to_ascii_uppercase())
            }
            Err(_) => None,
        }
    };
    let item = |i: &str| -> Option<String> {
        if let Some((d, n)) = i.split_once('#') {
            return Some(format!("{}#{n}", name(d)?));
        }
        if let Some(d) = i.strip_suffix('L').filter(|d| !d.is_empty()) {
            return Some(format!("{}L", name(d)?));
        }
        match i.split_once('-') {
            Some((a, b)) => Some(format!("{}-{}", name(a)?, name(b)?)),
            None => name(i),
        }
    };
    dow.split(',')
        .map(item)
        .collect::<Option<Vec<_>>>()
        .map(|v| v.join(","))
}

/// The first firing strictly after `after`, in `tz`, as UTC.
pub fn next_after(
    cron: &CronSchedule,
    tz: chrono_tz::Tz,
    after: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    // Cron slots are whole seconds; a fractional `after` must not leak into them.
    let after = chrono::DurationRound::duration_trunc(after, chrono::TimeDelta::seconds(1))
        .unwrap_or(after);
    cron.cron
        .find_next_occurrence(&after.with_timezone(&tz), false)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The next slot strictly after `after`, skipping a slot whose local wall
/// time equals `last_local` (the repeated hour when clocks go back), so each
/// intended local slot fires once.
pub fn next_slot(
    cron: &CronSchedule,
    tz: chrono_tz::Tz,
    after: DateTime<Utc>,
    last_local: Option<NaiveDateTime>,
) -> Option<DateTime<Utc>> {
    let mut next = next_after(cron, tz, after)?;
    while Some(next.with_timezone(&tz).naive_local()) == last_local {
        next = next_after(cron, tz, next)?;
    }
    Some(next)
}

/// The next `n` slots after `after`, as the daemon would fire them.
pub fn upcoming(
    cron: &CronSchedule,
    tz: chrono_tz::Tz,
    after: DateTime<Utc>,
    n: usize,
) -> Vec<DateTime<Utc>> {
    let mut out = Vec::with_capacity(n);
    let (mut after, mut last) = (after, None);
    while out.len() < n {
        let Some(next) = next_slot(cron, tz, after, last) else {
            break;
        };
        last = Some(next.with_timezone(&tz).naive_local());
        after = next;
        out.push(next);
    }
    out
}

/// Image Builder's `pipelineExecutionStartCondition`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartCondition {
    /// Build every time the expression matches.
    ExpressionMatchOnly,
    /// Build only when a parent digest or an input changed (the default).
    ExpressionMatchAndDependencyUpdatesAvailable,
}

impl StartCondition {
    /// Image Builder's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            StartCondition::ExpressionMatchOnly => "EXPRESSION_MATCH_ONLY",
            StartCondition::ExpressionMatchAndDependencyUpdatesAvailable => {
                "EXPRESSION_MATCH_AND_DEPENDENCY_UPDATES_AVAILABLE"
            }
        }
    }

    /// Parses Image Builder's spelling.
    pub fn parse(s: &str) -> Option<StartCondition> {
        [
            StartCondition::ExpressionMatchOnly,
            StartCondition::ExpressionMatchAndDependencyUpdatesAvailable,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }

    /// The `onlyWhenDependenciesChange` alias.
    pub fn from_only_when_dependencies_change(only: bool) -> StartCondition {
        if only {
            StartCondition::ExpressionMatchAndDependencyUpdatesAvailable
        } else {
            StartCondition::ExpressionMatchOnly
        }
    }

    /// Whether a due run asks first if anything moved.
    pub fn checks_dependencies(self) -> bool {
        self == StartCondition::ExpressionMatchAndDependencyUpdatesAvailable
    }
}

#[cfg(test)]
mod tests;
