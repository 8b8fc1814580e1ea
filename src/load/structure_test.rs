//! container-structure-test files as CST reads them (`pkg/types/v1` and
//! `v2`): schema `1.0.0` (a command is a list) and `2.0.0` (`command` +
//! `args`, `metadataTest`, `containerRunOptions`), plus kiln's `httpTests`.
//! Field names and defaults are CST's; [`super::structure_check`] turns a
//! file into a [`StructureFile`].

use std::path::PathBuf;

use serde::Deserialize;

use crate::diagnostic::Diagnostic;
use crate::digest::Digest;

/// A loaded structure-test file: what was read, hashed and will be tested.
#[derive(Debug, Clone, PartialEq)]
pub struct StructureFile {
    /// Absolute path.
    pub path: PathBuf,
    /// Path relative to the project root (reports, records).
    pub shown: PathBuf,
    /// sha256 of the bytes parsed (the bytes that are tested).
    pub digest: Digest,
    /// The tests.
    pub tests: StructureTests,
    /// Unknown keys, skipped with a warning (`kiln validate --strict` refuses them).
    pub warnings: Vec<Diagnostic>,
    /// `containerRunOptions.envFile`, read from the project at load time.
    pub env_file: Vec<(String, String)>,
    /// `containerRunOptions.bindMounts` with the host side confined to the
    /// project: `(absolute host path, container path, options)`.
    pub bind_mounts: Vec<(PathBuf, String, Option<String>)>,
    /// Where `privileged: true` / `bindMounts` are written (1-based lines), for
    /// positioned errors when the operator does not allow them.
    pub privileged_line: Option<u64>,
    /// See [`StructureFile::privileged_line`].
    pub bind_mounts_line: Option<u64>,
}

/// One structure-test file, schema 1.0.0 or 2.0.0.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StructureTests {
    /// `1.0.0` or `2.0.0`.
    pub schema_version: String,
    /// Environment for every test (expanded against the image's environment).
    #[serde(default)]
    pub global_env_vars: Vec<EnvVar>,
    /// Commands, each in a fresh container.
    #[serde(default)]
    pub command_tests: Vec<CommandTest>,
    /// Files that must (not) exist.
    #[serde(default)]
    pub file_existence_tests: Vec<FileExistenceTest>,
    /// File contents.
    #[serde(default)]
    pub file_content_tests: Vec<FileContentTest>,
    /// Image configuration (2.0.0).
    #[serde(default)]
    pub metadata_test: Option<MetadataTest>,
    /// Licence checks (Debian copyright files).
    #[serde(default)]
    pub license_tests: Vec<LicenseTest>,
    /// How command tests' containers run (2.0.0).
    #[serde(default)]
    pub container_run_options: Option<ContainerRunOptions>,
    /// kiln extension: HTTP requests to the service's test port.
    #[serde(default)]
    pub http_tests: Vec<HttpTest>,
}

/// `key`/`value` pair (env vars and labels).
#[derive(Debug, Clone, PartialEq, Deserialize)]
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

/// `command:` — a string in 2.0.0, `[program, args…]` in 1.0.0;
/// deserialized in `scalar_forms.rs`.
#[derive(Debug, Clone, PartialEq)]
pub enum CommandSpec {
    /// 2.0.0: the program; arguments in `args`.
    Program(String),
    /// 1.0.0: the program and its arguments.
    Argv(Vec<String>),
}

/// A `commandTests` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CommandTest {
    /// Name.
    pub name: String,
    /// Commands run first, each `[cmd, args…]`.
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
    /// The program (see [`CommandSpec`]).
    pub command: CommandSpec,
    /// Its arguments (2.0.0).
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

impl CommandTest {
    /// Program and arguments, whichever schema wrote them.
    pub fn argv(&self) -> Vec<String> {
        match &self.command {
            CommandSpec::Program(p) => std::iter::once(p.clone())
                .chain(self.args.iter().cloned())
                .collect(),
            CommandSpec::Argv(v) => v.clone(),
        }
    }
}

fn yes() -> bool {
    true
}

/// A `fileExistenceTests` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FileExistenceTest {
    /// Name.
    pub name: String,
    /// Path in the image (`$VAR` expanded from the image's environment).
    pub path: String,
    /// Default true, as in CST.
    #[serde(default = "yes")]
    pub should_exist: bool,
    /// Go `FileMode` string, e.g. `-rw-r--r--`, `drwxr-xr-x`.
    #[serde(default)]
    pub permissions: Option<String>,
    /// Owner uid (2.0.0).
    #[serde(default)]
    pub uid: Option<i64>,
    /// Owner gid (2.0.0).
    #[serde(default)]
    pub gid: Option<i64>,
    /// `any`, `owner`, `group` or `other` (2.0.0).
    #[serde(default)]
    pub is_executable_by: Option<String>,
}

/// A `fileContentTests` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FileContentTest {
    /// Name.
    pub name: String,
    /// Path in the image.
    pub path: String,
    /// Regexes the content must match.
    #[serde(default)]
    pub expected_contents: Vec<String>,
    /// Regexes the content must not match.
    #[serde(default)]
    pub excluded_contents: Vec<String>,
}

/// The `metadataTest` (2.0.0).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MetadataTest {
    /// Env vars the image sets.
    #[serde(default)]
    pub env_vars: Vec<EnvVar>,
    /// Env vars the image must not set (only `key` matters).
    #[serde(default)]
    pub unbound_env_vars: Vec<EnvVar>,
    /// Labels the image has.
    #[serde(default)]
    pub labels: Vec<EnvVar>,
    /// Port numbers the image exposes (CST compares the number only: `8080`).
    #[serde(default)]
    pub exposed_ports: Vec<String>,
    /// Port numbers the image must not expose.
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
    /// Working directory (empty: not checked).
    #[serde(default)]
    pub workdir: Option<String>,
    /// User (empty: not checked).
    #[serde(default)]
    pub user: Option<String>,
}

/// A `licenseTests` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LicenseTest {
    /// Check every package under `/usr/share/doc` (Debian's copyright files).
    #[serde(default)]
    pub debian: bool,
    /// More licence files to check. An empty `files:` (YAML null) is an
    /// empty list, as in CST's Go YAML decoder.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub files: Vec<String>,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

/// `containerRunOptions` (2.0.0): how command tests' containers run.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ContainerRunOptions {
    /// `--user`.
    #[serde(default)]
    pub user: Option<String>,
    /// `--privileged` (only when the operator allows it).
    #[serde(default)]
    pub privileged: bool,
    /// `--tty` (stdout and stderr arrive merged, as with docker).
    #[serde(default)]
    pub allocate_tty: bool,
    /// Names of variables passed through from kiln's own environment.
    #[serde(default)]
    pub env_vars: Vec<String>,
    /// A dotenv file in the project.
    #[serde(default)]
    pub env_file: Option<String>,
    /// `--cap-add`.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// `host:container[:options]`, host paths inside the project (only when
    /// the operator allows bind mounts).
    #[serde(default)]
    pub bind_mounts: Vec<String>,
}

fn status_200() -> u16 {
    200
}

/// kiln's `httpTests` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
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
    /// Whether this is a schema 1.0.0 file.
    pub fn is_v1(&self) -> bool {
        self.schema_version.trim() == "1.0.0"
    }

    /// Every regex in the file, with the test naming it.
    pub(super) fn regexes(&self) -> Vec<(&str, &str)> {
        let mut out = Vec::new();
        for t in &self.command_tests {
            for r in t
                .expected_output
                .iter()
                .chain(&t.excluded_output)
                .chain(&t.expected_error)
                .chain(&t.excluded_error)
            {
                out.push((t.name.as_str(), r.as_str()));
            }
        }
        for t in &self.file_content_tests {
            for r in t.expected_contents.iter().chain(&t.excluded_contents) {
                out.push((t.name.as_str(), r.as_str()));
            }
        }
        if let Some(m) = &self.metadata_test {
            for e in m.env_vars.iter().chain(&m.labels).filter(|e| e.is_regex) {
                out.push(("metadataTest", e.value.as_str()));
            }
        }
        out
    }
}

impl super::TestConfig {
    /// Unknown-key warnings of every structure-test file.
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.structure_tests.iter().flat_map(|f| &f.warnings)
    }
}
