//! `distill`: a teacher classifier whose soft targets join the labels in the student's loss.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rand::rngs::StdRng;

use crate::data::{read_corpus, Labelled, TextData, TextOptions};
use crate::dsl::Command;
use crate::error::{Error, Result};
use crate::model::bert::BertTask;
use crate::model::{
    config_labels, hub, is_causal_family, load_causal_model, load_text_model, model_type, read_json,
};
use crate::model::{Model, Task};
use crate::session::{Event, Session, Sink};
use crate::train::{Distill, TransferSet};

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
        if cmd.given("text").is_some() && cmd.given("transfer").is_none() {
            return Err(Error::invalid("text= names the transfer file's text column; add transfer=FILE")
                .at(cmd.span_of("text")));
        }
        let Some(dir) = cmd.str("teacher") else {
            if ["temperature", "alpha", "transfer"].iter().any(|o| cmd.given(o).is_some()) {
                let Some(d) = &self.distill else {
                    return Err(Error::invalid(
                        "no teacher yet: give one, e.g. `distill teacher=runs/teacher temperature=2 alpha=0.5`",
                    )
                    .at(cmd.span));
                };
                let transfer = match cmd.given("transfer") {
                    Some(_) => Some(self.read_transfer(cmd, self.model()?)?),
                    None => None,
                };
                let mut d = d.lock().unwrap_or_else(|e| e.into_inner());
                // Only what is given changes (`cmd.f64` would fall back to the table's defaults).
                let given = |name: &str| cmd.given(name).and_then(|v| v.value.as_f64());
                d.temperature = given("temperature").unwrap_or(d.temperature);
                d.alpha = given("alpha").unwrap_or(d.alpha);
                if transfer.is_some() {
                    d.transfer = transfer;
                }
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
        let transfer = match cmd.given("transfer") {
            Some(_) => Some(self.read_transfer(cmd, student)?),
            None => None,
        };
        let distill = Distill {
            teacher,
            source: dir,
            temperature: cmd.f64("temperature").unwrap_or(2.0),
            alpha: cmd.f64("alpha").unwrap_or(0.5),
            transfer,
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

    /// The texts of `transfer=`, read as `data … format=text` reads a corpus (a text file's
    /// lines or blank-line-separated blocks, a table's or JSON's `text=` field), tokenized
    /// for `student` as the data is (same `max_len`).
    fn read_transfer(&self, cmd: &Command, student: &dyn Model) -> Result<TransferSet> {
        let span = cmd.span_of("transfer");
        let file = cmd.str("transfer").unwrap_or_default();
        let path = Path::new(&file);
        let data = self.data.as_ref().and_then(|d| d.text());
        let column = cmd
            .str("text")
            .or_else(|| data.and_then(|d| d.columns.as_ref()).map(|c| c.0.clone()))
            .unwrap_or_else(|| "text".into());
        let texts = read_corpus(path, &column).map_err(|e| e.at(span))?;
        let n = texts.len();
        let unlabelled = Labelled { texts, labels: vec![String::new(); n] };
        let opts = TextOptions {
            fractions: &[1.0, 0.0],
            shuffle: false,
            clean: true,
            augment: (0, 0.0),
            max_len: data.map_or(128, |d| d.max_len),
            limit: None,
            labels: None,
            block: None,
            balance: None,
        };
        let mut texts = TextData::new(file.clone(), unlabelled, None, None, &opts, &mut rand::rng())
            .map_err(|e| e.at(span))?;
        let Some(tokenizer) = student.tokenizer() else {
            return Err(Error::invalid("the student has no tokenizer").at(span));
        };
        texts.encode(tokenizer, &self.device)?;
        Ok(TransferSet { source: file, texts })
    }

    fn describe_distill(&self) -> String {
        match &self.distill {
            None => "distill: off (training on the labels alone)".into(),
            Some(d) => {
                let d = d.lock().unwrap_or_else(|e| e.into_inner());
                let transfer = match &d.transfer {
                    None => String::new(),
                    Some(t) => format!(
                        "; transfer set {} ({} without labels: each update adds as many of them as its \
                         batch holds, scored by the KL term alone)",
                        t.source,
                        match t.len() {
                            1 => "1 text".to_string(),
                            n => format!("{n} texts"),
                        }
                    ),
                };
                format!(
                    "distill: teacher {} ({}); loss = {}·T²·KL(teacher ‖ student at T={}) + {}·cross-entropy{transfer}",
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
