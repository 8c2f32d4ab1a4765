//! `distill`: a teacher classifier whose soft targets join the labels in the student's loss.

use std::sync::{Arc, Mutex};

use rand::rngs::StdRng;

use crate::dsl::Command;
use crate::error::{Error, Result};
use crate::model::bert::BertTask;
use crate::model::{
    config_labels, hub, is_causal_family, load_causal_model, load_text_model, model_type, read_json,
};
use crate::model::{Model, Task};
use crate::session::{Event, Session, Sink};
use crate::train::Distill;

/// A text both tokenizers must turn into the same ids.
const PROBE: &str = "The teacher and the student must read text the same way: 12 tokens, ünïcode, 中文.";

impl Session {
    pub(crate) fn distill_cmd(&mut self, cmd: &Command, sink: &mut dyn Sink) -> Result<()> {
        if cmd.arg(0).is_some() {
            if let Some(o) = cmd.options.first() {
                return Err(Error::invalid("`distill off` takes no options").at(o.1.span));
            }
            self.distill = None;
            sink.emit(Event::Text("distill off: training on the labels alone".into()));
            return Ok(());
        }
        let Some(dir) = cmd.str("teacher") else {
            if cmd.given("temperature").is_some() || cmd.given("alpha").is_some() {
                let Some(d) = &self.distill else {
                    return Err(Error::invalid(
                        "no teacher yet: give one, e.g. `distill teacher=runs/teacher temperature=2 alpha=0.5`",
                    )
                    .at(cmd.span));
                };
                let mut d = d.lock().unwrap_or_else(|e| e.into_inner());
                d.temperature = cmd.f64("temperature").unwrap_or(d.temperature);
                d.alpha = cmd.f64("alpha").unwrap_or(d.alpha);
            }
            sink.emit(Event::Text(self.describe_distill()));
            return Ok(());
        };
        let student = self.model()?;
        let Some(labels) = student.labels().filter(|_| student.task() == Task::Classify) else {
            return Err(Error::invalid(
                "distillation trains a classifier: load the student first, e.g. `load DIR task=classify`",
            )
            .at(cmd.span));
        };
        let span = cmd.span_of("teacher");
        let teacher = self.load_teacher(&dir).map_err(|e| e.at(span))?;
        let t_labels = teacher.labels().unwrap_or_default();
        if t_labels != labels {
            return Err(Error::invalid(format!(
                "the teacher's labels ({}) are not the student's ({}); both must classify into the same classes in the same order",
                t_labels.join(", "),
                labels.join(", ")
            ))
            .at(span));
        }
        let (Some(st), Some(tt)) = (student.tokenizer(), teacher.tokenizer()) else {
            return Err(Error::invalid("the teacher or the student has no tokenizer").at(span));
        };
        let probe = self.data.as_ref().and_then(|d| d.text()).and_then(|d| d.texts.first().cloned());
        let probe = probe.unwrap_or_else(|| PROBE.to_string());
        if st.vocab_size() != tt.vocab_size() || st.encode_plain(&probe)? != tt.encode_plain(&probe)? {
            return Err(Error::invalid(format!(
                "the teacher's tokenizer ({} tokens) reads text differently from the student's ({} tokens); \
                 both see the same token ids, so pick a teacher with the student's vocabulary",
                tt.vocab_size(),
                st.vocab_size()
            ))
            .at(span));
        }
        let distill = Distill {
            teacher,
            source: dir,
            temperature: cmd.f64("temperature").unwrap_or(2.0),
            alpha: cmd.f64("alpha").unwrap_or(0.5),
        };
        self.distill = Some(Arc::new(Mutex::new(distill)));
        sink.emit(Event::Text(self.describe_distill()));
        Ok(())
    }

    /// A classifier from a directory, for use as a teacher.
    fn load_teacher(&self, name: &str) -> Result<Box<dyn Model>> {
        let dir = hub::resolve(name)?;
        let kind = model_type(&dir)?;
        let config = read_json(&dir.join("config.json"))?;
        let Some(labels) = config_labels(&config) else {
            return Err(Error::invalid(format!(
                "'{name}' is not a trained classifier (its config.json has no id2label); save the teacher after fine-tuning it"
            )));
        };
        let mut rng: StdRng = self.rng.clone();
        Ok(if kind.as_deref().is_some_and(is_causal_family) {
            load_causal_model(&dir, Some(labels), &mut rng, &self.device)?
        } else {
            Box::new(load_text_model(&dir, BertTask::Classify(labels), &mut rng, &self.device)?)
        })
    }

    fn describe_distill(&self) -> String {
        match &self.distill {
            None => "distill: off (training on the labels alone)".into(),
            Some(d) => {
                let d = d.lock().unwrap_or_else(|e| e.into_inner());
                format!(
                    "distill: teacher {} ({}); loss = {}·T²·KL(teacher ‖ student at T={}) + {}·cross-entropy",
                    d.source,
                    d.teacher.describe(),
                    super::num(d.alpha),
                    super::num(d.temperature),
                    super::num(1.0 - d.alpha)
                )
            }
        }
    }
}
