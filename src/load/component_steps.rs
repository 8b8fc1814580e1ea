//! Validation of one step of a component document: its action and inputs,
//! loop, `if`, nested document (ExecuteDocument), S3Download constraints,
//! and every `{{ … }}` reference.

use std::collections::{BTreeMap, BTreeSet};

use serde_saphyr::Spanned;

use super::actions::{self, Action};
use super::component::{
    Ctx, Loop, LoopValues, MAX_LOOP_ITERATIONS, OnFailure, PhaseKind, Step, placeholders,
    valid_identifier,
};
use super::component_doc::{ForEach, StepDoc};
use super::condition;
use super::nested::{self, NestedError, Resolver};
use crate::diagnostic::closest;

pub(super) fn validate_step(
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
    if d.input.document_s3_bucket_owner.is_some() {
        cx.near(at, "document-s3-bucket-owner", format!("step `{}` (ExecuteDocument): `document-s3-bucket-owner` applies to a document in S3; kiln runs nested documents from the project (components/ or a project path), so the owner check cannot apply: remove it", s.name.value));
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

/// S3Download objects are fetched on the host before the build: their
/// `source` and `expectedBucketOwner` are known at render time, and the
/// step runs in `build` or `validate`.
pub(super) fn s3_download_ok(
    cx: &mut Ctx<'_>,
    s: &StepDoc,
    step: &Step,
    kind: PhaseKind,
    parameters: &BTreeMap<String, Option<String>>,
    constants: &BTreeMap<String, String>,
) -> bool {
    let line = s.action.referenced.line();
    if let Action::S3Upload(items) = &step.action {
        let problem = if kind != PhaseKind::Test {
            Some("S3Upload runs in the test phase (kiln copies the files out of the test container and uploads them)".to_string())
        } else {
            items
                .iter()
                .filter_map(|i| i.expected_bucket_owner.as_ref())
                .flat_map(|t| placeholders(t))
                .find(|p| !parameters.contains_key(*p) && !constants.contains_key(*p))
                .map(|p| format!("`expectedBucketOwner` uses `{{{{ {p} }}}}`; it takes literals, parameters and constants"))
        };
        if let Some(m) = problem {
            cx.near(
                line,
                "action",
                format!("step `{}` (S3Upload): {m}", s.name.value),
            );
            return false;
        }
        return true;
    }
    let Action::S3Download(items) = &step.action else {
        return true;
    };
    let problem = if kind == PhaseKind::Test {
        Some("S3Download runs in the build and validate phases (kiln fetches the objects into the build context)".to_string())
    } else if step.loop_.is_some() {
        Some("S3Download cannot loop: kiln fetches its objects before the build; write one input per object".to_string())
    } else {
        items
            .iter()
            .flat_map(|i| [Some(&i.source), i.expected_bucket_owner.as_ref()])
            .flatten()
            .flat_map(|t| placeholders(t))
            .find(|p| !parameters.contains_key(*p) && !constants.contains_key(*p))
            .map(|p| format!("`{{{{ {p} }}}}` is known only when the build runs; S3Download sources take literals, parameters and constants"))
    };
    match problem {
        Some(m) => {
            cx.near(
                line,
                "action",
                format!("step `{}` (S3Download): {m}", s.name.value),
            );
            false
        }
        None => true,
    }
}

/// The names later steps may chain from `step`: its outputs and the
/// string fields of its inputs.
pub(super) fn chainable_names(kind: PhaseKind, step: &Step) -> Vec<String> {
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
