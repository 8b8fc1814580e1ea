//! Validates an AWSTOE component document into a [`Component`]: phases,
//! steps, actions and their inputs, loops, and every `{{ … }}` reference.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_saphyr::Spanned;

use super::actions::{self, Action};
use super::component_doc::{ComponentDoc, ForEach, StepDoc};
use super::condition::{self, StepIf};
use super::nested::{self, NestedError, Resolver};
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

fn valid_identifier(s: &str) -> bool {
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

struct Ctx<'a> {
    path: &'a Path,
    source: &'a str,
    diags: Diagnostics,
}

impl Ctx<'_> {
    fn at<T>(&mut self, s: &Spanned<T>, msg: impl Into<String>) -> &mut Diagnostic {
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
    fn near(&mut self, from_line: u64, needle: &str, msg: impl Into<String>) -> &mut Diagnostic {
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
            if let Some(step) =
                validate_step(&mut cx, s, &parameters, &constants, visible, resolver)
            {
                let chainable = chainable_names(kind, &step);
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

fn validate_step(
    cx: &mut Ctx<'_>,
    s: &StepDoc,
    parameters: &BTreeMap<String, Option<String>>,
    constants: &BTreeMap<String, String>,
    outputs: &BTreeSet<String>,
    resolver: &mut Resolver<'_>,
) -> Option<Step> {
    let action_name = s.action.value.as_str();
    let action = if let Some(reason) = actions::unsupported_reason(action_name) {
        cx.at(
            &s.action,
            format!(
                "unsupported action `{action_name}` in step `{}`: {reason}",
                s.name.value
            ),
        );
        None
    } else if !actions::SUPPORTED_ACTIONS.contains(&action_name) {
        let hint = closest(action_name, actions::SUPPORTED_ACTIONS.iter().copied());
        let d = cx.at(
            &s.action,
            format!(
                "unsupported action `{action_name}` in step `{}`",
                s.name.value
            ),
        );
        d.hint = Some(match hint {
            Some(h) => format!("did you mean `{h}`?"),
            None => format!(
                "supported actions: {}",
                actions::SUPPORTED_ACTIONS.join(", ")
            ),
        });
        None
    } else {
        match actions::parse_inputs(action_name, s.inputs.as_ref().map(|i| &i.value)) {
            Ok(a) => Some(a),
            Err(msg) => {
                // Point at the field the message names first (`name` or `name: value`).
                let field = msg
                    .split_once('`')
                    .and_then(|(_, r)| r.split_once('`'))
                    .map(|(f, _)| format!("{}:", f.split(':').next().unwrap_or(f).trim()));
                let msg = format!("step `{}` ({action_name}): {msg}", s.name.value);
                match (&s.inputs, field) {
                    (Some(i), Some(f)) => cx.near(i.referenced.line(), &f, msg),
                    (Some(i), None) => cx.at(i, msg),
                    (None, _) => cx.at(&s.action, msg),
                };
                None
            }
        }
    };
    let on_failure = match s.on_failure.as_ref().map(|o| o.value.as_str()) {
        None | Some("Abort") => OnFailure::Abort,
        Some("Continue") => OnFailure::Continue,
        Some("Ignore") => OnFailure::Ignore,
        Some(other) => {
            let o = s.on_failure.as_ref().expect("matched Some");
            cx.at(
                o,
                format!("invalid onFailure `{other}` (Abort, Continue or Ignore)"),
            );
            OnFailure::Abort
        }
    };
    let timeout_seconds = match &s.timeout_seconds {
        None => None,
        Some(t) if t.value == -1 => None,
        Some(t) if (1..=43_200).contains(&t.value) => Some(t.value as u64),
        Some(t) => {
            cx.at(
                t,
                format!("timeoutSeconds must be 1..=43200 or -1, not {}", t.value),
            );
            None
        }
    };
    let max_attempts = match &s.max_attempts {
        None => 1,
        Some(m) if (1..=100).contains(&m.value) => m.value as u32,
        Some(m) => {
            cx.at(m, format!("maxAttempts must be 1..=100, not {}", m.value));
            1
        }
    };
    let action = match action {
        Some(Action::ExecuteDocument(d)) => {
            nested_document(cx, s, d, parameters, constants, resolver).map(Action::ExecuteDocument)
        }
        other => other,
    };
    let loop_ = s.loop_.as_ref().and_then(|l| validate_loop(cx, l));
    let if_ = s
        .if_
        .as_ref()
        .and_then(|i| match condition::parse_if(&i.value) {
            Ok(v) => Some(v),
            Err(msg) => {
                cx.at(i, format!("step `{}`: invalid `if`: {msg}", s.name.value));
                None
            }
        });
    let step = Step {
        name: s.name.value.clone(),
        action: action?,
        on_failure,
        timeout_seconds,
        max_attempts,
        loop_,
        if_,
    };
    check_placeholders(cx, s, &step, parameters, constants, outputs);
    Some(step)
}

fn nested_document(
    cx: &mut Ctx<'_>,
    s: &StepDoc,
    mut d: Box<actions::NestedDocument>,
    parameters: &BTreeMap<String, Option<String>>,
    constants: &BTreeMap<String, String>,
    resolver: &mut Resolver<'_>,
) -> Option<Box<actions::NestedDocument>> {
    let at = s
        .inputs
        .as_ref()
        .map(|i| i.referenced.line())
        .unwrap_or(s.action.referenced.line());
    if s.loop_.is_some() {
        cx.near(at, "document", format!("step `{}` (ExecuteDocument): a loop cannot run a nested document; write one step per document", s.name.value));
        return None;
    }
    let known: BTreeMap<String, ()> = parameters
        .keys()
        .chain(constants.keys())
        .map(|k| (k.clone(), ()))
        .collect();
    match nested::check(&mut d, &known, resolver) {
        Ok(()) => Some(d),
        Err(NestedError::Message(m)) => {
            cx.near(
                at,
                "document",
                format!("step `{}` (ExecuteDocument): {m}", s.name.value),
            );
            None
        }
        Err(NestedError::Child(diags)) => {
            cx.diags.0.extend(diags.0);
            cx.near(
                at,
                "document",
                format!(
                    "step `{}` (ExecuteDocument): the nested document `{}` has errors (above)",
                    s.name.value, d.input.document
                ),
            );
            None
        }
    }
}

/// The names later steps may chain from `step`: its outputs and the
/// string fields of its inputs.
fn chainable_names(kind: PhaseKind, step: &Step) -> Vec<String> {
    let base = format!("{}.{}", kind.as_str(), step.name);
    let mut out: Vec<String> = step
        .action
        .outputs()
        .iter()
        .map(|o| format!("{base}.outputs.{o}"))
        .collect();
    for (i, field, _) in step.action.input_fields() {
        out.push(match i {
            Some(i) => format!("{base}.inputs[{i}].{field}"),
            None => format!("{base}.inputs.{field}"),
        });
    }
    out
}

fn validate_loop(cx: &mut Ctx<'_>, l: &Spanned<super::component_doc::LoopDoc>) -> Option<Loop> {
    let values = match (&l.value.for_, &l.value.for_each) {
        (Some(r), None) => {
            if r.update_by == 0 || (r.end - r.start).signum() * r.update_by.signum() < 0 {
                cx.at(l, "loop `for` never reaches `end` with this `updateBy`");
                return None;
            }
            let count = ((r.end - r.start) / r.update_by + 1) as usize;
            if count > MAX_LOOP_ITERATIONS {
                cx.at(
                    l,
                    format!("loop has {count} iterations; the limit is {MAX_LOOP_ITERATIONS}"),
                );
                return None;
            }
            LoopValues::Fixed(
                (0..count as i64)
                    .map(|i| (r.start + i * r.update_by).to_string())
                    .collect(),
            )
        }
        (None, Some(ForEach::List(v))) => {
            if v.is_empty() {
                cx.at(l, "loop `forEach` is empty");
            }
            if v.len() > MAX_LOOP_ITERATIONS {
                cx.at(
                    l,
                    format!(
                        "loop has {} iterations; the limit is {MAX_LOOP_ITERATIONS}",
                        v.len()
                    ),
                );
                return None;
            }
            LoopValues::Fixed(v.iter().map(|s| s.as_text()).collect())
        }
        (None, Some(ForEach::Delimited(d))) => {
            let delimiter = match d.delimiter.as_deref() {
                None => ',',
                Some(text) => {
                    let mut chars = text.chars();
                    match (chars.next(), chars.next()) {
                        (Some(c), None) => c,
                        _ => {
                            cx.at(
                                l,
                                format!(
                                    "loop `delimiter` must be one character, not {text:?} (AWSTOE splits on a single character such as `,` or \"\\n\")"
                                ),
                            );
                            return None;
                        }
                    }
                }
            };
            LoopValues::Split {
                list: d.list.as_text(),
                delimiter,
            }
        }
        _ => {
            cx.at(l, "a loop needs exactly one of `for` or `forEach`");
            return None;
        }
    };
    if let Some(n) = &l.value.name
        && (!valid_identifier(n) || n == "loop")
    {
        cx.at(l, format!("invalid loop name `{n}`"));
    }
    Some(Loop {
        name: l.value.name.clone(),
        values,
    })
}

/// Every placeholder must name a parameter, a constant, the step's own loop
/// (inputs only) or something an earlier step of this run can chain.
fn check_placeholders(
    cx: &mut Ctx<'_>,
    s: &StepDoc,
    step: &Step,
    parameters: &BTreeMap<String, Option<String>>,
    constants: &BTreeMap<String, String>,
    outputs: &BTreeSet<String>,
) {
    let step_line = s.name.referenced.line();
    let inputs = actions::strings(&step.action);
    for text in step.strings() {
        let in_inputs = inputs.iter().any(|i| std::ptr::eq(*i, text));
        for ph in placeholders(text) {
            let known = parameters.contains_key(ph)
                || constants.contains_key(ph)
                || (in_inputs && loop_reference_ok(ph, step.loop_.as_ref()))
                || outputs.contains(ph);
            if known {
                continue;
            }
            let what = if ph.contains(".outputs.") || ph.contains(".inputs") {
                format!(
                    "step `{}` references `{{{{ {ph} }}}}`, which is not an output or input of an earlier step in this run (chaining reads `phase.step.outputs.NAME` or `phase.step.inputs[N].FIELD` of an earlier step)",
                    s.name.value
                )
            } else if ph.starts_with("loop.") || ph.ends_with(".value") || ph.ends_with(".index") {
                format!(
                    "step `{}` references `{{{{ {ph} }}}}` outside a matching loop (loop variables work in the step's inputs)",
                    s.name.value
                )
            } else {
                format!(
                    "step `{}` references undefined parameter `{{{{ {ph} }}}}`",
                    s.name.value
                )
            };
            let hint = closest(
                ph,
                parameters
                    .keys()
                    .chain(constants.keys())
                    .chain(outputs.iter())
                    .map(String::as_str),
            );
            let needle = format!("{{{{ {ph}");
            let d = cx.near(step_line, &needle, what);
            if let Some(h) = hint {
                d.hint = Some(format!("did you mean `{{{{ {h} }}}}`?"));
            }
        }
    }
}

fn loop_reference_ok(ph: &str, l: Option<&Loop>) -> bool {
    let Some(l) = l else { return false };
    let Some((head, field)) = ph.rsplit_once('.') else {
        return false;
    };
    (field == "value" || field == "index") && (head == "loop" || l.name.as_deref() == Some(head))
}
