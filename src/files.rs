//! Writing files and directories so that a crash never leaves a half-written one.
//!
//! - A file is written beside its destination, flushed to disk, then renamed over it:
//!   readers see the old file or the new one, never a mix ([`write_atomic`]).
//! - A directory (`save DIR`) is built whole in `DIR.tmp-PID`, every file flushed, then put
//!   in place of `DIR` in one step ([`write_dir_atomic`]): after a crash at any instant, `DIR`
//!   is the old directory or the new one.
//! - Running out of space (`ENOSPC`, `EDQUOT`) or over a file-size limit (`EFBIG`) is
//!   reported as [`Error::DiskFull`], naming the destination.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Writes `path` by letting `write` fill a temporary file beside it, then renaming it over
/// `path`. The rename is atomic on one file system: readers see the old file or the new
/// one, never a mix. `write` should flush what it writes to disk ([`write_file`] does).
pub fn write_atomic(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = tmp_path(path);
    let result = write(&tmp).and_then(|()| std::fs::rename(&tmp, path).map_err(|e| write_error(path, e)));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes bytes atomically (see [`write_atomic`]).
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, |tmp| write_file(tmp, bytes))
}

/// Creates (or truncates) `path`, writes `bytes` and flushes them to the disk.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = File::create(path).map_err(|e| write_error(path, e))?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(|e| write_error(path, e))
}

/// Creates a directory and its parents.
pub fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| write_error(dir, e))
}

/// The error for a failed write to `path`: [`Error::DiskFull`] when the disk (or the
/// process's file-size limit) is full, else [`Error::Write`].
pub fn write_error(path: &Path, source: std::io::Error) -> Error {
    if is_disk_full(&source) {
        Error::DiskFull { path: path.to_path_buf() }
    } else {
        Error::Write { path: path.to_path_buf(), source }
    }
}

fn is_disk_full(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(e.kind(), ErrorKind::StorageFull | ErrorKind::FileTooLarge | ErrorKind::QuotaExceeded)
}

fn tmp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Files a save may leave out on purpose (a model without bottleneck adapters, an optimizer
/// without state): an older copy in the destination is not carried over.
const DROPPED_IF_NOT_WRITTEN: &[&str] = &["adapters.safetensors", "optimizer.safetensors"];

/// Writes the directory `dir` as a whole: `write` fills a fresh staging directory
/// `DIR.tmp-PID`; every file in it is flushed to disk; files of an existing `dir` that
/// `write` did not produce (a README, say) are carried over by hard link; then the staging
/// directory takes the place of `dir` in one atomic exchange (Linux `renameat2`; elsewhere
/// two renames, between which a crash leaves the old directory as `DIR.old-PID`). On any
/// error `dir` is untouched and the staging directory is removed.
///
/// The current directory (or an ancestor of it, or a path without a last component such as
/// `.`) cannot be swapped out from under the process: there, files are written in place,
/// each one atomically.
pub fn write_dir_atomic(dir: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    if holds_cwd(dir) {
        create_dir(dir)?;
        return write(dir);
    }
    let stage = sibling(dir, "tmp");
    remove_stale_stages(dir);
    let _ = std::fs::remove_dir_all(&stage);
    let result = create_dir(&stage)
        .and_then(|()| write(&stage))
        .and_then(|()| carry_over(dir, &stage))
        .and_then(|()| sync_tree(&stage))
        .and_then(|()| swap_in(&stage, dir));
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&stage);
    }
    result.map_err(|e| match e {
        // Name the directory the user asked for, not the staging path.
        Error::DiskFull { .. } => Error::DiskFull { path: dir.to_path_buf() },
        e => e,
    })
}

/// Whether `dir` is the current directory, an ancestor of it, or has no last component.
fn holds_cwd(dir: &Path) -> bool {
    if dir.file_name().is_none() {
        return true;
    }
    match (dir.canonicalize(), std::env::current_dir().and_then(|c| c.canonicalize())) {
        (Ok(dir), Ok(cwd)) => cwd.starts_with(dir),
        _ => false,
    }
}

/// `DIR.tmp-PID` / `DIR.old-PID` beside `dir`.
fn sibling(dir: &Path, what: &str) -> PathBuf {
    let name = dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "save".into());
    dir.with_file_name(format!("{name}.{what}-{}", std::process::id()))
}

/// Removes staging directories left beside `dir` by processes that no longer run (a save
/// killed mid-way). Only on Linux, where `/proc` says which processes run.
fn remove_stale_stages(dir: &Path) {
    if !cfg!(target_os = "linux") {
        return;
    }
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else { return };
    let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
    let prefix = format!("{}.tmp-", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().to_string();
        let Some(pid) = file_name.strip_prefix(&prefix).and_then(|p| p.parse::<u32>().ok()) else { continue };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Hard-links (or copies) into `stage` the entries of an existing `dir` that are not in it.
fn carry_over(dir: &Path, stage: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(()) };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let target = stage.join(&name);
        let text = name.to_string_lossy();
        if target.exists() || DROPPED_IF_NOT_WRITTEN.contains(&text.as_ref()) || text.contains(".tmp-") {
            continue;
        }
        link_tree(&entry.path(), &target)?;
    }
    Ok(())
}

fn link_tree(from: &Path, to: &Path) -> Result<()> {
    if from.is_dir() {
        create_dir(to)?;
        for entry in std::fs::read_dir(from).map_err(|e| write_error(from, e))?.flatten() {
            link_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
        return Ok(());
    }
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to).map_err(|e| write_error(to, e))?;
    }
    Ok(())
}

/// Flushes every file under `dir`, then the directories themselves, to disk.
fn sync_tree(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| write_error(dir, e))?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            sync_tree(&path)?;
        } else {
            File::open(&path).and_then(|f| f.sync_all()).map_err(|e| write_error(&path, e))?;
        }
    }
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<()> {
    // Directories can be opened and synced on Unix; elsewhere this is best effort.
    match File::open(dir).and_then(|f| f.sync_all()) {
        Err(e) if cfg!(unix) => Err(write_error(dir, e)),
        _ => Ok(()),
    }
}

/// Puts the complete `stage` where `dir` is, atomically where the OS allows.
fn swap_in(stage: &Path, dir: &Path) -> Result<()> {
    if !dir.exists() {
        std::fs::rename(stage, dir).map_err(|e| write_error(dir, e))?;
    } else if exchange(stage, dir) {
        // `stage` now holds the old directory.
        let _ = std::fs::remove_dir_all(stage);
    } else {
        let old = sibling(dir, "old");
        std::fs::rename(dir, &old).map_err(|e| write_error(dir, e))?;
        if let Err(e) = std::fs::rename(stage, dir) {
            let _ = std::fs::rename(&old, dir);
            return Err(write_error(dir, e));
        }
        let _ = std::fs::remove_dir_all(&old);
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        let _ = File::open(parent).and_then(|f| f.sync_all());
    }
    Ok(())
}

/// Swaps two paths in one step (Linux `renameat2(RENAME_EXCHANGE)`); false where that is
/// not available.
#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> bool {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let (Ok(a), Ok(b)) = (CString::new(a.as_os_str().as_bytes()), CString::new(b.as_os_str().as_bytes()))
    else {
        return false;
    };
    // SAFETY: both paths are valid NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    rc == 0
}

#[cfg(not(target_os = "linux"))]
fn exchange(_: &Path, _: &Path) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_write_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("model.safetensors");
        std::fs::write(&p, b"old").unwrap();
        let r = write_atomic(&p, |tmp| {
            std::fs::write(tmp, b"half").unwrap();
            Err(Error::invalid("disk full"))
        });
        assert!(r.is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "temporary file removed");
        write_bytes_atomic(&p, b"new").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
    }

    #[test]
    fn a_directory_is_replaced_whole_or_not_at_all() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("run");
        write_dir_atomic(&dir, |d| {
            write_file(&d.join("model.safetensors"), b"old")?;
            write_file(&d.join("optimizer.safetensors"), b"old moments")
        })
        .unwrap();
        std::fs::write(dir.join("README.md"), b"mine").unwrap();
        // A failing save leaves the old directory exactly as it was, and no staging directory.
        let r = write_dir_atomic(&dir, |d| {
            write_file(&d.join("model.safetensors"), b"half")?;
            Err(Error::invalid("boom"))
        });
        assert!(r.is_err());
        assert_eq!(std::fs::read(dir.join("model.safetensors")).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 1, "staging directory removed");
        // A complete save replaces what it writes, drops the optimizer state it no longer
        // has, and keeps the user's own files.
        write_dir_atomic(&dir, |d| write_file(&d.join("model.safetensors"), b"new")).unwrap();
        assert_eq!(std::fs::read(dir.join("model.safetensors")).unwrap(), b"new");
        assert!(!dir.join("optimizer.safetensors").exists());
        assert_eq!(std::fs::read(dir.join("README.md")).unwrap(), b"mine");
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 1, "old directory removed");
    }

    #[test]
    fn stale_stages_of_dead_processes_are_removed() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("run");
        // PIDs are below 2^22 on Linux, so this one is not running.
        let stale = root.path().join("run.tmp-4294967294");
        std::fs::create_dir(&stale).unwrap();
        write_dir_atomic(&dir, |d| write_file(&d.join("config.json"), b"{}")).unwrap();
        assert_eq!(stale.exists(), !cfg!(target_os = "linux"));
    }
}
