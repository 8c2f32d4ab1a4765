//! `eval generate FILE`: a causal language model continues each prompt of a file, and the
//! continuations are scored against reference texts with BLEU and ROUGE-L.

use std::path::Path;
use std::sync::atomic::Ordering;

use super::generate::causal;
use super::num;
use crate::data::TextTable;
use crate::dsl::Command;
use crate::error::{Error, Result};
use crate::metrics::{corpus_bleu, mean_rouge_l, EvalRecord, Tokenize};
use crate::model::causal::Sampling;
use crate::session::{Event, Session, Sink, Table};

/// Rows of prompts, continuations and references shown under the scores.
const SHOWN: usize = 10;

impl Session {
    /// `eval generate FILE prompt=COL reference=COL`: greedy continuations of every prompt,
    /// corpus BLEU-4 and mean ROUGE-L F1 against the references.
    pub(crate) fn eval_generate(&mut self, cmd: &Command, sink: &mut dyn Sink) -> Result<()> {
        let model = self.model()?;
        let lm = causal(model)?;
        let tok = model.tokenizer().ok_or_else(|| Error::invalid("the model has no tokenizer"))?;
        for key in ["split", "file"] {
            if cmd.given(key).is_some() {
                return Err(Error::invalid(format!(
                    "`eval generate` reads its prompts from FILE; drop {key}="
                ))
                .at(cmd.span_of(key)));
            }
        }
        let Some(file) = cmd.arg(1).and_then(|v| v.as_str()).map(str::to_string) else {
            return Err(Error::invalid(
                "`eval generate` needs a file of prompts and references, e.g. `eval generate pairs.jsonl prompt=prompt reference=reference`",
            )
            .at(cmd.span));
        };
        let span = cmd.args.get(1).map_or(cmd.span, |a| a.span);
        let table = TextTable::read(Path::new(&file)).map_err(|e| e.at(span))?;
        let column = |key: &str| -> Result<Vec<String>> {
            let name = cmd.str(key).unwrap_or_else(|| key.to_string());
            let c = table.column(&name).ok_or_else(|| {
                Error::invalid(format!(
                    "'{file}' has no column '{name}'; its columns are: {} (choose with {key}=COL)",
                    table.columns.join(", ")
                ))
                .at(cmd.span_of(key))
            })?;
            Ok(table.column_values(c))
        };
        let (prompts, references) = (column("prompt")?, column("reference")?);
        let how = match cmd.str("tokenize").as_deref() {
            Some("chars") => (Tokenize::Chars, Tokenize::Chars),
            _ => (Tokenize::Whitespace, Tokenize::Rouge),
        };
        // Every prompt is checked before any is generated.
        let mut ids = Vec::with_capacity(prompts.len());
        for (i, p) in prompts.iter().enumerate() {
            let p_ids = tok.encode_plain(p)?;
            if p_ids.is_empty() || p_ids.len() >= lm.context_len() {
                return Err(Error::invalid(format!(
                    "prompt {} of '{file}' has {} tokens; a prompt needs 1 to {} tokens",
                    i + 1,
                    p_ids.len(),
                    lm.context_len() - 1
                ))
                .at(span));
            }
            ids.push(p_ids);
        }
        if ids.is_empty() {
            return Err(Error::invalid(format!("'{file}' has no rows to generate from")).at(span));
        }
        let max_tokens = cmd.usize("max_tokens").unwrap_or(64);
        let seed = self.settings.seed;
        let mut generated = Vec::with_capacity(ids.len());
        for p in &ids {
            let (text, _) = self.sample(p, max_tokens, &Sampling::greedy(), seed, &mut |_| ())?;
            generated.push(text);
            if self.cancel.load(Ordering::Relaxed) {
                self.interrupted = true;
                sink.emit(Event::Warning(format!(
                    "interrupted after {} of {} prompts; no scores recorded",
                    generated.len(),
                    ids.len()
                )));
                return Ok(());
            }
        }
        let hyps: Vec<&str> = generated.iter().map(|s| s.trim()).collect();
        let refs: Vec<&str> = references.iter().map(String::as_str).collect();
        let bleu = corpus_bleu(&hyps, &refs, how.0);
        let rouge = mean_rouge_l(&hyps, &refs, how.1);
        let step = self.history.step();
        let mut scores = Table::new(["", "value"]).titled(format!(
            "eval generate on {file} ({} prompts, greedy, max_tokens={max_tokens}) at step {step}",
            ids.len()
        ));
        scores.row(["BLEU".to_string(), num(bleu.score)]);
        scores.row(["ROUGE-L F1".to_string(), num(rouge)]);
        let precisions: Vec<String> = bleu.precisions.iter().map(|p| format!("{p:.1}")).collect();
        scores.row(["BLEU 1-4 gram precision".to_string(), precisions.join(" / ")]);
        scores.row(["brevity penalty".to_string(), num(bleu.brevity_penalty)]);
        scores.row([
            "tokens generated / reference".to_string(),
            format!("{} / {}", bleu.hyp_len, bleu.ref_len),
        ]);
        sink.emit(Event::Table(scores));
        let mut shown = Table::new(["prompt", "generated", "reference"]).titled(format!(
            "first {} of {}",
            ids.len().min(SHOWN),
            ids.len()
        ));
        for ((p, g), r) in prompts.iter().zip(&hyps).zip(&refs).take(SHOWN) {
            shown.row([p.clone(), g.to_string(), r.to_string()]);
        }
        sink.emit(Event::Table(shown));
        let split = file.clone();
        for (metric, value) in [("bleu", bleu.score), ("rouge_l", rouge)] {
            self.history.evals.push(EvalRecord { step, split: split.clone(), metric: metric.into(), value });
        }
        Ok(())
    }
}
