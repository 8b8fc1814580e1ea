//! One daemon per state file. A second `kiln serve` on the same database
//! would treat the first one's live runs as left behind by a crash (mark
//! them `interrupted`, retry them) and run every trigger twice, so the daemon
//! holds an exclusive lock on `<state>/kiln.daemon.lock` for as long as
//! [`crate::daemon::serve`] runs. The OS releases it when the process dies,
//! so a SIGKILLed daemon never blocks its restart. The holder writes its pid,
//! host and start time into the file, for the second daemon's message.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Why the daemon lock was not taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Another daemon runs on this state.
    #[error("another kiln daemon is running on this state ({holder}); it holds `{path}`")]
    Held {
        /// The lock file.
        path: PathBuf,
        /// What the holder wrote: `pid N on HOST since TIME`.
        holder: String,
    },
    /// The lock file could not be opened, locked or written.
    #[error("cannot lock `{path}`")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// The held lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct DaemonLock {
    _file: File,
    path: PathBuf,
}

/// The lock file beside the database `kiln.db`.
pub fn lock_path(database: &Path) -> PathBuf {
    database.with_file_name("kiln.daemon.lock")
}

impl DaemonLock {
    /// Takes the lock for `database` without waiting, or names the holder.
    pub fn acquire(database: &Path) -> Result<DaemonLock, LockError> {
        let path = lock_path(database);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = match holder.trim() {
                    "" => "holder unknown".to_string(),
                    h => h.to_string(),
                };
                return Err(LockError::Held { path, holder });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        let me = format!(
            "pid {} on {} since {}\n",
            std::process::id(),
            crate::test_phase::hostname(),
            chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ")
        );
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(me.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(DaemonLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_names_the_first_holder_and_a_dropped_one_is_free() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("kiln.db");
        let first = DaemonLock::acquire(&db).unwrap();
        let err = DaemonLock::acquire(&db).unwrap_err();
        let LockError::Held { holder, .. } = &err else {
            panic!("{err:?}")
        };
        assert!(
            holder.starts_with(&format!("pid {} on ", std::process::id())),
            "{holder}"
        );
        assert!(err.to_string().contains("kiln.daemon.lock"), "{err}");
        drop(first);
        DaemonLock::acquire(&db).unwrap();
    }
}
