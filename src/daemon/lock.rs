//! One daemon per state file. A second `kiln serve` on the same database
//! would treat the first one's live runs as left behind by a crash (mark
//! them `interrupted`, retry them) and run every trigger twice, so the daemon
//! holds an exclusive lock on `<state>/kiln.daemon.lock` for as long as
//! [`crate::daemon::serve`] runs. The OS releases it when the process dies,
//! so a SIGKILLed daemon never blocks its restart. The holder writes its pid,
//! host and start time into the file, for the second daemon's message.

use std::path::{Path, PathBuf};

use crate::file_lock::{self, Attempt, HeldLock};

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
pub struct DaemonLock(HeldLock);

/// The lock file beside the database `kiln.db`.
pub fn lock_path(database: &Path) -> PathBuf {
    database.with_file_name("kiln.daemon.lock")
}

impl DaemonLock {
    /// Takes the lock for `database` without waiting, or names the holder.
    pub fn acquire(database: &Path) -> Result<DaemonLock, LockError> {
        let path = lock_path(database);
        match file_lock::try_lock(&path) {
            Ok(Attempt::Held(held)) => Ok(DaemonLock(held)),
            Ok(Attempt::Busy { holder }) => Err(LockError::Held { path, holder }),
            Err(source) => Err(LockError::Io { path, source }),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_the_holder_and_the_lock_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("kiln.db");
        let _first = DaemonLock::acquire(&db).unwrap();
        let err = DaemonLock::acquire(&db).unwrap_err().to_string();
        let me = format!("(pid {} on ", std::process::id());
        assert!(
            err.contains(&me) && err.ends_with("kiln.daemon.lock`"),
            "{err}"
        );
    }
}
