//! container-structure-test schema v2, read word for word so existing test
//! files work unchanged (`commandTests`, `fileExistenceTests`,
//! `fileContentTests`, `metadataTest`, `globalEnvVars`), plus kiln's
//! `httpTests`. `licenseTests` and `containerRunOptions` are refused by name:
//! kiln runs one hardened container and cannot honour them.
//!
//! Parsed through [`crate::yaml::decode`]; every regex is checked at load
//! time so a typo is a positioned error, not a failing test.

use std::path::Path;

use regex::Regex;
use serde::Deserialize;

use crate::diagnostic::Diagnostic;

/// The only schema version accepted.
pub const SCHEMA_VERSION: &str = "2.0.0";

/// One structure-test file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StructureTests {
    /// Must be `2.0.0`.
    pub schema_version: String,
    /// Environment for every command test.
    #[serde(default)]
    pub global_env_vars: Vec<EnvVar>,
    /// Commands run in the container.
    #[serde(default)]
    pub command_tests: Vec<CommandTest>,
    /// Files that must (not) exist.
    #[serde(default)]
    pub file_existence_tests: Vec<FileExistenceTest>,
    /// File contents.
    #[serde(default)]
    pub file_content_tests: Vec<FileContentTest>,
    /// Image configuration.
    #[serde(default)]
    pub metadata_test: Option<MetadataTest>,
    /// kiln extension: HTTP requests to the test port.
    #[serde(default)]
    pub http_tests: Vec<HttpTest>,
}

/// `key`/`value` pair (env vars and labels).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EnvVar {
    /// Name.
    pub key: String,
    /// Value (a regex when `isRegex`).
    #[serde(default)]
    pub value: String,
    /// Match `value` as a regex (metadata tests).
    #[serde(default)]
    pub is_regex: bool,
}

/// A `commandTests` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CommandTest {
    /// Name.
    pub name: String,
    /// Commands run before, each `[cmd, args…]`.
    #[serde(default)]
    pub setup: Vec<Vec<String>>,
    /// Commands run after.
    #[serde(default)]
    pub teardown: Vec<Vec<String>>,
    /// Extra environment.
    #[serde(default)]
    pub env_vars: Vec<EnvVar>,
    /// Expected exit code (default 0).
    #[serde(default)]
    pub exit_code: i64,
    /// The program.
    pub command: String,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Regexes stdout must match.
    #[serde(default)]
    pub expected_output: Vec<String>,
    /// Regexes stdout must not match.
    #[serde(default)]
    pub excluded_output: Vec<String>,
    /// Regexes stderr must match.
    #[serde(default)]
    pub expected_error: Vec<String>,
    /// Regexes stderr must not match.
    #[serde(default)]
    pub excluded_error: Vec<String>,
}

fn yes() -> bool {
    true
}

/// A `fileExistenceTests` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FileExistenceTest {
    /// Name.
    pub name: String,
    /// Path in the container.
    pub path: String,
    /// Default true, as in container-structure-test.
    #[serde(default = "yes")]
    pub should_exist: bool,
    /// Go `FileMode` string, e.g. `-rw-r--r--`, `drwxr-xr-x`.
    #[serde(default)]
    pub permissions: Option<String>,
    /// Owner uid.
    #[serde(default)]
    pub uid: Option<i64>,
    /// Owner gid.
    #[serde(default)]
    pub gid: Option<i64>,
    /// `any`, `owner`, `group` or `other`.
    #[serde(default)]
    pub is_executable_by: Option<String>,
}

/// A `fileContentTests` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FileContentTest {
    /// Name.
    pub name: String,
    /// Path in the container.
    pub path: String,
    /// Regexes the content must match.
    #[serde(default)]
    pub expected_contents: Vec<String>,
    /// Regexes the content must not match.
    #[serde(default)]
    pub excluded_contents: Vec<String>,
}

/// The `metadataTest`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MetadataTest {
    /// Env vars the image sets.
    #[serde(default)]
    pub env: Vec<EnvVar>,
    /// Labels the image has.
    #[serde(default)]
    pub labels: Vec<EnvVar>,
    /// Ports the image exposes (`8080` or `8080/tcp`).
    #[serde(default)]
    pub exposed_ports: Vec<String>,
    /// Ports the image must not expose.
    #[serde(default)]
    pub unexposed_ports: Vec<String>,
    /// Volumes the image declares.
    #[serde(default)]
    pub volumes: Vec<String>,
    /// Volumes the image must not declare.
    #[serde(default)]
    pub unmounted_volumes: Vec<String>,
    /// Exact entrypoint.
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    /// Exact cmd.
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    /// Working directory.
    #[serde(default)]
    pub workdir: Option<String>,
    /// User.
    #[serde(default)]
    pub user: Option<String>,
}

fn status_200() -> u16 {
    200
}

/// kiln's `httpTests` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpTest {
    /// Name.
    pub name: String,
    /// Path, starting with `/`.
    pub path: String,
    /// Expected status (default 200).
    #[serde(default = "status_200")]
    pub expect_status: u16,
    /// The body must contain this text.
    #[serde(default)]
    pub expect_body_contains: Option<String>,
}

impl StructureTests {
    /// Every regex in the file, with the test naming it.
    fn regexes(&self) -> Vec<(&str, &str)> {
        let mut out = Vec::new();
        for t in &self.command_tests {
            for r in t.expected_output.iter().chain(&t.excluded_output) {
                out.push((t.name.as_str(), r.as_str()));
            }
            for r in t.expected_error.iter().chain(&t.excluded_error) {
                out.push((t.name.as_str(), r.as_str()));
            }
        }
        for t in &self.file_content_tests {
            for r in t.expected_contents.iter().chain(&t.excluded_contents) {
                out.push((t.name.as_str(), r.as_str()));
            }
        }
        if let Some(m) = &self.metadata_test {
            for e in m.env.iter().chain(&m.labels).filter(|e| e.is_regex) {
                out.push(("metadataTest", e.value.as_str()));
            }
        }
        out
    }
}

/// Parses and checks a structure-test file's text.
pub fn parse(path: &Path, source: &str) -> Result<StructureTests, Diagnostic> {
    let tests: StructureTests = crate::yaml::decode(path, source)?;
    let at = |needle: &str, msg: String| match source.lines().position(|l| l.contains(needle)) {
        Some(i) => Diagnostic::at(path, source, i as u64 + 1, 1, msg),
        None => Diagnostic::file(path, msg),
    };
    if tests.schema_version.trim() != SCHEMA_VERSION {
        return Err(at(
            "schemaVersion",
            format!(
                "unsupported schemaVersion `{}`; kiln reads container-structure-test schema {SCHEMA_VERSION}",
                tests.schema_version
            ),
        ));
    }
    for (test, re) in tests.regexes() {
        if let Err(e) = Regex::new(re) {
            let first = e
                .to_string()
                .lines()
                .last()
                .unwrap_or("")
                .trim()
                .to_string();
            return Err(at(
                re,
                format!("invalid regex `{re}` in test `{test}`: {first}"),
            ));
        }
    }
    for t in &tests.file_existence_tests {
        if let Some(x) = &t.is_executable_by
            && !matches!(x.as_str(), "any" | "owner" | "group" | "other")
        {
            return Err(at(
                "isExecutableBy",
                format!(
                    "isExecutableBy `{x}` in test `{}` must be any, owner, group or other",
                    t.name
                ),
            ));
        }
    }
    for t in &tests.http_tests {
        if !t.path.starts_with('/') {
            return Err(at(
                &t.path,
                format!("http test `{}`: path must start with `/`", t.name),
            ));
        }
    }
    Ok(tests)
}

/// Reads and parses a structure-test file.
pub fn load(path: &Path) -> Result<StructureTests, Diagnostic> {
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    if size > crate::project::MAX_FILE_BYTES {
        return Err(Diagnostic::file(
            path,
            format!(
                "structure-test file is {size} bytes; the limit is {} bytes",
                crate::project::MAX_FILE_BYTES
            ),
        ));
    }
    let source = std::fs::read_to_string(path)
        .map_err(|e| Diagnostic::file(path, format!("cannot read structure-test file: {e}")))?;
    parse(path, &source)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CST: &str = r#"
schemaVersion: '2.0.0'
globalEnvVars:
  - key: A
    value: b
commandTests:
  - name: "say hi"
    command: "echo"
    args: ["hi"]
    expectedOutput: ["h.*"]
    exitCode: 0
    setup: [["touch", "/tmp/x"]]
fileExistenceTests:
  - name: root
    path: /
    permissions: drwxr-xr-x
    uid: 0
    isExecutableBy: any
  - name: gone
    path: /nope
    shouldExist: false
fileContentTests:
  - name: passwd
    path: /etc/passwd
    expectedContents: ["root:"]
metadataTest:
  env:
    - key: PATH
      value: "/usr/.*"
      isRegex: true
  exposedPorts: ["8080"]
  cmd: ["httpd"]
  workdir: /site
httpTests:
  - name: home
    path: /
    expectBodyContains: Hello
"#;

    #[test]
    fn reads_cst_files_word_for_word() {
        let t = parse(Path::new("t.yaml"), CST).unwrap();
        assert_eq!(
            t.command_tests[0].setup,
            vec![vec!["touch".to_string(), "/tmp/x".into()]]
        );
        assert!(t.file_existence_tests[0].should_exist);
        assert!(!t.file_existence_tests[1].should_exist);
        assert_eq!(t.http_tests[0].expect_status, 200);
        assert_eq!(
            t.metadata_test.unwrap().cmd.unwrap(),
            vec!["httpd".to_string()]
        );
    }

    #[test]
    fn refuses_bad_regex_and_version() {
        let d = parse(Path::new("t.yaml"), &CST.replace("h.*", "h(")).unwrap_err();
        assert!(
            d.message.contains("invalid regex `h(` in test `say hi`"),
            "{d}"
        );
        let d = parse(Path::new("t.yaml"), &CST.replace("'2.0.0'", "'1.0.0'")).unwrap_err();
        assert_eq!(d.line, 2, "{d}");
        let d = parse(
            Path::new("t.yaml"),
            "schemaVersion: 2.0.0\nlicenseTests: []\n",
        )
        .unwrap_err();
        assert!(d.message.contains("licenseTests"), "{d}");
    }
}
