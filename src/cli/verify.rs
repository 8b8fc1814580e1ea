//! `kiln verify REF@sha256:… [--key PUB] [--server URL] [--json]`: the
//! downstream check of a digest (signature, attestations, approval); exit 0
//! only when every check holds.

use std::path::{Path, PathBuf};

use kiln::reference::ImageReference;
use kiln::registry::RegistryClient;
use kiln::sign::PublicKey;

use super::Outcome;

/// Arguments of `kiln verify`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The image, by digest: REGISTRY/REPOSITORY@sha256:….
    pub reference: String,
    /// kiln's public key (PEM, `kiln.pub`); default: the public half of the
    /// operator config's signing key.
    #[arg(long, value_name = "PUB")]
    pub key: Option<PathBuf>,
    /// Also check that this kiln daemon's record approves the digest.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// API token for --server (prefer the KILN_TOKEN environment variable).
    #[arg(long, env = "KILN_TOKEN", hide_env_values = true, requires = "server")]
    pub token: Option<String>,
    /// Trust only these PEM CA certificates for an https:// --server.
    #[arg(long, env = "KILN_CACERT", value_name = "FILE", requires = "server")]
    pub cacert: Option<PathBuf>,
    /// Print the checks as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The key to verify with: `--key`, else the operator config's.
async fn key(args: &Args, config: Option<&Path>, project: &Path) -> Result<PublicKey, Outcome> {
    if let Some(path) = &args.key {
        return PublicKey::load(path).map_err(|e| {
            super::report(&e);
            Outcome::Failed
        });
    }
    let located = kiln::operator::OperatorConfig::locate(config, project);
    let loaded = kiln::operator::OperatorConfig::load(&located, project).await;
    let operator = loaded.map_err(|e| {
        super::report(&e);
        Outcome::Failed
    })?;
    match operator.signing {
        Some(k) => Ok(PublicKey::of(&k)),
        None => Err(super::output::fail_msg(
            Outcome::Usage,
            "no key to verify with: pass --key kiln.pub (or an operator config with `signing.key`)",
        )),
    }
}

/// Runs `kiln verify`.
pub async fn run(config: Option<&Path>, project: &Path, args: Args) -> Outcome {
    let key = match key(&args, config, project).await {
        Ok(k) => k,
        Err(o) => return o,
    };
    let reference = match ImageReference::parse(&args.reference) {
        Ok(r) => r,
        Err(e) => {
            super::report(&e);
            return Outcome::Usage;
        }
    };
    let server = match &args.server {
        Some(url) => {
            match super::client::connect(url, args.token.clone(), args.cacert.as_deref()) {
                Ok(c) => Some(c),
                Err(o) => return o,
            }
        }
        None => None,
    };
    let registry = match RegistryClient::with_defaults() {
        Ok(r) => r,
        Err(e) => {
            super::report(&e);
            return Outcome::Failed;
        }
    };
    let v = match kiln::sign::verify::verify(&registry, &key, &reference, server.as_ref()).await {
        Ok(v) => v,
        Err(e) => {
            super::report(&e);
            return Outcome::Usage;
        }
    };
    if args.json {
        if super::output::json_result(&v) != Outcome::Ok {
            return Outcome::Failed;
        }
    } else {
        for c in &v.checks {
            let mark = if c.passed { "ok  " } else { "FAIL" };
            outln!("{mark} {}: {}", c.name, c.detail);
        }
        let failed = v.checks.iter().filter(|c| !c.passed).count();
        match failed {
            0 => outln!("verified: {}@{}", v.repository, v.digest),
            n => outln!("NOT verified: {n} of {} checks failed", v.checks.len()),
        }
    }
    if v.passed() {
        Outcome::Ok
    } else {
        Outcome::Failed
    }
}
