//! `kiln render RECIPE [--context DIR]`.

use std::path::PathBuf;

use kiln::project::Project;
use kiln::{load, render};

use super::Outcome;

/// Arguments of `kiln render`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Recipe name or path.
    pub recipe: String,
    /// Also write the full build context (Dockerfile, generated files, the
    /// recipe's context folder) into this new or empty folder.
    #[arg(long, value_name = "DIR")]
    pub context: Option<PathBuf>,
}

/// Prints the rendered Dockerfile.
pub fn run(project: &Project, args: Args) -> Outcome {
    let recipe = match load::load_recipe(project, &args.recipe) {
        Ok(r) => r,
        Err(d) => {
            eprintln!("{d}");
            return Outcome::Failed;
        }
    };
    let pins = match kiln::pipeline::pins::locked(project, &recipe) {
        Ok(Some(p)) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return Outcome::Failed;
        }
        Ok(None) => {
            eprintln!(
                "note: `{}` is not pinned in kiln.lock; FROM lines keep their tags (run `kiln resolve`)",
                recipe.name
            );
            render::Pins::default()
        }
    };
    let rendered = render::render(&recipe, &pins);
    if let Some(dir) = &args.context {
        if let Err(e) = render::write_context_dir(&rendered, dir) {
            eprintln!("error: {e}");
            return Outcome::Failed;
        }
        eprintln!("wrote the build context to {}", dir.display());
    }
    print!("{}", rendered.dockerfile);
    Outcome::Ok
}
