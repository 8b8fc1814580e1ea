//! `kiln affected --since REF [--json]`: the recipes whose inputs changed
//! between a git revision and the work tree.

use kiln::affected::{self, Affected};
use kiln::project::Project;

use super::Outcome;

/// Arguments of `kiln affected`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The git revision to compare the work tree with (branch, tag, commit).
    #[arg(long, value_name = "REF")]
    pub since: String,
    /// Print `{since, changedFiles, recipes: [{recipe, changed}]}` as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The affected set, or the error printed.
pub fn compute(project: &Project, since: &str) -> Result<Affected, Outcome> {
    affected::affected(project, since).map_err(|e| {
        super::report(&e);
        Outcome::Failed
    })
}

/// Prints one recipe per line (with the inputs that changed on stderr).
pub fn run(project: &Project, args: Args) -> Outcome {
    let a = match compute(project, &args.since) {
        Ok(a) => a,
        Err(o) => return o,
    };
    if args.json {
        return super::output::json_result(&a);
    }
    for r in &a.recipes {
        let files: Vec<String> = r.changed.iter().map(|p| p.display().to_string()).collect();
        outln!("{}", r.recipe);
        errln!("    changed: {}", files.join(", "));
    }
    errln!(
        "{} of the project's recipes affected since {}",
        a.recipes.len(),
        &a.since[..a.since.len().min(12)]
    );
    Outcome::Ok
}
