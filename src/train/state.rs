//! The resumable state of a run, saved after every epoch into `state/`: `state.json` (the
//! configuration and the history so far) and `tensors.pt` (parameters and optimizer state).
use super::{EpochRecord, TrainConfig, Trainer};
use crate::{Error, Result};
use std::collections::HashMap;
use std::path::Path;
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
        let text = std::fs::read_to_string(&sp).map_err(|e| Error::io(&sp, e))?;
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
        v
    }

    /// Save the resumable state into `dir` atomically (a temp dir renamed over the old one).
    pub fn save_state(&self, dir: &Path) -> Result<()> {
        let parent = dir.parent().unwrap_or(Path::new("."));
        let tmp = tempfile::Builder::new()
            .prefix(".state-")
            .tempdir_in(parent)
            .map_err(|e| Error::io(parent, e))?;
        let tensors = tmp.path().join("tensors.pt");
        let named = self.named_state();
        Tensor::save_multi(&named, &tensors).map_err(|e| Error::Torch(e.to_string()))?;
        let state = State {
            config: self.cfg.clone(),
            history: self.history.clone(),
        };
        let json = serde_json::to_vec_pretty(&state).map_err(|e| Error::internal("JSON", e))?;
        let sp = tmp.path().join("state.json");
        std::fs::write(&sp, json).map_err(|e| Error::io(&sp, e))?;
        let tmp = tmp.keep();
        let old = parent.join(".state-old");
        let _ = std::fs::remove_dir_all(&old);
        if dir.exists() {
            std::fs::rename(dir, &old).map_err(|e| Error::io(dir, e))?;
        }
        std::fs::rename(&tmp, dir).map_err(|e| Error::io(dir, e))?;
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
        self.history = state.history;
        Ok(())
    }
}
