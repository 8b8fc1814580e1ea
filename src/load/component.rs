//! Validates an AWSTOE component document into a [`Component`]: phases,
//! steps, actions and their inputs, loops, and every `{{ … }}` reference.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_saphyr::Spanned;

use super::actions::{self, Action};
use super::component_doc::ComponentDoc;
use super::component_steps;
use super::condition::StepIf;
use super::nested::Resolver;
use crate::diagnostic::{Diagnostic, Diagnostics, closest};
use crate::digest::Digest;

/// A validated component document.
#[derive(Debug, Clone)]
pub struct Component {
    /// Name used by recipes (the file stem).
    pub name: String,
    /// `name` inside the document (optional in AWSTOE).
    pub document_name: Option<String>,
    /// The file, relative to the project root.
    pub file: std::path::PathBuf,
    /// sha256 of the document bytes.
    pub digest: Digest,
    /// Declared parameters with their defaults.
    pub parameters: BTreeMap<String, Option<String>>,
    /// Constants.
    pub constants: BTreeMap<String, String>,
    /// Phases present, in document order.
    pub phases: Vec<Phase>,
}

impl PartialEq for Component {
    /// Same file, same bytes.
    fn eq(&self, other: &Self) -> bool {
        self.file == other.file && self.digest == other.digest
    }
}

/// Which phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PhaseKind {
    /// Runs inside the image build.
    Build,
    /// Runs inside the image build, after `build`.
    Validate,
    /// Runs in the built container.
    Test,
}

impl PhaseKind {
    /// The AWSTOE phase name.
    pub fn as_str(self) -> &'static str {
        match self {
            PhaseKind::Build => "build",
            PhaseKind::Validate => "validate",
            PhaseKind::Test => "test",
        }
    }
}

/// A phase and its steps.
#[derive(Debug, Clone)]
pub struct Phase {
    /// Which.
    pub kind: PhaseKind,
    /// Steps in order.
    pub steps: Vec<Step>,
}

/// What to do when a step fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// Stop the phase; the phase fails.
    Abort,
    /// Go on; the phase fails at its end.
    Continue,
    /// Go on; the failure does not count.
    Ignore,
}

/// A step loop.
#[derive(Debug, Clone, PartialEq)]
pub struct Loop {
    /// Optional name for `{{ name.value }}`.
    pub name: Option<String>,
    /// Where the iteration values come from.
    pub values: LoopValues,
}

/// A loop's values.
#[derive(Debug, Clone, PartialEq)]
pub enum LoopValues {
    /// A `for` range or a `forEach` list; items may hold placeholders,
    /// substituted when the step starts.
    Fixed(Vec<String>),
    /// `forEach: {list, delimiter}`: substituted, then split, when the step
    /// starts (the text may be a parameter or a chained output).
    Split {
        /// The text.
        list: String,
        /// The separator.
        delimiter: char,
    },
}

/// A validated step.
#[derive(Debug, Clone)]
pub struct Step {
    /// Name, unique in the phase.
    pub name: String,
    /// Action and inputs.
    pub action: Action,
    /// Failure policy.
    pub on_failure: OnFailure,
    /// Per-attempt timeout.
    pub timeout_seconds: Option<u64>,
    /// Attempts (≥ 1).
    pub max_attempts: u32,
    /// Optional loop.
    pub loop_: Option<Loop>,
    /// Optional `if`.
    pub if_: Option<StepIf>,
}

impl Step {
    /// Every user-written string of the step (inputs, loop, `if`).
    pub fn strings(&self) -> Vec<&str> {
        let mut out = actions::strings(&self.action);
        match self.loop_.as_ref().map(|l| &l.values) {
            Some(LoopValues::Fixed(v)) => out.extend(v.iter().map(String::as_str)),
            Some(LoopValues::Split { list, .. }) => out.push(list),
            None => {}
        }
        if let Some(i) = &self.if_ {
            out.extend(i.condition.strings());
        }
        out
    }
}

/// Most loop iterations a step may have.
pub const MAX_LOOP_ITERATIONS: usize = 1000;

pub(super) fn valid_identifier(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_')
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Every `{{ name }}` in `text`, trimmed.
pub fn placeholders(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        // `{{{ … }}}` belongs to Dockerfile templates, not components.
        let Some(end) = after.find("}}") else { break };
        out.push(after[..end].trim());
        rest = &after[end + 2..];
    }
    out
}

pub(super) struct Ctx<'a> {
    path: &'a Path,
    source: &'a str,
    pub(super) diags: Diagnostics,
}

impl Ctx<'_> {
    pub(super) fn at<T>(&mut self, s: &Spanned<T>, msg: impl Into<String>) -> &mut Diagnostic {
        let l = &s.referenced;
        self.diags.push(Diagnostic::at(
            self.path,
            self.source,
            l.line(),
            l.column(),
            msg,
        ));
        self.diags.0.last_mut().expect("just pushed")
    }

    /// A diagnostic on the first line at or after `from_line` containing `needle`.
    pub(super) fn near(
        &mut self,
        from_line: u64,
        needle: &str,
        msg: impl Into<String>,
    ) -> &mut Diagnostic {
        let (line, col) = self
            .source
            .lines()
            .enumerate()
            .skip(from_line.saturating_sub(1) as usize)
            .find_map(|(i, l)| l.find(needle).map(|c| (i as u64 + 1, c as u64 + 1)))
            .unwrap_or((from_line, 1));
        self.diags
            .push(Diagnostic::at(self.path, self.source, line, col, msg));
        self.diags.0.last_mut().expect("just pushed")
    }
}

/// Validates a decoded document. `name` is the file stem recipes use.
pub fn validate(
    name: &str,
    path: &Path,
    source: &str,
    doc: ComponentDoc,
    resolver: &mut Resolver<'_>,
) -> Result<Component, Diagnostics> {
    let mut cx = Ctx {
        path,
        source,
        diags: Diagnostics::default(),
    };
    if !doc.schema_version.value.is_supported() {
        cx.at(
            &doc.schema_version,
            "unsupported schemaVersion; kiln reads AWSTOE schemaVersion 1.0",
        );
    }
    let mut parameters = BTreeMap::new();
    for map in &doc.parameters {
        for (pname, decl) in map {
            if !valid_identifier(pname) {
                cx.at(&decl.kind, format!("invalid parameter name `{pname}`"));
            }
            if decl.kind.value != "string" {
                cx.at(
                    &decl.kind,
                    format!(
                        "parameter `{pname}` has type `{}`; only `string` is supported",
                        decl.kind.value
                    ),
                );
            }
            if parameters
                .insert(
                    pname.clone(),
                    decl.default.as_ref().map(|d| d.value.as_text()),
                )
                .is_some()
            {
                cx.at(&decl.kind, format!("parameter `{pname}` is declared twice"));
            }
        }
    }
    let mut constants = BTreeMap::new();
    for map in &doc.constants {
        for (cname, decl) in map {
            if decl.kind.value != "string" {
                cx.at(
                    &decl.kind,
                    format!(
                        "constant `{cname}` has type `{}`; only `string` is supported",
                        decl.kind.value
                    ),
                );
            }
            if parameters.contains_key(cname) {
                cx.at(
                    &decl.kind,
                    format!("constant `{cname}` has the name of a parameter"),
                );
            }
            constants.insert(cname.clone(), decl.value.value.as_text());
        }
    }
    let mut phases: Vec<Phase> = Vec::new();
    // Step outputs visible to later steps: build+validate share one run; test is separate.
    let mut outputs_build: BTreeSet<String> = BTreeSet::new();
    for phase in &doc.phases {
        let kind = match phase.name.value.as_str() {
            "build" => PhaseKind::Build,
            "validate" => PhaseKind::Validate,
            "test" => PhaseKind::Test,
            other => {
                let hint = closest(other, ["build", "validate", "test"]);
                let d = cx.at(
                    &phase.name,
                    format!("unknown phase `{other}`; phases are build, validate and test"),
                );
                if let Some(h) = hint {
                    d.hint = Some(format!("did you mean `{h}`?"));
                }
                continue;
            }
        };
        if phases.iter().any(|p| p.kind == kind) {
            cx.at(
                &phase.name,
                format!("phase `{}` appears twice", kind.as_str()),
            );
            continue;
        }
        if phase.steps.is_empty() {
            cx.at(
                &phase.name,
                format!("phase `{}` has no steps", kind.as_str()),
            );
        }
        let mut test_outputs = BTreeSet::new();
        let mut names = BTreeSet::new();
        let mut steps = Vec::new();
        for s in &phase.steps {
            if !valid_identifier(&s.name.value) {
                cx.at(
                    &s.name,
                    format!(
                        "invalid step name `{}` (letters, digits, `_` and `-`)",
                        s.name.value
                    ),
                );
            }
            if !names.insert(s.name.value.clone()) {
                cx.at(
                    &s.name,
                    format!(
                        "step `{}` appears twice in phase `{}`",
                        s.name.value,
                        kind.as_str()
                    ),
                );
            }
            let visible = if kind == PhaseKind::Test {
                &test_outputs
            } else {
                &outputs_build
            };
            if let Some(step) = component_steps::validate_step(
                &mut cx,
                s,
                &parameters,
                &constants,
                visible,
                resolver,
            ) && component_steps::s3_download_ok(
                &mut cx,
                s,
                &step,
                kind,
                &parameters,
                &constants,
            ) {
                let chainable = component_steps::chainable_names(kind, &step);
                if kind == PhaseKind::Test {
                    test_outputs.extend(chainable);
                } else {
                    outputs_build.extend(chainable);
                }
                steps.push(step);
            }
        }
        phases.push(Phase { kind, steps });
    }
    let component = Component {
        name: name.to_string(),
        document_name: doc.name.as_ref().map(|n| n.value.clone()),
        file: path.to_path_buf(),
        digest: Digest::of(source.as_bytes()),
        parameters,
        constants,
        phases,
    };
    cx.diags.into_result(component)
}
