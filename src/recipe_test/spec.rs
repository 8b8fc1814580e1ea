//! The `tests/*.kilntest.yaml` format, decoded strictly (unknown fields,
//! wrong types and empty files are positioned errors) and checked into a
//! [`TestFile`]: the recipe under test, its `variables`, and the ordered
//! `run` blocks with their assertions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::load::overrides::Overrides;
use crate::load::recipe::ScalarValue;
use crate::project::Project;

/// component → parameter → value, as written.
type Variables = BTreeMap<String, BTreeMap<String, Spanned<ScalarValue>>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileDoc {
    recipe: Spanned<String>,
    #[serde(default)]
    variables: Variables,
    run: Vec<RunDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RunDoc {
    name: Spanned<String>,
    command: Spanned<Command>,
    #[serde(default)]
    recipe: Option<Spanned<String>>,
    #[serde(default)]
    variables: Variables,
    #[serde(default)]
    expect_failures: Vec<Spanned<String>>,
    #[serde(default)]
    assert: Option<AssertDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AssertDoc {
    #[serde(default)]
    dockerfile: Option<TextDoc>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    build_key: Option<Spanned<String>>,
    #[serde(default)]
    components: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TextDoc {
    #[serde(default)]
    contains: Vec<String>,
    #[serde(default)]
    not_contains: Vec<String>,
    #[serde(default)]
    matches: Vec<Spanned<String>>,
}

/// What a run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Command {
    /// Load, validate, resolve (the lock, or the registry without writing
    /// the lock) and render; nothing is built.
    Plan,
    /// Plan, then build and test under a scratch tag; pushed nowhere,
    /// removed after.
    Apply,
}

impl Command {
    /// `plan` or `apply`.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Plan => "plan",
            Command::Apply => "apply",
        }
    }
}

/// What a run's plan must show. Every field is optional; all given must hold.
#[derive(Debug, Clone, Default)]
pub struct Assertions {
    /// Text the rendered Dockerfile contains.
    pub contains: Vec<String>,
    /// Text it must not contain.
    pub not_contains: Vec<String>,
    /// Regular expressions that must match it (compiled at load).
    pub matches: Vec<regex::Regex>,
    /// Labels the image gets, with their values.
    pub labels: BTreeMap<String, String>,
    /// The build key, `sha256:…`.
    pub build_key: Option<String>,
    /// The components that apply, in order.
    pub components: Option<Vec<String>>,
}

/// One `run` block.
#[derive(Debug, Clone)]
pub struct Run {
    /// Its name (unique in the file).
    pub name: String,
    /// `plan` or `apply`.
    pub command: Command,
    /// The recipe (the run's own, else the file's).
    pub recipe: String,
    /// The file's `variables` with the run's over them.
    pub overrides: Overrides,
    /// Rules that must fail (then nothing else is checked).
    pub expect_failures: Vec<String>,
    /// What the plan must show.
    pub assert: Assertions,
}

/// One test file.
#[derive(Debug, Clone)]
pub struct TestFile {
    /// The path as shown (relative to the project).
    pub shown: PathBuf,
    /// The runs, in order.
    pub runs: Vec<Run>,
}

/// The test files of a project: `tests/*.kilntest.yaml`, sorted.
pub fn discover(project: &Project) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(project.dir("tests"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(".kilntest.yaml"))
        })
        .collect();
    found.sort();
    found
}

/// Reads and checks one test file (`path` absolute or relative to the project).
pub fn load(project: &Project, path: &Path) -> Result<TestFile, Diagnostics> {
    let path = if path.is_absolute() {
        path.to_path_buf()
    } else {
        project.root().join(path)
    };
    let shown = project.display(&path);
    let source = project
        .read(&path)
        .map_err(|e| Diagnostic::file(&shown, e.to_string()))?;
    let doc: FileDoc = crate::yaml::decode(&shown, &source)?;
    let mut diags = Diagnostics::default();
    let at = |s: &dyn Pos, msg: String| {
        let (line, column) = s.pos();
        Diagnostic::at(&shown, &source, line, column, msg)
    };
    if doc.run.is_empty() {
        diags.push(at(
            &doc.recipe,
            "a test file needs at least one `run` block".into(),
        ));
    }
    let mut runs = Vec::new();
    let mut names = Vec::new();
    for r in doc.run {
        if names.contains(&r.name.value) {
            diags.push(at(
                &r.name,
                format!("run `{}` is named twice", r.name.value),
            ));
        }
        names.push(r.name.value.clone());
        let mut values = doc.variables.clone();
        for (component, params) in r.variables {
            values.entry(component).or_default().extend(params);
        }
        let assert = assertions(r.assert, &at, &mut diags);
        if !r.expect_failures.is_empty() && r.command.value == Command::Apply {
            diags.push(at(
                &r.command,
                "expectFailures needs `command: plan` (a refused recipe builds nothing)".into(),
            ));
        }
        runs.push(Run {
            name: r.name.value,
            command: r.command.value,
            recipe: r.recipe.unwrap_or_else(|| doc.recipe.clone()).value,
            overrides: Overrides {
                path: shown.clone(),
                source: source.clone(),
                values,
            },
            expect_failures: r.expect_failures.into_iter().map(|s| s.value).collect(),
            assert,
        });
    }
    diags.into_result(TestFile { shown, runs })
}

/// A value's position.
trait Pos {
    fn pos(&self) -> (u64, u64);
}

impl<T> Pos for Spanned<T> {
    fn pos(&self) -> (u64, u64) {
        (self.referenced.line(), self.referenced.column())
    }
}

fn assertions(
    doc: Option<AssertDoc>,
    at: &dyn Fn(&dyn Pos, String) -> Diagnostic,
    diags: &mut Diagnostics,
) -> Assertions {
    let Some(doc) = doc else {
        return Assertions::default();
    };
    let text = doc.dockerfile.unwrap_or(TextDoc {
        contains: Vec::new(),
        not_contains: Vec::new(),
        matches: Vec::new(),
    });
    let mut matches = Vec::new();
    for m in &text.matches {
        match regex::Regex::new(&m.value) {
            Ok(r) => matches.push(r),
            Err(e) => diags.push(at(m, format!("invalid regular expression: {e}"))),
        }
    }
    if let Some(k) = &doc.build_key
        && k.value.parse::<crate::digest::Digest>().is_err()
    {
        diags.push(at(
            k,
            format!("buildKey `{}` is not a sha256 digest", k.value),
        ));
    }
    Assertions {
        contains: text.contains,
        not_contains: text.not_contains,
        matches,
        labels: doc.labels,
        build_key: doc.build_key.map(|k| k.value),
        components: doc.components,
    }
}
