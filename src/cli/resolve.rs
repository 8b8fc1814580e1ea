//! `kiln resolve [RECIPE…] [--check | --update] [--json]`: exit 4 when
//! `--check` finds drift, 6 when a registry cannot answer.

use kiln::load::{self, LoadedRecipe};
use kiln::pipeline::{chain, pins, pins_many};
use kiln::project::Project;
use kiln::registry::RegistryClient;
use kiln::resolve::Unresolved;

use serde_json::{Value, json};

use super::{Outcome, fail, fail_msg, output};

/// Arguments of `kiln resolve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Recipes (names or paths); all of `recipes/` when none.
    pub recipes: Vec<String>,
    /// Exit 1 and list what moved when the registries no longer match the lock.
    #[arg(long, conflicts_with = "update")]
    pub check: bool,
    /// Re-resolve every reference, even those already locked.
    #[arg(long)]
    pub update: bool,
    /// Print the pins (or what moved, or the error) as JSON.
    #[arg(long)]
    pub json: bool,
}

fn load_all(project: &Project, names: &[String]) -> Result<Vec<LoadedRecipe>, Outcome> {
    let names = if names.is_empty() {
        load::list_recipes(project)
    } else {
        names.to_vec()
    };
    let mut out = Vec::new();
    let mut problems = Vec::new();
    let mut failed = 0;
    for n in &names {
        match load::load_recipe(project, n) {
            Ok(r) => out.push(r),
            Err(d) => {
                failed += 1;
                problems.extend(d.0);
            }
        }
    }
    if failed > 0 {
        Err(output::fail_invalid(
            problems,
            format_args!("{failed} recipe(s) failed validation"),
        ))
    } else {
        Ok(out)
    }
}

/// Resolves, checks or updates the lock for every recipe at once.
pub async fn run(
    project: &Project,
    args: Args,
    operator: &kiln::operator::OperatorConfig,
) -> Outcome {
    let recipes = match load_all(project, &args.recipes) {
        Ok(r) => r,
        Err(o) => return o,
    };
    let client = match super::registry_client(operator) {
        Ok(c) => c,
        Err(o) => return o,
    };
    if args.check {
        return check(project, &client, &recipes).await;
    }
    let ensured = match pins_many::ensure_all(&client, project, &recipes, args.update).await {
        Ok(e) => e,
        Err(e) => return fail(Outcome::Infrastructure, &e),
    };
    let pinned: Vec<Value> = ensured
        .pinned
        .iter()
        .flat_map(|(recipe, images)| {
            images.iter().map(move |i| {
                json!({"recipe": recipe, "reference": i.written.to_string(), "pinned": i.pinned.to_string()})
            })
        })
        .collect();
    if !output::mode().json {
        // What was pinned is in kiln.lock, also when other recipes failed.
        for p in &pinned {
            let field = |k: &str| p[k].as_str().unwrap_or_default().to_string();
            outln!(
                "{} {} -> {}",
                field("recipe"),
                field("reference"),
                field("pinned")
            );
        }
    }
    if !ensured.failed.is_empty() {
        let mut causes: Vec<String> = ensured
            .failed
            .iter()
            .map(|(recipe, refs)| {
                format!("cannot pin the parents of `{recipe}`: {}", refs.join(", "))
            })
            .collect();
        causes.extend(failure_lines(&ensured.failures));
        let mut failure = output::Failure {
            causes,
            ..output::Failure::message(format_args!(
                "{} recipe(s) could not be pinned; kiln.lock keeps their old entries",
                ensured.failed.len()
            ))
        };
        failure.extra.insert("pinned".into(), pinned.into());
        return output::print_failure(Outcome::Infrastructure, &failure);
    }
    if output::mode().json {
        return output::json_result(&json!({ "pinned": pinned }));
    }
    Outcome::Ok
}

/// Every reference that could not be pinned or checked, once each, with
/// its registry failure.
fn failure_lines(failures: &[Unresolved]) -> Vec<String> {
    failures
        .iter()
        .map(|f| format!("{f}: {}", chain(&f.source)))
        .collect()
}

async fn check(project: &Project, client: &RegistryClient, recipes: &[LoadedRecipe]) -> Outcome {
    let checked = match pins_many::check_all(client, project, recipes).await {
        Ok(c) => c,
        Err(e) => return fail(Outcome::Infrastructure, &e),
    };
    let report = &checked.report;
    if !checked.failures.is_empty() {
        let failure = output::Failure {
            causes: failure_lines(&checked.failures),
            ..output::Failure::message(format_args!(
                "{} parent image reference(s) could not be checked",
                checked.failures.len()
            ))
        };
        return output::print_failure(Outcome::Infrastructure, &failure);
    }
    let moved: Vec<Value> = report
        .moved
        .iter()
        .map(|m| json!({"recipe": m.recipe, "reference": m.reference.to_string(), "locked": m.old.to_string(), "current": m.new.to_string()}))
        .collect();
    let unlocked: Vec<Value> = report
        .unlocked
        .iter()
        .map(|(recipe, reference)| json!({"recipe": recipe, "reference": reference}))
        .collect();
    let lock = pins::lock_path(project);
    if moved.is_empty() && unlocked.is_empty() {
        if output::mode().json {
            return output::json_result(&json!({"lock": lock, "moved": [], "unlocked": []}));
        }
        outln!("ok: every reference matches {}", lock.display());
        return Outcome::Ok;
    }
    let message = "the lock no longer matches the registries; run `kiln resolve --update`";
    if output::mode().json {
        let mut failure = output::Failure::message(message);
        failure.extra.insert("moved".into(), moved.into());
        failure.extra.insert("unlocked".into(), unlocked.into());
        return output::print_failure(Outcome::Drift, &failure);
    }
    for m in &report.moved {
        outln!(
            "moved    {} {}: {} -> {}",
            m.recipe,
            m.reference,
            m.old,
            m.new
        );
    }
    for (recipe, reference) in &report.unlocked {
        outln!("unlocked {recipe} {reference}");
    }
    fail_msg(Outcome::Drift, message)
}
