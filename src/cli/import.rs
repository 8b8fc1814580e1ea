//! `kiln import FILE… [--out DIR]` and `kiln import --from-aws ARN`: prints
//! what was mapped, one line per field not mapped, and the files written.

use std::path::PathBuf;

use kiln::import::{self, ImportOptions, ImportReport};
use kiln::project::Project;

use super::Outcome;

/// Arguments of `kiln import`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// CloudFormation templates (YAML/JSON), Terraform files (`.tf`), or
    /// Image Builder CLI/API JSON documents.
    #[arg(required_unless_present = "from_aws", conflicts_with = "from_aws")]
    pub files: Vec<PathBuf>,
    /// Read a container recipe or image pipeline from Image Builder itself
    /// (default credential chain; `AWS_ENDPOINT_URL_IMAGEBUILDER`).
    #[arg(long, value_name = "ARN")]
    pub from_aws: Option<String>,
    /// Project folder to write into (default: --project); created if absent.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Region of ECR targets the source does not place in a region.
    #[arg(long, env = "AWS_REGION")]
    pub region: Option<String>,
}

/// Runs the import and prints its report.
pub async fn run(project_dir: &std::path::Path, args: Args) -> Outcome {
    let dir = args
        .out
        .clone()
        .unwrap_or_else(|| project_dir.to_path_buf());
    if let Err(e) = kiln::import::create_out_dir(&dir) {
        return super::fail(Outcome::Failed, &e);
    }
    let project = match super::open_project(&dir) {
        Ok(p) => p,
        Err(o) => return o,
    };
    let opts = ImportOptions {
        region: args.region,
    };
    let result = match &args.from_aws {
        Some(arn) => import::aws::import_arn(arn, &project, &opts).await,
        None => import::import_files(&args.files, &project, &opts).await,
    };
    match result {
        Ok(report) => {
            print_report(&project, &report);
            Outcome::Ok
        }
        Err(e) => {
            super::report(&e);
            errln!("nothing was written");
            Outcome::Failed
        }
    }
}

fn print_report(project: &Project, r: &ImportReport) {
    for m in &r.mapped {
        outln!("mapped      {m}");
    }
    for n in &r.notes {
        outln!("not mapped  {n}");
    }
    for w in &r.written {
        outln!("wrote       {}", project.root().join(w).display());
    }
    let list = |names: &[String]| match names {
        [] => String::new(),
        n => format!(" ({})", n.join(", ")),
    };
    outln!(
        "imported {} recipe{}{} and {} component{}{}; each passes `kiln validate`",
        r.recipes.len(),
        if r.recipes.len() == 1 { "" } else { "s" },
        list(&r.recipes),
        r.components.len(),
        if r.components.len() == 1 { "" } else { "s" },
        list(&r.components),
    );
}
