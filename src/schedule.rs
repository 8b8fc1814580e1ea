//! Cron schedules: parsing (5 fields, or 6 with seconds first) and the next
//! firing instant in a time zone, computed in UTC. DST gaps and repeats are
//! handled by `croner` (each intended slot fires once).

use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// Parses a cron expression; seconds optional, no year field.
pub fn parse_cron(expr: &str) -> Result<Cron, String> {
    if expr.split_whitespace().count() < 5 {
        return Err("expected 5 or 6 fields".into());
    }
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
        .parse(expr)
        .map_err(|e| e.to_string())
}

/// The first firing strictly after `after`, in `tz`, as UTC.
pub fn next_after(cron: &Cron, tz: chrono_tz::Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    // Cron slots are whole seconds; a fractional `after` must not leak into them.
    let after = chrono::DurationRound::duration_trunc(after, chrono::TimeDelta::seconds(1))
        .unwrap_or(after);
    cron.find_next_occurrence(&after.with_timezone(&tz), false)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_five_and_six_fields() {
        assert!(parse_cron("0 3 * * *").is_ok());
        assert!(parse_cron("30 0 3 * * MON").is_ok());
        assert!(parse_cron("61 * * * *").is_err());
        assert!(parse_cron("* * *").is_err());
    }

    #[test]
    fn next_is_in_the_zone() {
        let c = parse_cron("0 3 * * *").unwrap();
        let after = "2026-01-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let next = next_after(&c, chrono_tz::Europe::Berlin, after).unwrap();
        assert_eq!(next.to_rfc3339(), "2026-01-01T02:00:00+00:00");
    }
}
