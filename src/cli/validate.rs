//! `kiln validate [RECIPE…]`.

use kiln::load;
use kiln::project::Project;

use super::Outcome;

/// Arguments of `kiln validate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Recipes (names or paths); all of `recipes/` when none.
    pub recipes: Vec<String>,
    /// Treat warnings (unknown keys in structure-test files) as errors.
    #[arg(long)]
    pub strict: bool,
}

/// Validates every named recipe and prints every problem.
pub fn run(project: &Project, args: Args) -> Outcome {
    let names = if args.recipes.is_empty() {
        load::list_recipes(project)
    } else {
        args.recipes
    };
    if names.is_empty() {
        eprintln!("error: no recipes in {}", project.dir("recipes").display());
        return Outcome::Failed;
    }
    let mut failed = 0;
    for name in &names {
        match load::load_recipe(project, name) {
            Ok(r) if args.strict && r.test.warnings().next().is_some() => {
                failed += 1;
                for w in r.test.warnings() {
                    eprintln!("{w}");
                }
                eprintln!("error: `{}` has warnings and --strict is set", r.name);
            }
            Ok(r) => {
                for w in r.test.warnings() {
                    eprintln!("warning: {w}");
                }
                println!(
                    "ok  {} {} ({} component{}, template {})",
                    r.name,
                    r.version,
                    r.components.len(),
                    if r.components.len() == 1 { "" } else { "s" },
                    r.template
                        .file
                        .as_ref()
                        .map(|f| f.display().to_string())
                        .unwrap_or_else(|| "default".into())
                )
            }
            Err(diags) => {
                failed += 1;
                eprintln!("{diags}");
            }
        }
    }
    if failed > 0 {
        eprintln!(
            "error: {failed} of {} recipe{} failed validation",
            names.len(),
            if names.len() == 1 { "" } else { "s" }
        );
        Outcome::Failed
    } else {
        Outcome::Ok
    }
}
