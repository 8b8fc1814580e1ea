//! `kiln records [PIPELINE] [--json] [--verify [--key PUB]] [--provenance BUILD]`.
//!
//! `--verify` always checks the whole chain (a pipeline's records are links
//! of the one project-wide chain) and, with a public key (`--key`, or the
//! operator config's signing key), every entry's signature; with a PIPELINE
//! (or `--json`/`--limit`) the records are then listed as without it, only
//! when the chain is intact.

use std::path::{Path, PathBuf};

use kiln::operator::OperatorConfig;
use kiln::project::Project;
use kiln::record::{ChainKeys, ChainedRecord, Records, Selector, provenance};

use super::{Outcome, fail, output};

/// Arguments of `kiln records`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this pipeline's records.
    pub pipeline: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Check the whole hash chain; exit 1 naming the first bad record. With
    /// PIPELINE, `--json` or `--limit`, then list the records as without it.
    #[arg(long, conflicts_with = "provenance")]
    pub verify: bool,
    /// Print the SLSA v1 provenance of BUILD (`pipeline:version-build` or a record id).
    #[arg(long, value_name = "BUILD", conflicts_with_all = ["pipeline", "json", "limit"])]
    pub provenance: Option<String>,
    /// Show at most N records.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Check signatures with this public key (PEM, `kiln.pub`) instead of
    /// the operator config's signing key.
    #[arg(long, value_name = "PUB")]
    pub key: Option<PathBuf>,
}

/// Opens the record store `--state` / `state:` names (default: the
/// project's SQLite file), checking entries with `keys`. A SQLite file that
/// does not exist reads as empty and is not created by reading.
pub async fn open_records(
    project: &Project,
    operator: &OperatorConfig,
    keys: ChainKeys,
) -> Result<Records, Outcome> {
    Records::open(&operator.state_location(project.root()), keys)
        .await
        .map_err(|e| fail(Outcome::Failed, &e))
}

/// The keys reading commands check records with: `--key PUB`, else the
/// operator config's signing key, else none.
pub fn reading_keys(
    operator: &OperatorConfig,
    public: Option<&Path>,
) -> Result<ChainKeys, Outcome> {
    kiln::operator::record_keys::verifying_keys(operator, public)
        .map_err(|e| fail(Outcome::Failed, &e))
}

/// Lists, verifies or exports records.
pub async fn run(project: &Project, args: Args, operator: &OperatorConfig) -> Outcome {
    let keys = match reading_keys(operator, args.key.as_deref()) {
        Ok(k) => k,
        Err(o) => return o,
    };
    let store = match open_records(project, operator, keys).await {
        Ok(s) => s,
        Err(o) => return o,
    };
    if args.verify {
        let lists = args.pipeline.is_some() || args.json || args.limit.is_some();
        // JSON on stdout stays parseable: the verdict goes to stderr then.
        match verify(project, &store, args.json).await {
            Outcome::Ok if lists => list(&store, &args).await,
            outcome => outcome,
        }
    } else if let Some(build) = &args.provenance {
        provenance(&store, build).await
    } else {
        list(&store, &args).await
    }
}

async fn verify(project: &Project, store: &Records, verdict_to_stderr: bool) -> Outcome {
    let ok = |line: String| {
        if verdict_to_stderr {
            errln!("{line}");
        } else {
            outln!("{line}");
        }
    };
    match store.exists().await {
        Ok(true) => {}
        Ok(false) => {
            ok("ok: no records yet".into());
            return Outcome::Ok;
        }
        Err(e) => return fail(Outcome::Failed, &e),
    }
    let report = match store.verify().await {
        Ok(r) => r,
        Err(e) => return fail(Outcome::Failed, &e),
    };
    match (report.first_bad, report.head) {
        (Some(bad), _) => {
            let mut failure = output::Failure::message(format_args!(
                "{} #{} `{}` (id {}) in {} failed verification: {}",
                bad.kind,
                bad.seq,
                bad.build,
                bad.id,
                project.display(&store.location()).display(),
                bad.problem
            ));
            failure.causes.push(format!(
                "{} record{} before it verified",
                report.checked,
                if report.checked == 1 { "" } else { "s" }
            ));
            output::print_failure(Outcome::Failed, &failure)
        }
        (None, head) => {
            let head = head.map_or_else(|| "-".into(), |h| h.to_string());
            let signatures = match &report.key_id {
                Some(key) => format!("every entry signed by key {key}"),
                None => format!(
                    "signatures not checked: no signing key configured, so records are \
                     unsigned ({} entries carry a signature; --key PUB checks them)",
                    report.signed
                ),
            };
            ok(format!(
                "ok: {} records, chain intact ({} events), head {head}; {signatures}",
                report.checked, report.events
            ));
            Outcome::Ok
        }
    }
}

async fn provenance(store: &Records, build: &str) -> Outcome {
    let selector: Selector = match build.parse() {
        Ok(s) => s,
        Err(e) => return fail(Outcome::Usage, &e),
    };
    let found = store.get(&selector).await;
    let statement = match found.and_then(|r| provenance::statement(&r.record)) {
        Ok(s) => s,
        Err(e) => return fail(Outcome::Failed, &e),
    };
    output::json_result(&statement)
}

async fn list(store: &Records, args: &Args) -> Outcome {
    let records = match store.list(args.pipeline.as_deref(), args.limit).await {
        Ok(r) => r,
        Err(e) => return fail(Outcome::Failed, &e),
    };
    if args.json {
        return output::json_result(&records);
    } else if records.is_empty() {
        errln!("no records yet");
    } else {
        out!("{}", table(&records));
    }
    Outcome::Ok
}

/// The `kiln records` table: build, status, key, digest, finished.
fn table(records: &[ChainedRecord]) -> String {
    let rows: Vec<[String; 5]> = records
        .iter()
        .map(|c| {
            let r = &c.record;
            [
                r.build_id().to_string(),
                r.status.to_string(),
                r.build_key.as_ref().map_or("-", |k| k.short()).to_string(),
                r.targets
                    .first()
                    .map_or("-", |t| t.manifest_digest.short())
                    .to_string(),
                r.finished_at.format("%Y-%m-%d %H:%M:%SZ").to_string(),
            ]
        })
        .collect();
    let header = ["BUILD", "STATUS", "KEY", "DIGEST", "FINISHED"].map(String::from);
    let mut widths = [0; 5];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}
