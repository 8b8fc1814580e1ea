//! `kiln validate [RECIPE…] [--strict] [--policy FILE] [--json]`: the
//! recipes, the project's `.kiln-ignore.yaml`, and the operator's policy (the
//! loaded operator config's, or that of `--policy FILE`), without running anything.

use kiln::diagnostic::Diagnostic;
use kiln::load;
use kiln::project::Project;
use serde_json::json;

use super::{Outcome, fail, fail_msg, output};

/// Arguments of `kiln validate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Recipes (names or paths); all of `recipes/` when none.
    pub recipes: Vec<String>,
    /// Treat warnings (unknown keys in structure-test files) as errors.
    #[arg(long)]
    pub strict: bool,
    /// Print the valid recipes (or the error with every problem) as JSON.
    #[arg(long)]
    pub json: bool,
    /// Check the recipes against the `policy:` of this operator config
    /// instead of the loaded operator config's (`--config`) policy.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<std::path::PathBuf>,
}

/// Validates every named recipe and prints every problem; exit 3 when any
/// recipe is invalid.
pub fn run(
    project: &Project,
    args: Args,
    operator_policy: &kiln::operator::policy::Policy,
) -> Outcome {
    let names = if args.recipes.is_empty() {
        load::list_recipes(project)
    } else {
        args.recipes
    };
    if names.is_empty() {
        let dir = project.dir("recipes");
        return fail_msg(
            Outcome::Invalid,
            format_args!("no recipes in {}", dir.display()),
        );
    }
    let policy = match &args.policy {
        None => Some(operator_policy.clone()),
        Some(file) => match kiln::operator::policy::Policy::from_file(file) {
            Ok(p) => Some(p),
            Err(e) => return fail(Outcome::Invalid, &e),
        },
    };
    let mut failed = 0;
    let mut problems: Vec<Diagnostic> = Vec::new();
    let mut valid = Vec::new();
    if let Err(d) = kiln::findings::ignore::IgnoreFile::load(project) {
        failed += 1;
        problems.extend(d.0);
    }
    for name in &names {
        let loaded = load::load_recipe(project, name);
        if let (Some(p), Ok(r)) = (&policy, &loaded) {
            let violations = kiln::operator::policy_check::check_recipe(p, project, r);
            if !violations.0.is_empty() {
                failed += 1;
                problems.extend(violations.0.into_iter().map(|v| v.diagnostic));
                continue;
            }
        }
        match loaded {
            Ok(r) if args.strict && r.test.warnings().next().is_some() => {
                failed += 1;
                problems.extend(r.test.warnings().cloned());
            }
            Ok(r) => {
                for w in r.test.warnings() {
                    errln!("warning: {w}");
                }
                let components = r.components.len();
                let template = r.template.file.as_ref().map(|f| f.display().to_string());
                if !args.json {
                    outln!(
                        "ok  {} {} ({components} component{}, template {})",
                        r.name,
                        r.version,
                        if components == 1 { "" } else { "s" },
                        template.as_deref().unwrap_or("default")
                    );
                }
                valid.push(json!({
                    "recipe": r.name, "version": r.version.to_string(),
                    "components": components, "template": template,
                }));
            }
            Err(diags) => {
                failed += 1;
                problems.extend(diags.0);
            }
        }
    }
    if failed > 0 {
        let strict = if args.strict {
            " (--strict: warnings are errors)"
        } else {
            ""
        };
        return output::fail_invalid(
            problems,
            format_args!(
                "{failed} of {} recipe{} failed validation{strict}",
                names.len(),
                if names.len() == 1 { "" } else { "s" }
            ),
        );
    }
    if args.json {
        return output::json_result(&json!({ "valid": valid }));
    }
    Outcome::Ok
}
