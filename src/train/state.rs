//! The resumable state of a run, saved after every epoch into `state/`: `state.json` (the
//! configuration and the history so far) and `tensors.pt` (parameters and optimizer state).
use super::{EpochRecord, TrainConfig, Trainer};
use crate::files::{check_regular, read_regular_to_string};
use crate::{Error, Result};
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tch::Tensor;

/// `state/state.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct State {
    pub config: TrainConfig,
    pub history: Vec<EpochRecord>,
}

impl State {
    /// Read `dir/state.json`.
    pub fn read(dir: &Path) -> Result<State> {
        let sp = dir.join("state.json");
        let text = read_regular_to_string(&sp, "the JSON state of a training run")?;
        serde_json::from_str(&text)
            .map_err(|e| Error::bad_file(&sp, format!("not a fool training state: {e}")))
    }
}

impl Trainer {
    /// Parameters and optimizer state, by name.
    fn named_state(&self) -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> = self
            .vs
            .variables()
            .into_iter()
            .map(|(k, t)| (format!("param.{k}"), t))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v.extend(self.opt.state());
        if let Some(e) = &self.ema {
            v.extend(e.state());
        }
        v
    }

    /// Save the resumable state into `dir` atomically: both files are written into a temp dir
    /// beside it, which then replaces the old one. On failure (a full disk) the error names
    /// the file, the temp dir is removed and the previous state stays as it was.
    ///
    /// libtorch serializes into memory, never into a file: a write error inside libtorch's
    /// archive writer ends in `std::terminate` (its destructor throws again), not in an error.
    pub fn save_state(&self, dir: &Path) -> Result<()> {
        let parent = dir.parent().unwrap_or(Path::new("."));
        let tensors = serialize_tensors(&self.named_state())?;
        let state = State {
            config: self.cfg.clone(),
            history: self.history.clone(),
        };
        let json = serde_json::to_vec_pretty(&state).map_err(|e| Error::internal("JSON", e))?;
        let tmp = tempfile::Builder::new()
            .prefix(".state-")
            .tempdir_in(parent)
            .map_err(|e| Error::io(parent, e))?;
        for (name, bytes) in [("tensors.pt", &tensors), ("state.json", &json)] {
            write_synced(&tmp.path().join(name), bytes)
                .map_err(|e| Error::io(&dir.join(name), e))?;
        }
        let tmp = tmp.keep();
        let old = old_state(dir);
        recover(dir);
        let _ = std::fs::remove_dir_all(&old);
        if dir.exists() {
            if let Err(e) = std::fs::rename(dir, &old) {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(Error::io(dir, e));
            }
        }
        if let Err(e) = std::fs::rename(&tmp, dir) {
            let _ = std::fs::remove_dir_all(&tmp);
            let _ = std::fs::rename(&old, dir);
            return Err(Error::io(dir, e));
        }
        let _ = std::fs::remove_dir_all(&old);
        Ok(())
    }

    /// Restore from a state dir; the configuration must be the one saved there.
    pub fn load_state(&mut self, dir: &Path) -> Result<()> {
        let state = State::read(dir)?;
        if state.config != self.cfg {
            return Err(Error::field(
                "resume",
                format!(
                    "the run in {} was started with other settings; resume it with the same settings or choose another folder",
                    dir.parent().unwrap_or(dir).display()
                ),
            ));
        }
        let tp = dir.join("tensors.pt");
        check_regular(&tp, "the tensors of a training state")?;
        let named: HashMap<String, Tensor> = Tensor::load_multi_with_device(&tp, self.device)
            .map_err(|e| {
                Error::bad_file(
                    &tp,
                    format!(
                        "unreadable checkpoint: {}",
                        crate::error::first_line(&e.to_string())
                    ),
                )
            })?
            .into_iter()
            .collect();
        tch::no_grad(|| -> Result<()> {
            for (k, mut t) in self.vs.variables() {
                let src = named
                    .get(&format!("param.{k}"))
                    .ok_or_else(|| Error::bad_file(&tp, format!("no parameter '{k}'")))?;
                t.copy_(src);
            }
            Ok(())
        })?;
        self.opt.load_state(&named)?;
        if let Some(e) = &mut self.ema {
            e.load_state(&named)
                .map_err(|e| Error::bad_file(&tp, e.to_string()))?;
        }
        self.history = state.history;
        Ok(())
    }
}

/// Where [`Trainer::save_state`] moves the previous state while the new one takes its place.
fn old_state(dir: &Path) -> std::path::PathBuf {
    dir.parent().unwrap_or(Path::new(".")).join(".state-old")
}

/// Put back a previous state left aside by a save interrupted between its two renames (a
/// killed process): without a `dir`, `.state-old` beside it is the last state saved.
pub(crate) fn recover(dir: &Path) {
    let old = old_state(dir);
    if !dir.exists() && old.is_dir() {
        let _ = std::fs::rename(&old, dir);
    }
}

/// A writer into a shared buffer (libtorch's stream writer takes its writer by value).
#[derive(Clone, Default)]
struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Named tensors in libtorch's archive format (what `Tensor::load_multi` reads), in memory.
pub(crate) fn serialize_tensors(named: &[(String, Tensor)]) -> Result<Vec<u8>> {
    let buf = SharedBuf::default();
    Tensor::save_multi_to_stream(named, buf.clone())
        .map_err(|e| Error::failed("training state", crate::error::first_line(&e.to_string())))?;
    let bytes = std::mem::take(&mut *buf.0.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(bytes)
}

/// Write a new file and flush it to the disk.
fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}
