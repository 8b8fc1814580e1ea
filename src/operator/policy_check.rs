//! The load-time half of the policy: a loaded recipe, its components
//! (nested documents included) and its template against `policy:`. Every
//! violation carries `path:line:column` in the project and the rule's key;
//! all of them are returned, none is fatal on its own. Positions are found in
//! the files the loader already accepted (read again through
//! [`Project::read`]), so the loader's model stays free of them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use globset::{GlobBuilder, GlobMatcher};
use regex::Regex;

use super::policy::{Policy, Rule, Violation, Violations, is_root_user};
use crate::diagnostic::Diagnostic;
use crate::load::actions::Action;
use crate::load::template::{self, Instruction};
use crate::load::{Component, LoadedRecipe};
use crate::project::Project;
use crate::reference::ImageReference;

/// The matcher of one `allowedParents` glob (`*` stays within a segment).
pub fn parent_glob(glob: &str) -> Result<GlobMatcher, globset::Error> {
    let g = GlobBuilder::new(glob).literal_separator(true).build()?;
    Ok(g.compile_matcher())
}

/// One project file's text, for positions (empty when it cannot be read:
/// the violation then points at the file's first line).
struct Source {
    path: PathBuf,
    text: String,
}

impl Source {
    fn read(project: &Project, rel: &Path) -> Source {
        let text = project.read(&project.root().join(rel)).unwrap_or_default();
        Source {
            path: rel.to_path_buf(),
            text,
        }
    }

    /// A diagnostic at the first match of `re` (column of group 1 when
    /// present), else at line 1.
    fn find(&self, re: &Regex, message: String) -> Diagnostic {
        for (i, line) in self.text.lines().enumerate() {
            if let Some(c) = re.captures(line) {
                let m = c.get(1).or_else(|| c.get(0)).expect("a match");
                return self.at(i as u64 + 1, m.start() as u64 + 1, message);
            }
        }
        self.at(1, 1, message)
    }

    fn at(&self, line: u64, column: u64, message: String) -> Diagnostic {
        Diagnostic::at(&self.path, &self.text, line, column, message)
    }
}

static PARENT_KEY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\s*parentImage\s*:\s*(\S)").expect("regex"));
static TEST_KEY: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^(test)\s*:").expect("regex"));
static APPROVAL_NONE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"^\s*approval\s*:\s*["']?(none)\b"#).expect("regex"));
static ACTION_KEY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"^\s*(?:-\s*)?action\s*:\s*["']?([A-Za-z0-9]+)"#).expect("regex")
});

/// Every load-time violation of `policy` by `recipe`.
pub fn check_recipe(policy: &Policy, project: &Project, recipe: &LoadedRecipe) -> Violations {
    let mut out = Vec::new();
    let recipe_src = Source::read(project, &recipe.file);
    let template_src = recipe
        .template
        .file
        .as_ref()
        .map(|f| Source::read(project, f));
    parents(policy, recipe, &recipe_src, template_src.as_ref(), &mut out);
    actions(policy, project, recipe, &mut out);
    if policy.require_tests {
        let t = &recipe.test;
        let none = t.port.is_none()
            && t.http.is_none()
            && t.log_line.is_none()
            && t.structure_tests.is_empty();
        if none {
            let m = "the recipe has no readiness check (`test.port`, `test.http`, `test.logLine`) and no structure tests".to_string();
            let d = recipe_src.find(&TEST_KEY, m);
            out.push(Violation::new(Rule::RequireTests, d));
        }
    }
    if policy.require_approval && recipe_src.text.lines().any(|l| APPROVAL_NONE.is_match(l)) {
        let m =
            "the policy requires approval; the recipe sets `distribute.approval: none`".to_string();
        let d = recipe_src.find(&APPROVAL_NONE, m);
        out.push(Violation::new(Rule::RequireApproval, d));
    }
    template_rules(policy, recipe, &recipe_src, template_src.as_ref(), &mut out);
    Violations(out)
}

/// `allowedParents`: the recipe's `parentImage` and every external `FROM`.
fn parents(
    policy: &Policy,
    recipe: &LoadedRecipe,
    recipe_src: &Source,
    template_src: Option<&Source>,
    out: &mut Vec<Violation>,
) {
    let Some(globs) = &policy.allowed_parents else {
        return;
    };
    let matchers: Vec<GlobMatcher> = globs.iter().filter_map(|g| parent_glob(g).ok()).collect();
    let allowed = |r: &ImageReference| {
        let subject = format!("{}/{}", r.registry, r.repository);
        matchers.iter().any(|m| m.is_match(&subject))
    };
    let message = |r: &ImageReference| {
        format!(
            "parent `{}/{}` is not allowed (allowed: {})",
            r.registry,
            r.repository,
            globs.join(", ")
        )
    };
    if !allowed(&recipe.parent_image) {
        let d = recipe_src.find(&PARENT_KEY, message(&recipe.parent_image));
        out.push(Violation::new(Rule::AllowedParents, d));
    }
    let Some(src) = template_src else { return };
    for ins in template::instructions(&src.text) {
        if ins.keyword != "FROM" {
            continue;
        }
        let Ok(from) = template::parse_from(&ins) else {
            continue;
        };
        if from.image.contains("{{") {
            continue;
        }
        let Ok(r) = ImageReference::parse(&from.image) else {
            continue; // an earlier stage's name
        };
        let is_base = recipe
            .base_images
            .iter()
            .any(|b| b.registry == r.registry && b.repository == r.repository);
        if is_base && !allowed(&r) {
            let col = column_of(&src.text, ins.line, &from.image);
            out.push(Violation::new(
                Rule::AllowedParents,
                src.at(ins.line, col, message(&r)),
            ));
        }
    }
}

/// `allowedActions` / `forbiddenActions` over every step of every
/// component, nested documents included (each file once).
fn actions(policy: &Policy, project: &Project, recipe: &LoadedRecipe, out: &mut Vec<Violation>) {
    if policy.allowed_actions.is_none() && policy.forbidden_actions.is_empty() {
        return;
    }
    let mut seen = BTreeSet::new();
    let mut stack: Vec<&Component> = recipe.components.iter().map(|c| &c.component).collect();
    while let Some(c) = stack.pop() {
        if !seen.insert(c.file.clone()) {
            continue;
        }
        for step in c.phases.iter().flat_map(|p| &p.steps) {
            if let Action::ExecuteDocument(d) = &step.action
                && let Some(nested) = &d.component
            {
                stack.push(nested);
            }
        }
        let src = Source::read(project, &c.file);
        for (i, line) in src.text.lines().enumerate() {
            let Some(m) = ACTION_KEY.captures(line).and_then(|c| c.get(1)) else {
                continue;
            };
            let (name, at) = (m.as_str(), (i as u64 + 1, m.start() as u64 + 1));
            if policy.forbidden_actions.iter().any(|f| f == name) {
                let msg = format!("action `{name}` is forbidden");
                out.push(Violation::new(
                    Rule::ForbiddenActions,
                    src.at(at.0, at.1, msg),
                ));
            } else if let Some(allowed) = &policy.allowed_actions
                && !allowed.iter().any(|a| a == name)
            {
                let msg = format!(
                    "action `{name}` is not allowed (allowed: {})",
                    allowed.join(", ")
                );
                out.push(Violation::new(
                    Rule::AllowedActions,
                    src.at(at.0, at.1, msg),
                ));
            }
        }
    }
}

/// `forbidRootUser` (the final stage's last `USER`) and `forbidAddFromUrl`.
fn template_rules(
    policy: &Policy,
    recipe: &LoadedRecipe,
    recipe_src: &Source,
    template_src: Option<&Source>,
    out: &mut Vec<Violation>,
) {
    let text = &recipe.template.text;
    let instructions = template::instructions(text);
    if policy.forbid_add_from_url {
        for ins in instructions.iter().filter(|i| i.keyword == "ADD") {
            let url = ins
                .args
                .split_whitespace()
                .find(|w| w.starts_with("http://") || w.starts_with("https://"));
            if let (Some(url), Some(src)) = (url, template_src) {
                let m = format!("`ADD {url}` downloads into the image without a pinned digest");
                let d = src.at(ins.line, column_of(text, ins.line, url), m)
                    .with_hint("download in a component step (WebDownload with a checksum), or COPY a file from the context");
                out.push(Violation::new(Rule::ForbidAddFromUrl, d));
            }
        }
    }
    if policy.forbid_root_user {
        root_user(&instructions, recipe_src, template_src, out);
    }
}

/// The final stage must set a `USER` that is not root.
fn root_user(
    instructions: &[Instruction],
    recipe_src: &Source,
    template_src: Option<&Source>,
    out: &mut Vec<Violation>,
) {
    let last_from = instructions.iter().rposition(|i| i.keyword == "FROM");
    let final_stage = &instructions[last_from.unwrap_or(0)..];
    let user = final_stage.iter().rev().find(|i| i.keyword == "USER");
    let d = match (user, template_src) {
        (Some(u), Some(src)) if is_root_user(&u.args) => {
            let m = format!("the final stage runs as `{}` (root)", u.args.trim());
            src.at(u.line, column_of(&src.text, u.line, u.args.trim()), m)
        }
        (Some(_), _) => return,
        (None, Some(src)) => {
            let line = last_from.map_or(1, |i| instructions[i].line);
            let m = "the final stage sets no `USER`, so the image runs as root".to_string();
            src.at(line, 1, m)
        }
        (None, None) => recipe_src.find(
            &PARENT_KEY,
            "the default template sets no `USER`, so the image runs as root".to_string(),
        ),
    };
    let d = d.with_hint(
        "end the final stage with `USER <non-root user>` in the recipe's dockerfile template",
    );
    out.push(Violation::new(Rule::ForbidRootUser, d));
}

/// 1-based column of `needle` on `line` of `text` (1 when absent).
fn column_of(text: &str, line: u64, needle: &str) -> u64 {
    text.lines()
        .nth(line.saturating_sub(1) as usize)
        .and_then(|l| l.find(needle))
        .map_or(1, |c| c as u64 + 1)
}
