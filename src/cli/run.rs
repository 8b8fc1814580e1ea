//! `kiln run RECIPE`: the whole pipeline with readable progress per stage
//! and a final summary.

use std::sync::{Arc, Mutex};

use kiln::distribute::PushEvent;
use kiln::pipeline::{Pipeline, PipelineError, PipelineEvent, RunOptions, RunSummary};
use kiln::project::Project;
use kiln::record::Status;
use kiln::registry::RegistryClient;

use super::build::Printer;
use super::progress::Progress;
use super::{Outcome, exit_code, fail, output};

/// Arguments of `kiln run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Recipe name or path.
    #[arg(required_unless_present = "affected_since")]
    pub recipe: Option<String>,
    /// Run every recipe whose inputs changed since this git revision
    /// (`kiln affected --since REF`), one after another.
    #[arg(long, value_name = "REF", conflicts_with = "recipe")]
    pub affected_since: Option<String>,
    /// A branch pipeline run: tags get `-branch.<name>`, the record names
    /// the branch and is never approved (see `kiln branches`, `kiln cleanup`).
    #[arg(long, value_name = "NAME")]
    pub branch: Option<String>,
    /// Re-resolve parent images even when kiln.lock has them.
    #[arg(long)]
    pub update: bool,
    /// Build without the Docker layer cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Only the summary.
    #[arg(long, short)]
    pub quiet: bool,
}

fn print_event(printer: &Mutex<Printer>, e: PipelineEvent) {
    let Ok(mut printer) = printer.lock() else {
        return;
    };
    let line = match e {
        PipelineEvent::StageStarted(s) => {
            printer.progress.finish();
            format!("==> {s}")
        }
        PipelineEvent::Notice(line) => format!("note: {line}"),
        PipelineEvent::StageFinished {
            stage,
            elapsed,
            note,
        } => {
            printer.progress.finish();
            format!("    {stage} done in {:.2}s: {note}", elapsed.as_secs_f64())
        }
        PipelineEvent::Build(b) => return printer.event(b),
        PipelineEvent::Check {
            name,
            passed,
            detail,
        } => {
            let mark = if passed { "ok" } else { "FAIL" };
            if detail.is_empty() || passed {
                format!("    {mark:4} {name}")
            } else {
                format!("    {mark:4} {name}: {detail}")
            }
        }
        PipelineEvent::Push(p) => match push_line(&mut printer.progress, p) {
            Some(line) => line,
            None => return,
        },
    };
    printer.progress.line(&line);
}

/// A push event's line; export and compression move the bar instead.
pub(super) fn push_line(progress: &mut Progress, p: PushEvent) -> Option<String> {
    Some(match p {
        PushEvent::Exporting { layers_to_compress } => {
            progress.start("export + compress", layers_to_compress as u64);
            format!("    exporting the image; {layers_to_compress} layer(s) to compress")
        }
        PushEvent::LayerCompressed { .. } if progress.active() => {
            progress.inc();
            return None;
        }
        PushEvent::BlobUploaded {
            repository,
            digest,
            bytes,
        } => {
            format!(
                "    uploaded {} to {repository} ({bytes} bytes)",
                digest.short()
            )
        }
        PushEvent::BlobSkipped { repository, digest } => {
            format!("    {repository} has {} already", digest.short())
        }
        PushEvent::BlobMounted {
            repository,
            digest,
            from,
        } => {
            format!(
                "    mounted {} into {repository} from {from}",
                digest.short()
            )
        }
        PushEvent::TagPushed {
            repository,
            tag,
            digest,
        } => {
            progress.finish();
            format!("    tagged {repository}:{tag} -> {digest}")
        }
        PushEvent::TagUnchanged { repository, tag } => {
            format!("    {repository}:{tag} already points at this image")
        }
        _ => return None,
    })
}

fn print_summary(s: &RunSummary) {
    let status = match s.status {
        Status::Passed => "passed",
        Status::UpToDate => {
            "up to date (a passing record has this build key; nothing built or pushed)"
        }
        Status::Failed => "failed",
        Status::Cancelled => "cancelled",
        Status::AwaitingApproval => {
            "awaiting approval (pushed to staging; `kiln approve BUILD` promotes it)"
        }
    };
    outln!("pipeline  {}", s.pipeline);
    outln!("status    {status}");
    outln!("build key {}", s.build_key);
    if let Some(r) = &s.record {
        outln!("record    {} ({})", r.record.build_id(), r.record.id);
    }
    if let Some(p) = &s.pushed {
        for t in &p.targets {
            outln!(
                "pushed    {}/{}:{} ({} bytes uploaded)",
                t.registry_host,
                t.repository,
                t.tags.join(","),
                t.bytes_uploaded
            );
        }
    }
    for a in &s.approved {
        outln!("approved  {a}");
    }
    let stages: Vec<String> = s
        .timings
        .iter()
        .map(|(st, d)| format!("{st} {:.2}s", d.as_secs_f64()))
        .collect();
    outln!("timings   {}", stages.join(", "));
}

/// Runs the pipeline.
pub async fn run(
    project: &Project,
    args: Args,
    operator: kiln::operator::OperatorConfig,
) -> Outcome {
    let docker = match kiln::docker::connect().await {
        Ok(d) => d,
        Err(e) => return fail(Outcome::Infrastructure, &e),
    };
    let registry = match RegistryClient::new(operator.daemon.registries.client_config()) {
        Ok(r) => r,
        Err(e) => return fail(Outcome::Infrastructure, &e),
    };
    let keys = kiln::record::ChainKeys::default();
    let records = match super::records::open_records(project, &operator, keys).await {
        Ok(r) => r,
        Err(o) => return o,
    };
    let pipeline = Pipeline {
        project: project.clone(),
        docker,
        registry,
        signing: operator.signing.map(Arc::new),
        governance: Arc::new(operator.governance),
        records,
    };
    let printer = Arc::new(Mutex::new(Printer {
        tty: output::mode().color,
        quiet: args.quiet,
        ..Printer::default()
    }));
    let quiet = args.quiet;
    let events = Arc::clone(&printer);
    let branch = match args
        .branch
        .as_deref()
        .map(kiln::branch::BranchName::parse)
        .transpose()
    {
        Ok(b) => b,
        Err(e) => return fail(Outcome::Usage, &e),
    };
    let opts = RunOptions {
        branch,
        update_parents: args.update,
        no_cache: args.no_cache,
        events: Arc::new(move |e| {
            if !quiet {
                print_event(&events, e)
            }
        }),
        ..RunOptions::default()
    };
    let cancel = opts.cancel.clone();
    tokio::spawn(async move {
        kiln::shutdown::requested().await;
        errln!("interrupted: cancelling and cleaning up");
        cancel.cancel();
    });
    let recipes = match (&args.recipe, &args.affected_since) {
        (Some(r), _) => vec![r.clone()],
        (None, Some(since)) => match super::affected::compute(project, since) {
            Ok(a) => a.recipes.into_iter().map(|r| r.recipe).collect(),
            Err(o) => return o,
        },
        (None, None) => unreachable!("clap requires one"),
    };
    if args.affected_since.is_some() {
        let names = if recipes.is_empty() {
            "none".into()
        } else {
            recipes.join(", ")
        };
        errln!("affected: {names}");
    }
    let mut outcome = Outcome::Ok;
    for recipe in &recipes {
        if opts.cancel.is_cancelled() {
            return Outcome::Failed;
        }
        let result = pipeline.run(recipe, &opts).await;
        if let Ok(mut p) = printer.lock() {
            p.progress.finish();
        }
        let this = report_run(recipe, result, args.json);
        if outcome == Outcome::Ok {
            outcome = this;
        }
    }
    outcome
}

/// Prints one recipe's summary or error; its exit code.
fn report_run(recipe: &str, result: Result<RunSummary, PipelineError>, json: bool) -> Outcome {
    match result {
        Ok(summary) => {
            if json {
                outln!("{}", summary_json(&summary));
            } else {
                print_summary(&summary);
            }
            Outcome::Ok
        }
        Err(e) => failed(recipe, &e),
    }
}

/// A failed run: the error (JSON with `--json`, with the failed record's
/// build and id when one was written) and its exit code.
fn failed(recipe: &str, e: &PipelineError) -> Outcome {
    let outcome = exit_code::pipeline(e);
    let failure = match e {
        PipelineError::Invalid(d) => output::Failure {
            diagnostics: d.0.clone(),
            ..output::Failure::message(format_args!("recipe `{recipe}` is invalid"))
        },
        e => output::Failure::of(e),
    };
    let record = match e {
        PipelineError::Stage {
            record: Some(r), ..
        } => Some(r),
        _ => None,
    };
    if !output::mode().json {
        output::print_failure(outcome, &failure);
        if let Some(r) = record {
            errln!(
                "recorded as failed: {} ({})",
                r.record.build_id(),
                r.record.id
            );
        }
        return outcome;
    }
    let mut doc = failure.json(outcome);
    if let Some(r) = record {
        doc["record"] = serde_json::json!({
            "id": r.record.id, "build": r.record.build_id().to_string(),
            "hash": r.hash, "status": r.record.status,
        });
    }
    outln!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    outcome
}

fn summary_json(s: &RunSummary) -> String {
    let v = serde_json::json!({
        "pipeline": s.pipeline,
        "status": s.status,
        "buildKey": s.build_key,
        "imageId": s.image_id,
        "record": s.record.as_ref().map(|r| serde_json::json!({"id": r.record.id, "build": r.record.build_id().to_string(), "hash": r.hash})),
        "approved": s.approved,
        "timingsMs": s.timings.iter().map(|(st, d)| (st.as_str().to_string(), d.as_millis() as u64)).collect::<std::collections::BTreeMap<_, _>>(),
    });
    serde_json::to_string_pretty(&v).unwrap_or_default()
}
