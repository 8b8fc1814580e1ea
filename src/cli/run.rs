//! `kiln run RECIPE`: the whole pipeline with readable progress per stage
//! and a final summary.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use kiln::distribute::PushEvent;
use kiln::pipeline::{Pipeline, PipelineError, PipelineEvent, RunOptions, RunSummary};
use kiln::project::Project;
use kiln::record::Status;
use kiln::registry::RegistryClient;

use super::Outcome;
use super::build::Printer;

/// Arguments of `kiln run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Recipe name or path.
    pub recipe: String,
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
    match e {
        PipelineEvent::StageStarted(s) => eprintln!("==> {s}"),
        PipelineEvent::Notice(line) => eprintln!("note: {line}"),
        PipelineEvent::StageFinished {
            stage,
            elapsed,
            note,
        } => {
            eprintln!("    {stage} done in {:.2}s: {note}", elapsed.as_secs_f64())
        }
        PipelineEvent::Build(b) => {
            if let Ok(mut p) = printer.lock() {
                p.event(b)
            }
        }
        PipelineEvent::Check {
            name,
            passed,
            detail,
        } => {
            let mark = if passed { "ok" } else { "FAIL" };
            if detail.is_empty() || passed {
                eprintln!("    {mark:4} {name}");
            } else {
                eprintln!("    {mark:4} {name}: {detail}");
            }
        }
        PipelineEvent::Push(p) => match p {
            PushEvent::BlobUploaded {
                repository,
                digest,
                bytes,
            } => {
                eprintln!(
                    "    uploaded {} to {repository} ({bytes} bytes)",
                    digest.short()
                )
            }
            PushEvent::BlobSkipped { repository, digest } => {
                eprintln!("    {repository} has {} already", digest.short())
            }
            PushEvent::BlobMounted {
                repository,
                digest,
                from,
            } => {
                eprintln!(
                    "    mounted {} into {repository} from {from}",
                    digest.short()
                )
            }
            PushEvent::TagPushed {
                repository,
                tag,
                digest,
            } => {
                eprintln!("    tagged {repository}:{tag} -> {digest}")
            }
            PushEvent::TagUnchanged { repository, tag } => {
                eprintln!("    {repository}:{tag} already points at this image")
            }
            _ => {}
        },
    }
}

fn print_summary(s: &RunSummary) {
    let status = match s.status {
        Status::Passed => "passed",
        Status::UpToDate => {
            "up to date (a passing record has this build key; nothing built or pushed)"
        }
        Status::Failed => "failed",
        Status::Cancelled => "cancelled",
    };
    println!("pipeline  {}", s.pipeline);
    println!("status    {status}");
    println!("build key {}", s.build_key);
    if let Some(r) = &s.record {
        println!("record    {} ({})", r.record.build_id(), r.record.id);
    }
    if let Some(p) = &s.pushed {
        for t in &p.targets {
            println!(
                "pushed    {}/{}:{} ({} bytes uploaded)",
                t.registry_host,
                t.repository,
                t.tags.join(","),
                t.bytes_uploaded
            );
        }
    }
    for a in &s.approved {
        println!("approved  {a}");
    }
    let stages: Vec<String> = s
        .timings
        .iter()
        .map(|(st, d)| format!("{st} {:.2}s", d.as_secs_f64()))
        .collect();
    println!("timings   {}", stages.join(", "));
}

/// Runs the pipeline.
pub async fn run(
    project: &Project,
    args: Args,
    operator: kiln::operator::OperatorConfig,
) -> Outcome {
    let docker = match kiln::docker::connect().await {
        Ok(d) => d,
        Err(e) => {
            super::report(&e);
            return Outcome::Failed;
        }
    };
    let registry = match RegistryClient::with_defaults() {
        Ok(r) => r,
        Err(e) => {
            super::report(&e);
            return Outcome::Failed;
        }
    };
    let pipeline = Pipeline {
        project: project.clone(),
        docker,
        registry,
        signing: operator.signing.map(Arc::new),
    };
    let printer = Arc::new(Mutex::new(Printer {
        tty: std::io::stderr().is_terminal(),
        quiet: args.quiet,
    }));
    let quiet = args.quiet;
    let opts = RunOptions {
        update_parents: args.update,
        no_cache: args.no_cache,
        events: Arc::new(move |e| {
            if !quiet {
                print_event(&printer, e)
            }
        }),
        ..RunOptions::default()
    };
    let cancel = opts.cancel.clone();
    tokio::spawn(async move {
        kiln::shutdown::requested().await;
        eprintln!("interrupted: cancelling and cleaning up");
        cancel.cancel();
    });
    match pipeline.run(&args.recipe, &opts).await {
        Ok(summary) => {
            if args.json {
                println!("{}", summary_json(&summary));
            } else {
                print_summary(&summary);
            }
            Outcome::Ok
        }
        Err(PipelineError::Invalid(d)) => {
            eprintln!("{d}");
            Outcome::Failed
        }
        Err(e) => {
            super::report(&e);
            if let PipelineError::Stage {
                record: Some(r), ..
            } = &e
            {
                eprintln!(
                    "recorded as failed: {} ({})",
                    r.record.build_id(),
                    r.record.id
                );
            }
            Outcome::Failed
        }
    }
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
