//! Turns a component's phases into bash scripts run by kiln's AWSTOE
//! runtime (`toe.sh`): parameters and constants are substituted here, loop
//! variables and step outputs at run time. Every user value is single-quoted,
//! so no value can change the script's structure.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::load::actions::Action;
use crate::load::component::{Component, OnFailure, Phase, PhaseKind, placeholders};

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

fn opt(b: Option<bool>, default: bool) -> &'static str {
    if b.unwrap_or(default) {
        "true"
    } else {
        "false"
    }
}

/// Emits `toe_s 'text'; local aN=$TOE_R` and returns `"$aN"`.
struct Args<'a> {
    body: String,
    n: usize,
    values: &'a BTreeMap<String, String>,
}

impl Args<'_> {
    fn arg(&mut self, text: &str) -> String {
        let text = substitute(text, self.values);
        if placeholders(&text).is_empty() {
            return shell_quote(&text);
        }
        self.n += 1;
        let _ = writeln!(
            self.body,
            "  toe_s {}; local a{}=$TOE_R",
            shell_quote(&text),
            self.n
        );
        format!("\"$a{}\"", self.n)
    }
    fn call(&mut self, func: &str, args: &[String]) {
        let _ = writeln!(self.body, "  toe_a_{func} {} || return $?", args.join(" "));
    }
}

fn step_body(action: &Action, values: &BTreeMap<String, String>) -> String {
    let mut a = Args {
        body: String::new(),
        n: 0,
        values,
    };
    let q = |s: &str| shell_quote(s);
    let oq = |s: &Option<String>| shell_quote(s.as_deref().unwrap_or(""));
    match action {
        Action::ExecuteBash { commands } => {
            let script = commands.join("\n");
            let s = a.arg(&script);
            a.call("ExecuteBash", &[s]);
        }
        Action::ExecuteBinary(i) => {
            let mut args = vec![a.arg(&i.path)];
            for x in &i.arguments {
                args.push(a.arg(x));
            }
            a.call("ExecuteBinary", &args);
        }
        Action::CreateFile(v) => {
            for i in v {
                let args = vec![
                    a.arg(&i.path),
                    a.arg(&i.content),
                    oq(&i.encoding),
                    oq(&i.permissions),
                    oq(&i.owner),
                    oq(&i.group),
                    q(opt(i.overwrite, true)),
                ];
                a.call("CreateFile", &args);
            }
        }
        Action::AppendFile(v) => {
            for i in v {
                let args = vec![a.arg(&i.path), a.arg(&i.content), oq(&i.encoding)];
                a.call("AppendFile", &args);
            }
        }
        Action::CreateFolder(v) => {
            for i in v {
                let args = vec![
                    a.arg(&i.path),
                    oq(&i.permissions),
                    oq(&i.owner),
                    oq(&i.group),
                    q(opt(i.overwrite, true)),
                ];
                a.call("CreateFolder", &args);
            }
        }
        Action::CopyFile(v)
        | Action::CopyFolder(v)
        | Action::MoveFile(v)
        | Action::MoveFolder(v) => {
            let func = match action {
                Action::CopyFile(_) => "CopyFile",
                Action::CopyFolder(_) => "CopyFolder",
                Action::MoveFile(_) => "MoveFile",
                _ => "MoveFolder",
            };
            for i in v {
                let args = vec![
                    a.arg(&i.source),
                    a.arg(&i.destination),
                    q(opt(i.overwrite, true)),
                ];
                a.call(func, &args);
            }
        }
        Action::DeleteFile(v) => {
            for i in v {
                let args = vec![a.arg(&i.path)];
                a.call("DeleteFile", &args);
            }
        }
        Action::DeleteFolder(v) => {
            for i in v {
                let args = vec![a.arg(&i.path), q(opt(i.force, false))];
                a.call("DeleteFolder", &args);
            }
        }
        Action::SetFilePermissions(v) | Action::SetFolderPermissions(v) => {
            let func = if matches!(action, Action::SetFilePermissions(_)) {
                "SetFilePermissions"
            } else {
                "SetFolderPermissions"
            };
            for i in v {
                let args = vec![
                    a.arg(&i.path),
                    q(&i.permissions),
                    q(opt(i.recursive, false)),
                ];
                a.call(func, &args);
            }
        }
        Action::SetFileOwner(v) | Action::SetFolderOwner(v) => {
            let func = if matches!(action, Action::SetFileOwner(_)) {
                "SetFileOwner"
            } else {
                "SetFolderOwner"
            };
            for i in v {
                let args = vec![
                    a.arg(&i.path),
                    q(&i.owner),
                    oq(&i.group),
                    q(opt(i.recursive, false)),
                ];
                a.call(func, &args);
            }
        }
        Action::CreateSymlink(v) => {
            for i in v {
                let args = vec![
                    a.arg(&i.source),
                    a.arg(&i.destination),
                    q(opt(i.force, false)),
                ];
                a.call("CreateSymlink", &args);
            }
        }
        Action::WebDownload(v) => {
            for i in v {
                let algo = i.algorithm.as_deref().unwrap_or("SHA256").to_uppercase();
                let args = vec![
                    a.arg(&i.source),
                    a.arg(&i.destination),
                    q(opt(i.overwrite, true)),
                    oq(&i.checksum),
                    q(&algo),
                ];
                a.call("WebDownload", &args);
            }
        }
    }
    a.body
}

/// The script for the given phases of a component (in document order), or
/// `None` when the component has none of them.
pub fn phase_script(
    component: &Component,
    parameters: &BTreeMap<String, String>,
    kinds: &[PhaseKind],
    working_directory: &str,
) -> Option<String> {
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
    let mut n = 0;
    for phase in phases {
        for step in &phase.steps {
            n += 1;
            let _ = writeln!(s, "\nkiln_step_{n}() {{");
            s.push_str(&step_body(&step.action, &values));
            let _ = writeln!(s, "}}");
            let (lname, lvalues) = match &step.loop_ {
                Some(l) => (l.name.clone().unwrap_or_default(), l.values.clone()),
                None => (String::new(), Vec::new()),
            };
            let quoted: Vec<String> = lvalues
                .iter()
                .map(|v| shell_quote(&substitute(v, &values)))
                .collect();
            let _ = writeln!(
                s,
                "toe_step {} {} {} {} {} {} {}{}{} -- kiln_step_{n}",
                phase.kind.as_str(),
                shell_quote(&step.name),
                on_failure(step.on_failure),
                step.max_attempts,
                step.timeout_seconds.unwrap_or(0),
                shell_quote(&lname),
                quoted.len(),
                if quoted.is_empty() { "" } else { " " },
                quoted.join(" "),
            );
        }
    }
    let _ = writeln!(s, "\ntoe_finish");
    Some(s)
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
