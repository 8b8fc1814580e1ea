//! `kiln render RECIPE [--context DIR]`.

use std::path::PathBuf;

use kiln::project::Project;
use kiln::render;

use super::{Outcome, fail, output};

/// Arguments of `kiln render`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Recipe name or path.
    pub recipe: String,
    /// Also write the full build context (Dockerfile, generated files, the
    /// recipe's context folder) into this new or empty folder.
    #[arg(long, value_name = "DIR")]
    pub context: Option<PathBuf>,
    /// Print the Dockerfile and the generated file names as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Prints the rendered Dockerfile.
pub fn run(project: &Project, args: Args) -> Outcome {
    let (recipe, rendered) =
        match super::load_rendered(project, &args.recipe, super::WhenUnpinned::KeepTags) {
            Ok(r) => r,
            Err(o) => return o,
        };
    if let Some(dir) = &args.context {
        if let Err(e) = render::write_context_dir(&rendered, dir) {
            return fail(Outcome::Failed, &e);
        }
        errln!("wrote the build context to {}", dir.display());
    }
    if args.json {
        return output::json_result(&serde_json::json!({
            "recipe": recipe.name,
            "dockerfile": rendered.dockerfile,
            "context": args.context,
        }));
    }
    out!("{}", rendered.dockerfile);
    Outcome::Ok
}
