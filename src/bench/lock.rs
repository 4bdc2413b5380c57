//! The lock of a bench output directory (`bench.lock`): one run (or merge) writes into a
//! directory at a time; a second is refused at once, naming the first.
//!
//! An OS advisory lock (`flock(2)`) on the file, not the file's mere existence: the kernel
//! drops the lock with the process's last descriptor, however the process ends (SIGKILL, the
//! OOM killer, a crash), so a dead run never leaves a stale lock to remove by hand. The PID
//! and host written into the file only name the holder in the refusal. `flock` rather than
//! `fcntl` (POSIX) record locks: those belong to the process and vanish when *any* of its
//! descriptors of the file closes, and never conflict within one process; `flock` locks belong
//! to the open file, so two runs in one process exclude each other too. Linux emulates `flock`
//! with POSIX locks on NFS, so shards on a shared file system are covered; where the file
//! system has no locks at all (ENOLCK, EOPNOTSUPP) the run goes on unlocked, as before.
use crate::{Error, Result};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// The lock file of a bench output directory.
pub fn lock_path(out: &Path) -> PathBuf {
    out.join("bench.lock")
}

/// A held lock on a bench output directory; released (and its file removed) when dropped.
#[derive(Debug)]
pub struct OutLock {
    file: File,
    path: PathBuf,
}

/// Open `path` (created when `create`) without blocking, as a regular file.
fn open(path: &Path, create: bool) -> Result<File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(create)
        .create(create)
        .mode(0o644)
        // A FIFO planted as bench.lock must not block the open.
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(Error::bad_file(
            path,
            "is not a regular file, expected the lock file of a bench output directory",
        ));
    }
    Ok(file)
}

/// Try `flock(op | LOCK_NB)`: `Ok(true)` when taken (or when the file system has no locks),
/// `Ok(false)` when another open file holds a conflicting lock.
fn try_flock(file: &File, path: &Path, op: libc::c_int) -> Result<bool> {
    // SAFETY: flock on a descriptor this `File` owns; no memory is involved.
    if unsafe { libc::flock(file.as_raw_fd(), op | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EWOULDBLOCK) => Ok(false),
        Some(libc::ENOLCK) | Some(libc::EOPNOTSUPP) => Ok(true),
        _ => Err(Error::io(path, err)),
    }
}

/// Who holds the lock, from the file's first line ("PID 1234 on host"), control characters
/// dropped.
fn holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.take(200).read_to_string(&mut text);
    let line: String = text
        .lines()
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    if line.trim().is_empty() {
        "PID unknown".into()
    } else {
        format!("PID {}", line.trim())
    }
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `len` bytes into `buf`.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } != 0 {
        return "unknown host".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Lock the bench output directory `out` (which must exist) for this process, or refuse when
/// another run or merge holds it.
pub fn lock_out(out: &Path) -> Result<OutLock> {
    let path = lock_path(out);
    loop {
        let mut file = open(&path, true)?;
        if !try_flock(&file, &path, libc::LOCK_EX)? {
            return Err(Error::field(
                "out",
                format!(
                    "{} is in use by another fool bench ({}, holding {}); wait for it to end, or use another output directory",
                    out.display(),
                    holder(&mut file),
                    path.display()
                ),
            ));
        }
        // The previous holder removes the file as it ends (see `Drop`): a lock taken on a file
        // no longer at `path` locks nothing, so take it again on the file that is.
        let ours = file.metadata().map_err(|e| Error::io(&path, e))?;
        let same =
            std::fs::metadata(&path).is_ok_and(|m| m.dev() == ours.dev() && m.ino() == ours.ino());
        if !same {
            continue;
        }
        file.set_len(0).map_err(|e| Error::io(&path, e))?;
        writeln!(file, "{} on {}", std::process::id(), hostname())
            .map_err(|e| Error::io(&path, e))?;
        return Ok(OutLock { file, path });
    }
}

/// Who is running in the bench output directory `dir` ("PID 1234 on host"), if anyone: a
/// merge refuses to read a shard still being written. Takes nothing and creates nothing.
pub fn running_in(dir: &Path) -> Result<Option<String>> {
    let path = lock_path(dir);
    if path.symlink_metadata().is_err() {
        return Ok(None);
    }
    let mut file = open(&path, false)?;
    if try_flock(&file, &path, libc::LOCK_SH)? {
        return Ok(None); // released when `file` closes
    }
    Ok(Some(holder(&mut file)))
}

impl Drop for OutLock {
    fn drop(&mut self) {
        // Remove the file while still holding the lock (then closing releases it), and only if
        // it is still ours.
        if let (Ok(ours), Ok(now)) = (self.file.metadata(), std::fs::metadata(&self.path)) {
            if ours.dev() == now.dev() && ours.ino() == now.ino() {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}
