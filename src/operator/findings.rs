//! `findings:` in the operator config: the findings gate between the test
//! stage and any push — kiln's built-in secret scan (on unless
//! `secrets: false`), scanner hooks (commands that get the image as a
//! docker-archive and print SARIF or JSON findings), and the severity at
//! which a finding blocks the run (`failOn`, default `high`). The project
//! can only ignore findings, in its reviewed `.kiln-ignore.yaml`.

use serde::Deserialize;

use crate::findings::Severity;

/// `findings:` as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FindingsConfig {
    /// Run the built-in secret scan (every layer, the config, the history).
    #[serde(default = "yes")]
    pub secrets: bool,
    /// Findings at or above this severity block the run.
    #[serde(default = "default_fail_on")]
    pub fail_on: Severity,
    /// Scanner hooks, run in order.
    #[serde(default)]
    pub scanners: Vec<ScannerHook>,
}

/// One scanner hook.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ScannerHook {
    /// Name shown in findings and the record.
    pub name: String,
    /// Program and arguments; `{archive}` in an argument becomes the
    /// docker-archive's path (appended as the last argument when no
    /// argument has it). Run without a shell.
    pub command: Vec<String>,
    /// What the command prints on stdout.
    #[serde(default)]
    pub format: HookFormat,
    /// Longest the command may run. Default 600.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
}

/// The output format of a scanner hook.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HookFormat {
    /// SARIF 2.1.0 (`runs[].results[]`).
    #[default]
    Sarif,
    /// kiln's JSON: `{"findings": [{rule, severity, message, path?, line?, id?}]}`.
    Json,
}

fn yes() -> bool {
    true
}

fn default_fail_on() -> Severity {
    Severity::High
}

fn default_timeout() -> u64 {
    600
}

impl Default for FindingsConfig {
    fn default() -> Self {
        FindingsConfig {
            secrets: true,
            fail_on: default_fail_on(),
            scanners: Vec::new(),
        }
    }
}

impl FindingsConfig {
    /// Checks the hooks (a name, a program, names used once); the problem
    /// names the key.
    pub fn validate(&self) -> Result<(), String> {
        let mut names = std::collections::BTreeSet::new();
        for (i, h) in self.scanners.iter().enumerate() {
            if h.name.trim().is_empty() || h.command.first().is_none_or(|c| c.is_empty()) {
                return Err(format!(
                    "`findings.scanners[{i}]` needs a `name` and a non-empty `command`"
                ));
            }
            if h.timeout_seconds == 0 {
                return Err(format!(
                    "`findings.scanners[{i}].timeoutSeconds` must be at least 1"
                ));
            }
            if !names.insert(h.name.as_str()) {
                return Err(format!(
                    "`findings.scanners`: the name `{}` is used twice",
                    h.name
                ));
            }
        }
        Ok(())
    }
}
