//! `kiln schedule RECIPE --next N`: the fire times a user reads to see what
//! an expression means, in UTC and in the recipe's zone, as the daemon fires
//! them (the Berlin night when clocks go forward included).

mod support;

use support::kiln_on;

fn project(schedule: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("recipes")).unwrap();
    std::fs::write(
        dir.path().join("recipes/r.yaml"),
        format!("name: r\nversion: 1.0.0\nparentImage: 127.0.0.1:5000/kiln/base:1\nschedule:\n{schedule}"),
    )
    .unwrap();
    dir
}

#[test]
fn next_prints_utc_and_local_fire_times() {
    let dir = project(
        "  cron: \"30 2 * * *\"\n  timezone: Europe/Berlin\n  onlyWhenDependenciesChange: false\n",
    );
    let (code, out, err) = kiln_on(
        dir.path(),
        &[
            "schedule",
            "r",
            "--next",
            "3",
            "--after",
            "2026-03-27T12:00:00Z",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out,
        "r: `30 2 * * *` (5-field cron) in Europe/Berlin, startCondition EXPRESSION_MATCH_ONLY\n\
         2026-03-28T01:30:00Z  Sat 2026-03-28 02:30 CET\n\
         2026-03-29T01:00:00Z  Sun 2026-03-29 03:00 CEST\n\
         2026-03-30T00:30:00Z  Mon 2026-03-30 02:30 CEST\n"
    );
}

#[test]
fn next_prints_image_builder_form_and_says_when_it_ends() {
    let dir = project(
        "  cron: \"cron(0 8 1 * ? 2027)\"\n  startCondition: EXPRESSION_MATCH_AND_DEPENDENCY_UPDATES_AVAILABLE\n",
    );
    let (code, out, err) = kiln_on(
        dir.path(),
        &[
            "schedule",
            "r",
            "--next",
            "14",
            "--after",
            "2026-12-04T00:00:00Z",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        "r: `cron(0 8 1 * ? 2027)` (Image Builder cron) in UTC, startCondition EXPRESSION_MATCH_AND_DEPENDENCY_UPDATES_AVAILABLE"
    );
    assert_eq!(lines[1], "2027-01-01T08:00:00Z  Fri 2027-01-01 08:00 UTC");
    assert_eq!(lines[12], "2027-12-01T08:00:00Z  Wed 2027-12-01 08:00 UTC");
    assert_eq!(lines[13], "(no further fire times)");
}

#[test]
fn the_ambiguous_six_field_form_is_refused_with_a_hint() {
    let dir = project("  cron: \"30 2 * * 5 *\"\n");
    let (code, out, err) = kiln_on(dir.path(), &["schedule", "r"]);
    assert_eq!(code, 3, "invalid recipe: {out}{err}");
    assert!(
        err.contains("recipes/r.yaml:5:") && err.contains("six fields are ambiguous"),
        "{err}"
    );
    assert!(err.contains("cron(30 2 ? * FRI *)"), "{err}");
}
