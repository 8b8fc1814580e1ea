//! `kiln records [PIPELINE] [--json] [--verify] [--provenance BUILD]`.
//!
//! `--verify` always checks the whole chain (a pipeline's records are links
//! of the one project-wide chain); with a PIPELINE (or `--json`/`--limit`) the
//! records are then listed as without it, only when the chain is intact.

use kiln::project::Project;
use kiln::record::{self, ChainedRecord, Selector, Store, provenance};

use super::{Outcome, report};

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
}

/// Opens the project's record database; `Ok(None)` when none exists yet (no
/// read-only command creates one).
pub fn open_store(project: &Project) -> Result<Option<Store>, Outcome> {
    let path = record::db_path(project.root());
    if !path.exists() {
        return Ok(None);
    }
    Store::open(&path).map(Some).map_err(|e| {
        report(&e);
        Outcome::Failed
    })
}

/// Lists, verifies or exports records.
pub fn run(project: &Project, args: Args) -> Outcome {
    let store = match open_store(project) {
        Ok(s) => s,
        Err(o) => return o,
    };
    if args.verify {
        let lists = args.pipeline.is_some() || args.json || args.limit.is_some();
        // JSON on stdout stays parseable: the verdict goes to stderr then.
        match verify(project, store.as_ref(), args.json) {
            Outcome::Ok if lists => list(store.as_ref(), &args),
            outcome => outcome,
        }
    } else if let Some(build) = &args.provenance {
        provenance(store.as_ref(), build)
    } else {
        list(store.as_ref(), &args)
    }
}

fn verify(project: &Project, store: Option<&Store>, verdict_to_stderr: bool) -> Outcome {
    let ok = |line: String| {
        if verdict_to_stderr {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
    let Some(store) = store else {
        ok("ok: no records yet".into());
        return Outcome::Ok;
    };
    let report = match store.verify() {
        Ok(r) => r,
        Err(e) => {
            self::report(&e);
            return Outcome::Failed;
        }
    };
    match (report.first_bad, report.head) {
        (Some(bad), _) => {
            eprintln!(
                "error: record #{} `{}` (id {}) in {} failed verification: {}",
                bad.seq,
                bad.build,
                bad.id,
                project.display(store.path()).display(),
                bad.problem
            );
            eprintln!(
                "  {} record{} before it verified",
                report.checked,
                if report.checked == 1 { "" } else { "s" }
            );
            Outcome::Failed
        }
        (None, head) => {
            let head = head.map_or_else(|| "-".into(), |h| h.to_string());
            ok(format!(
                "ok: {} records, chain intact, head {head}",
                report.checked
            ));
            Outcome::Ok
        }
    }
}

fn provenance(store: Option<&Store>, build: &str) -> Outcome {
    let selector: Selector = match build.parse() {
        Ok(s) => s,
        Err(e) => {
            report(&e);
            return Outcome::Usage;
        }
    };
    let found = match store {
        Some(s) => s.get(&selector),
        None => Err(record::RecordError::NotFound {
            selector: selector.to_string(),
        }),
    };
    let statement = match found.and_then(|r| provenance::statement(&r.record)) {
        Ok(s) => s,
        Err(e) => {
            report(&e);
            return Outcome::Failed;
        }
    };
    match serde_json::to_string_pretty(&statement) {
        Ok(json) => {
            println!("{json}");
            Outcome::Ok
        }
        Err(e) => {
            report(&e);
            Outcome::Failed
        }
    }
}

fn list(store: Option<&Store>, args: &Args) -> Outcome {
    let records = match store.map(|s| s.list(args.pipeline.as_deref(), args.limit)) {
        None => Vec::new(),
        Some(Ok(r)) => r,
        Some(Err(e)) => {
            report(&e);
            return Outcome::Failed;
        }
    };
    if args.json {
        match serde_json::to_string_pretty(&records) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                report(&e);
                return Outcome::Failed;
            }
        }
    } else if records.is_empty() {
        eprintln!("no records yet");
    } else {
        print!("{}", table(&records));
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
