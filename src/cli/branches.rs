//! `kiln branches [--json]` and `kiln cleanup --branch NAME`: branch
//! pipelines as the record store knows them, and removing a branch's tags.

use kiln::branch::BranchName;
use kiln::pipeline::branches;
use kiln::project::Project;

use super::Outcome;

/// Arguments of `kiln branches`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the list as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `kiln cleanup`.
#[derive(Debug, clap::Args)]
pub struct CleanupArgs {
    /// The branch whose tags to remove from every registry its builds pushed to.
    #[arg(long, value_name = "NAME")]
    pub branch: String,
}

/// Lists the branches with their builds, tags and last cleanup.
pub async fn list(
    project: &Project,
    args: Args,
    operator: &kiln::operator::OperatorConfig,
) -> Outcome {
    let keys = kiln::record::ChainKeys::default();
    let records = match super::records::open_records(project, operator, keys).await {
        Ok(r) => r,
        Err(o) => return o,
    };
    let all = match branches::branches(&records).await {
        Ok(b) => b,
        Err(e) => {
            super::report(&e);
            return Outcome::Failed;
        }
    };
    if args.json {
        return super::output::json_result(&all);
    }
    for b in &all {
        let cleaned = match b.cleaned_at {
            Some(at) if at >= b.last_build => format!("cleaned up {}", at.to_rfc3339()),
            Some(at) => format!("built again after the cleanup of {}", at.to_rfc3339()),
            None => "not cleaned up".into(),
        };
        outln!(
            "{}  {} build(s), {} tag(s), {cleaned}",
            b.branch,
            b.builds.len(),
            b.tags.len()
        );
        for build in &b.builds {
            outln!("    {build}");
        }
    }
    Outcome::Ok
}

/// Removes the branch's tags and prints what was removed and left.
pub async fn cleanup(
    project: &Project,
    args: CleanupArgs,
    operator: kiln::operator::OperatorConfig,
) -> Outcome {
    let branch = match BranchName::parse(&args.branch) {
        Ok(b) => b,
        Err(e) => {
            super::report(&e);
            return Outcome::Usage;
        }
    };
    let pipeline = match super::test_recipes::pipeline(project, false, operator).await {
        Ok(p) => p,
        Err(o) => return o,
    };
    match pipeline.cleanup_branch(&branch).await {
        Ok(rec) => {
            for t in &rec.removed {
                outln!("removed {t}");
            }
            for (t, why) in &rec.left {
                outln!("left    {t}: {why}");
            }
            errln!(
                "branch `{branch}`: {} tag(s) removed, {} left; cleanup recorded",
                rec.removed.len(),
                rec.left.len()
            );
            if rec.left.is_empty() {
                Outcome::Ok
            } else {
                Outcome::Failed
            }
        }
        Err(e) => {
            super::report(&e);
            Outcome::Failed
        }
    }
}
