//! Writes a rendered build context to a folder, so a user can run
//! `docker build` on it by hand.

use std::path::Path;

use super::RenderedBuild;
use crate::atomic_file;

/// Why the context folder could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteDirError {
    /// The target exists and is not an empty folder.
    #[error("`{0}` exists and is not an empty folder")]
    NotEmpty(std::path::PathBuf),
    /// A symlink in the recipe's context folder points outside it.
    #[error("`{path}` is a symlink to `{target}`, outside the context folder")]
    SymlinkEscapes {
        /// The link.
        path: std::path::PathBuf,
        /// Where it points.
        target: std::path::PathBuf,
    },
    /// IO failed.
    #[error("error writing `{path}`")]
    Io {
        /// The path.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WriteDirError + '_ {
    move |source| WriteDirError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `Dockerfile`, the generated files and the recipe's context folder
/// into `dir` (created if missing; must be empty if present).
pub fn write_context_dir(rendered: &RenderedBuild, dir: &Path) -> Result<(), WriteDirError> {
    if dir.exists() {
        let empty = std::fs::read_dir(dir).map_err(io(dir))?.next().is_none();
        if !dir.is_dir() || !empty {
            return Err(WriteDirError::NotEmpty(dir.to_path_buf()));
        }
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    if let Some(src) = &rendered.context_dir {
        for entry in walkdir::WalkDir::new(src)
            .follow_links(false)
            .sort_by_file_name()
        {
            let entry = entry.map_err(|e| {
                let p = e.path().unwrap_or(src).to_path_buf();
                WriteDirError::Io {
                    path: p,
                    source: e.into(),
                }
            })?;
            let rel = entry.path().strip_prefix(src).expect("below src");
            let to = dir.join(rel);
            let ft = entry.file_type();
            if ft.is_dir() {
                std::fs::create_dir_all(&to).map_err(io(&to))?;
            } else if ft.is_symlink() {
                let target = std::fs::read_link(entry.path()).map_err(io(entry.path()))?;
                let resolved = entry.path().parent().unwrap_or(src).join(&target);
                let inside = resolved
                    .canonicalize()
                    .map(|c| c.starts_with(src))
                    .unwrap_or(false);
                if target.is_absolute() || !inside {
                    return Err(WriteDirError::SymlinkEscapes {
                        path: entry.path().to_path_buf(),
                        target,
                    });
                }
                #[cfg(unix)]
                std::os::unix::fs::symlink(&target, &to).map_err(io(&to))?;
            } else {
                std::fs::copy(entry.path(), &to).map_err(io(&to))?;
            }
        }
    }
    for f in &rendered.files {
        let to = dir.join(&f.path);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        atomic_file::write(&to, &f.contents, f.mode).map_err(io(&to))?;
    }
    let df = dir.join("Dockerfile");
    atomic_file::write(&df, rendered.dockerfile.as_bytes(), atomic_file::USER_FILE)
        .map_err(io(&df))?;
    Ok(())
}
