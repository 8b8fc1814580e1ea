//! `kiln export cloudformation RECIPE` (or `--format terraform`): prints the
//! template that recreates the pipeline in Image Builder; what Image Builder
//! cannot hold is listed on stderr.

use kiln::export::{self, cloudformation, terraform};
use kiln::project::Project;

use super::Outcome;

/// Template formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// CloudFormation YAML.
    Cloudformation,
    /// Terraform HCL.
    Terraform,
}

/// Arguments of `kiln export`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// `[cloudformation|terraform] RECIPE`: the format word is optional.
    #[arg(num_args = 1..=2, required = true, value_name = "[FORMAT] RECIPE")]
    pub words: Vec<String>,
    /// Output format (default cloudformation).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
}

/// Prints the template.
pub fn run(project: &Project, args: Args) -> Outcome {
    let (word, recipe) = match args.words.as_slice() {
        [recipe] => (None, recipe),
        [word, recipe] => (Some(word.as_str()), recipe),
        _ => unreachable!("clap takes one or two words"),
    };
    let format = match (word, args.format) {
        (None, f) => f.unwrap_or(Format::Cloudformation),
        (Some("cloudformation"), None | Some(Format::Cloudformation)) => Format::Cloudformation,
        (Some("terraform"), None | Some(Format::Terraform)) => Format::Terraform,
        (Some(w), _) => {
            return super::fail_msg(
                Outcome::Usage,
                format_args!(
                    "`{w}` is not a format matching --format (cloudformation or terraform)"
                ),
            );
        }
    };
    let recipe = match kiln::load::load_recipe(project, recipe) {
        Ok(r) => r,
        Err(d) => {
            let summary = format!("recipe `{recipe}` is invalid");
            return super::output::fail_invalid(d.0, summary);
        }
    };
    let (pipeline, notes) = match export::prepare(project, &recipe) {
        Ok(p) => p,
        Err(e) => {
            super::report(&e);
            return Outcome::Failed;
        }
    };
    let text = match format {
        Format::Cloudformation => cloudformation::render(&pipeline),
        Format::Terraform => terraform::render(&pipeline),
    };
    for n in &notes {
        errln!("not exported: {n}");
    }
    out!("{text}");
    Outcome::Ok
}
