//! Scanner hooks: commands from the operator config that get the image as a
//! docker-archive path and print findings on stdout, as SARIF 2.1.0 or as
//! kiln's JSON. A hook runs without a shell, with a timeout, killed when
//! dropped. Its exit status is not a verdict (scanners exit non-zero when
//! they find something): a report that parses is used; no report is an
//! error naming the hook, its exit status and the end of its stderr.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::{Finding, FindingsError, Severity};
use crate::operator::findings::{HookFormat, ScannerHook};

/// Most stdout read from a hook.
const MAX_OUTPUT: usize = 64 << 20;

/// Runs `hook` on the docker-archive at `archive` and returns its findings.
pub async fn run(hook: &ScannerHook, archive: &Path) -> Result<Vec<Finding>, FindingsError> {
    let fail = |problem: String| FindingsError::Hook {
        name: hook.name.clone(),
        problem,
    };
    let path = archive.display().to_string();
    let mut args: Vec<String> = hook.command[1..]
        .iter()
        .map(|a| a.replace("{archive}", &path))
        .collect();
    if !hook.command.iter().any(|a| a.contains("{archive}")) {
        args.push(path.clone());
    }
    let child = tokio::process::Command::new(&hook.command[0])
        .args(&args)
        .env("KILN_IMAGE_ARCHIVE", &path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| fail(format!("cannot start `{}`: {e}", hook.command[0])))?;
    let limit = Duration::from_secs(hook.timeout_seconds);
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .map_err(|_| fail(format!("no report within {} s", hook.timeout_seconds)))?
        .map_err(|e| fail(format!("cannot read its output: {e}")))?;
    if out.stdout.len() > MAX_OUTPUT {
        return Err(fail(format!("printed more than {MAX_OUTPUT} bytes")));
    }
    let parsed = match hook.format {
        HookFormat::Sarif => parse_sarif(&hook.name, &out.stdout),
        HookFormat::Json => parse_json(&hook.name, &out.stdout),
    };
    parsed.map_err(|e| {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: String = stderr
            .lines()
            .rev()
            .take(5)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join(" | ");
        fail(format!("{e} (exit status {}; stderr: {tail})", out.status))
    })
}

/// A SARIF level or a CVSS `security-severity` as a severity.
fn severity_of(level: Option<&str>, security: Option<&Value>) -> Severity {
    let score = security.and_then(|v| match v {
        Value::String(s) => s.trim().parse::<f64>().ok(),
        v => v.as_f64(),
    });
    if let Some(s) = score {
        return match s {
            s if s >= 9.0 => Severity::Critical,
            s if s >= 7.0 => Severity::High,
            s if s >= 4.0 => Severity::Medium,
            s if s > 0.0 => Severity::Low,
            _ => Severity::Info,
        };
    }
    match level.unwrap_or("warning") {
        "error" => Severity::High,
        "warning" => Severity::Medium,
        "note" => Severity::Low,
        _ => Severity::Info,
    }
}

/// SARIF 2.1.0: `runs[].results[]` with `ruleId`, `level`, `message.text`,
/// the first physical location, and `security-severity` from the result's
/// or its rule's `properties`.
pub fn parse_sarif(source: &str, bytes: &[u8]) -> Result<Vec<Finding>, String> {
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| format!("not SARIF JSON: {e}"))?;
    let runs = doc
        .get("runs")
        .and_then(Value::as_array)
        .ok_or("not a SARIF log: no `runs` array")?;
    let mut out = Vec::new();
    for run in runs {
        let rules = run
            .pointer("/tool/driver/rules")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let rule_of = |id: &str| {
            rules
                .iter()
                .find(|r| r.get("id").and_then(Value::as_str) == Some(id))
        };
        for r in run
            .get("results")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let rule = r.get("ruleId").and_then(Value::as_str).unwrap_or("unnamed");
            let def = rule_of(rule);
            let level = r.get("level").and_then(Value::as_str).or_else(|| {
                def.and_then(|d| d.pointer("/defaultConfiguration/level"))
                    .and_then(Value::as_str)
            });
            let security = r
                .pointer("/properties/security-severity")
                .or_else(|| def.and_then(|d| d.pointer("/properties/security-severity")));
            let loc = r.pointer("/locations/0/physicalLocation");
            let path = loc
                .and_then(|l| l.pointer("/artifactLocation/uri"))
                .and_then(Value::as_str)
                .map(str::to_string);
            let line = loc
                .and_then(|l| l.pointer("/region/startLine"))
                .and_then(Value::as_u64);
            let message = r
                .pointer("/message/text")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let key = format!("{}:{}", line.unwrap_or(0), message);
            let mut f = Finding::new(source, rule, severity_of(level, security), path, &key);
            f.line = line;
            f.message = message;
            out.push(f);
        }
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonReport {
    findings: Vec<JsonFinding>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonFinding {
    rule: String,
    severity: Severity,
    message: String,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    line: Option<u64>,
    #[serde(default)]
    id: Option<String>,
}

/// kiln's JSON: `{"findings": [{rule, severity, message, path?, line?, id?}]}`.
pub fn parse_json(source: &str, bytes: &[u8]) -> Result<Vec<Finding>, String> {
    let r: JsonReport =
        serde_json::from_slice(bytes).map_err(|e| format!("not kiln findings JSON: {e}"))?;
    Ok(r.findings
        .into_iter()
        .map(|j| {
            let key = format!("{}:{}", j.line.unwrap_or(0), j.message);
            let mut f = Finding::new(source, &j.rule, j.severity, j.path, &key);
            if let Some(id) = j.id {
                f.id = id;
            }
            f.line = j.line;
            f.message = j.message;
            f
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sarif_levels_and_security_severity_map_to_severities() {
        let sarif = serde_json::json!({
            "version": "2.1.0",
            "runs": [{
                "tool": {"driver": {"name": "t", "rules": [
                    {"id": "CVE-1", "properties": {"security-severity": "9.8"}},
                    {"id": "R2", "defaultConfiguration": {"level": "note"}}
                ]}},
                "results": [
                    {"ruleId": "CVE-1", "message": {"text": "bad lib"},
                     "locations": [{"physicalLocation": {"artifactLocation": {"uri": "usr/lib/x.so"}, "region": {"startLine": 3}}}]},
                    {"ruleId": "R2", "message": {"text": "meh"}},
                    {"ruleId": "R3", "level": "error", "message": {"text": "err"}}
                ]
            }]
        });
        let f = parse_sarif("t", sarif.to_string().as_bytes()).unwrap();
        let got: Vec<_> = f.iter().map(|f| (f.rule.as_str(), f.severity)).collect();
        assert_eq!(
            got,
            [
                ("CVE-1", Severity::Critical),
                ("R2", Severity::Low),
                ("R3", Severity::High)
            ]
        );
        assert_eq!(
            (f[0].path.as_deref(), f[0].line),
            (Some("usr/lib/x.so"), Some(3))
        );
        assert!(parse_sarif("t", b"{}").unwrap_err().contains("runs"));
    }

    #[test]
    fn kiln_json_is_strict() {
        let ok = br#"{"findings":[{"rule":"r","severity":"high","message":"m","path":"/x"}]}"#;
        assert_eq!(parse_json("t", ok).unwrap()[0].severity, Severity::High);
        let bad = br#"{"findings":[{"rule":"r","severity":"severe","message":"m"}]}"#;
        assert!(parse_json("t", bad).is_err());
    }
}
