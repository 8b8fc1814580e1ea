//! What the operator lets structure-test files ask for. `privileged: true`
//! and `bindMounts` in `containerRunOptions` loosen the test container's
//! isolation, so a project file alone can never turn them on: the operator
//! allows them in kiln's own environment (`KILN_TEST_ALLOW_PRIVILEGED=1`,
//! `KILN_TEST_ALLOW_BIND_MOUNTS=1`), which the project cannot set.

use crate::diagnostic::Diagnostic;
use crate::load::StructureFile;

/// Environment variable that allows `privileged: true`.
pub const ALLOW_PRIVILEGED: &str = "KILN_TEST_ALLOW_PRIVILEGED";
/// Environment variable that allows `bindMounts`.
pub const ALLOW_BIND_MOUNTS: &str = "KILN_TEST_ALLOW_BIND_MOUNTS";

/// Operator allowances for `containerRunOptions`; both off by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TestPolicy {
    /// `privileged: true` may run.
    pub allow_privileged: bool,
    /// `bindMounts` (confined to the project) may run.
    pub allow_bind_mounts: bool,
}

fn flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| matches!(v.as_str(), "1" | "true" | "yes"))
}

impl TestPolicy {
    /// The policy from kiln's environment.
    pub fn from_env() -> Self {
        TestPolicy {
            allow_privileged: flag(ALLOW_PRIVILEGED),
            allow_bind_mounts: flag(ALLOW_BIND_MOUNTS),
        }
    }

    /// Refuses the first file that asks for more than this policy allows,
    /// naming the file, line and the variable that would allow it.
    pub fn check(&self, files: &[StructureFile]) -> Result<(), Diagnostic> {
        for f in files {
            let refuse = |line: u64, what: &str, var: &str| {
                Diagnostic {
                    line,
                    column: 1,
                    ..Diagnostic::file(
                        &f.shown,
                        format!("containerRunOptions.{what} is not allowed by the operator"),
                    )
                }
                .with_hint(format!(
                    "the operator allows it by starting kiln with {var}=1; a project file cannot"
                ))
            };
            if let Some(line) = f.privileged_line
                && !self.allow_privileged
            {
                return Err(refuse(line, "privileged", ALLOW_PRIVILEGED));
            }
            if let Some(line) = f.bind_mounts_line
                && !self.allow_bind_mounts
            {
                return Err(refuse(line, "bindMounts", ALLOW_BIND_MOUNTS));
            }
        }
        Ok(())
    }
}
