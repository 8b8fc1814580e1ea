//! The project folder (`recipes/`, `components/`, `dockerfiles/`, `config/`)
//! and the one place that turns user-written relative paths into files,
//! refusing anything that would escape the folder.

use std::path::{Component, Path, PathBuf};

use crate::diagnostic::Diagnostic;

/// Largest project file (recipe, component, template) kiln reads.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// A project root, canonicalised.
#[derive(Debug, Clone)]
pub struct Project {
    root: PathBuf,
    /// The operator's build policy (default builder, allowed secret
    /// sources), applied when recipes load; not part of the folder.
    build_policy: std::sync::Arc<crate::load::build_settings::BuildPolicy>,
}

/// Why a path given in a project file was refused or could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    /// Absolute paths are not allowed.
    #[error("path `{0}` is absolute; use a path relative to the project folder")]
    Absolute(String),
    /// `..` components are not allowed.
    #[error("path `{0}` contains `..`; paths cannot leave the project folder")]
    ParentDir(String),
    /// The path, after following symlinks, lies outside the allowed folder.
    #[error("path `{path}` resolves to `{target}`, outside `{folder}`")]
    Escapes {
        /// The path as written.
        path: String,
        /// Where it leads.
        target: PathBuf,
        /// The folder it must stay in.
        folder: PathBuf,
    },
    /// The file does not exist.
    #[error("`{0}` does not exist")]
    Missing(PathBuf),
    /// The file is larger than [`MAX_FILE_BYTES`].
    #[error("`{path}` is {size} bytes; the limit is {MAX_FILE_BYTES} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// Reading failed.
    #[error("error reading `{path}`")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl Project {
    /// Opens a project folder.
    pub fn open(root: impl AsRef<Path>) -> std::io::Result<Self> {
        let root = root.as_ref().canonicalize()?;
        Ok(Project {
            root,
            build_policy: Default::default(),
        })
    }

    /// This project with the operator's build policy (operator config
    /// `build:`), which every recipe loaded through it follows.
    pub fn with_build_policy(mut self, policy: crate::load::build_settings::BuildPolicy) -> Self {
        self.build_policy = std::sync::Arc::new(policy);
        self
    }

    /// The operator's build policy.
    pub fn build_policy(&self) -> &crate::load::build_settings::BuildPolicy {
        &self.build_policy
    }

    /// The canonical root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `root/sub`.
    pub fn dir(&self, sub: &str) -> PathBuf {
        self.root.join(sub)
    }

    /// Shows `path` relative to the root when possible.
    pub fn display(&self, path: &Path) -> PathBuf {
        path.strip_prefix(&self.root)
            .map(Path::to_path_buf)
            .unwrap_or_else(|_| path.to_path_buf())
    }

    /// Resolves `rel` (as written in a project file) below `root/folder`,
    /// refusing absolute paths, `..` and symlinks that lead outside the
    /// folder. Checked before anything is read. The file must exist.
    pub fn confined(&self, folder: &str, rel: &str) -> Result<PathBuf, PathError> {
        let p = Path::new(rel);
        if p.is_absolute() || rel.starts_with('~') {
            return Err(PathError::Absolute(rel.to_string()));
        }
        if p.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(PathError::ParentDir(rel.to_string()));
        }
        let base = self.root.join(folder);
        let joined = base.join(p);
        let canonical = joined
            .canonicalize()
            .map_err(|_| PathError::Missing(self.display(&joined)))?;
        let base = base.canonicalize().unwrap_or(base);
        if !canonical.starts_with(&base) {
            return Err(PathError::Escapes {
                path: rel.to_string(),
                target: canonical,
                folder: self.display(&base),
            });
        }
        Ok(canonical)
    }

    /// Reads a project file (already confined) as UTF-8, with the size limit.
    pub fn read(&self, path: &Path) -> Result<String, PathError> {
        let shown = self.display(path);
        let meta = std::fs::metadata(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                PathError::Missing(shown.clone())
            } else {
                PathError::Io {
                    path: shown.clone(),
                    source,
                }
            }
        })?;
        if meta.len() > MAX_FILE_BYTES {
            return Err(PathError::TooLarge {
                path: shown,
                size: meta.len(),
            });
        }
        std::fs::read_to_string(path).map_err(|source| PathError::Io {
            path: shown,
            source,
        })
    }

    /// A diagnostic for a path error found while reading `from` at `line`.
    pub fn path_diagnostic(
        &self,
        from: &Path,
        source: &str,
        line: u64,
        column: u64,
        err: &PathError,
    ) -> Diagnostic {
        Diagnostic::at(self.display(from), source, line, column, err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_escapes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("components")).unwrap();
        std::fs::write(dir.path().join("outside.yaml"), "x").unwrap();
        std::fs::write(dir.path().join("components/ok.yaml"), "x").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink("../outside.yaml", dir.path().join("components/link.yaml"))
            .unwrap();
        let p = Project::open(dir.path()).unwrap();
        assert!(p.confined("components", "ok.yaml").is_ok());
        assert!(matches!(
            p.confined("components", "../outside.yaml"),
            Err(PathError::ParentDir(_))
        ));
        assert!(matches!(
            p.confined("components", "/etc/passwd"),
            Err(PathError::Absolute(_))
        ));
        assert!(matches!(
            p.confined("components", "link.yaml"),
            Err(PathError::Escapes { .. })
        ));
        assert!(matches!(
            p.confined("components", "nope.yaml"),
            Err(PathError::Missing(_))
        ));
    }
}
