//! `kiln render RECIPE [--context DIR]`.

use std::path::PathBuf;

use kiln::project::Project;
use kiln::render;

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
    let (_recipe, rendered) =
        match super::load_rendered(project, &args.recipe, super::WhenUnpinned::KeepTags) {
            Ok(r) => r,
            Err(o) => return o,
        };
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
