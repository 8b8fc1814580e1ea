//! `kiln key generate DIR`: a new ECDSA P-256 signing key pair
//! (`DIR/kiln.key`, mode 0600, and `DIR/kiln.pub`), for the operator
//! config's `signing.key`.

use std::path::PathBuf;

use super::Outcome;

/// Key helpers.
#[derive(Debug, clap::Subcommand)]
pub enum Args {
    /// Write DIR/kiln.key (PKCS#8 PEM, 0600) and DIR/kiln.pub (PKIX PEM); never overwrites.
    Generate {
        /// Folder for the key pair (created if missing; keep it outside every project).
        dir: PathBuf,
    },
}

/// Runs `kiln key …`.
pub fn run(args: Args) -> Outcome {
    match args {
        Args::Generate { dir } => match kiln::sign::SigningKey::generate(&dir) {
            Ok((key, public)) => {
                outln!("private key: {} (mode 0600)", key.display());
                outln!("public key:  {}", public.display());
                outln!(
                    "set `signing: {{key: {}}}` in the operator config (--config / KILN_CONFIG)",
                    key.display()
                );
                Outcome::Ok
            }
            Err(e) => {
                super::report(&e);
                Outcome::Failed
            }
        },
    }
}

/// Loads the operator config (`--config`, `KILN_CONFIG`,
/// `/etc/kiln/kiln.yaml` when it exists, else the project's
/// `config/kiln.yaml` with a warning) and its signing key.
pub async fn operator(
    explicit: Option<&std::path::Path>,
    project: &kiln::project::Project,
) -> Result<kiln::operator::OperatorConfig, Outcome> {
    let found = kiln::operator::OperatorConfig::locate(explicit, project.root());
    let loaded = kiln::operator::OperatorConfig::load(&found, project.root()).await;
    loaded.map_err(|e| {
        super::report(&e);
        Outcome::Failed
    })
}
