//! The library's error type: every variant names the file or the setting at fault, so the CLI
//! can print it as one line. Settings are named by their field (`clip`, `target_epsilon`); the
//! CLI maps a field to its flag (`--clip`, `--target-epsilon`), the library never names flags.
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
    /// A file is not in a format fool reads (e.g. not an image format it decodes).
    #[error("{}: {msg}", path.display())]
    Unsupported { path: PathBuf, msg: String },
    /// An input is over a resource limit (the setting `field` raises it).
    #[error("{}: {msg} (limit: {field})", path.display())]
    TooLarge {
        path: PathBuf,
        field: String,
        msg: String,
    },
    /// A setting (a field of an options or config struct) has an invalid value.
    #[error("{field}: {msg}")]
    Invalid { field: String, msg: String },
    /// A computation on a named thing (a defense, an accountant, a chart) could not be done.
    #[error("{what}: {msg}")]
    Failed { what: String, msg: String },
    /// A value could not be serialized (a bug, not bad input).
    #[error("{what}: {msg}")]
    Internal { what: String, msg: String },
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
    /// The setting `field` is invalid: `msg` says what was expected.
    pub fn field(field: &str, msg: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.to_string(),
            msg: msg.into(),
        }
    }
    /// `what` (a defense, an accountant, a chart…) could not do its work: `msg` says why.
    pub fn failed(what: &str, msg: impl Into<String>) -> Self {
        Error::Failed {
            what: what.to_string(),
            msg: msg.into(),
        }
    }
    /// Something the library produced could not be encoded or written (not bad input).
    pub fn internal(what: &str, msg: impl std::fmt::Display) -> Self {
        Error::Internal {
            what: what.to_string(),
            msg: msg.to_string(),
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

/// A message from a parser or library as one line: its first meaningful line, control
/// characters replaced by spaces (messages can quote raw bytes of a hostile file).
pub fn message_line(msg: &str) -> String {
    let clean: String = msg
        .chars()
        .map(|c| if c.is_control() && c != '\n' { ' ' } else { c })
        .collect();
    first_line(&clean)
}

/// A libtorch error as one line with its cause: for TorchScript interpreter failures (whose
/// first line only says "The following operation failed in the TorchScript interpreter")
/// the last `…Error: …` line of the trace, which says what went wrong; otherwise
/// [`first_line`]. Control characters are dropped.
pub fn torch_cause(msg: &str) -> String {
    let clean: String = msg
        .chars()
        .map(|c| if c.is_control() && c != '\n' { ' ' } else { c })
        .collect();
    let first = first_line(&clean);
    if !first.contains("TorchScript interpreter") {
        return first;
    }
    let cause = clean
        .lines()
        .map(str::trim)
        .rfind(|l| {
            l.split_once(": ")
                .is_some_and(|(head, _)| head.ends_with("Error") && !head.contains(' '))
        })
        .map(first_line);
    match cause {
        Some(c) => format!("the TorchScript model failed: {c}"),
        None => first,
    }
}

impl From<tch::TchError> for Error {
    fn from(e: tch::TchError) -> Self {
        Error::Torch(first_line(&e.to_string()))
    }
}
