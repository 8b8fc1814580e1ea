//! Recipe tests (`tests/*.kilntest.yaml`, `kiln test-recipes`), like
//! `terraform test`: ordered `run` blocks that plan a recipe (load,
//! validate, resolve, render) and assert on the result, or apply it (build
//! and test under a scratch tag, pushed nowhere, removed after), or expect
//! named validation/policy rules to fail. This module is the format and the
//! pure checks; `pipeline::recipe_test` runs them.

pub mod junit;
pub mod spec;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::diagnostic::Diagnostics;

pub use spec::{Assertions, Command, Run, TestFile, discover, load};

/// The outcome of one run.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// The test file, as shown.
    pub file: PathBuf,
    /// The run's name.
    pub name: String,
    /// `plan` or `apply`.
    pub command: Command,
    /// Whether it passed.
    pub passed: bool,
    /// Why it failed (or what it noted when it passed), one line each.
    pub messages: Vec<String>,
    /// Wall time.
    pub elapsed: Duration,
}

/// What a plan produced, as the assertions see it.
#[derive(Debug, Clone)]
pub struct PlanView<'a> {
    /// The rendered Dockerfile (`kiln render`'s output).
    pub dockerfile: &'a str,
    /// Every label the image gets.
    pub labels: &'a BTreeMap<String, String>,
    /// `sha256:…`.
    pub build_key: String,
    /// Component names, in the order they apply.
    pub components: Vec<String>,
}

/// The assertions that do not hold, one message each.
pub fn check_plan(a: &Assertions, plan: &PlanView<'_>) -> Vec<String> {
    let mut out = Vec::new();
    for c in &a.contains {
        if !plan.dockerfile.contains(c.as_str()) {
            out.push(format!("the Dockerfile does not contain {c:?}"));
        }
    }
    for c in &a.not_contains {
        if plan.dockerfile.contains(c.as_str()) {
            out.push(format!("the Dockerfile contains {c:?}"));
        }
    }
    for r in &a.matches {
        if !r.is_match(plan.dockerfile) {
            out.push(format!("the Dockerfile does not match /{}/", r.as_str()));
        }
    }
    for (k, v) in &a.labels {
        match plan.labels.get(k) {
            Some(got) if got == v => {}
            Some(got) => out.push(format!("label `{k}` is {got:?}, expected {v:?}")),
            None => out.push(format!("the image has no label `{k}`")),
        }
    }
    if let Some(k) = &a.build_key
        && *k != plan.build_key
    {
        out.push(format!("the build key is {}, expected {k}", plan.build_key));
    }
    if let Some(c) = &a.components
        && *c != plan.components
    {
        out.push(format!(
            "the components that apply are [{}], expected [{}]",
            plan.components.join(", "),
            c.join(", ")
        ));
    }
    out
}

/// Whether a refused recipe failed as expected: every expected rule is
/// broken, and nothing else is. The problems, one message each (empty:
/// the run passes).
pub fn check_failures(expected: &[String], diags: &Diagnostics) -> Vec<String> {
    let mut out = Vec::new();
    let broken: Vec<&str> = diags
        .0
        .iter()
        .filter_map(|d| d.rule.map(|r| r.id()))
        .collect();
    for e in expected {
        if !broken.contains(&e.as_str()) {
            let hint =
                crate::diagnostic::closest(e, crate::load::rules::ALL.iter().map(|r| r.id()))
                    .filter(|h| h != e)
                    .map(|h| format!(" (did you mean `{h}`?)"))
                    .unwrap_or_default();
            out.push(format!("rule `{e}` did not fail{hint}"));
        }
    }
    for d in &diags.0 {
        if !d.rule.is_some_and(|r| expected.iter().any(|e| e == r.id())) {
            out.push(format!("unexpected failure: {}", one_line(&d.to_string())));
        }
    }
    out
}

/// The first line of a diagnostic (path:line:column: message) plus its rule.
pub fn one_line(text: &str) -> String {
    let first = text.lines().next().unwrap_or_default();
    match text.lines().find_map(|l| l.trim().strip_prefix("= rule: ")) {
        Some(rule) => format!("{first} [{rule}]"),
        None => first.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::Diagnostic;

    static ALLOWED_PARENTS: crate::diagnostic::Rule = crate::diagnostic::Rule("allowedParents");

    fn diag(rule: Option<&'static crate::diagnostic::Rule>) -> Diagnostic {
        let d = Diagnostic::file("recipes/a.yaml", "bad");
        match rule {
            Some(r) => d.with_rule(r),
            None => d,
        }
    }

    #[test]
    fn expected_rules_must_all_fail_and_nothing_else() {
        let expected = vec!["allowedParents".to_string()];
        let only = Diagnostics(vec![diag(Some(&ALLOWED_PARENTS))]);
        assert!(check_failures(&expected, &only).is_empty());
        let other = Diagnostics(vec![diag(Some(&ALLOWED_PARENTS)), diag(None)]);
        assert_eq!(check_failures(&expected, &other).len(), 1);
        let missing = Diagnostics(vec![diag(Some(&crate::load::rules::UNKNOWN_COMPONENT))]);
        let problems = check_failures(&expected, &missing);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("`allowedParents` did not fail"));
    }

    #[test]
    fn plan_assertions_report_each_miss() {
        let labels = BTreeMap::from([("a".to_string(), "1".to_string())]);
        let plan = PlanView {
            dockerfile: "FROM x\nRUN y\n",
            labels: &labels,
            build_key: "sha256:00".into(),
            components: vec!["c".into()],
        };
        let a = Assertions {
            contains: vec!["RUN y".into(), "RUN z".into()],
            not_contains: vec!["FROM x".into()],
            matches: vec![regex::Regex::new("^FROM \\w+$").unwrap()],
            labels: BTreeMap::from([("a".into(), "2".into()), ("b".into(), "1".into())]),
            build_key: Some("sha256:00".into()),
            components: Some(vec!["c".into(), "d".into()]),
        };
        let misses = check_plan(&a, &plan);
        assert_eq!(misses.len(), 6, "{misses:?}");
    }
}
