//! Cron forms: Image Builder's documented examples fire at the documented
//! instants; ambiguous spellings are refused with a hint.

use super::*;

const FRIDAY_NOON: &str = "2026-12-04T12:00:00Z";

fn fires(expr: &str, tz: chrono_tz::Tz, n: usize) -> Vec<String> {
    let cron = parse_cron(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
    upcoming(&cron, tz, FRIDAY_NOON.parse().unwrap(), n)
        .iter()
        .map(|t| t.format("%Y-%m-%dT%H:%M %a").to_string())
        .collect()
}

fn utc(expr: &str, n: usize) -> Vec<String> {
    fires(expr, chrono_tz::UTC, n)
}

#[test]
fn kiln_five_fields() {
    assert_eq!(parse_cron("0 3 * * *").unwrap().form, CronForm::Kiln);
    assert_eq!(
        utc("30 2 * * 5", 2),
        ["2026-12-11T02:30 Fri", "2026-12-18T02:30 Fri"]
    );
    assert!(matches!(
        parse_cron("61 * * * *"),
        Err(CronError::Syntax { .. })
    ));
    assert_eq!(
        parse_cron("* * *").unwrap_err(),
        CronError::FieldCount { found: 3 }
    );
}

#[test]
fn six_bare_fields_are_refused_not_reinterpreted() {
    let e = parse_cron("30 2 * * 5 *").unwrap_err();
    assert_eq!(e, CronError::AmbiguousSixFields);
    assert!(e.hint().contains("cron(30 2 ? * FRI *)"), "{}", e.hint());
    assert!(e.hint().contains("30 2 * * 5"));
    assert_eq!(
        parse_cron("30 0 3 * * MON").unwrap_err(),
        CronError::AmbiguousSixFields
    );
}

#[test]
fn documented_daily_examples() {
    let cron = parse_cron("cron(0 10 * * ? *)").unwrap();
    assert_eq!(cron.form, CronForm::ImageBuilder);
    assert_eq!(
        utc("cron(0 10 * * ? *)", 2),
        ["2026-12-05T10:00 Sat", "2026-12-06T10:00 Sun"]
    );
    assert_eq!(
        utc("cron(15 12 * * ? *)", 2),
        ["2026-12-04T12:15 Fri", "2026-12-05T12:15 Sat"]
    );
    assert_eq!(
        utc("cron(0 0 * * ? *)", 2),
        ["2026-12-05T00:00 Sat", "2026-12-06T00:00 Sun"]
    );
}

#[test]
fn documented_weekday_evening_first_of_month_and_second_tuesday() {
    assert_eq!(
        utc("cron(0 18 ? * mon-fri *)", 3),
        [
            "2026-12-04T18:00 Fri",
            "2026-12-07T18:00 Mon",
            "2026-12-08T18:00 Tue"
        ]
    );
    assert_eq!(
        utc("cron(0 8 1 * ? *)", 2),
        ["2027-01-01T08:00 Fri", "2027-02-01T08:00 Mon"]
    );
    assert_eq!(
        utc("cron(30 22 ? * tue#2 *)", 2),
        ["2026-12-08T22:30 Tue", "2027-01-12T22:30 Tue"]
    );
}

#[test]
fn documented_second_and_fourth_saturday() {
    assert_eq!(
        utc("cron(0 6 ? * sat#2,4 *)", 4),
        [
            "2026-12-12T06:00 Sat",
            "2026-12-26T06:00 Sat",
            "2027-01-09T06:00 Sat",
            "2027-01-23T06:00 Sat"
        ]
    );
}

#[test]
fn last_day_nearest_weekday_last_friday_and_year() {
    assert_eq!(
        utc("cron(0 0 L * ? *)", 3),
        [
            "2026-12-31T00:00 Thu",
            "2027-01-31T00:00 Sun",
            "2027-02-28T00:00 Sun"
        ]
    );
    // 2027-01-03 is a Sunday: the nearest weekday is Monday the 4th.
    assert_eq!(
        utc("cron(0 9 3W * ? *)", 2),
        ["2027-01-04T09:00 Mon", "2027-02-03T09:00 Wed"]
    );
    assert_eq!(
        utc("cron(0 0 ? * FRIL *)", 2),
        ["2026-12-25T00:00 Fri", "2027-01-29T00:00 Fri"]
    );
    assert_eq!(utc("cron(0 0 1 1 ? 2028)", 2), ["2028-01-01T00:00 Sat"]);
}

#[test]
fn image_builder_form_is_utc_unless_a_zone_is_given() {
    assert_eq!(
        fires("cron(0 10 * * ? *)", chrono_tz::America::Los_Angeles, 1),
        ["2026-12-04T18:00 Fri"]
    );
}

#[test]
fn numeric_weekdays_are_refused_in_the_image_builder_form() {
    // The documentation's "every weekday morning" example: its table says
    // 1 = SUN, its example says 1-5 = weekdays. kiln refuses to guess.
    for expr in [
        "cron(0 10 ? * 1-5 *)",
        "cron(0 0 ? * 6L *)",
        "cron(0 0 ? * L *)",
    ] {
        let e = parse_cron(expr).unwrap_err();
        assert!(matches!(e, CronError::NumericWeekday { .. }), "{expr}: {e}");
        assert!(e.hint().contains("MON-FRI"));
    }
}

#[test]
fn image_builder_day_fields_and_counts() {
    assert!(matches!(
        parse_cron("cron(0 10 1 * MON *)"),
        Err(CronError::DayFields { .. })
    ));
    // The CLI guide's pipeline example writes `*` where the rule says `?`.
    assert_eq!(
        utc("cron(0 0 * * SUN *)", 2),
        ["2026-12-06T00:00 Sun", "2026-12-13T00:00 Sun"]
    );
    assert!(matches!(
        parse_cron("cron(0 10 ? * ? *)"),
        Err(CronError::DayFields { .. })
    ));
    assert_eq!(
        parse_cron("cron(0 10 * * ?)").unwrap_err(),
        CronError::ImageBuilderFieldCount { found: 5 }
    );
    assert!(matches!(
        parse_cron("cron(0 10 * * ? 1900)"),
        Err(CronError::Year { .. })
    ));
    assert_eq!(parse_cron("rate(1 day)").unwrap_err(), CronError::Rate);
}

#[test]
fn start_condition_spellings() {
    for c in [
        StartCondition::ExpressionMatchOnly,
        StartCondition::ExpressionMatchAndDependencyUpdatesAvailable,
    ] {
        assert_eq!(StartCondition::parse(c.as_str()), Some(c));
    }
    assert!(StartCondition::from_only_when_dependencies_change(true).checks_dependencies());
    assert!(!StartCondition::from_only_when_dependencies_change(false).checks_dependencies());
    assert_eq!(StartCondition::parse("ALWAYS"), None);
}

#[test]
fn next_is_in_the_zone() {
    let c = parse_cron("0 3 * * *").unwrap();
    let after = "2026-01-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap();
    let next = next_after(&c, chrono_tz::Europe::Berlin, after).unwrap();
    assert_eq!(next.to_rfc3339(), "2026-01-01T02:00:00+00:00");
}

#[test]
fn kiln_form_converts_to_image_builder_form_with_the_same_slots() {
    for (kiln, ib) in [
        ("0 3 * * *", "cron(0 3 * * ? *)"),
        ("30 18 * * 1-5", "cron(30 18 ? * MON-FRI *)"),
        ("0 8 1 * *", "cron(0 8 1 * ? *)"),
        ("30 22 * * 2#2", "cron(30 22 ? * TUE#2 *)"),
        ("0 0 * * 0,6", "cron(0 0 ? * SUN,SAT *)"),
        ("cron(0 10 * * ? *)", "cron(0 10 * * ? *)"),
    ] {
        assert_eq!(to_image_builder(kiln).unwrap(), ib);
        assert_eq!(utc(kiln, 6), utc(ib, 6), "{kiln} vs {ib}");
    }
    assert!(matches!(
        to_image_builder("0 0 1 * 1"),
        Err(CronError::NotExpressible { .. })
    ));
    assert!(matches!(
        to_image_builder("0 0 * * */2"),
        Err(CronError::NotExpressible { .. })
    ));
}
