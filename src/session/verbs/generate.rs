//! `generate` and `compare generate`: text from a causal language model, streamed token by
//! token to the front-end.

use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::dsl::{Command, Value};
use crate::error::{bail, Error, Result};
use crate::model::causal::{generate, CausalLm, Sampling};
use crate::model::layers::step_seed;
use crate::model::Model;
use crate::session::{Event, Session, Sink, Table};

/// Longest text shown per sample in a `compare` table cell.
const CELL_CHARS: usize = 400;

/// The sampling settings of a `generate` / `compare` command.
fn sampling(cmd: &Command) -> Sampling {
    Sampling {
        greedy: cmd.bool("greedy").unwrap_or(false),
        temperature: cmd.f64("temperature").unwrap_or(0.8),
        top_k: cmd.usize("top_k").unwrap_or(50),
        top_p: cmd.f64("top_p").unwrap_or(0.95),
        min_tokens: cmd.usize("min_tokens").unwrap_or(0),
    }
}

/// The language model of the session, or an error naming what to load.
pub(crate) fn causal(model: &dyn Model) -> Result<&dyn CausalLm> {
    model.causal().ok_or_else(|| {
        Error::invalid(format!(
            "`generate` needs a language model (`load gpt2 …`, a GPT-2 directory or a .gguf); the loaded {} model is not one",
            model.family()
        ))
    })
}

/// Turns generated ids into text pieces as they come: decodes everything so far and hands
/// out what is new, holding back an incomplete UTF-8 character (byte-level tokens can split
/// one).
struct Detokenizer {
    ids: Vec<u32>,
    shown: usize,
}

impl Detokenizer {
    fn push(&mut self, model: &dyn Model, id: u32) -> Option<String> {
        self.ids.push(id);
        let text = model.tokenizer()?.decode(&self.ids).ok()?;
        if text.ends_with('\u{FFFD}') || text.len() <= self.shown || !text.is_char_boundary(self.shown) {
            return None;
        }
        let piece = text[self.shown..].to_string();
        self.shown = text.len();
        Some(piece)
    }
}

impl Session {
    /// Generates one sample after `prompt` with seed `seed`, calling `on_piece` with each
    /// new piece of text. Returns the full continuation and its token count.
    pub(crate) fn sample(
        &self,
        prompt: &[u32],
        max_tokens: usize,
        sampling: &Sampling,
        seed: u64,
        on_piece: &mut dyn FnMut(&str),
    ) -> Result<(String, usize)> {
        if sampling.min_tokens > max_tokens {
            bail!(
                "min_tokens={} is more than max_tokens={max_tokens}: raise max_tokens or lower min_tokens",
                sampling.min_tokens
            )
        }
        let model = self.model()?;
        let lm = causal(model)?;
        let mut detok = Detokenizer { ids: Vec::new(), shown: 0 };
        let cancel = self.cancel.clone();
        // The end-of-text token that stops a generation is not part of the text.
        let stop = lm.stop_ids();
        let mut ids = generate(lm, prompt, max_tokens, sampling, seed, true, &mut |id| {
            if !stop.contains(&id) {
                if let Some(piece) = detok.push(model, id) {
                    on_piece(&piece);
                }
            }
            !cancel.load(Ordering::Relaxed)
        })?;
        let count = ids.len();
        ids.retain(|id| !stop.contains(id));
        let text = model.tokenizer().map(|t| t.decode(&ids)).transpose()?.unwrap_or_default();
        // A character whose bytes the last tokens did not finish decodes as U+FFFD: drop it,
        // as the streamed pieces do.
        Ok((text.trim_end_matches('\u{FFFD}').to_string(), count))
    }

    /// The prompt's token ids, checked against the model's context.
    fn prompt_ids(&self, cmd: &Command, at: usize) -> Result<(String, Vec<u32>)> {
        let model = self.model()?;
        let lm = causal(model)?;
        let prompt = cmd.arg(at).and_then(Value::as_str).unwrap_or_default().to_string();
        let span = cmd.args.get(at).map(|a| a.span);
        let tok = model.tokenizer().ok_or_else(|| Error::invalid("the model has no tokenizer"))?;
        let ids = tok.encode_plain(&prompt)?;
        let fail = |e: Error| match span {
            Some(s) => e.at(s),
            None => e,
        };
        if ids.is_empty() {
            return Err(fail(Error::invalid(
                "the prompt is empty: give some text to continue, e.g. `generate \"Once upon a time\"`",
            )));
        }
        if ids.len() >= lm.context_len() {
            return Err(fail(Error::invalid(format!(
                "the prompt has {} tokens but the model's context holds {}; shorten the prompt",
                ids.len(),
                lm.context_len()
            ))));
        }
        sampling(cmd).validate()?;
        Ok((prompt, ids))
    }

    pub(crate) fn generate_cmd(&mut self, cmd: &Command, sink: &mut dyn Sink) -> Result<()> {
        let (prompt, ids) = self.prompt_ids(cmd, 0)?;
        let n = cmd.usize("n").unwrap_or(1);
        let max_tokens = cmd.usize("max_tokens").unwrap_or(64);
        let seed = cmd.usize("seed").map_or(self.settings.seed, |s| s as u64);
        let started = Instant::now();
        let mut total = 0;
        for i in 0..n {
            if n > 1 {
                sink.emit(Event::Text(format!("— sample {} of {n} —", i + 1)));
            }
            sink.emit(Event::Stream(prompt.clone()));
            let sample_seed = if i == 0 { seed } else { step_seed(seed, i as u64) };
            let (_, count) = self.sample(&ids, max_tokens, &sampling(cmd), sample_seed, &mut |piece| {
                sink.emit(Event::Stream(piece.into()))
            })?;
            sink.emit(Event::Stream("\n".into()));
            total += count;
            if self.cancel.load(Ordering::Relaxed) {
                self.interrupted = true;
                sink.emit(Event::Warning(format!("generation interrupted after {count} tokens")));
                break;
            }
        }
        let secs = started.elapsed().as_secs_f64();
        sink.emit(Event::Text(format!(
            "generated {total} tokens in {secs:.2} s ({:.1} tokens/s)",
            total as f64 / secs.max(1e-9)
        )));
        Ok(())
    }

    pub(crate) fn compare(&mut self, cmd: &Command, sink: &mut dyn Sink) -> Result<()> {
        let (prompt, ids) = self.prompt_ids(cmd, 1)?;
        let snap = match cmd.str("snapshot") {
            Some(name) => self.snapshots.iter().find(|s| s.name == name).cloned().ok_or_else(|| {
                Error::invalid(format!("no snapshot '{name}'; `show snapshots` lists them")).at(cmd.span_of("snapshot"))
            })?,
            None => match self.snapshots.iter().rev().find(|s| s.model_id == self.model_id) {
                Some(s) => s.clone(),
                None => bail!(
                    "no snapshot of this model to compare with: take one before training (`snapshot before`), then `compare generate \"…\"`"
                ),
            },
        };
        if snap.model_id != self.model_id {
            bail!("snapshot '{}' belongs to a model loaded earlier; take one of the current model", snap.name)
        }
        let seed = cmd.usize("seed").map_or(self.settings.seed, |s| s as u64);
        let params = self.model()?.params();
        let now = params.copy_values()?;
        params.set_values(snap.values())?;
        let max_tokens = cmd.usize("max_tokens").unwrap_or(64);
        let before = self.sample(&ids, max_tokens, &sampling(cmd), seed, &mut |_| ());
        params.set_values(&now)?;
        let (before, _) = before?;
        let (after, _) = self.sample(&ids, max_tokens, &sampling(cmd), seed, &mut |_| ())?;
        // One line per cell, so the two samples stay side by side: line breaks show as " / ",
        // as when quoting verse inline.
        let clip = |t: &str| {
            let t: String = t.chars().take(CELL_CHARS).collect();
            let text = format!("{prompt}{t}");
            let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
            lines.join(" / ")
        };
        let mut table = Table::new([
            format!("snapshot '{}' (step {})", snap.name, snap.step()),
            format!("now (step {})", self.history.step()),
        ])
        .titled(format!("generate \"{prompt}\" with seed {seed}"));
        table.row([clip(&before), clip(&after)]);
        sink.emit(Event::Table(table));
        Ok(())
    }
}
