//! Exclusive advisory locks on small files (std `File::try_lock`, i.e.
//! `flock`), with the holder's `pid N on HOST since TIME` written inside so a
//! process that finds the lock taken can say who has it. The OS releases a
//! lock when its process dies, so a SIGKILL never leaves one behind.
//!
//! Used for one daemon per state file ([`crate::daemon::lock`]) and one run
//! of a pipeline at a time per project ([`crate::pipeline`]).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// A held lock; released when dropped.
#[derive(Debug)]
pub struct HeldLock {
    _file: File,
    path: PathBuf,
}

impl HeldLock {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The result of one attempt.
#[derive(Debug)]
pub enum Attempt {
    /// Taken.
    Held(HeldLock),
    /// Another process (or another open of the file in this one) has it.
    Busy {
        /// What the holder wrote, or `holder unknown`.
        holder: String,
    },
}

/// Tries once to take the lock at `path` (creating it and its folder).
pub fn try_lock(path: &Path) -> std::io::Result<Attempt> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => "holder unknown".to_string(),
                h => h.to_string(),
            };
            return Ok(Attempt::Busy { holder });
        }
        Err(TryLockError::Error(e)) => return Err(e),
    }
    let me = format!(
        "pid {} on {} since {}\n",
        std::process::id(),
        crate::test_phase::hostname(),
        chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ")
    );
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(me.as_bytes())?;
    Ok(Attempt::Held(HeldLock {
        _file: file,
        path: path.to_path_buf(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_attempt_names_the_holder_and_a_dropped_lock_is_free() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/x.lock");
        let Attempt::Held(first) = try_lock(&p).unwrap() else {
            panic!("free lock not taken")
        };
        let Attempt::Busy { holder } = try_lock(&p).unwrap() else {
            panic!("lock taken twice")
        };
        assert!(
            holder.starts_with(&format!("pid {} on ", std::process::id())),
            "{holder}"
        );
        drop(first);
        assert!(matches!(try_lock(&p).unwrap(), Attempt::Held(_)));
    }
}
