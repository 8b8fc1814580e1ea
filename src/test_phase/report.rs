//! The test phase's typed result and its three renderings: a human summary,
//! JSON (`--json`) and JUnit XML (`--junit FILE`, hand-written with proper
//! escaping) for CI systems.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use serde::Serialize;

/// What a check examined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum CheckKind {
    /// The container became ready (port, HTTP, log line).
    Readiness,
    /// One step of a component's `test` phase.
    ComponentStep,
    /// A structure-test `commandTests` entry.
    Command,
    /// A structure-test `fileExistenceTests` entry.
    FileExistence,
    /// A structure-test `fileContentTests` entry.
    FileContent,
    /// A structure-test `metadataTest`.
    Metadata,
    /// A structure-test `httpTests` entry.
    Http,
    /// A structure-test `licenseTests` entry.
    License,
    /// The container was still running after all tests.
    Container,
}

impl CheckKind {
    /// Stable lowercase name (JUnit `classname`, summaries).
    pub fn as_str(self) -> &'static str {
        match self {
            CheckKind::Readiness => "readiness",
            CheckKind::ComponentStep => "component",
            CheckKind::Command => "command",
            CheckKind::FileExistence => "file-existence",
            CheckKind::FileContent => "file-content",
            CheckKind::Metadata => "metadata",
            CheckKind::Http => "http",
            CheckKind::License => "license",
            CheckKind::Container => "container",
        }
    }
}

/// One check and its outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckResult {
    /// Name (`component/step`, the structure test's name, …).
    pub name: String,
    /// What it examined.
    pub kind: CheckKind,
    /// Whether it passed (skipped checks count as passed).
    pub passed: bool,
    /// Not run, e.g. after an `onFailure: Abort` step failed.
    pub skipped: bool,
    /// How long it took.
    #[serde(rename = "durationMs", serialize_with = "as_millis")]
    pub duration: Duration,
    /// Why it failed, or a short note.
    pub detail: String,
}

/// What the test container runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ContainerKind {
    /// A readiness check is set: the image's own entrypoint, which must
    /// become ready and stay up.
    Service,
    /// No readiness check: the entrypoint is replaced by a keep-alive
    /// (`sleep`), as Image Builder and container-structure-test run images.
    Image,
}

impl ContainerKind {
    /// `service` or `image`.
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerKind::Service => "service",
            ContainerKind::Image => "image",
        }
    }
}

/// How the readiness wait ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    tag = "status"
)]
pub enum ReadinessOutcome {
    /// Ready after `latency` from the container's start.
    Ready {
        /// Start → ready.
        #[serde(rename = "latencyMs", serialize_with = "as_millis")]
        latency: Duration,
    },
    /// The container exited before it was ready.
    Exited {
        /// Its exit code.
        exit_code: i64,
        /// Start → exit seen.
        #[serde(rename = "afterMs", serialize_with = "as_millis")]
        after: Duration,
        /// Its last log lines.
        logs: String,
    },
    /// The engine refused to start the container (e.g. no such entrypoint,
    /// or no `sleep` in the image for the keep-alive).
    NotStarted {
        /// The engine's reason.
        reason: String,
        /// The exit code the engine recorded (127/128 for a missing program).
        exit_code: i64,
        /// Its log lines (usually none).
        logs: String,
    },
    /// Not ready within `timeoutSeconds`.
    TimedOut {
        /// The timeout.
        #[serde(rename = "timeoutMs", serialize_with = "as_millis")]
        timeout: Duration,
        /// What was still missing.
        waiting_for: String,
        /// The container's last log lines.
        logs: String,
    },
}

/// Output of the test phase.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TestReport {
    /// The image tested.
    pub image: String,
    /// The recipe.
    pub recipe: String,
    /// This run's id (the `dev.kiln.run` label).
    pub run_id: String,
    /// Service or image container.
    pub kind: ContainerKind,
    /// Readiness.
    pub readiness: ReadinessOutcome,
    /// Start → ready, when it became ready.
    #[serde(rename = "readinessLatencyMs", serialize_with = "opt_millis")]
    pub readiness_latency: Option<Duration>,
    /// Wall-clock time of the ready event (for lag measurements).
    #[serde(skip)]
    pub ready_at: Option<SystemTime>,
    /// Every check, in the order run.
    pub checks: Vec<CheckResult>,
    /// All checks passed.
    pub passed: bool,
    /// The container's last log lines, read just before its removal.
    pub logs: String,
    /// Whole phase, container creation to removal.
    #[serde(rename = "durationMs", serialize_with = "as_millis")]
    pub duration: Duration,
}

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

fn opt_millis<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_u64(d.as_millis() as u64),
        None => s.serialize_none(),
    }
}

impl TestReport {
    /// Failed checks.
    pub fn failures(&self) -> impl Iterator<Item = &CheckResult> {
        self.checks.iter().filter(|c| !c.passed)
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serializes")
    }

    /// A human summary: one line per check, failure details indented.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "test {} ({}), {} container, run {}",
            self.image,
            self.recipe,
            self.kind.as_str(),
            self.run_id
        );
        for c in &self.checks {
            let mark = match (c.skipped, c.passed) {
                (true, _) => "SKIP",
                (false, true) => "PASS",
                (false, false) => "FAIL",
            };
            let _ = writeln!(
                out,
                "  {mark} {:<14} {} ({})",
                c.kind.as_str(),
                c.name,
                fmt_duration(c.duration)
            );
            if !c.passed || (c.skipped && !c.detail.is_empty()) {
                for line in c.detail.lines() {
                    let _ = writeln!(out, "       {line}");
                }
            }
        }
        let failed = self.failures().count();
        let _ = writeln!(
            out,
            "{}: {} checks, {} failed, in {}",
            if self.passed { "passed" } else { "FAILED" },
            self.checks.len(),
            failed,
            fmt_duration(self.duration)
        );
        out
    }

    /// JUnit XML (one `<testsuite>`, one `<testcase>` per check).
    pub fn to_junit(&self) -> String {
        let failures = self.failures().count();
        let skipped = self.checks.iter().filter(|c| c.skipped).count();
        let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            x,
            "<testsuites name=\"kiln\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\" time=\"{:.3}\">",
            self.checks.len(),
            self.duration.as_secs_f64()
        );
        let _ = writeln!(
            x,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" time=\"{:.3}\">",
            xml_escape(&format!("kiln test {} ({})", self.recipe, self.image)),
            self.checks.len(),
            self.duration.as_secs_f64()
        );
        let _ = writeln!(
            x,
            "    <properties><property name=\"run\" value=\"{}\"/><property name=\"container\" value=\"{}\"/></properties>",
            xml_escape(&self.run_id),
            self.kind.as_str()
        );
        for c in &self.checks {
            let _ = write!(
                x,
                "    <testcase name=\"{}\" classname=\"{}.{}\" time=\"{:.3}\"",
                xml_escape(&c.name),
                xml_escape(&self.recipe),
                c.kind.as_str(),
                c.duration.as_secs_f64()
            );
            if c.skipped {
                let _ = writeln!(
                    x,
                    ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                    xml_escape(&c.detail)
                );
            } else if !c.passed {
                let first = c.detail.lines().next().unwrap_or("failed");
                let _ = writeln!(
                    x,
                    ">\n      <failure message=\"{}\" type=\"{}\">{}</failure>\n    </testcase>",
                    xml_escape(first),
                    c.kind.as_str(),
                    xml_escape(&c.detail)
                );
            } else {
                x.push_str("/>\n");
            }
        }
        x.push_str("  </testsuite>\n</testsuites>\n");
        x
    }
}

/// Escapes text for XML attributes and content; characters XML 1.0 cannot
/// hold at all (most C0 controls) become U+FFFD.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(ch),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// `12 ms`, `1.52 s`.
pub fn fmt_duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> TestReport {
        TestReport {
            image: "img:1".into(),
            recipe: "r<&>".into(),
            run_id: "abc".into(),
            kind: ContainerKind::Service,
            readiness: ReadinessOutcome::Ready {
                latency: Duration::from_millis(20),
            },
            readiness_latency: Some(Duration::from_millis(20)),
            ready_at: None,
            checks: vec![
                CheckResult {
                    name: "port \"8080\"".into(),
                    kind: CheckKind::Readiness,
                    passed: true,
                    skipped: false,
                    duration: Duration::from_millis(20),
                    detail: String::new(),
                },
                CheckResult {
                    name: "c/step".into(),
                    kind: CheckKind::ComponentStep,
                    passed: false,
                    skipped: false,
                    duration: Duration::from_millis(1500),
                    detail: "exit 1\n<oops> \u{1b}[31m".into(),
                },
            ],
            passed: false,
            logs: String::new(),
            duration: Duration::from_secs(2),
        }
    }

    #[test]
    fn junit_is_escaped() {
        let x = report().to_junit();
        assert!(x.contains("name=\"port &quot;8080&quot;\""), "{x}");
        assert!(x.contains("&lt;oops&gt; \u{FFFD}[31m"), "{x}");
        assert!(x.contains("classname=\"r&lt;&amp;&gt;.component\""), "{x}");
        assert!(x.contains("failures=\"1\""), "{x}");
        assert!(!x.contains('\u{1b}'));
    }

    #[test]
    fn json_has_millis() {
        let j: serde_json::Value = serde_json::from_str(&report().to_json()).unwrap();
        assert_eq!(j["readinessLatencyMs"], 20);
        assert_eq!(j["checks"][1]["durationMs"], 1500);
        assert_eq!(j["readiness"]["status"], "ready");
    }

    #[test]
    fn summary_shows_failures() {
        let s = report().summary();
        assert!(
            s.contains("FAIL component      c/step (1.52 s)") || s.contains("FAIL component"),
            "{s}"
        );
        assert!(s.contains("FAILED: 2 checks, 1 failed"), "{s}");
    }
}
