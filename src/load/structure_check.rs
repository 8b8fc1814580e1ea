//! Loads a structure-test file the way container-structure-test does, with
//! kiln's positions: read once through [`Project::read`] (the digest is of
//! those bytes), schema picked by `schemaVersion`, unknown keys reported as
//! warnings at `path:line:column` (and skipped), every other problem a
//! positioned error, `containerRunOptions` paths confined to the project.

use std::path::Path;

use regex::Regex;

use super::structure_test::{CommandSpec, StructureFile, StructureTests};
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::digest::Digest;
use crate::project::Project;

/// Schema versions CST (and kiln) read.
pub const SCHEMA_VERSIONS: [&str; 2] = ["1.0.0", "2.0.0"];
/// Most unknown keys skipped in one file before kiln gives up.
const MAX_UNKNOWN: usize = 64;

/// Reads, parses and checks the structure-test file `rel` (as written in the
/// recipe, already confined to `abs`).
pub fn load(project: &Project, abs: &Path) -> Result<StructureFile, Diagnostics> {
    let shown = project.display(abs);
    let source = project
        .read(abs)
        .map_err(|e| Diagnostics(vec![Diagnostic::file(&shown, e.to_string())]))?;
    let (tests, warnings) = parse(&shown, &source)?;
    let mut diags = Diagnostics::default();
    let mut file = StructureFile {
        path: abs.to_path_buf(),
        shown: shown.clone(),
        digest: Digest::of(source.as_bytes()),
        tests,
        warnings,
        env_file: Vec::new(),
        bind_mounts: Vec::new(),
        privileged_line: None,
        bind_mounts_line: None,
    };
    run_options(project, &source, &mut file, &mut diags);
    diags.into_result(file)
}

/// Parses a structure-test file's text: the tests and the unknown-key warnings.
pub fn parse(path: &Path, source: &str) -> Result<(StructureTests, Vec<Diagnostic>), Diagnostics> {
    let (tests, warnings) = decode_lenient(path, source).map_err(|d| Diagnostics(vec![d]))?;
    let mut diags = Diagnostics::default();
    check(path, source, &tests, &mut diags);
    diags.into_result((tests, warnings))
}

/// Decodes strictly; each unknown key becomes a warning and is blanked out of
/// a copy of the text (line numbers kept), then decoding is retried.
fn decode_lenient(
    path: &Path,
    source: &str,
) -> Result<(StructureTests, Vec<Diagnostic>), Diagnostic> {
    let mut text = source.to_string();
    let mut warnings = Vec::new();
    loop {
        let err = match crate::yaml::decode::<StructureTests>(path, &text) {
            Ok(t) => return Ok((t, warnings)),
            Err(e) => e,
        };
        if !err.message.starts_with("unknown field")
            || err.line == 0
            || warnings.len() >= MAX_UNKNOWN
        {
            return Err(Diagnostic {
                snippet: snippet(source, err.line),
                ..err
            });
        }
        let Some(blanked) = blank_key(&text, err.line, err.column) else {
            return Err(err);
        };
        let mut w = Diagnostic::at(
            path,
            source,
            err.line,
            err.column,
            format!(
                "{}; skipped (`kiln validate --strict` refuses it)",
                err.message
                    .split(", expected")
                    .next()
                    .unwrap_or(&err.message)
            ),
        );
        w.hint = err.hint.clone();
        warnings.push(w);
        text = blanked;
    }
}

fn snippet(source: &str, line: u64) -> Option<String> {
    (line > 0).then(|| source.lines().nth(line as usize - 1).map(str::to_string))?
}

/// Replaces the key at `line`:`column` and its block value (the lines
/// indented deeper) with spaces. `None` when the key is not where a block
/// mapping key can be blanked (e.g. inside a flow mapping).
fn blank_key(text: &str, line: u64, column: u64) -> Option<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let at = (line as usize).checked_sub(1)?;
    let indent = (column as usize).checked_sub(1)?;
    let first = lines.get(at)?;
    if first.len() < indent || first[..indent].contains(['{', '[']) {
        return None;
    }
    lines[at] = first[..indent].to_string();
    for l in lines.iter_mut().skip(at + 1) {
        let trimmed = l.trim_start();
        let depth = l.len() - trimmed.len();
        // A block sequence may sit at the key's own indent (`env:\n- a`):
        // its items are still the key's value.
        let item_of_key = depth == indent && (trimmed == "-" || trimmed.starts_with("- "));
        if !trimmed.is_empty() && !trimmed.starts_with('#') && depth <= indent && !item_of_key {
            break;
        }
        l.clear();
    }
    let mut out = lines.join("\n");
    if text.ends_with('\n') {
        out.push('\n');
    }
    Some(out)
}

/// The first line (1-based) holding `needle`, for positioned errors.
fn line_of(source: &str, needle: &str) -> Option<u64> {
    source
        .lines()
        .position(|l| l.contains(needle))
        .map(|i| i as u64 + 1)
}

fn at(path: &Path, source: &str, needle: &str, msg: String) -> Diagnostic {
    // `name>field`: the first `field:` at or after the line naming the test.
    if let Some((name, field)) = needle.split_once('>') {
        let start = line_of(source, name).unwrap_or(1) as usize - 1;
        let key = format!("{field}:");
        if let Some(i) = source.lines().skip(start).position(|l| l.contains(&key)) {
            let line = (start + i) as u64 + 1;
            let col = source
                .lines()
                .nth(start + i)
                .and_then(|l| l.find(&key))
                .unwrap_or(0);
            return Diagnostic::at(path, source, line, col as u64 + 1, msg);
        }
        return at(path, source, name, msg);
    }
    match line_of(source, needle) {
        Some(line) => {
            let col = source
                .lines()
                .nth(line as usize - 1)
                .and_then(|l| l.find(needle));
            Diagnostic::at(
                path,
                source,
                line,
                col.map(|c| c as u64 + 1).unwrap_or(1),
                msg,
            )
        }
        None => Diagnostic::file(path, msg),
    }
}

/// Reports one problem: a needle to position it (see [`at`]) and a message.
type Report<'a> = dyn FnMut(&str, String) + 'a;

fn check(path: &Path, source: &str, t: &StructureTests, diags: &mut Diagnostics) {
    let mut err = |needle: &str, msg: String| diags.push(at(path, source, needle, msg));
    if check_version(t, &mut err) {
        check_commands(t, &mut err);
        check_files_and_metadata(t, &mut err);
    }
}

/// Whether the schema version is known (the other checks depend on it),
/// and the keys schema 1.0.0 lacks.
fn check_version(t: &StructureTests, err: &mut Report<'_>) -> bool {
    let version = t.schema_version.trim();
    if !SCHEMA_VERSIONS.contains(&version) {
        err(
            "schemaVersion",
            format!(
                "unsupported schemaVersion `{}`; container-structure-test schemas are {}",
                t.schema_version,
                SCHEMA_VERSIONS.join(" and ")
            ),
        );
        return false;
    }
    if t.is_v1() {
        for (present, key) in [
            (t.metadata_test.is_some(), "metadataTest"),
            (t.container_run_options.is_some(), "containerRunOptions"),
        ] {
            if present {
                err(key, format!("`{key}` needs schemaVersion 2.0.0"));
            }
        }
        for f in &t.file_existence_tests {
            if f.uid.is_some() || f.gid.is_some() || f.is_executable_by.is_some() {
                err(
                    &f.name,
                    format!(
                        "file existence test `{}`: uid, gid and isExecutableBy need schemaVersion 2.0.0",
                        f.name
                    ),
                );
            }
        }
    }
    true
}

fn check_commands(t: &StructureTests, err: &mut Report<'_>) {
    let v1 = t.is_v1();
    for c in &t.command_tests {
        if c.name.is_empty() {
            err(
                "commandTests",
                "every command test needs a non-empty name".into(),
            );
        }
        let cmd_at = format!("{}>command", c.name);
        match (&c.command, v1) {
            (CommandSpec::Program(_), true) => err(
                &cmd_at,
                format!(
                    "command test `{}`: in schema 1.0.0 `command` is a list (`[program, args…]`)",
                    c.name
                ),
            ),
            (CommandSpec::Argv(_), false) => err(
                &cmd_at,
                format!(
                    "command test `{}`: in schema 2.0.0 `command` is a string; arguments go in `args`",
                    c.name
                ),
            ),
            _ => {}
        }
        if v1 && !c.args.is_empty() {
            err(
                &format!("{}>args", c.name),
                format!(
                    "command test `{}`: `args` needs schemaVersion 2.0.0",
                    c.name
                ),
            );
        }
        if c.argv().first().is_none_or(|p| p.is_empty()) {
            err(&c.name, format!("command test `{}` has no command", c.name));
        }
        if c.setup.iter().chain(&c.teardown).any(Vec::is_empty) {
            err(
                &c.name,
                format!("command test `{}`: empty setup or teardown command", c.name),
            );
        }
        if c.env_vars
            .iter()
            .any(|e| e.key.is_empty() || e.value.is_empty())
        {
            err(
                &format!("{}>envVars", c.name),
                format!(
                    "command test `{}`: env vars need a non-empty key and value",
                    c.name
                ),
            );
        }
    }
}

fn check_files_and_metadata(t: &StructureTests, err: &mut Report<'_>) {
    for (name, path_) in t
        .file_existence_tests
        .iter()
        .map(|f| (&f.name, &f.path))
        .chain(t.file_content_tests.iter().map(|f| (&f.name, &f.path)))
    {
        if name.is_empty() || path_.is_empty() {
            err(name, format!("file test `{name}` needs a name and a path"));
        }
    }
    for f in &t.file_existence_tests {
        if let Some(x) = &f.is_executable_by
            && !matches!(x.as_str(), "any" | "owner" | "group" | "other")
        {
            err(
                "isExecutableBy",
                format!(
                    "isExecutableBy `{x}` in test `{}` must be any, owner, group or other",
                    f.name
                ),
            );
        }
    }
    if let Some(m) = &t.metadata_test {
        if m.env_vars
            .iter()
            .chain(&m.labels)
            .chain(&m.unbound_env_vars)
            .any(|e| e.key.is_empty())
        {
            err(
                "metadataTest",
                "metadataTest: env var and label keys cannot be empty".into(),
            );
        }
        if m.exposed_ports
            .iter()
            .chain(&m.volumes)
            .any(String::is_empty)
        {
            err(
                "metadataTest",
                "metadataTest: ports and volumes cannot be empty".into(),
            );
        }
    }
    for (test, re) in t.regexes() {
        if let Err(e) = Regex::new(re) {
            let first = e
                .to_string()
                .lines()
                .last()
                .unwrap_or("")
                .trim()
                .to_string();
            err(
                re,
                format!("invalid regex `{re}` in test `{test}`: {first}"),
            );
        }
    }
    for h in &t.http_tests {
        if !h.path.starts_with('/') {
            err(
                &h.path,
                format!("http test `{}`: path must start with `/`", h.name),
            );
        }
    }
}

/// Checks `containerRunOptions` and reads what it names from the project.
fn run_options(project: &Project, source: &str, file: &mut StructureFile, diags: &mut Diagnostics) {
    let Some(o) = file.tests.container_run_options.clone() else {
        return;
    };
    let path = file.shown.clone();
    let err = |needle: &str, msg: String| at(&path, source, needle, msg);
    for name in &o.env_vars {
        if !super::dotenv::is_identifier(name) {
            diags.push(err(
                name,
                format!("containerRunOptions.envVars: `{name}` is not a variable name"),
            ));
        }
    }
    if let Some(env_file) = &o.env_file {
        match project
            .confined("", env_file)
            .map_err(|e| e.to_string())
            .and_then(|p| project.read(&p).map_err(|e| e.to_string()))
        {
            Ok(text) => match super::dotenv::parse(&text) {
                Ok(vars) => file.env_file = vars,
                Err((line, msg)) => diags.push(Diagnostic::at(
                    project.display(&project.root().join(env_file)),
                    &text,
                    line,
                    1,
                    msg,
                )),
            },
            Err(e) => diags.push(err("envFile", format!("containerRunOptions.envFile: {e}"))),
        }
    }
    for m in &o.bind_mounts {
        let mut parts = m.splitn(3, ':');
        let (host, target, opts) = (parts.next().unwrap_or(""), parts.next(), parts.next());
        let Some(target) = target.filter(|t| t.starts_with('/')) else {
            diags.push(err(m, format!("bind mount `{m}` must be `host:container[:options]` with an absolute container path")));
            continue;
        };
        match project.confined("", host) {
            Ok(p) => file
                .bind_mounts
                .push((p, target.to_string(), opts.map(str::to_string))),
            Err(e) => diags.push(err(
                m,
                format!("bind mount `{m}`: {e}; bind mounts are confined to the project folder"),
            )),
        }
    }
    if o.privileged {
        file.privileged_line = line_of(source, "privileged");
    }
    if !o.bind_mounts.is_empty() {
        file.bind_mounts_line = line_of(source, "bindMounts");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V2: &str = r#"
schemaVersion: '2.0.0'
globalEnvVars:
  - key: A
    value: b
commandTests:
  - name: "say hi"
    command: "echo"
    args: ["hi"]
    expectedOutput: ["h.*"]
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
metadataTest:
  envVars:
    - key: PATH
      value: "/usr/.*"
      isRegex: true
  unboundEnvVars:
    - key: SECRET
  exposedPorts: ["8080"]
  cmd: ["httpd"]
licenseTests:
  - debian: true
    files: ["/x/copyright"]
containerRunOptions:
  user: nobody
  allocateTty: true
  capabilities: [NET_ADMIN]
"#;

    fn p() -> &'static Path {
        Path::new("t.yaml")
    }

    #[test]
    fn an_unknown_key_with_a_sequence_at_its_own_indent_is_skipped_whole() {
        let nested =
            "schemaVersion: 2.0.0\nmetadataTest:\n  env:\n  - key: A\n    value: b\n  cmd: [sh]\n";
        let (t, w) = parse(p(), nested).unwrap();
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].line, 3);
        assert_eq!(t.metadata_test.unwrap().cmd, Some(vec!["sh".to_string()]));
        let top = "schemaVersion: 2.0.0\nfooTests:\n- name: x\ncommandTests:\n- name: c\n  command: echo\n";
        let (t, w) = parse(p(), top).unwrap();
        assert_eq!((w.len(), w[0].line), (1, 2), "{w:?}");
        assert_eq!(t.command_tests.len(), 1);
    }

    #[test]
    fn an_empty_licence_files_list_is_an_empty_list() {
        let text = "schemaVersion: 2.0.0\nlicenseTests:\n  - debian: true\n    files:\n";
        let (t, w) = parse(p(), text).unwrap();
        assert!(w.is_empty(), "{w:?}");
        assert!(t.license_tests[0].files.is_empty());
    }

    #[test]
    fn reads_schema_2() {
        let (t, w) = parse(p(), V2).unwrap();
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(
            t.command_tests[0].argv(),
            vec!["echo".to_string(), "hi".into()]
        );
        assert!(!t.file_existence_tests[1].should_exist);
        assert_eq!(t.file_existence_tests[1].uid, None);
        let m = t.metadata_test.unwrap();
        assert_eq!(m.unbound_env_vars[0].key, "SECRET");
        assert!(t.license_tests[0].debian);
        assert_eq!(
            t.container_run_options.unwrap().capabilities,
            vec!["NET_ADMIN".to_string()]
        );
    }

    #[test]
    fn reads_schema_1_with_command_lists() {
        let v1 = "schemaVersion: 1.0.0\ncommandTests:\n  - name: v\n    command: [\"sh\", \"-c\", \"true\"]\nlicenseTests:\n  - debian: false\n";
        let (t, _) = parse(p(), v1).unwrap();
        assert_eq!(
            t.command_tests[0].argv(),
            vec!["sh".to_string(), "-c".into(), "true".into()]
        );
        let d = parse(p(), &v1.replace("[\"sh\", \"-c\", \"true\"]", "sh")).unwrap_err();
        assert!(d.to_string().contains("t.yaml:4:5:"), "{d}");
        let d = parse(p(), &V2.replace("'2.0.0'", "'1.0.0'")).unwrap_err();
        assert!(
            d.to_string()
                .contains("metadataTest` needs schemaVersion 2.0.0"),
            "{d}"
        );
    }

    #[test]
    fn unknown_keys_are_positioned_warnings() {
        let text = V2
            .replace(
                "  envVars:\n",
                "  env:\n    - key: OLD\n      value: x\n  envVars:\n",
            )
            .replace(
                "schemaVersion: '2.0.0'\n",
                "schemaVersion: '2.0.0'\nfancyNewKey: {a: 1}\n",
            );
        let (t, w) = parse(p(), &text).unwrap();
        assert_eq!(w.len(), 2, "{w:?}");
        assert_eq!((w[0].line, w[0].column), (3, 1), "{}", w[0]);
        assert!(w[0].message.contains("fancyNewKey"), "{}", w[0]);
        assert!(w[1].message.contains("`env`"), "{}", w[1]);
        assert!(
            w[1].hint.as_deref().unwrap_or("").contains("`envVars`"),
            "{:?}",
            w[1].hint
        );
        assert_eq!(t.metadata_test.unwrap().env_vars[0].key, "PATH");
    }

    #[test]
    fn refuses_bad_regex_and_version() {
        let d = parse(p(), &V2.replace("h.*", "h(")).unwrap_err();
        assert!(
            d.to_string()
                .contains("invalid regex `h(` in test `say hi`"),
            "{d}"
        );
        let d = parse(p(), &V2.replace("'2.0.0'", "'3.0.0'")).unwrap_err();
        assert!(d.to_string().contains("t.yaml:2:"), "{d}");
    }
}

#[cfg(test)]
mod project_tests {
    use super::*;

    /// Structure-test files are read through `Project::read`: its size
    /// limit applies, and the digest is of exactly the bytes read.
    #[test]
    fn reads_through_the_project() {
        let dir = tempfile::tempdir().unwrap();
        let project = Project::open(dir.path()).unwrap();
        let big = dir.path().join("big.yaml");
        let mut text = String::from("schemaVersion: 2.0.0\n");
        text.push_str(&"# padding\n".repeat(110_000));
        std::fs::write(&big, &text).unwrap();
        let d = load(&project, &project.root().join("big.yaml"))
            .unwrap_err()
            .to_string();
        assert!(
            d.contains("big.yaml") && d.contains("the limit is 1048576 bytes"),
            "{d}"
        );
        let ok = "schemaVersion: 2.0.0\n";
        std::fs::write(dir.path().join("ok.yaml"), ok).unwrap();
        let f = load(&project, &project.root().join("ok.yaml")).unwrap();
        assert_eq!(f.digest, Digest::of(ok.as_bytes()));
        assert_eq!(f.shown, Path::new("ok.yaml"));
    }
}
