//! Loads a recipe's Dockerfile template and checks its placeholders and
//! `FROM` lines; finds the external images that must be pinned.

use std::collections::BTreeSet;

use serde_saphyr::Spanned;

use super::model::Template;
use super::recipe_check::Checker;
use super::template::{self, DEFAULT_TEMPLATE, PARENT_IMAGE};
use crate::diagnostic::Diagnostic;
use crate::project::Project;
use crate::reference::ImageReference;

pub(super) fn load(
    project: &Project,
    cx: &mut Checker<'_>,
    dockerfile: Option<&Spanned<String>>,
) -> Option<Template> {
    let Some(df) = dockerfile else {
        return Some(Template {
            file: None,
            text: DEFAULT_TEMPLATE.to_string(),
        });
    };
    let path = match project.confined("dockerfiles", &df.value) {
        Ok(p) => p,
        Err(e) => {
            cx.at(df, format!("dockerfile: {e}"));
            return None;
        }
    };
    let shown = project.display(&path);
    let text = match project.read(&path) {
        Ok(t) => t,
        Err(e) => {
            cx.at(df, format!("dockerfile: {e}"));
            return None;
        }
    };
    let mut ok = true;
    // Parser directives change how every later line is read; kiln's parser
    // (continuations, FROM pinning) assumes the defaults.
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
        if !t.starts_with('#') {
            break;
        }
        let directive = t.trim_start_matches('#').trim().to_ascii_lowercase();
        if directive.starts_with("escape") && directive.contains('=') {
            cx.diags.push(Diagnostic::at(&shown, &text, i as u64 + 1, 1, "the `escape` parser directive is not supported: kiln must read continuations exactly as Docker does to pin every FROM"));
            ok = false;
        }
    }
    for (line, col, token) in template::triple_placeholders(&text) {
        if template::canonical_placeholder(&token).is_none() {
            cx.diags.push(
                Diagnostic::at(&shown, &text, line, col, format!("unknown placeholder `{token}`"))
                    .with_hint("kiln knows {{{ imagebuilder:parentImage }}}, {{{ imagebuilder:environments }}} and {{{ imagebuilder:components }}}"),
            );
            ok = false;
        }
    }
    for ins in template::instructions(&text) {
        if ins.keyword == "{{{" {
            let canon = template::canonical_placeholder(ins.args.trim());
            if canon.is_none() || canon == Some(PARENT_IMAGE) {
                cx.diags.push(Diagnostic::at(&shown, &text, ins.line, 1, "a placeholder line must hold only {{{ imagebuilder:environments }}} or {{{ imagebuilder:components }}}"));
                ok = false;
            }
        } else if ins.args.contains("{{{")
            && (ins.keyword != "FROM" || !ins.args.contains("imagebuilder:parentImage"))
        {
            cx.diags.push(Diagnostic::at(
                &shown,
                &text,
                ins.line,
                1,
                format!(
                    "placeholders can only stand in FROM lines or alone on a line, not in {}",
                    ins.keyword
                ),
            ));
            ok = false;
        }
    }
    if template::instructions(&text)
        .iter()
        .all(|i| i.keyword != "FROM")
    {
        cx.diags.push(Diagnostic::at(
            &shown,
            &text,
            1,
            1,
            "the template has no FROM instruction",
        ));
        ok = false;
    }
    ok.then_some(Template {
        file: Some(shown),
        text,
    })
}

/// The external images in the template, parent first; checks FROM lines.
pub(super) fn base_images(
    cx: &mut Checker<'_>,
    t: &Template,
    parent: &ImageReference,
    parent_span: &Spanned<String>,
    target: Option<&str>,
) -> Vec<ImageReference> {
    let shown = t
        .file
        .clone()
        .unwrap_or_else(|| "<default template>".into());
    let uses_placeholder = t.text.contains("imagebuilder:parentImage");
    let mut stages: BTreeSet<String> = BTreeSet::new();
    let mut images: Vec<ImageReference> = Vec::new();
    let mut parent_used = false;
    for ins in template::instructions(&t.text)
        .into_iter()
        .filter(|i| i.keyword == "FROM")
    {
        let diag = |msg: String| Diagnostic::at(&shown, &t.text, ins.line, 1, msg);
        let from = match template::parse_from(&ins) {
            Ok(f) => f,
            Err(e) => {
                cx.diags.push(diag(e));
                continue;
            }
        };
        let image_text = if template::canonical_placeholder(&from.image).is_some()
            || from.image.contains("imagebuilder:parentImage")
        {
            parent.to_string()
        } else {
            from.image.clone()
        };
        let earlier_stage = stages.contains(&image_text.to_ascii_lowercase());
        if let Some(stage) = &from.stage {
            stages.insert(stage.clone());
        }
        if image_text == "scratch" || earlier_stage {
            continue;
        }
        if image_text.contains('$') {
            cx.diags.push(diag(format!("FROM `{image_text}` uses a variable; kiln must pin every parent, so write the image (or the parentImage placeholder)")));
            continue;
        }
        match ImageReference::parse(&image_text) {
            Ok(r) => {
                if r.name() == parent.name()
                    && (r.tag == parent.tag || r.digest.is_some() && r.digest == parent.digest)
                {
                    parent_used = true;
                }
                if !images.contains(&r) {
                    images.push(r);
                }
            }
            Err(e) => cx.diags.push(diag(e.to_string())),
        }
    }
    if !uses_placeholder && !parent_used {
        cx.at(
            parent_span,
            format!(
                "the template {} has no FROM line for parentImage `{parent}`",
                shown.display()
            ),
        )
        .hint = Some(
            "use FROM {{{ imagebuilder:parentImage }}} or write the same image in the first stage"
                .into(),
        );
    }
    if let Some(target) = target
        && !stages.contains(target)
    {
        cx.diags.push(Diagnostic::file(
            &shown,
            format!("target stage `{target}` is not defined by any `FROM … AS {target}`"),
        ));
    }
    // Parent first.
    images.sort_by_key(|r| r.name() != parent.name());
    images
}
