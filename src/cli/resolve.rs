//! `kiln resolve [RECIPE…] [--check | --update]`.

use kiln::load::{self, LoadedRecipe};
use kiln::pipeline::{chain, pins, pins_many};
use kiln::project::Project;
use kiln::registry::RegistryClient;
use kiln::resolve::Unresolved;

use super::Outcome;

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
}

fn load_all(project: &Project, names: &[String]) -> Result<Vec<LoadedRecipe>, Outcome> {
    let names = if names.is_empty() {
        load::list_recipes(project)
    } else {
        names.to_vec()
    };
    let mut out = Vec::new();
    let mut failed = false;
    for n in &names {
        match load::load_recipe(project, n) {
            Ok(r) => out.push(r),
            Err(d) => {
                eprintln!("{d}");
                failed = true;
            }
        }
    }
    if failed {
        Err(Outcome::Failed)
    } else {
        Ok(out)
    }
}

/// Resolves, checks or updates the lock for every recipe at once.
pub async fn run(project: &Project, args: Args) -> Outcome {
    let recipes = match load_all(project, &args.recipes) {
        Ok(r) => r,
        Err(o) => return o,
    };
    let client = match RegistryClient::with_defaults() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Outcome::Failed;
        }
    };
    if args.check {
        return check(project, &client, &recipes).await;
    }
    let ensured = match pins_many::ensure_all(&client, project, &recipes, args.update).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {}", chain(&e));
            return Outcome::Failed;
        }
    };
    for (recipe, images) in &ensured.pinned {
        for i in images {
            println!("{recipe} {} -> {}", i.written, i.pinned);
        }
    }
    for (recipe, refs) in &ensured.failed {
        eprintln!(
            "error: cannot pin the parents of `{recipe}`: {}",
            refs.join(", ")
        );
    }
    print_failures(&ensured.failures);
    if ensured.failed.is_empty() {
        Outcome::Ok
    } else {
        Outcome::Failed
    }
}

/// Every reference that could not be pinned or checked, once each.
fn print_failures(failures: &[Unresolved]) {
    for f in failures {
        eprintln!("error: {f}: {}", chain(&f.source));
    }
}

async fn check(project: &Project, client: &RegistryClient, recipes: &[LoadedRecipe]) -> Outcome {
    let checked = match pins_many::check_all(client, project, recipes).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {}", chain(&e));
            return Outcome::Failed;
        }
    };
    let report = &checked.report;
    for m in &report.moved {
        println!(
            "moved    {} {}: {} -> {}",
            m.recipe, m.reference, m.old, m.new
        );
    }
    for (recipe, reference) in &report.unlocked {
        println!("unlocked {recipe} {reference}");
    }
    print_failures(&checked.failures);
    if !checked.failures.is_empty() {
        eprintln!(
            "error: {} parent image reference(s) could not be checked",
            checked.failures.len()
        );
        return Outcome::Failed;
    }
    if report.moved.is_empty() && report.unlocked.is_empty() {
        println!(
            "ok: every reference matches {}",
            pins::lock_path(project).display()
        );
        return Outcome::Ok;
    }
    eprintln!("error: the lock no longer matches the registries; run `kiln resolve --update`");
    Outcome::Failed
}
