//! The labels kiln puts on every image. The OCI ones plus kiln's own; which
//! of them are build inputs (part of the key) and which are provenance only.
//! No environment or build-arg value ever becomes a label.

use std::collections::BTreeMap;

use crate::reference::ImageReference;

/// The image's build key.
pub const BUILD_KEY: &str = "dev.kiln.build-key";
/// The recipe name.
pub const RECIPE: &str = "dev.kiln.recipe";
/// Recipe version.
pub const VERSION: &str = "org.opencontainers.image.version";
/// Build time (RFC 3339); not an input.
pub const CREATED: &str = "org.opencontainers.image.created";
/// Source revision; provenance, not an input.
pub const REVISION: &str = "org.opencontainers.image.revision";
/// Source location; provenance, not an input.
pub const SOURCE: &str = "org.opencontainers.image.source";
/// Parent image as written.
pub const BASE_NAME: &str = "org.opencontainers.image.base.name";
/// Parent image digest.
pub const BASE_DIGEST: &str = "org.opencontainers.image.base.digest";

/// Labels that are build inputs: recipe, version, parent name and digest, and
/// the request's extra labels (which cannot override kiln's own).
pub fn input_labels(
    recipe: &str,
    version: &str,
    parent: Option<&(ImageReference, ImageReference)>,
    extra: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut out = extra.clone();
    out.insert(RECIPE.into(), recipe.into());
    out.insert(VERSION.into(), version.into());
    if let Some((written, used)) = parent {
        out.insert(BASE_NAME.into(), written.to_string());
        if let Some(d) = &used.digest {
            out.insert(BASE_DIGEST.into(), d.to_string());
        }
    }
    for k in [CREATED, REVISION, SOURCE, BUILD_KEY] {
        out.remove(k);
    }
    out
}

/// Every label of the image: the inputs plus key, creation time and
/// provenance.
pub fn all_labels(
    inputs: &BTreeMap<String, String>,
    build_key: &str,
    created: &str,
    revision: Option<&str>,
    source: Option<&str>,
) -> BTreeMap<String, String> {
    let mut out = inputs.clone();
    out.insert(BUILD_KEY.into(), build_key.into());
    out.insert(CREATED.into(), created.into());
    if let Some(r) = revision {
        out.insert(REVISION.into(), r.into());
    }
    if let Some(s) = source {
        out.insert(SOURCE.into(), s.into());
    }
    out
}

/// Quotes `s` as a Dockerfile double-quoted word: no variable expansion, no
/// control characters.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' | '$' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Appends one `LABEL` instruction with `labels` to the end of the target
/// stage (the last stage when `target` is `None`), so the daemon commits one
/// step for all of them instead of one per label.
pub fn with_label_instruction(
    dockerfile: &str,
    target: Option<&str>,
    labels: &BTreeMap<String, String>,
) -> String {
    if labels.is_empty() {
        return dockerfile.to_string();
    }
    let mut line = String::from("LABEL");
    for (k, v) in labels {
        line.push_str(" \\\n      ");
        line.push_str(&quote(k));
        line.push('=');
        line.push_str(&quote(v));
    }
    line.push('\n');
    // The line after which the target stage ends: before the next FROM.
    let instructions = crate::load::template::instructions(dockerfile);
    let stage_end = target.and_then(|t| {
        let froms: Vec<_> = instructions
            .iter()
            .filter(|i| i.keyword.eq_ignore_ascii_case("FROM"))
            .collect();
        let at = froms.iter().position(|f| {
            crate::load::template::parse_from(f)
                .ok()
                .and_then(|p| p.stage)
                .is_some_and(|s| s.eq_ignore_ascii_case(t))
        })?;
        froms.get(at + 1).map(|next| next.line)
    });
    let mut out = String::with_capacity(dockerfile.len() + line.len() + 1);
    match stage_end {
        Some(next_from) => {
            for (i, l) in dockerfile.lines().enumerate() {
                if i as u64 + 1 == next_from {
                    out.push_str(&line);
                }
                out.push_str(l);
                out.push('\n');
            }
        }
        None => {
            out.push_str(dockerfile);
            if !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(&line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_goes_to_the_end_of_the_target_stage() {
        let df = "FROM a AS one\nRUN x\nFROM b AS two\nRUN y\n";
        let labels = BTreeMap::from([("k".to_string(), "v \"$HOME\"".to_string())]);
        let out = with_label_instruction(df, Some("one"), &labels);
        assert_eq!(
            out,
            "FROM a AS one\nRUN x\nLABEL \\\n      \"k\"=\"v \\\"\\$HOME\\\"\"\nFROM b AS two\nRUN y\n"
        );
        let last = with_label_instruction(df, None, &labels);
        assert!(last.starts_with(df) && last.ends_with("\"\n"));
    }
}
