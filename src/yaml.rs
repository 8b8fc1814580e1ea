//! Strict YAML decoding for project files: size and alias budgets, duplicate
//! keys refused, and every serde error turned into a positioned
//! [`Diagnostic`] with a "did you mean" hint for unknown fields.
//!
//! Built on `serde-saphyr` (see ARCHITECTURE.md for why not `serde_yaml`).

use std::path::Path;

use serde::de::DeserializeOwned;
use serde_saphyr::{Budget, DuplicateKeyPolicy, Options};

use crate::diagnostic::{Diagnostic, closest};

/// Most alias (`*ref`) uses a project file may contain.
pub const MAX_ALIASES: usize = 64;
/// Most events replayed through aliases (stops "billion laughs").
pub const MAX_ALIAS_REPLAY: usize = 10_000;
/// Most parser events in one file.
pub const MAX_EVENTS: usize = 200_000;

fn options() -> Options {
    let mut budget = Budget::default();
    budget.max_aliases = MAX_ALIASES;
    budget.max_events = MAX_EVENTS;
    budget.max_anchors = MAX_ALIASES;
    let mut o = Options::default();
    o.budget = Some(budget);
    o.alias_limits.max_total_replayed_events = MAX_ALIAS_REPLAY;
    o.alias_limits.max_replay_stack_depth = 16;
    o.duplicate_keys = DuplicateKeyPolicy::Error;
    o.strict_booleans = true;
    o.with_snippet = false;
    o
}

/// Decodes `source` (the text of `path`) into `T`, or one diagnostic.
pub fn decode<T: DeserializeOwned>(path: &Path, source: &str) -> Result<T, Diagnostic> {
    if source.trim().is_empty() {
        return Err(Diagnostic::file(path, "file is empty"));
    }
    serde_saphyr::from_str_with_options::<T>(source, options()).map_err(|e| {
        let (line, column) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        let raw = e.without_snippet().to_string();
        let mut message = clean_message(&raw);
        let line_text = source.lines().nth((line as usize).saturating_sub(1));
        if (message.starts_with("invalid ") || message.starts_with("expected "))
            && let Some(key) = line_text.filter(|_| line > 0).and_then(key_of_line)
        {
            message = format!("`{key}`: {message}");
        }
        let mut d = if line > 0 {
            Diagnostic::at(path, source, line, column, message.clone())
        } else {
            Diagnostic::file(path, message.clone())
        };
        d = d.with_rule(&crate::load::rules::SCHEMA);
        if let Some(hint) = unknown_field_hint(&message) {
            d = d.with_hint(hint);
        } else if message.contains("alias") || message.contains("budget") {
            d = d.with_hint(format!(
                "kiln allows at most {MAX_ALIASES} aliases and {MAX_ALIAS_REPLAY} replayed nodes per file"
            ));
        }
        d
    })
}

/// `port` of a YAML line `  - port: 80`: the field a positioned error is
/// about (None for a line that is not `key: …`).
pub fn key_of_line(line: &str) -> Option<&str> {
    let t = line.trim_start();
    let t = t.strip_prefix("- ").unwrap_or(t).trim_start();
    let (key, _) = t.split_once(':')?;
    let ok = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
    ok.then_some(key)
}

/// Drops a trailing " at line X column Y" that the parser appends; the
/// diagnostic shows the position itself.
fn clean_message(raw: &str) -> String {
    let first = raw.lines().next().unwrap_or(raw).trim();
    let first = match first.find(" at line ") {
        Some(i) => &first[..i],
        None => first,
    };
    let first = first.strip_prefix("error: ").unwrap_or(first);
    first.trim_end_matches('.').to_string()
}

/// "unknown field `nmae`, expected one of `name`, …" → "did you mean `name`?".
fn unknown_field_hint(message: &str) -> Option<String> {
    let rest = message
        .split_once("unknown field `")
        .or_else(|| message.split_once("unknown variant `"))?
        .1;
    let (field, rest) = rest.split_once('`')?;
    if field == "signing" {
        return Some(
            "a signing key belongs in the operator config (`--config` / `KILN_CONFIG`), never in a project file"
                .into(),
        );
    }
    let list = rest
        .split_once("expected one of ")
        .or_else(|| rest.split_once("expected "))
        .map(|(_, l)| l)
        .unwrap_or("");
    let expected: Vec<&str> = list
        .split(", ")
        .map(|s| s.trim().trim_matches('`'))
        .filter(|s| !s.is_empty() && !s.contains(' '))
        .collect();
    match closest(field, expected.iter().copied()) {
        Some(best) => Some(format!("did you mean `{best}`?")),
        None if !expected.is_empty() => Some(format!(
            "allowed here: {}",
            expected
                .iter()
                .map(|e| format!("`{e}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    #[allow(dead_code)]
    struct T {
        name: String,
        parent_image: Option<String>,
    }

    #[test]
    fn unknown_field_has_position_and_hint() {
        let src = "name: a\nparentImag: b\n";
        let d = decode::<T>(Path::new("r.yaml"), src).unwrap_err();
        assert_eq!(d.line, 2, "{d}");
        assert_eq!(
            d.hint.as_deref(),
            Some("did you mean `parentImage`?"),
            "{d}"
        );
    }

    #[test]
    fn alias_bomb_is_refused() {
        let mut src = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            src.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        src.push_str("name: x\n");
        let d = decode::<serde_json::Value>(Path::new("bomb.yaml"), &src).unwrap_err();
        assert!(!d.message.is_empty());
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let d = decode::<T>(Path::new("r.yaml"), "name: a\nname: b\n").unwrap_err();
        assert_eq!(d.line, 2, "{d}");
    }
}
