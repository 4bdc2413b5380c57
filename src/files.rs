//! Writing files safely: every output is written to a temp file in its folder and renamed
//! over the target (readers never see half a file, a failed write leaves nothing behind),
//! and output folders are checked for writability before long work starts.
use crate::{Error, Result};
use std::io::Write;
use std::path::Path;

/// Write `path` atomically: `write` fills a temp file in the same directory, which is then
/// renamed over `path`. On error nothing is left behind.
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> Result<()>,
) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".fool-tmp-")
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, e))?;
    write(tmp.as_file_mut())?;
    tmp.as_file_mut().flush().map_err(|e| Error::io(path, e))?;
    // tempfile creates files 0600; outputs are ordinary files (0644, as `File::create` under
    // the usual umask gives).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = tmp
            .as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644));
    }
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
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
    write_atomic(path, |f| {
        let mut w = std::io::BufWriter::new(f);
        serde_json::to_writer_pretty(&mut w, value)
            .map_err(|e| Error::bad_file(path, format!("cannot write JSON: {e}")))?;
        if newline {
            w.write_all(b"\n").map_err(|e| Error::io(path, e))?;
        }
        w.flush().map_err(|e| Error::io(path, e))
    })
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
