//! The run directory, the one owner of a training run's files:
//!
//! ```text
//! DIR/model.pt            the TorchScript model (see `export`)
//! DIR/model.json          its model card: how to feed it
//! DIR/labels.json         class names
//! DIR/metadata.json       `Metadata`: configuration, ε, history (written last: a run whose
//!                         metadata.json says every epoch is done is finished)
//! DIR/members.npy         rows of the training split trained on (int64)
//! DIR/state/              the resumable state after the last epoch (`State`)
//! DIR/checkpoints/epoch-NNN/   loadable models of earlier epochs
//! DIR/samples/            test images as PNG
//! DIR/training.png|svg    the chart
//! ```
//!
//! Everything that reads or writes these goes through [`RunDir`].
use super::{Metadata, State, TrainConfig};
use crate::audit::read_labels_npy;
use crate::files::{ensure_writable_dir, write_atomic};
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// A run directory (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    root: PathBuf,
}

/// How far the run in a directory got with a given configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// model.pt, metadata.json and members.npy exist, with this configuration and every epoch
    /// done.
    Finished,
    /// Its `state/` holds this many finished epochs of this configuration.
    Partial(usize),
    /// Nothing usable.
    Fresh,
}

impl RunDir {
    pub fn new(root: impl Into<PathBuf>) -> RunDir {
        RunDir { root: root.into() }
    }

    /// The run a model file belongs to: the folder that holds it.
    pub fn of_model(model: &Path) -> RunDir {
        RunDir::new(model.parent().unwrap_or(Path::new(".")))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn model_path(&self) -> PathBuf {
        self.root.join("model.pt")
    }

    pub fn metadata_path(&self) -> PathBuf {
        self.root.join("metadata.json")
    }

    pub fn members_path(&self) -> PathBuf {
        self.root.join("members.npy")
    }

    pub fn samples_dir(&self) -> PathBuf {
        self.root.join("samples")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.root.join("state")
    }

    pub fn checkpoint_dir(&self, epoch: usize) -> PathBuf {
        self.root
            .join("checkpoints")
            .join(format!("epoch-{epoch:03}"))
    }

    /// Create the folder (and its parents) and check that files can be written in it.
    pub fn create(&self) -> Result<()> {
        ensure_writable_dir(&self.root, "out")
    }

    /// `metadata.json`, or None when there is none.
    pub fn metadata(&self) -> Result<Option<Metadata>> {
        let p = self.metadata_path();
        if !p.exists() {
            return Ok(None);
        }
        let text = crate::files::read_regular_to_string(&p, "a JSON file")?;
        serde_json::from_str(&text).map(Some).map_err(|e| {
            Error::bad_file(&p, format!("not the metadata of a fool training run: {e}"))
        })
    }

    /// `metadata.json`, which must exist: the folder must hold a finished training run.
    pub fn read_metadata(&self) -> Result<Metadata> {
        self.metadata()?.ok_or_else(|| {
            Error::bad_file(
                &self.root,
                "not a training run: no metadata.json (expected a folder written by a training run)",
            )
        })
    }

    /// The members (rows of the training split trained on) from `members.npy`, or None when
    /// there is none. Negative indices are an error.
    pub fn members(&self) -> Result<Option<Vec<usize>>> {
        let p = self.members_path();
        if !p.exists() {
            return Ok(None);
        }
        read_labels_npy(&p)?
            .into_iter()
            .map(|i| {
                usize::try_from(i)
                    .map_err(|_| Error::bad_file(&p, format!("negative member index {i}")))
            })
            .collect::<Result<Vec<usize>>>()
            .map(Some)
    }

    /// Write `members.npy` (int64), atomically.
    pub fn write_members(&self, members: &Tensor) -> Result<()> {
        use ndarray_npy::WriteNpyExt;
        let path = self.members_path();
        let v = Vec::<i64>::try_from(members.to_kind(Kind::Int64).view([-1]))
            .map_err(|e| Error::Torch(e.to_string()))?;
        let arr = ndarray::Array1::from(v);
        write_atomic(&path, |f| {
            arr.write_npy(std::io::BufWriter::new(f))
                .map_err(|e| Error::bad_file(&path, e.to_string()))
        })
    }

    /// The saved state, if there is a readable one.
    pub fn state(&self) -> Option<State> {
        State::read(&self.state_dir()).ok()
    }

    /// How far a run with configuration `cfg` got in this folder (unreadable files count as
    /// absent).
    pub fn progress(&self, cfg: &TrainConfig) -> Progress {
        let files = [self.model_path(), self.metadata_path(), self.members_path()];
        if files.iter().all(|f| f.is_file()) {
            if let Ok(Some(m)) = self.metadata() {
                if &m.config == cfg && m.epochs_done == cfg.epochs {
                    return Progress::Finished;
                }
            }
        }
        match self.state() {
            Some(s) if &s.config == cfg => Progress::Partial(s.history.len()),
            _ => Progress::Fresh,
        }
    }
}
