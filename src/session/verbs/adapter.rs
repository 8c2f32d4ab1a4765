//! `adapter size=N`: bottleneck adapters (Houlsby) on the model's adapter sites, and
//! reading them back from `adapters.safetensors` on `load`. The adapters themselves live
//! in `model::bottleneck`.

use std::path::Path;

use rand::rngs::StdRng;

use crate::dsl::Command;
use crate::error::{Error, Result};
use crate::model::{read_tensors, Model, Task};
use crate::session::verbs::share;
use crate::session::{Event, Session, Sink};

/// Parameter-name patterns that train beside adapters: a classifier's head.
fn kept(model: &dyn Model) -> Vec<String> {
    match model.task() {
        Task::Classify => model.group("head").unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// Attaches the bottleneck adapters saved in `dir/adapters.safetensors`, if there are any.
pub(crate) fn attach_saved_adapters(
    model: &mut dyn Model,
    dir: &Path,
    device: &candle_core::Device,
) -> Result<()> {
    let path = dir.join("adapters.safetensors");
    if !path.is_file() {
        return Ok(());
    }
    let tensors = read_tensors(&path, device)?;
    let params = model
        .params()
        .with_bottleneck_tensors(&model.adapter_sites(), tensors, &kept(model))
        .map_err(|e| Error::Read { path, reason: e.to_string() })?;
    *model.params_mut() = params;
    Ok(())
}

impl Session {
    pub(crate) fn adapter(&mut self, cmd: &Command, sink: &mut dyn Sink) -> Result<()> {
        let model = self.model()?;
        let sites = model.adapter_sites();
        if sites.is_empty() {
            return Err(Error::invalid(format!(
                "the {} model has no adapter sites; `lora` adapts any model's linear weights",
                model.family()
            )));
        }
        if let (Some(b), None) = (model.params().bottleneck(), cmd.given("size")) {
            let p = model.params();
            sink.emit(Event::Text(format!(
                "bottleneck adapters of size {} at {} site(s); trainable {} parameters",
                b.size,
                b.sites.len(),
                share(p.trainable_numel(), p.numel())
            )));
            return Ok(());
        }
        let size = cmd.usize("size").unwrap_or(64);
        let widest = sites.iter().map(|(_, h)| *h).max().unwrap_or(0);
        if size > widest {
            return Err(Error::invalid(format!(
                "size={size} is wider than the hidden states ({widest}); a bottleneck is narrower, e.g. size={}",
                (widest / 8).max(1)
            ))
            .at(cmd.span_of("size")));
        }
        let mut rng: StdRng = self.rng.clone();
        let fresh = model.params().with_bottlenecks(size, &sites, &kept(model), &mut rng)?;
        // Commit.
        self.push_undo(&cmd.text)?;
        let model = self.model.as_deref_mut().expect("checked");
        *model.params_mut() = fresh;
        self.rng = rng;
        self.last_grads = None;
        let p = model.params();
        sink.emit(Event::Text(format!(
            "bottleneck adapters of size {size} after attention and feed-forward in {} site(s): base weights \
             frozen, training the adapters (and a classifier's head) — {} parameters trainable; `undo` removes them",
            sites.len(),
            share(p.trainable_numel(), p.numel())
        )));
        Ok(())
    }
}
