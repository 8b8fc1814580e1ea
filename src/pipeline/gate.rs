//! The gate between the test stage and any push: the operator's policy on
//! the built image (`maxImageSize`, `forbidRootUser`, `requiredLabels`),
//! then the findings gate (kiln's secret scan and the scanner hooks,
//! `.kiln-ignore.yaml` applied, the operator's `failOn` threshold). A refusal
//! is a typed [`StageError`]; the pipeline records it, and nothing has been
//! pushed or tagged yet.

use super::error::StageError;
use crate::findings::{self, FindingsReport, ignore::IgnoreFile};
use crate::operator::Governance;

/// The findings report (kept in the record, passing or not) and the stage
/// note, or why the image may not be pushed.
pub(super) async fn check(
    docker: &bollard::Docker,
    image: &str,
    governance: &Governance,
    ignores: &IgnoreFile,
) -> (Option<FindingsReport>, Result<String, StageError>) {
    let facts = match findings::image_facts(docker, image).await {
        Ok(f) => f,
        Err(e) => return (None, Err(StageError::Findings(Box::new(e)))),
    };
    let violations = governance.policy.check_image(&facts);
    if !violations.0.is_empty() {
        return (None, Err(StageError::Policy(violations)));
    }
    let config = &governance.findings;
    if !config.secrets && config.scanners.is_empty() {
        return (
            None,
            Ok("policy passed; no findings scan configured".into()),
        );
    }
    let scanned = match findings::scan::collect(docker, image, config).await {
        Ok(s) => s,
        Err(e) => return (None, Err(StageError::Findings(Box::new(e)))),
    };
    let today = chrono::Utc::now().date_naive();
    let report = findings::decide(scanned.findings, ignores, config.fail_on, today);
    let expired: Vec<String> = report
        .ignores
        .iter()
        .filter(|u| u.expired)
        .map(|u| {
            format!(
                "{}:{}: ignore entry `{}` expired on {} and no longer applies",
                findings::ignore::FILE,
                u.line,
                u.selects,
                u.expires
            )
        })
        .collect();
    for e in &expired {
        tracing::warn!("{e}");
    }
    let mut note = report.summary();
    if scanned.dropped > 0 {
        note.push_str(&format!(" ({} more not kept)", scanned.dropped));
    }
    if report.blocking.is_empty() {
        return (Some(report), Ok(note));
    }
    let blocking = report
        .findings
        .iter()
        .filter(|f| report.blocking.contains(&f.id))
        .map(|f| f.describe())
        .collect();
    let error = StageError::FindingsBlocked {
        threshold: report.threshold,
        findings: blocking,
        expired,
    };
    (Some(report), Err(error))
}
