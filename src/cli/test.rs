//! `kiln test RECIPE [--image REF] [--json] [--junit FILE]`.

use std::path::PathBuf;

use kiln::project::Project;
use kiln::test_phase::{self, TestInput};

use super::Outcome;

/// Arguments of `kiln test`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Recipe name or path.
    pub recipe: String,
    /// Image to test; default: the local image whose build key is the one
    /// this project's inputs give (what `kiln build` made from this checkout).
    #[arg(long, value_name = "REF")]
    pub image: Option<String>,
    /// Print the report as JSON instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// Also write a JUnit XML report to FILE.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
}

/// Runs the recipe's test phase against the image; Ctrl-C removes the
/// container before exiting.
pub async fn run(project: &Project, args: Args) -> Outcome {
    let (recipe, rendered) =
        match super::load_rendered(project, &args.recipe, super::WhenUnpinned::KeepTags) {
            Ok(r) => r,
            Err(o) => return o,
        };
    let docker = match kiln::docker::connect().await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return Outcome::Failed;
        }
    };
    let image = match args.image {
        Some(i) => i,
        None => {
            match kiln::pipeline::tested_image::built_image(&docker, &recipe, &rendered).await {
                Ok(i) => i,
                Err(e) => {
                    super::report(&e);
                    return Outcome::Failed;
                }
            }
        }
    };
    let input = match TestInput::from_recipe(&recipe, &rendered, image) {
        Ok(i) => i,
        Err(d) => {
            eprintln!("{d}");
            return Outcome::Failed;
        }
    };
    let stop = kiln::shutdown::requested();
    let report = match test_phase::test_image_until(&docker, &input, stop).await {
        Ok(r) => r,
        Err(e) => {
            super::report(&e);
            return Outcome::Failed;
        }
    };
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.summary());
    }
    if let Some(path) = &args.junit
        && let Err(e) = kiln::atomic_file::write(
            path,
            report.to_junit().as_bytes(),
            kiln::atomic_file::USER_FILE,
        )
    {
        eprintln!("error: cannot write JUnit report `{}`: {e}", path.display());
        return Outcome::Failed;
    }
    if report.passed {
        Outcome::Ok
    } else {
        Outcome::Failed
    }
}
