//! What the operator lets structure-test files ask for. `privileged: true`
//! and `bindMounts` in `containerRunOptions` loosen the test container's
//! isolation, so a project file alone can never turn them on: the operator
//! allows them in the operator config (`testContainers: {allowPrivileged:
//! true, allowBindMounts: true}`), which lives outside the project.

use crate::diagnostic::Diagnostic;
use crate::load::StructureFile;

/// Operator allowances for `containerRunOptions`; both off by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TestPolicy {
    /// `privileged: true` may run.
    #[serde(default)]
    pub allow_privileged: bool,
    /// `bindMounts` (confined to the project) may run.
    #[serde(default)]
    pub allow_bind_mounts: bool,
}

impl TestPolicy {
    /// Refuses the first file that asks for more than this policy allows,
    /// naming the file, line and the operator setting that would allow it.
    pub fn check(&self, files: &[StructureFile]) -> Result<(), Diagnostic> {
        for f in files {
            let refuse = |line: u64, what: &str, key: &str| {
                Diagnostic {
                    line,
                    column: 1,
                    ..Diagnostic::file(
                        &f.shown,
                        format!("containerRunOptions.{what} is not allowed by the operator"),
                    )
                }
                .with_hint(format!(
                    "the operator allows it with `testContainers: {{{key}: true}}` in the operator config (--config); a project file cannot"
                ))
            };
            if let Some(line) = f.privileged_line
                && !self.allow_privileged
            {
                return Err(refuse(line, "privileged", "allowPrivileged"));
            }
            if let Some(line) = f.bind_mounts_line
                && !self.allow_bind_mounts
            {
                return Err(refuse(line, "bindMounts", "allowBindMounts"));
            }
        }
        Ok(())
    }
}
