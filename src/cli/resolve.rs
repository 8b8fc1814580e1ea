//! `kiln resolve [RECIPE…] [--check | --update]`.

use kiln::load::{self, LoadedRecipe};
use kiln::pipeline::pins;
use kiln::project::Project;
use kiln::registry::RegistryClient;
use kiln::resolve::{self, LockFile};

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

/// Resolves, checks or updates the lock.
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
    let lock_path = pins::lock_path(project);
    if args.check {
        let lock = match LockFile::load(&lock_path) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: {e}");
                return Outcome::Failed;
            }
        };
        let mut clean = true;
        for r in &recipes {
            match resolve::check(&client, &lock, &[pins::references(r)], &pins::options(r)).await {
                Ok(report) => {
                    for m in &report.moved {
                        clean = false;
                        println!(
                            "moved    {} {}: {} -> {}",
                            m.recipe, m.reference, m.old, m.new
                        );
                    }
                    for (recipe, reference) in &report.unlocked {
                        clean = false;
                        println!("unlocked {recipe} {reference}");
                    }
                }
                Err(e) => {
                    eprintln!("error: {}", kiln::pipeline::chain(&e));
                    return Outcome::Failed;
                }
            }
        }
        if clean {
            println!("ok: every reference matches {}", lock_path.display());
            return Outcome::Ok;
        }
        eprintln!("error: the lock no longer matches the registries; run `kiln resolve --update`");
        return Outcome::Failed;
    }
    let mut failed = false;
    for r in &recipes {
        match pins::ensure(&client, project, r, args.update).await {
            Ok((_, images)) => {
                for i in images {
                    println!("{} {} -> {}", r.name, i.written, i.pinned);
                }
            }
            Err(e) => {
                eprintln!(
                    "error: cannot pin the parents of `{}`: {}",
                    r.name,
                    kiln::pipeline::chain(&e)
                );
                failed = true;
            }
        }
    }
    if failed { Outcome::Failed } else { Outcome::Ok }
}
