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
                println!("private key: {} (mode 0600)", key.display());
                println!("public key:  {}", public.display());
                println!(
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

/// Loads the operator config (`--config`, `KILN_CONFIG`, or
/// `/etc/kiln/kiln.yaml` when it exists) and its signing key.
pub fn operator(
    explicit: Option<&std::path::Path>,
    project: &kiln::project::Project,
) -> Result<kiln::operator::OperatorConfig, Outcome> {
    let path = kiln::operator::OperatorConfig::locate(explicit);
    kiln::operator::OperatorConfig::load(path.as_deref(), project.root()).map_err(|e| {
        super::report(&e);
        Outcome::Failed
    })
}
