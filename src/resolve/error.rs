//! Errors of the resolve stage.

use std::fmt;
use std::path::PathBuf;

use crate::registry::RegistryError;

/// One reference that could not be pinned or checked.
#[derive(Debug, thiserror::Error)]
#[error("cannot pin `{reference}` (recipe `{recipe}`)")]
pub struct Unresolved {
    /// A recipe that uses the reference (the first one, when several do).
    pub recipe: String,
    /// The reference as written.
    pub reference: String,
    /// The registry failure.
    #[source]
    pub source: RegistryError,
}

/// The failures of one resolve or check, rendered one per line.
#[derive(Debug)]
pub struct Failures(pub Vec<Unresolved>);

impl fmt::Display for Failures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, u) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{u}: {}", u.source)?;
        }
        Ok(())
    }
}

/// Why resolving, checking or updating the lock failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// Some references could not be resolved; nothing was written.
    #[error("{} parent image reference(s) could not be resolved: {failures}", .failures.0.len())]
    Unresolved {
        /// Every failure, in input order.
        failures: Failures,
    },
    /// The lock file exists but could not be read.
    #[error("cannot read lock file `{path}`")]
    ReadLock {
        /// The lock file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The lock file is not valid.
    #[error("cannot parse lock file `{path}`")]
    ParseLock {
        /// The lock file.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// The lock file has a version this kiln does not understand.
    #[error("lock file `{path}` has version {found}, this kiln reads version {supported}")]
    LockVersion {
        /// The lock file.
        path: PathBuf,
        /// The version in the file.
        found: u32,
        /// The version this kiln writes.
        supported: u32,
    },
    /// The lock file could not be written.
    #[error("cannot write lock file `{path}`")]
    WriteLock {
        /// The lock file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
}

impl ResolveError {
    /// The per-reference failures, if this is [`ResolveError::Unresolved`].
    pub fn failures(&self) -> &[Unresolved] {
        match self {
            ResolveError::Unresolved { failures } => &failures.0,
            _ => &[],
        }
    }
}
