//! Turns a component's phases into bash scripts run by kiln's AWSTOE
//! runtime (`toe.sh`): parameters and constants are substituted here, loop
//! variables and step outputs at run time. Every user value is single-quoted,
//! so no value can change the script's structure.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::toe_actions::{Body, S3Request, S3Upload, step_body};
use crate::load::actions::{Action, NestedDocument};
use crate::load::component::{
    Component, Loop, LoopValues, OnFailure, Phase, PhaseKind, Step, placeholders,
};

/// The runtime library, shipped beside every generated script.
pub const TOE_RUNTIME: &str = include_str!("toe.sh");

/// Quotes `s` for bash as one word.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@,+%".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Rewrites every `{{ x }}` with canonical spacing and replaces parameters
/// and constants; runtime placeholders stay for `toe.sh`.
pub fn substitute(text: &str, values: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        out.push_str(&rest[..start]);
        let name = after[..end].trim();
        match values.get(name) {
            Some(v) => out.push_str(v),
            None => {
                let _ = write!(out, "{{{{ {name} }}}}");
            }
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

/// Parameters and constants of an applied component, as one lookup.
pub fn values(
    component: &Component,
    parameters: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut v = component.constants.clone();
    v.extend(parameters.iter().map(|(k, val)| (k.clone(), val.clone())));
    v
}

fn on_failure(o: OnFailure) -> &'static str {
    match o {
        OnFailure::Abort => "Abort",
        OnFailure::Continue => "Continue",
        OnFailure::Ignore => "Ignore",
    }
}

/// Chained input names (`phase.step.inputs[i].field`) that some step of
/// `component` reads; those inputs are recorded when their step runs.
fn referenced_inputs(component: &Component) -> BTreeSet<String> {
    component
        .phases
        .iter()
        .flat_map(|p| &p.steps)
        .flat_map(|s| s.strings())
        .flat_map(placeholders)
        .filter(|p| p.contains(".inputs"))
        .map(str::to_string)
        .collect()
}

/// Accumulates the step functions (`functions`) and the `toe_step` calls
/// that run them (`calls`); nested documents add their own.
#[derive(Default)]
struct Writer {
    calls: String,
    functions: String,
    counter: usize,
    s3: Vec<S3Request>,
    uploads: Vec<S3Upload>,
    /// How step names appear in `::kiln-step` lines (`Parent/` in a
    /// nested document).
    prefix: String,
}

impl Writer {
    fn document(
        &mut self,
        component: &Component,
        values: &BTreeMap<String, String>,
        phases: &[&Phase],
        indent: &str,
    ) {
        let referenced = referenced_inputs(component);
        for phase in phases {
            for step in &phase.steps {
                self.step(values, &referenced, phase.kind, step, indent);
            }
        }
    }

    fn step(
        &mut self,
        values: &BTreeMap<String, String>,
        referenced: &BTreeSet<String>,
        kind: PhaseKind,
        step: &Step,
        indent: &str,
    ) {
        self.counter += 1;
        let n = self.counter;
        let nested = match &step.action {
            Action::ExecuteDocument(d) => Some(self.nested(d, values, step, n)),
            _ => None,
        };
        let mut body = Body::new(
            values,
            referenced,
            format!("{}.{}", kind.as_str(), step.name),
        );
        body.step_no = n;
        step_body(&mut body, &step.action, nested.as_deref());
        self.s3.append(&mut body.s3);
        for mut u in body.uploads.drain(..) {
            u.shown = format!("{}{}", self.prefix, step.name);
            self.uploads.push(u);
        }
        let _ = writeln!(self.functions, "\nkiln_step_{n}() {{\n{}}}", body.text);
        if let Some(l) = &step.loop_ {
            self.loop_line(l, values, indent);
        }
        if let Some(i) = &step.if_ {
            let mut cond = Body::new(values, referenced, String::new());
            let expr = cond.condition(&i.condition);
            let _ = writeln!(
                self.functions,
                "\nkiln_if_{n}() {{\n{}  {expr}\n}}",
                cond.text
            );
            let _ = writeln!(
                self.calls,
                "{indent}toe_if kiln_if_{n} {} {}",
                i.then.as_str(),
                i.otherwise.as_str()
            );
        }
        let _ = writeln!(
            self.calls,
            "{indent}toe_step {} {} {} {} {} kiln_step_{n}",
            kind.as_str(),
            shell_quote(&step.name),
            on_failure(step.on_failure),
            step.max_attempts,
            step.timeout_seconds.unwrap_or(0),
        );
    }

    fn loop_line(&mut self, l: &Loop, values: &BTreeMap<String, String>, indent: &str) {
        let name = shell_quote(l.name.as_deref().unwrap_or(""));
        match &l.values {
            LoopValues::Fixed(v) => {
                let words: Vec<String> = v
                    .iter()
                    .map(|x| shell_quote(&substitute(x, values)))
                    .collect();
                let _ = writeln!(self.calls, "{indent}toe_loop {name} {}", words.join(" "));
            }
            LoopValues::Split { list, delimiter } => {
                let _ = writeln!(
                    self.calls,
                    "{indent}toe_loop_split {name} {} {}",
                    shell_quote(&delimiter.to_string()),
                    shell_quote(&substitute(list, values))
                );
            }
        }
    }

    /// Renders a nested document's phases as a function the ExecuteDocument
    /// step runs in a subshell (its own outputs and failures); returns its name.
    fn nested(
        &mut self,
        d: &NestedDocument,
        parent_values: &BTreeMap<String, String>,
        step: &Step,
        n: usize,
    ) -> String {
        let child = d
            .component
            .as_ref()
            .expect("nested documents are resolved at load");
        let mut params: BTreeMap<String, String> = child
            .parameters
            .iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
            .collect();
        params.extend(
            d.input
                .parameters
                .iter()
                .map(|p| (p.name.clone(), substitute(&p.value, parent_values))),
        );
        let values = values(child, &params);
        let wanted = requested_phases(d);
        let phases: Vec<&Phase> = child
            .phases
            .iter()
            .filter(|p| wanted.as_ref().is_none_or(|w| w.contains(&p.kind.as_str())))
            .collect();
        let mut inner = Writer {
            counter: self.counter,
            prefix: format!("{}{}/", self.prefix, step.name),
            ..Writer::default()
        };
        inner.document(child, &values, &phases, "  ");
        self.counter = inner.counter;
        self.functions.push_str(&inner.functions);
        self.s3.append(&mut inner.s3);
        self.uploads.append(&mut inner.uploads);
        let name = format!("kiln_document_{n}");
        let _ = writeln!(
            self.functions,
            "\n# {} (ExecuteDocument in step `{}`)\n{name}() {{\n  toe_document_begin {}\n{}  toe_document_end\n}}",
            child.file.display(),
            step.name,
            shell_quote(&format!("{}/", step.name)),
            inner.calls
        );
        name
    }
}

/// The phases an ExecuteDocument step asks for (`None`: all of them).
pub fn requested_phases(d: &NestedDocument) -> Option<Vec<&str>> {
    d.input.phases.as_deref().map(|p| {
        p.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect()
    })
}

/// The script for the given phases of a component (in document order), or
/// `None` when the component has none of them.
pub fn phase_script(
    component: &Component,
    parameters: &BTreeMap<String, String>,
    kinds: &[PhaseKind],
    working_directory: &str,
) -> Option<String> {
    phase_script_with_s3(component, parameters, kinds, working_directory).map(|p| p.script)
}

/// A generated phase script and the S3 transfers around it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseScript {
    /// The bash script.
    pub script: String,
    /// Objects its S3Download steps place (fetched before the build).
    pub downloads: Vec<S3Request>,
    /// Files its S3Upload steps stage (uploaded after the test phase).
    pub uploads: Vec<S3Upload>,
}

/// [`phase_script`] with its S3 transfers.
pub fn phase_script_with_s3(
    component: &Component,
    parameters: &BTreeMap<String, String>,
    kinds: &[PhaseKind],
    working_directory: &str,
) -> Option<PhaseScript> {
    let phases: Vec<&Phase> = component
        .phases
        .iter()
        .filter(|p| kinds.contains(&p.kind))
        .collect();
    if phases.is_empty() {
        return None;
    }
    let values = values(component, parameters);
    let mut s = String::new();
    let names: Vec<&str> = phases.iter().map(|p| p.kind.as_str()).collect();
    let _ = writeln!(s, "#!/bin/bash");
    let _ = writeln!(
        s,
        "# Generated by kiln from {} (component `{}`, {}), phases: {}.",
        component.file.display(),
        component.name,
        component.digest,
        names.join(", ")
    );
    let _ = writeln!(s, ". \"$(dirname \"${{BASH_SOURCE[0]}}\")/toe.sh\"");
    let _ = writeln!(s, "cd {} || exit 1", shell_quote(working_directory));
    let mut w = Writer::default();
    w.document(component, &values, &phases, "");
    s.push_str(&w.functions);
    s.push('\n');
    s.push_str(&w.calls);
    let _ = writeln!(s, "\ntoe_finish");
    Some(PhaseScript {
        script: s,
        downloads: w.s3,
        uploads: w.uploads,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_is_one_word() {
        assert_eq!(shell_quote("abc"), "abc");
        assert_eq!(shell_quote("it's\n$(x)"), "'it'\\''s\n$(x)'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn substitutes_known_values_only() {
        let v = BTreeMap::from([("Name".to_string(), "kiln".to_string())]);
        assert_eq!(
            substitute("hi {{Name}} {{ loop.value }}", &v),
            "hi kiln {{ loop.value }}"
        );
    }
}
