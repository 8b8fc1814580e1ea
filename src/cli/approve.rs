//! `kiln approve BUILD [--note TEXT]`, `kiln reject BUILD --note TEXT` and
//! `kiln promote BUILD --to TARGET`: the approval gate and promotion against
//! the record store `--state` names (decisions signed with the operator's
//! key).

use kiln::pipeline::{Approvals, Decided, PromotionOutcome, approve::local_user};
use kiln::project::Project;
use kiln::record::{Decision, Selector};

use super::{Outcome, report};

/// Arguments of `kiln approve`.
#[derive(Debug, clap::Args)]
pub struct ApproveArgs {
    /// The build (`pipeline:version-build` or a record id).
    pub build: String,
    /// Why (kept in the approval event).
    #[arg(long)]
    pub note: Option<String>,
    /// Print the decision and its promotions as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `kiln reject`.
#[derive(Debug, clap::Args)]
pub struct RejectArgs {
    /// The build (`pipeline:version-build` or a record id).
    pub build: String,
    /// Why (required).
    #[arg(long)]
    pub note: String,
    /// Print the decision as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `kiln promote`.
#[derive(Debug, clap::Args)]
pub struct PromoteArgs {
    /// The build (`pipeline:version-build` or a record id).
    pub build: String,
    /// One of the build's promote targets: `REGISTRY/REPOSITORY` or
    /// `ecr:REGION/REPOSITORY`.
    #[arg(long, value_name = "TARGET")]
    pub to: String,
    /// Print the promotion as JSON.
    #[arg(long)]
    pub json: bool,
}

async fn approvals(
    project: &Project,
    operator: kiln::operator::OperatorConfig,
) -> Result<Approvals, Outcome> {
    let registry = super::registry_client(&operator)?;
    let location = operator.state_location(project.root());
    let keys = kiln::operator::record_keys::signing_keys(operator);
    let records = kiln::record::Records::open(&location, keys).await;
    Ok(Approvals {
        records: records.map_err(|e| super::fail(Outcome::Failed, &e))?,
        registry,
    })
}

fn selector(build: &str) -> Result<Selector, Outcome> {
    build.parse().map_err(|e| {
        report(&e);
        Outcome::Usage
    })
}

/// `kiln approve` and `kiln reject`.
pub async fn decide(
    project: &Project,
    operator: kiln::operator::OperatorConfig,
    build: &str,
    decision: Decision,
    note: Option<String>,
) -> Outcome {
    let (a, sel) = match (approvals(project, operator).await, selector(build)) {
        (Ok(a), Ok(s)) => (a, s),
        (Err(o), _) | (_, Err(o)) => return o,
    };
    match a.decide(sel, decision, local_user(), note).await {
        Ok(d) if super::output::mode().json => super::output::json_result(&d),
        Ok(d) => {
            print_decided(&d);
            Outcome::Ok
        }
        Err(e) => {
            report(&e);
            Outcome::Failed
        }
    }
}

fn print_decided(d: &Decided) {
    let e = &d.decision.event;
    let what = match &e.kind {
        kiln::record::EventKind::Approval { decision, .. } => decision.to_string(),
        _ => "decided".into(),
    };
    outln!("{} {what} by {} (event {})", e.build, e.by, d.decision.hash);
    for p in &d.promotions {
        print_promotion(p);
    }
}

fn print_promotion(p: &PromotionOutcome) {
    let c = &p.copied;
    let tags = c.tags.join(",");
    let state = if p.no_op {
        "already promoted"
    } else {
        "promoted"
    };
    outln!(
        "{state} {}/{}:{tags}@{} ({} bytes uploaded, {} blobs mounted{})",
        c.registry,
        c.repository,
        c.manifest_digest,
        c.bytes_uploaded,
        c.blobs_mounted,
        if c.attached.is_empty() {
            String::new()
        } else {
            format!(", with {}", c.attached.join(", "))
        }
    );
}

/// `kiln promote BUILD --to TARGET`.
pub async fn promote(
    project: &Project,
    operator: kiln::operator::OperatorConfig,
    args: PromoteArgs,
) -> Outcome {
    let (a, sel) = match (approvals(project, operator).await, selector(&args.build)) {
        (Ok(a), Ok(s)) => (a, s),
        (Err(o), _) | (_, Err(o)) => return o,
    };
    match a.promote(sel, &args.to, &local_user()).await {
        Ok(p) if args.json => super::output::json_result(&p),
        Ok(p) => {
            print_promotion(&p);
            Outcome::Ok
        }
        Err(e) => {
            report(&e);
            Outcome::Failed
        }
    }
}
