//! The one way kiln writes a file for the user (`kiln.lock`, rendered
//! contexts, reports, state files): a temp file in the same folder, fsync,
//! rename over the target. A reader sees the old file or the new one, never
//! half of either, and a crash leaves at most a stray `.NAME.*` temp file.
//!
//! **Mode:** the file gets exactly the mode the caller asks for (0644 for
//! everything meant to be read or committed; a rendered context file its
//! rendered mode, which is part of the build key). It is set on the open temp
//! file, so neither the umask nor the temp file's own 0600 leaks through.

use std::fs::File;
use std::io::Write;
use std::path::Path;

/// The mode of files kiln writes for the user to read or commit.
pub const USER_FILE: u32 = 0o644;

/// Writes `bytes` to `path` atomically with `mode`.
pub fn write(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    write_with(path, mode, |f| f.write_all(bytes))
}

/// Like [`write`], but `fill` writes the contents (for streamed output such
/// as a tar). Nothing replaces `path` unless `fill` succeeds.
pub fn write_with<T>(
    path: &Path,
    mode: u32,
    fill: impl FnOnce(&mut File) -> std::io::Result<T>,
) -> std::io::Result<T> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map_or_else(|| "kiln".into(), |n| n.to_string_lossy());
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .tempfile_in(dir)?;
    let value = fill(tmp.as_file_mut())?;
    set_mode(tmp.as_file(), mode)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(dir);
    Ok(value)
}

#[cfg(unix)]
fn set_mode(file: &File, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_file: &File, _mode: u32) -> std::io::Result<()> {
    Ok(())
}

/// Makes the rename durable; a folder that cannot be opened or synced (some
/// filesystems refuse) only weakens durability, not atomicity.
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn new_file_gets_the_mode_and_no_temp_file_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("kiln.lock");
        write(&p, b"one\n", USER_FILE).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"one\n");
        assert_eq!(mode(&p), 0o644);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn a_rewrite_sets_the_mode_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("build.sh");
        write(&p, b"a", USER_FILE).unwrap();
        write(&p, b"b", 0o755).unwrap();
        assert_eq!(mode(&p), 0o755);
        assert_eq!(std::fs::read(&p).unwrap(), b"b");
    }

    #[test]
    fn a_failed_fill_leaves_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        write(&p, b"old", USER_FILE).unwrap();
        let r = write_with(&p, USER_FILE, |f| {
            f.write_all(b"half")?;
            Err::<(), _>(std::io::Error::other("boom"))
        });
        assert!(r.is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
