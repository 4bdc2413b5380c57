//! Writing files safely: every output is written to a temp file in its folder and renamed
//! over the target (readers never see half a file, a failed write leaves nothing behind),
//! and output folders are checked for writability before long work starts.
use crate::{Error, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Write `path` atomically: `write` fills a temp file in the same directory, which is then
/// renamed over `path`. On error nothing is left behind.
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> Result<()>,
) -> Result<()> {
    let mut batch = Batch::default();
    batch.stage(path, write)?;
    batch.commit()
}

/// Several output files written all or nothing: each is staged in a temp file beside its
/// target, and only when every one is complete are they renamed into place. Dropping a batch
/// (an error on the way) removes its temp files, so a failed command leaves none of its
/// outputs, old or partial, behind it.
#[derive(Default)]
pub struct Batch {
    staged: Vec<(tempfile::TempPath, PathBuf)>,
}

impl Batch {
    /// Write `path`'s content into a temp file beside it; returns the temp file's path, which
    /// can be read back until [`Batch::commit`].
    pub fn stage(
        &mut self,
        path: &Path,
        write: impl FnOnce(&mut std::fs::File) -> Result<()>,
    ) -> Result<PathBuf> {
        check_writable_target(path)?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        // The temp file keeps the target's extension: writers that pick a format by file name
        // (chart backends, filled through the returned path) must see `.png`.
        let suffix = path
            .extension()
            .map(|e| format!(".{}", e.to_string_lossy()))
            .unwrap_or_default();
        let mut tmp = tempfile::Builder::new()
            .prefix(".fool-tmp-")
            .suffix(&suffix)
            .tempfile_in(dir)
            .map_err(|e| Error::io(dir, e))?;
        write(tmp.as_file_mut())?;
        let f = tmp.as_file_mut();
        f.flush().map_err(|e| Error::io(path, e))?;
        f.sync_all().map_err(|e| Error::io(path, e))?;
        // tempfile creates files 0600; outputs are ordinary files (0644, as `File::create`
        // under the usual umask gives).
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = f.set_permissions(std::fs::Permissions::from_mode(0o644));
        }
        let tmp = tmp.into_temp_path();
        let at = tmp.to_path_buf();
        self.staged.push((tmp, path.to_path_buf()));
        Ok(at)
    }

    /// Rename every staged file to its target.
    pub fn commit(self) -> Result<()> {
        for (tmp, path) in self.staged {
            check_writable_target(&path)?;
            tmp.persist(&path).map_err(|e| Error::io(&path, e.error))?;
        }
        Ok(())
    }
}

/// An output may replace a regular file, never a folder, device, FIFO or socket (renaming over
/// `/dev/full` would replace the device node).
fn check_writable_target(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.is_file() && !m.file_type().is_symlink() => Err(Error::bad_file(
            path,
            "exists and is not a regular file; refusing to replace it with an output",
        )),
        Ok(m) if m.file_type().is_symlink() => match std::fs::metadata(path) {
            Ok(t) if !t.is_file() => Err(Error::bad_file(
                path,
                "points to something that is not a regular file; refusing to write over it",
            )),
            _ => Ok(()),
        },
        _ => Ok(()),
    }
}

/// Refuse to write `output` over one of `inputs`: the same file by identity (device and inode,
/// so hard links and symlinks count) or by resolved path. `field` is the setting that chose
/// the output.
pub fn refuse_overwrite(output: &Path, inputs: &[&Path], field: &str) -> Result<()> {
    let same = |a: &Path, b: &Path| -> bool {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            if let (Ok(x), Ok(y)) = (std::fs::metadata(a), std::fs::metadata(b)) {
                return x.dev() == y.dev() && x.ino() == y.ino();
            }
        }
        matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
    };
    for input in inputs {
        if same(output, input) {
            return Err(Error::field(
                field,
                format!(
                    "{}: refusing to overwrite an input file ({}); choose another path",
                    output.display(),
                    input.display()
                ),
            ));
        }
    }
    Ok(())
}

/// Check that `path` is a regular file (symlinks followed) before reading it: a folder, FIFO,
/// socket or device is refused, since reading those blocks forever or never ends. `what` says
/// what was expected ("an image file").
pub fn check_regular(path: &Path, what: &str) -> Result<()> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.is_dir() {
        return Err(Error::bad_file(
            path,
            format!("is a directory, expected {what}"),
        ));
    }
    if !meta.is_file() {
        return Err(Error::bad_file(
            path,
            format!("is not a regular file (a FIFO, socket or device), expected {what}"),
        ));
    }
    Ok(())
}

/// Open a regular file (see [`check_regular`]) for reading.
pub fn open_regular(path: &Path, what: &str) -> Result<std::fs::File> {
    check_regular(path, what)?;
    std::fs::File::open(path).map_err(|e| Error::io(path, e))
}

/// The text of a regular file (see [`check_regular`]).
pub fn read_regular_to_string(path: &Path, what: &str) -> Result<String> {
    check_regular(path, what)?;
    std::fs::read_to_string(path).map_err(|e| Error::io(path, e))
}

/// Write `text` to `path`, atomically.
pub fn write_text(path: &Path, text: &str) -> Result<()> {
    write_atomic(path, |f| {
        f.write_all(text.as_bytes()).map_err(|e| Error::io(path, e))
    })
}

/// Write `value` as pretty JSON with a final newline to `path`, atomically.
pub fn write_json<T: serde::Serialize + ?Sized>(path: &Path, value: &T) -> Result<()> {
    write_json_to(path, value, true)
}

/// [`write_json`] without the final newline: the attack record, `bench.json`, `summary.json`
/// and the privacy report were first written so, and their bytes stay as they were.
pub fn write_json_bare<T: serde::Serialize + ?Sized>(path: &Path, value: &T) -> Result<()> {
    write_json_to(path, value, false)
}

fn write_json_to<T: serde::Serialize + ?Sized>(
    path: &Path,
    value: &T,
    newline: bool,
) -> Result<()> {
    write_atomic(path, |f| json_into(value, newline, path, f))
}

/// Pretty JSON of `value` into `f` (the file that will become `path`), with a final newline
/// or not (see [`write_json_bare`]).
pub fn json_into<T: serde::Serialize + ?Sized>(
    value: &T,
    newline: bool,
    path: &Path,
    f: &mut std::fs::File,
) -> Result<()> {
    let mut w = std::io::BufWriter::new(f);
    serde_json::to_writer_pretty(&mut w, value)
        .map_err(|e| Error::bad_file(path, format!("cannot write JSON: {e}")))?;
    if newline {
        w.write_all(b"\n").map_err(|e| Error::io(path, e))?;
    }
    w.flush().map_err(|e| Error::io(path, e))
}

/// Read and parse the JSON file `path`; errors name the file.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = read_regular_to_string(path, "a JSON file")?;
    serde_json::from_str(&text).map_err(|e| Error::bad_file(path, format!("not valid JSON: {e}")))
}

/// Create an output directory (and parents), with an error naming the flag on failure,
/// and check that files can be created in it.
pub fn ensure_writable_dir(dir: &Path, field: &str) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| {
        Error::field(
            field,
            format!("cannot create output directory {}: {e}", dir.display()),
        )
    })?;
    tempfile::Builder::new()
        .prefix(".fool-probe-")
        .tempfile_in(dir)
        .map(drop)
        .map_err(|e| {
            Error::field(
                field,
                format!("output directory {} is not writable: {e}", dir.display()),
            )
        })
}
