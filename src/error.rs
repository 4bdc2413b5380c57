//! The library's error type: every variant names the file or flag at fault, so the CLI can
//! print it as one line.
use std::path::{Path, PathBuf};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{}: {err}", path.display())]
    Io { path: PathBuf, err: std::io::Error },
    /// A file was read but its content is not what was expected.
    #[error("{}: {msg}", path.display())]
    BadFile { path: PathBuf, msg: String },
    /// A flag or argument has an invalid value.
    #[error("{flag}: {msg}")]
    BadArg { flag: String, msg: String },
    /// Anything else, already phrased for the user.
    #[error("{0}")]
    Other(String),
    /// An error raised by libtorch while running a model.
    #[error("libtorch: {0}")]
    Torch(String),
}

impl Error {
    pub fn io(path: &Path, err: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            err,
        }
    }
    pub fn bad_file(path: &Path, msg: impl Into<String>) -> Self {
        Error::BadFile {
            path: path.to_path_buf(),
            msg: msg.into(),
        }
    }
    pub fn bad_arg(flag: &str, msg: impl Into<String>) -> Self {
        Error::BadArg {
            flag: flag.to_string(),
            msg: msg.into(),
        }
    }
}

/// libtorch errors carry a multi-line C++ backtrace and long advice; keep the first
/// sentence of the first meaningful line.
pub fn first_line(msg: &str) -> String {
    let line = msg
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("unknown error");
    match line.find(". ") {
        Some(i) if line.len() > 100 => line[..i].to_string(),
        _ => line.to_string(),
    }
}

impl From<tch::TchError> for Error {
    fn from(e: tch::TchError) -> Self {
        Error::Torch(first_line(&e.to_string()))
    }
}
