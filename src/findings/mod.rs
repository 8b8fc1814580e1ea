//! The findings gate's scanners and verdict (run by the pipeline between
//! the test stage and any push; `src/pipeline/gate.rs`): kiln's built-in
//! secret scan of every layer, the image config and its history
//! (`secrets.rs`, `scan.rs`), scanner hooks from the operator config
//! (`hooks.rs`), the project's reviewed `.kiln-ignore.yaml` (`ignore.rs`),
//! and [`decide`], which applies the ignores and the operator's threshold.
//! [`FindingsReport`] is plain data the record keeps. No finding, message or
//! record ever holds a secret's value: messages show [`secrets::mask`].

pub mod hooks;
pub mod ignore;
pub mod scan;
pub mod secrets;

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// How bad a finding is, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Informational.
    Info,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

impl Severity {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Parses a lowercase name.
    pub fn parse(s: &str) -> Option<Severity> {
        Some(match s.to_ascii_lowercase().as_str() {
            "info" | "none" => Severity::Info,
            "low" => Severity::Low,
            "medium" | "moderate" => Severity::Medium,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            _ => return None,
        })
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finding, from kiln's secret scan or a scanner hook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// Stable id (`RULE-` + 10 hex of a hash of source, rule, path and the
    /// matched value), what an ignore entry's `id` names.
    pub id: String,
    /// Rule id (`aws-access-key-id`, a SARIF `ruleId`, …).
    pub rule: String,
    /// How bad.
    pub severity: Severity,
    /// `kiln-secrets` or the scanner hook's name.
    pub source: String,
    /// The layer (diff id) the file is in; absent for the image config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
    /// The file in the image (`/etc/app/creds`) or the config field
    /// (`config:history[3].created_by`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// 1-based line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// What was found (masked).
    pub message: String,
    /// The `.kiln-ignore.yaml` line of the entry that ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignored_by: Option<u64>,
}

impl Finding {
    /// A finding whose id hashes `source`, `rule`, `path` and `key` (the
    /// matched value, or the location when there is none).
    pub fn new(
        source: &str,
        rule: &str,
        severity: Severity,
        path: Option<String>,
        key: &str,
    ) -> Self {
        let mut h = Sha256::new();
        for part in [source, rule, path.as_deref().unwrap_or(""), key] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        let hex = hex::encode(h.finalize());
        Finding {
            id: format!("{rule}-{}", &hex[..10]),
            rule: rule.to_string(),
            severity,
            source: source.to_string(),
            layer: None,
            path,
            line: None,
            message: String::new(),
            ignored_by: None,
        }
    }

    /// `ID severity rule: message at layer L path:line`.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{} ({}, {}): {}",
            self.id, self.severity, self.source, self.message
        );
        if let Some(l) = &self.layer {
            s.push_str(&format!(" in layer {l}"));
        }
        if let Some(p) = &self.path {
            s.push_str(&format!(" at {p}"));
            if let Some(n) = self.line {
                s.push_str(&format!(":{n}"));
            }
        }
        s
    }
}

/// An ignore entry the gate used, or found expired.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IgnoreUse {
    /// Its line in `.kiln-ignore.yaml`.
    pub line: u64,
    /// `id: …` or `rule: …` as written.
    pub selects: String,
    /// Why it is ignored.
    pub reason: String,
    /// `YYYY-MM-DD`.
    pub expires: String,
    /// True when the entry expired and no longer applies.
    pub expired: bool,
    /// The findings it ignores (or would have, when expired).
    pub findings: Vec<String>,
}

/// The gate's verdict, as the record keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FindingsReport {
    /// Findings at or above this severity block.
    pub threshold: Severity,
    /// Every finding (ignored ones carry `ignoredBy`).
    pub findings: Vec<Finding>,
    /// Ignore entries used or expired.
    pub ignores: Vec<IgnoreUse>,
    /// Ids of the findings that block the push.
    pub blocking: Vec<String>,
}

impl FindingsReport {
    /// One line: counts and the verdict.
    pub fn summary(&self) -> String {
        let ignored = self
            .findings
            .iter()
            .filter(|f| f.ignored_by.is_some())
            .count();
        format!(
            "{} finding{}, {ignored} ignored, {} at or above {}",
            self.findings.len(),
            if self.findings.len() == 1 { "" } else { "s" },
            self.blocking.len(),
            self.threshold
        )
    }
}

/// Applies `ignores` (as of `today`) and the `threshold`.
pub fn decide(
    mut findings: Vec<Finding>,
    ignores: &ignore::IgnoreFile,
    threshold: Severity,
    today: chrono::NaiveDate,
) -> FindingsReport {
    let mut uses: Vec<IgnoreUse> = Vec::new();
    for f in &mut findings {
        for e in &ignores.entries {
            if !e.matches(f) {
                continue;
            }
            let expired = e.expires < today;
            let use_ = match uses.iter_mut().find(|u| u.line == e.line) {
                Some(u) => u,
                None => {
                    uses.push(e.recorded(expired));
                    uses.last_mut().expect("just pushed")
                }
            };
            use_.findings.push(f.id.clone());
            if !expired && f.ignored_by.is_none() {
                f.ignored_by = Some(e.line);
            }
        }
    }
    let blocking = findings
        .iter()
        .filter(|f| f.ignored_by.is_none() && f.severity >= threshold)
        .map(|f| f.id.clone())
        .collect();
    FindingsReport {
        threshold,
        findings,
        ignores: uses,
        blocking,
    }
}

/// Why the gate could not run (never "findings were found": that is data).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FindingsError {
    /// The engine could not inspect or export the image.
    #[error("cannot read image `{image}` from the docker engine")]
    Docker {
        /// The image.
        image: String,
        /// The engine's error.
        #[source]
        source: bollard::errors::Error,
    },
    /// Reading the exported image failed.
    #[error("cannot scan image `{image}`")]
    Scan {
        /// The image.
        image: String,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// A scanner hook could not run, timed out, or printed no valid report.
    #[error("scanner hook `{name}`: {problem}")]
    Hook {
        /// The hook's name.
        name: String,
        /// What went wrong (exit status, stderr tail, parse error).
        problem: String,
    },
}

/// The image's size, user and labels, for `Policy::check_image`.
pub async fn image_facts(
    docker: &bollard::Docker,
    image: &str,
) -> Result<crate::operator::policy::ImageFacts, FindingsError> {
    let i = docker
        .inspect_image(image)
        .await
        .map_err(|source| FindingsError::Docker {
            image: image.to_string(),
            source,
        })?;
    let config = i.config.unwrap_or_default();
    Ok(crate::operator::policy::ImageFacts {
        image: image.to_string(),
        size: i.size.unwrap_or(0).max(0) as u64,
        user: config.user.unwrap_or_default(),
        labels: config.labels.unwrap_or_default().into_iter().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(rule: &str, severity: Severity, path: &str) -> Finding {
        let mut f = Finding::new("kiln-secrets", rule, severity, Some(path.into()), "x");
        f.message = "m".into();
        f
    }

    #[test]
    fn ignores_apply_until_they_expire_and_the_threshold_decides() {
        let text = "ignores:\n  - rule: aws-access-key-id\n    paths: [\"/etc/app/*\"]\n    reason: canary\n    expires: 2026-06-30\n";
        let file =
            ignore::IgnoreFile::parse(std::path::Path::new(".kiln-ignore.yaml"), text).unwrap();
        let findings = vec![
            finding("aws-access-key-id", Severity::Critical, "/etc/app/creds"),
            finding("aws-access-key-id", Severity::Critical, "/root/creds"),
            finding("high-entropy-assignment", Severity::Medium, "/etc/app/x"),
        ];
        let day = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let r = decide(findings.clone(), &file, Severity::High, day("2026-06-30"));
        assert_eq!(r.blocking, [findings[1].id.clone()]);
        assert_eq!(r.findings[0].ignored_by, Some(2));
        assert_eq!((r.ignores.len(), r.ignores[0].expired), (1, false));
        let r = decide(findings.clone(), &file, Severity::High, day("2026-07-01"));
        assert_eq!(r.blocking.len(), 2);
        assert!(r.ignores[0].expired);
        let r = decide(findings, &file, Severity::Medium, day("2026-07-01"));
        assert_eq!(r.blocking.len(), 3);
    }
}
