//! `snapshot`, `restore`, `undo`.

use crate::dsl::{suggestion, Command, Value};
use crate::error::{bail, Error, Result};
use crate::session::snapshot::Snapshot;
use crate::session::{Event, Session, Sink};

impl Session {
    pub(crate) fn snapshot(&mut self, cmd: &Command, sink: &mut dyn Sink) -> Result<()> {
        let model = self.model()?;
        let name = match cmd.arg(0).and_then(Value::as_str) {
            Some(n) => n.to_string(),
            None => (1..)
                .map(|i| format!("s{i}"))
                .find(|n| !self.snapshots.iter().any(|s| &s.name == n))
                .expect("unbounded"),
        };
        let snap =
            Snapshot::take(name.clone(), self.model_id, model, &self.optimizer, &self.history, &self.rng)?;
        let replaced =
            self.snapshots.iter().position(|s| s.name == name).map(|i| self.snapshots.remove(i)).is_some();
        self.snapshots.push(snap);
        let note = if replaced { " (replaced the earlier one)" } else { "" };
        sink.emit(Event::Text(format!(
            "snapshot '{name}' at step {}{note}; `restore {name}` returns here",
            self.history.step()
        )));
        Ok(())
    }

    pub(crate) fn restore(&mut self, cmd: &Command, sink: &mut dyn Sink) -> Result<()> {
        let name = cmd.arg(0).and_then(Value::as_str).unwrap_or_default();
        let Some(snap) = self.snapshots.iter().find(|s| s.name == name).cloned() else {
            let names: Vec<&str> = self.snapshots.iter().map(|s| s.name.as_str()).collect();
            let known = if names.is_empty() {
                "there are none yet (`snapshot NAME`)".to_string()
            } else {
                format!("there are: {}", names.join(", "))
            };
            let dym = suggestion(name, names.iter().copied());
            return Err(Error::invalid(format!("no snapshot '{name}'{dym}; {known}")).at(cmd.args[0].span));
        };
        if snap.model_id != self.model_id {
            bail!("snapshot '{name}' belongs to a model loaded earlier; it cannot be restored into the current one")
        }
        self.push_undo(&cmd.text)?;
        self.apply(&snap)?;
        sink.emit(Event::Text(format!("restored '{name}': step {}", self.history.step())));
        Ok(())
    }

    pub(crate) fn undo_cmd(&mut self, sink: &mut dyn Sink) -> Result<()> {
        let Some(snap) = self.undo.last().cloned() else {
            bail!("nothing to undo: `undo` reverts the last fit, step or restore of the current model")
        };
        self.apply(&snap)?;
        self.undo.pop();
        sink.emit(Event::Text(format!("undid `{}`: back to step {}", snap.name, self.history.step())));
        Ok(())
    }

    /// Puts a snapshot's state back (weights written in place, the rest replaced).
    fn apply(&mut self, snap: &Snapshot) -> Result<()> {
        let Some(model) = self.model.as_deref_mut() else { bail!("no model loaded") };
        let (optimizer, history, rng) = snap.restore(model)?;
        self.optimizer = optimizer;
        self.history = history;
        self.rng = rng;
        self.last_grads = None;
        self.step_queue.clear();
        Ok(())
    }
}
