//! `kiln push [RECIPE] --image IMG --build N [--to HOST/REPO]… [--tag T]…`:
//! the distribute stage on its own, for an image already in the daemon.
//! Prints one line per target and, with `--json`, the `PushedImage` numbers.
//! With the operator's signing key every verified target is signed, as the
//! sign stage signs a run's push (no attestations: there is no record to
//! attest).

use std::sync::atomic::{AtomicU64, Ordering};

use kiln::distribute::{self, PushEvent, PushOptions, PushRequest};
use kiln::load::{self, Compression, DistributeConfig, Target};
use kiln::operator::OperatorConfig;
use kiln::project::Project;
use kiln::sign::attach::{SignTarget, sign_target};

use super::Outcome;

/// Arguments of `kiln push`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Recipe (name or path) giving name, version, targets and tag templates.
    pub recipe: Option<String>,
    /// The image in the daemon (id or name).
    #[arg(long)]
    pub image: String,
    /// Build number for tag templates. Required: `kiln run` allocates build
    /// numbers from the record store; a hand-picked one must not collide.
    #[arg(long)]
    pub build: u64,
    /// OCI targets `host[:port]/repository`, replacing the recipe's targets.
    #[arg(long = "to")]
    pub to: Vec<String>,
    /// Tag templates, replacing the recipe's.
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Blob uploads in flight per target.
    #[arg(long, default_value_t = 5)]
    pub concurrency: usize,
    /// gzip level (changes digests).
    #[arg(long, default_value_t = 1)]
    pub level: u32,
    /// Compress every layer at `--level`, even incompressible ones (by
    /// default those are stored uncompressed inside gzip).
    #[arg(long)]
    pub no_adaptive: bool,
    /// Layer compression, replacing the recipe's: `gzip` or `zstd`
    /// (Docker 20.10 cannot pull zstd layers).
    #[arg(long, value_parser = parse_compression)]
    pub compression: Option<Compression>,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Pushes and prints the outcome.
pub async fn run(project: &Project, args: Args, operator: OperatorConfig) -> Outcome {
    let (name, version, mut dist) = match &args.recipe {
        Some(r) => match load::load_recipe(project, r) {
            Ok(r) => (r.name, r.version, r.distribute),
            Err(d) => {
                return super::output::fail_invalid(d.0, format_args!("recipe `{r}` is invalid"));
            }
        },
        None => (
            "image".to_string(),
            semver::Version::new(0, 0, 0),
            DistributeConfig::default(),
        ),
    };
    if !args.to.is_empty() {
        dist.targets = Vec::new();
        for t in &args.to {
            let Some((registry, repository)) = t.split_once('/') else {
                return super::fail_msg(
                    Outcome::Usage,
                    format_args!("`--to {t}` must be host[:port]/repository"),
                );
            };
            dist.targets.push(Target::Oci {
                registry: registry.into(),
                repository: repository.into(),
            });
        }
    }
    if !args.tags.is_empty() {
        dist.tags = args.tags.clone();
    }
    if let Some(c) = args.compression {
        dist.compression = c;
    }
    if dist.targets.is_empty() {
        return super::fail_msg(
            Outcome::Usage,
            "no targets: give a recipe with `distribute.targets` or `--to`",
        );
    }
    let docker = match kiln::docker::connect().await {
        Ok(d) => d,
        Err(e) => return super::fail(Outcome::Infrastructure, &e),
    };
    let client = match super::registry_client(&operator) {
        Ok(c) => c,
        Err(o) => return o,
    };
    let identity = (name.clone(), version.to_string());
    let req = PushRequest {
        image: args.image.clone(),
        name,
        version,
        build: args.build,
        distribute: dist,
        parent: None,
        state_dir: Some(project.root().join(".kiln/state")),
        options: PushOptions {
            concurrency: args.concurrency,
            compression_level: args.level,
            adaptive: !args.no_adaptive,
            ..PushOptions::default()
        },
    };
    let bytes = AtomicU64::new(0);
    // On a terminal: the export + compression bar and a line per blob, as
    // `kiln run` shows them; elsewhere only the result (as before).
    let progress = std::sync::Mutex::new(super::progress::Progress::default());
    let on_event = |e: &PushEvent| {
        if let PushEvent::BlobUploaded { bytes: b, .. } = e {
            bytes.fetch_add(*b, Ordering::Relaxed);
        }
        tracing::debug!(?e, "push");
        if super::output::mode().progress
            && let Ok(mut p) = progress.lock()
            && let Some(line) = super::run::push_line(&mut p, e.clone())
        {
            p.line(&line);
        }
    };
    let result = distribute::distribute(&docker, &client, &req, &on_event).await;
    if let Ok(mut p) = progress.lock() {
        p.finish();
    }
    match result {
        Ok(p) => {
            if let Some(key) = &operator.signing
                && let Err(o) = sign(&client, key, &p, &identity, args.build).await
            {
                return o;
            }
            if args.json {
                let targets: Vec<_> = p
                    .targets
                    .iter()
                    .map(|t| {
                        serde_json::json!({
                            "repository": format!("{}/{}", t.registry_host, t.repository),
                            "tags": t.tags, "tagsAdded": t.tags_added, "verified": t.verified,
                            "bytesUploaded": t.bytes_uploaded, "blobsUploaded": t.blobs_uploaded,
                            "blobsSkipped": t.blobs_skipped, "blobsMounted": t.blobs_mounted,
                        })
                    })
                    .collect();
                outln!(
                    "{}",
                    serde_json::json!({
                        "manifestDigest": p.manifest_digest.to_string(), "configDigest": p.config_digest.to_string(),
                        "exported": p.exported, "layersCompressed": p.layers_compressed, "targets": targets,
                    })
                );
            } else {
                for t in &p.targets {
                    outln!(
                        "{}/{}@{} tags {} ({}; {} bytes, {} uploaded, {} skipped, {} mounted)",
                        t.registry_host,
                        t.repository,
                        t.manifest_digest,
                        t.tags.join(","),
                        if t.verified {
                            "verified"
                        } else {
                            "NOT verified"
                        },
                        t.bytes_uploaded,
                        t.blobs_uploaded,
                        t.blobs_skipped,
                        t.blobs_mounted
                    );
                }
            }
            Outcome::Ok
        }
        Err(e) => super::fail(Outcome::Infrastructure, &e),
    }
}

/// Signs every verified target of `p` (kept when kiln's signature of the
/// digest is already there).
async fn sign(
    client: &kiln::registry::RegistryClient,
    key: &kiln::sign::SigningKey,
    p: &distribute::PushedImage,
    (pipeline, version): &(String, String),
    build: u64,
) -> Result<(), Outcome> {
    let optional = serde_json::json!({
        "dev.kiln.pipeline": pipeline,
        "dev.kiln.version": version,
        "dev.kiln.build": build.to_string(),
    });
    for t in p.targets.iter().filter(|t| t.verified) {
        let target = SignTarget {
            target: t.target.clone(),
            digest: t.manifest_digest.clone(),
        };
        match sign_target(client, key, &target, optional.clone()).await {
            Ok(s) if s.pushed => errln!("signed {}", s.signature_ref),
            Ok(s) => errln!("already signed {}", s.signature_ref),
            Err(e) => return Err(super::fail(Outcome::Infrastructure, &e)),
        }
    }
    Ok(())
}

fn parse_compression(s: &str) -> Result<Compression, String> {
    match s {
        "gzip" => Ok(Compression::Gzip),
        "zstd" => Ok(Compression::Zstd),
        _ => Err(format!("`{s}` is not a compression (gzip or zstd)")),
    }
}
