//! `kiln test RECIPE [--image REF] [--json] [--junit FILE]`.

use std::path::PathBuf;

use kiln::project::Project;
use kiln::test_phase::{self, TestInput};

use super::{Outcome, fail, fail_msg, output};

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
pub async fn run(project: &Project, args: Args, allow: kiln::test_phase::TestPolicy) -> Outcome {
    let (recipe, rendered) =
        match super::load_rendered(project, &args.recipe, super::WhenUnpinned::KeepTags) {
            Ok(r) => r,
            Err(o) => return o,
        };
    let docker = match kiln::docker::connect().await {
        Ok(d) => d,
        Err(e) => return fail(Outcome::Infrastructure, &e),
    };
    let image = match args.image {
        Some(i) => i,
        None => {
            match kiln::pipeline::tested_image::built_image(&docker, &recipe, &rendered).await {
                Ok(i) => i,
                Err(e) => return fail(Outcome::Failed, &e),
            }
        }
    };
    let input = match TestInput::under(&recipe, &rendered, image, allow) {
        Ok(i) => i,
        Err(d) => {
            let summary = format!(
                "the tests of `{}` cannot run against this image",
                recipe.name
            );
            return output::fail_invalid(vec![d], summary);
        }
    };
    let stop = kiln::shutdown::requested();
    let report = match test_phase::test_image_until(&docker, &input, stop).await {
        Ok(r) => r,
        Err(e) => return fail(Outcome::Infrastructure, &e),
    };
    if args.json && !report.passed {
        // One document: the error, with the whole report beside it.
        let failure = output::Failure::message(format!("tests of `{}` failed", recipe.name));
        let mut doc = failure.json(Outcome::TestsFailed);
        doc["report"] = serde_json::to_value(&report).unwrap_or_default();
        outln!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else if args.json {
        outln!("{}", report.to_json());
    } else {
        out!("{}", report.summary());
    }
    if let Some(path) = &args.junit
        && let Err(e) = kiln::atomic_file::write(
            path,
            report.to_junit().as_bytes(),
            kiln::atomic_file::USER_FILE,
        )
    {
        return fail_msg(
            Outcome::Failed,
            format_args!("cannot write JUnit report `{}`: {e}", path.display()),
        );
    }
    match (report.passed, args.json) {
        (true, _) => Outcome::Ok,
        (false, true) => Outcome::TestsFailed,
        (false, false) => fail_msg(
            Outcome::TestsFailed,
            format_args!("tests of `{}` failed", recipe.name),
        ),
    }
}
