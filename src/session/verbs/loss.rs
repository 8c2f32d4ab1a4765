//! `loss`: class weights of the classifier's training loss (the class-imbalance remedy).

use crate::data::Split;
use crate::dsl::{Command, Value};
use crate::error::{Error, Result};
use crate::model::Task;
use crate::session::{Event, Session, Sink};
use crate::train::ClassWeights;

/// Reads `weights=auto|none|[w0,w1,…]`.
fn parse_weights(cmd: &Command) -> Result<Option<ClassWeights>> {
    let Some(given) = cmd.given("weights") else { return Ok(None) };
    let bad = || {
        Error::invalid("weights= takes auto, none, or one non-negative number per class, like [1,4]")
            .at(given.span)
    };
    let items: Vec<String> = match &given.value {
        Value::Str(s) if s.eq_ignore_ascii_case("auto") => return Ok(Some(ClassWeights::Auto)),
        Value::Str(s) if s.eq_ignore_ascii_case("none") => return Ok(Some(ClassWeights::None)),
        Value::Str(s) => s.split(',').map(str::to_string).collect(),
        Value::List(l) => l.iter().map(|v| v.to_string()).collect(),
        _ => return Err(bad()),
    };
    let w = items
        .iter()
        .map(|t| t.trim().parse::<f64>().ok().filter(|x| x.is_finite() && *x >= 0.0))
        .collect::<Option<Vec<f64>>>()
        .ok_or_else(bad)?;
    if w.len() < 2 || w.iter().all(|x| *x == 0.0) {
        return Err(bad());
    }
    Ok(Some(ClassWeights::Given(w)))
}

impl Session {
    pub(crate) fn loss_cmd(&mut self, cmd: &Command, sink: &mut dyn Sink) -> Result<()> {
        if let Some(weights) = parse_weights(cmd)? {
            if let Some(model) = self.model.as_ref() {
                if weights != ClassWeights::None && model.task() != Task::Classify {
                    return Err(Error::invalid(
                        "class weights apply to classifiers; this model is not one (load one with task=classify)",
                    )
                    .at(cmd.span_of("weights")));
                }
            }
            if let Some(counts) = self.train_class_counts() {
                weights.resolve(&counts).map_err(|e| e.at(cmd.span_of("weights")))?;
            }
            self.settings.class_weights = weights;
        }
        let mut line = format!("loss weights={}", self.settings.class_weights.describe());
        if let Some(w) =
            self.train_class_counts().and_then(|c| self.settings.class_weights.resolve(&c).ok()?)
        {
            let names = self.data.as_ref().and_then(|d| d.text()).map(|d| d.label_set.names.clone());
            let shown: Vec<String> = w
                .iter()
                .enumerate()
                .map(|(i, x)| {
                    let n = names.as_ref().and_then(|n| n.get(i).cloned()).unwrap_or_else(|| i.to_string());
                    format!("{n} {}", super::num(*x as f64))
                })
                .collect();
            line += &format!(" ({})", shown.join(", "));
        }
        sink.emit(Event::Text(line));
        Ok(())
    }

    /// Rows per class of the training split of labelled text data.
    fn train_class_counts(&self) -> Option<Vec<usize>> {
        self.data.as_ref()?.text().map(|d| d.class_counts(Split::Train))
    }

    /// The class weights a training step uses now (`None`: unweighted).
    pub(crate) fn class_weights_now(&self) -> Result<Option<Vec<f32>>> {
        if self.settings.class_weights == ClassWeights::None
            || self.model.as_ref().is_none_or(|m| m.task() != Task::Classify)
        {
            return Ok(None);
        }
        match self.train_class_counts() {
            Some(counts) => self.settings.class_weights.resolve(&counts),
            None => Ok(None),
        }
    }
}
