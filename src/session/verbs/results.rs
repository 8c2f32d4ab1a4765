//! `eval`, `predict`.

use std::path::Path;
use std::sync::atomic::Ordering;

use candle_core::Tensor;

use super::num;
use crate::data::{Batch, Dataset, NumericData, Split, TextOptions};
use crate::dsl::{Command, Value};
use crate::error::{bail, Error, Result};
use crate::metrics::{least_squares, linear_predictions, mae, mse, Confusion, EvalRecord};
use crate::model::bert::forward_probabilities;
use crate::model::{Pass, Task};
use crate::session::{Event, Progress, Session, Sink, Table};
use crate::train::{classify_rows, mean_loss_rows, pool_windows, Predictions};

/// Rows per forward pass when evaluating.
const EVAL_CHUNK: usize = 64;

/// Rows between two checks of the interrupt flag in `eval` (and progress reports).
const EVAL_PART: usize = 8 * EVAL_CHUNK;

impl Session {
    /// Runs `f` over `rows` in parts of [`EVAL_PART`], reporting progress (when there is
    /// more than one part) and checking the interrupt flag between parts. `None` when interrupted: then a warning says so and
    /// nothing is recorded.
    fn in_chunks<T>(
        &mut self,
        rows: &[u32],
        part_len: usize,
        sink: &mut dyn Sink,
        mut f: impl FnMut(&Session, &[u32]) -> Result<T>,
    ) -> Result<Option<Vec<T>>> {
        let mut out = Vec::new();
        let mut done = 0;
        let report = rows.len() > EVAL_PART;
        let progress = |sink: &mut dyn Sink, done: usize, finished: bool| {
            if report {
                sink.emit(Event::Progress(Progress {
                    task: "eval".into(),
                    done: done as u64,
                    total: rows.len() as u64,
                    message: format!("{done}/{} rows", rows.len()),
                    finished,
                }));
            }
        };
        for part in rows.chunks(part_len.max(1)) {
            if self.cancel.load(Ordering::SeqCst) {
                self.interrupted = true;
                progress(sink, done, true);
                sink.emit(Event::Warning(format!(
                    "eval interrupted after {done} of {} rows: nothing recorded",
                    rows.len()
                )));
                return Ok(None);
            }
            out.push(f(self, part)?);
            done += part.len();
            progress(sink, done, done == rows.len());
        }
        Ok(Some(out))
    }

    /// The split a command names, or `test` (falling back to `valid` when there is no test
    /// split and none was asked for).
    fn chosen_split(&self, cmd: &Command) -> Result<Split> {
        let data = self.data_set()?;
        let asked = cmd.given("split").and_then(|v| v.value.as_str().and_then(Split::from_name));
        let split =
            asked.unwrap_or(if data.split(Split::Test).is_empty() { Split::Valid } else { Split::Test });
        if data.split(split).is_empty() {
            return Err(Error::invalid(format!(
                "the {} split is empty; reload the data with e.g. split=0.8/0.1/0.1",
                split.name()
            ))
            .at(cmd.span_of("split")));
        }
        Ok(split)
    }

    /// The numeric data, or an error saying the command needs it.
    pub(crate) fn numeric_data(&self, what: &str) -> Result<&NumericData> {
        self.data_set()?
            .numeric()
            .ok_or_else(|| Error::invalid(format!("{what} needs numeric data (`data FILE x=… y=…`)")))
    }

    pub(crate) fn eval(&mut self, cmd: &Command, sink: &mut dyn Sink) -> Result<()> {
        self.model()?;
        if cmd.arg(0).is_some() {
            return self.eval_generate(cmd, sink);
        }
        for key in ["prompt", "reference", "max_tokens", "tokenize"] {
            if cmd.given(key).is_some() {
                return Err(Error::invalid(format!(
                    "{key}= belongs to `eval generate FILE`; plain `eval` scores the loaded data"
                ))
                .at(cmd.span_of(key)));
            }
        }
        if let Some(file) = cmd.str("file") {
            if cmd.given("split").is_some() {
                return Err(Error::invalid("give split= or file=, not both").at(cmd.span_of("file")));
            }
            return self.eval_file(cmd, &file, sink);
        }
        self.prepare_data_announce(sink)?;
        let split = self.chosen_split(cmd)?;
        let (data, rows) = (self.data_set()?, self.data_set()?.split(split).to_vec());
        let shown = data.text().map_or(rows.len(), |t| t.text_split(split).len());
        let task = self.model()?.task();
        // A language model's rows are the blocks its texts were packed into.
        let label = match task {
            Task::MaskedLm | Task::CausalLm if shown != rows.len() => {
                format!("{} ({shown} texts in {} blocks)", split.name(), rows.len())
            }
            _ => format!("{} ({shown} rows)", split.name()),
        };
        match task {
            Task::Regression => self.eval_regression(split, sink),
            Task::Classify => {
                let data = data.clone();
                self.eval_classifier(&data, &rows, &label, sink)
            }
            Task::MaskedLm | Task::CausalLm => {
                let data = data.clone();
                self.eval_lm(&data, &rows, &label, sink)
            }
        }
    }

    /// `eval file=PATH`: a held-out file read like the data (same columns and labels).
    fn eval_file(&mut self, cmd: &Command, file: &str, sink: &mut dyn Sink) -> Result<()> {
        let model = self.model()?;
        if model.task() == Task::Regression {
            bail!("eval file= is for text models; for regression load the file with `data`")
        }
        let Some(current) = self.data_set()?.text() else {
            bail!("eval file= needs text data loaded first (for its labels)")
        };
        let Some(tok) = model.tokenizer() else { bail!("the model has no tokenizer") };
        let span = cmd.span_of("file");
        let labelled = self.read_labelled_like(current, file, span)?;
        let opts = TextOptions {
            fractions: &[1.0, 0.0],
            shuffle: false,
            clean: false,
            augment: (0, 0.0),
            max_len: current.max_len,
            limit: None,
            labels: Some(&current.label_set),
            block: current.block,
            balance: None,
        };
        let mut extra =
            crate::data::TextData::new(file.to_string(), labelled, None, None, &opts, &mut rand::rng())
                .map_err(|e| e.at(span))?;
        extra.columns = current.columns.clone();
        extra.stride = current.stride;
        extra.encode(tok, &self.device)?;
        let rows = extra.split(Split::Train).to_vec();
        let data = Dataset::Text(extra);
        let label = format!("{file} ({} rows)", rows.len());
        match model.task() {
            Task::MaskedLm | Task::CausalLm => self.eval_lm(&data, &rows, &label, sink),
            _ => self.eval_classifier(&data, &rows, &label, sink),
        }
    }

    fn eval_classifier(
        &mut self,
        data: &Dataset,
        rows: &[u32],
        label: &str,
        sink: &mut dyn Sink,
    ) -> Result<()> {
        let labels = self.model()?.labels().unwrap_or_default().to_vec();
        // A windowed text's windows are pooled within one part, so they are not cut apart.
        let windowed = data.text().and_then(|t| t.window_owner()).is_some();
        let part_len = if windowed { rows.len() } else { EVAL_PART };
        let Some(parts) = self
            .in_chunks(rows, part_len, sink, |s, part| classify_rows(s.model()?, data, part, EVAL_CHUNK))?
        else {
            return Ok(());
        };
        let mut p = Predictions { rows: Vec::new(), truth: Vec::new(), predicted: Vec::new(), loss: 0.0 };
        for part in parts {
            p.loss += part.loss * part.truth.len() as f64;
            p.rows.extend(part.rows);
            p.truth.extend(part.truth);
            p.predicted.extend(part.predicted);
        }
        p.loss /= p.truth.len().max(1) as f64;
        let confusion = Confusion::new(labels.clone(), &p.truth, &p.predicted);
        let mut report = Table::new(["", "precision", "recall", "f1-score", "support"]).titled(format!(
            "eval on {label} at step {}: accuracy {:.4}, loss {}",
            self.history.step(),
            confusion.accuracy(),
            num(p.loss)
        ));
        for row in confusion.report_rows() {
            report.row(row);
        }
        sink.emit(Event::Table(report));
        let mut matrix =
            Table::new(std::iter::once("true \\ predicted".to_string()).chain(labels.iter().cloned()))
                .titled("confusion matrix");
        for (l, counts) in labels.iter().zip(&confusion.counts) {
            matrix.row(std::iter::once(l.clone()).chain(counts.iter().map(|c| c.to_string())));
        }
        sink.emit(Event::Table(matrix));
        let step = self.history.step();
        let split = label.split(' ').next().unwrap_or("").to_string();
        for (metric, value) in
            [("accuracy", confusion.accuracy()), ("loss", p.loss), ("macro_f1", confusion.macro_avg().f1)]
        {
            self.history.evals.push(EvalRecord { step, split: split.clone(), metric: metric.into(), value });
        }
        self.last_confusion = Some(confusion);
        Ok(())
    }

    /// Loss and perplexity of a language model (masked or causal).
    fn eval_lm(&mut self, data: &Dataset, rows: &[u32], label: &str, sink: &mut dyn Sink) -> Result<()> {
        let (name, metric) = match self.model()?.task() {
            Task::CausalLm => ("next-token loss", "lm_loss"),
            _ => ("masked-LM loss", "mlm_loss"),
        };
        let Some(parts) = self.in_chunks(rows, EVAL_PART, sink, |s, part| {
            Ok(mean_loss_rows(s.model()?, data, part, EVAL_CHUNK)?.map(|l| l * part.len() as f64))
        })?
        else {
            return Ok(());
        };
        let loss = parts.into_iter().flatten().sum::<f64>() / rows.len() as f64;
        let loss = if rows.is_empty() { f64::NAN } else { loss };
        let mut t =
            Table::new(["", "value"]).titled(format!("eval on {label} at step {}", self.history.step()));
        t.row([name.to_string(), num(loss)]);
        t.row(["perplexity".to_string(), num(loss.exp())]);
        sink.emit(Event::Table(t));
        let step = self.history.step();
        let split = label.split(' ').next().unwrap_or("").to_string();
        self.history.evals.push(EvalRecord {
            step,
            split: split.clone(),
            metric: metric.into(),
            value: loss,
        });
        self.history.evals.push(EvalRecord { step, split, metric: "perplexity".into(), value: loss.exp() });
        Ok(())
    }

    fn eval_regression(&mut self, split: Split, sink: &mut dyn Sink) -> Result<()> {
        let model = self.model()?;
        let data = self.data_set()?;
        let numeric = self.numeric_data("eval of a regression model")?;
        model.forward(&data.batch(&data.split(split)[..1])?, &mut Pass::eval())?;
        let loss = mean_loss_rows(model, data, data.split(split), 4096)?.expect("split checked non-empty");
        let rows = data.split(split).len();
        let target = numeric.host_rows(split);
        let mut learned_mae = 0.0;
        for (part, y) in data.split(split).chunks(4096).zip(target.y.chunks(4096)) {
            let pred =
                model.forward(&data.batch(part)?, &mut Pass::eval())?.flatten_all()?.to_vec1::<f32>()?;
            let pred: Vec<f64> = pred.iter().map(|p| *p as f64).collect();
            learned_mae += mae(&pred, y) * y.len() as f64;
        }
        learned_mae /= rows.max(1) as f64;
        let mut table = Table::new(["", "learned"]).titled(format!(
            "eval on {} ({rows} rows) at step {}",
            split.name(),
            self.history.step()
        ));
        let mut closing = None;
        if model.family() == "linear" {
            let train = numeric.host_rows(Split::Train);
            let weights = self.weights()?;
            let w: Vec<f64> = weights[0].1.iter().map(|v| *v as f64).collect();
            let b = weights[1].1[0] as f64;
            match least_squares(&train.x, &train.y) {
                Ok((cw, cb)) => {
                    table.columns.push("closed form".into());
                    for i in 0..w.len() {
                        let name = if w.len() == 1 { "w".to_string() } else { format!("w[{i}]") };
                        table.row([name, num(w[i]), num(cw[i])]);
                    }
                    table.row(["b".to_string(), num(b), num(cb)]);
                    let closed = mse(&target.x, &target.y, &cw, cb);
                    table.row([format!("{} MSE", split.name()), num(loss), num(closed)]);
                    let closed_mae = mae(&linear_predictions(&target.x, &cw, cb), &target.y);
                    table.row([format!("{} MAE", split.name()), num(learned_mae), num(closed_mae)]);
                    let gap = 100.0 * (loss - closed) / closed.max(f64::MIN_POSITIVE);
                    closing = Some(format!(
                        "the learned MSE is {gap:+.2}% from the closed-form least-squares fit (solved on the training split)"
                    ));
                }
                Err(e) => {
                    table.row([format!("{} MSE", split.name()), num(loss)]);
                    table.row([format!("{} MAE", split.name()), num(learned_mae)]);
                    sink.emit(Event::Warning(e.to_string()));
                }
            }
        } else {
            table.row([format!("{} loss", split.name()), num(loss)]);
            table.row([format!("{} MAE", split.name()), num(learned_mae)]);
        }
        sink.emit(Event::Table(table));
        if let Some(line) = closing {
            sink.emit(Event::Text(line));
        }
        let step = self.history.step();
        self.history.evals.push(EvalRecord {
            step,
            split: split.name().into(),
            metric: "mse".into(),
            value: loss,
        });
        self.history.evals.push(EvalRecord {
            step,
            split: split.name().into(),
            metric: "mae".into(),
            value: learned_mae,
        });
        Ok(())
    }

    pub(crate) fn predict(&mut self, cmd: &Command, sink: &mut dyn Sink) -> Result<()> {
        let task = self.model()?.task();
        if !cmd.args.is_empty() {
            return match task {
                Task::Regression => self.predict_numbers(cmd, sink),
                Task::Classify => self.predict_texts(cmd, sink),
                Task::MaskedLm | Task::CausalLm => bail!(
                    "a language model does not predict labels; `eval` gives its loss and perplexity, `generate \"text\"` continues a prompt"
                ),
            };
        }
        self.prepare_data_announce(sink)?;
        let split = self.chosen_split(cmd)?;
        let model = self.model()?;
        let data = self.data_set()?;
        let n = cmd.usize("rows").unwrap_or(10);
        let rows: Vec<u32> = match data.text() {
            Some(text) => text.rows_of_texts(&text.text_split(split)[..n.min(text.text_split(split).len())]),
            None => data.split(split).iter().take(n).copied().collect(),
        };
        match data {
            Dataset::Numeric(numeric) => {
                let pred =
                    model.forward(&data.batch(&rows)?, &mut Pass::eval())?.flatten_all()?.to_vec1::<f32>()?;
                let host = numeric.host_rows(split);
                let mut table = Table::new([
                    numeric.inputs.join(", "),
                    numeric.target.clone(),
                    "prediction".into(),
                    "error".into(),
                ])
                .titled(format!("first {} rows of {}", rows.len(), split.name()));
                for ((x, y), p) in host.x.iter().zip(&host.y).zip(&pred) {
                    let x: Vec<String> = x.iter().map(|v| num(*v)).collect();
                    let p = *p as f64;
                    table.row([x.join(", "), num(*y), num(p), num(p - y)]);
                }
                sink.emit(Event::Table(table));
            }
            Dataset::Text(text) => {
                if task != Task::Classify {
                    bail!("a masked-LM model does not predict labels; `eval` gives its loss and perplexity")
                }
                let p = classify_rows(model, data, &rows, EVAL_CHUNK)?;
                let names = &text.label_set.names;
                let mut table = Table::new(["text", "label", "prediction", ""]).titled(format!(
                    "first {} rows of {}",
                    p.rows.len(),
                    split.name()
                ));
                for ((&r, t), pr) in p.rows.iter().zip(&p.truth).zip(&p.predicted) {
                    let mark = if t == pr { "" } else { "✗" };
                    table.row([
                        short(&text.texts[r as usize], 60),
                        names[*t as usize].clone(),
                        names[*pr as usize].clone(),
                        mark.into(),
                    ]);
                }
                sink.emit(Event::Table(table));
            }
        }
        Ok(())
    }

    fn predict_numbers(&mut self, cmd: &Command, sink: &mut dyn Sink) -> Result<()> {
        let model = self.model()?;
        let inputs = model.input_dims().unwrap_or(1);
        let mut rows = Vec::new();
        for a in &cmd.args {
            let parts: Vec<String> = match &a.value {
                Value::List(items) => items.iter().map(|v| v.to_string()).collect(),
                v => v.to_string().split(',').map(str::to_string).collect(),
            };
            let xs: Option<Vec<f64>> =
                parts.iter().map(|p| p.trim().parse::<f64>().ok().filter(|x| x.is_finite())).collect();
            let example = if inputs == 1 {
                "predict 1.5".to_string()
            } else {
                format!("predict [{}]", vec!["1"; inputs].join(", "))
            };
            let Some(xs) = xs else {
                return Err(
                    Error::invalid(format!("'{}' is not a number; e.g. `{example}`", a.value)).at(a.span)
                );
            };
            if xs.len() != inputs {
                return Err(Error::invalid(format!(
                    "the model takes {inputs} input(s) per prediction but got {}; e.g. `{example}`",
                    xs.len()
                ))
                .at(a.span));
            }
            rows.push(xs);
        }
        let flat: Vec<f32> = rows.iter().flatten().map(|v| *v as f32).collect();
        let x = Tensor::from_vec(flat, (rows.len(), inputs), &self.device)?;
        let y = model
            .forward(&Batch::Regression { x, y: None }, &mut Pass::eval())?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let mut table = Table::new(["input", "prediction"]);
        for (r, y) in rows.iter().zip(y) {
            let input: Vec<String> = r.iter().map(|v| num(*v)).collect();
            table.row([input.join(", "), num(y as f64)]);
        }
        sink.emit(Event::Table(table));
        Ok(())
    }

    fn predict_texts(&mut self, cmd: &Command, sink: &mut dyn Sink) -> Result<()> {
        let model = self.model()?;
        let (Some(tok), Some(labels)) = (model.tokenizer(), model.labels()) else {
            bail!("the model cannot classify text")
        };
        let mut texts = Vec::new();
        for a in &cmd.args {
            match &a.value {
                Value::Str(s) if !s.trim().is_empty() => texts.push(s.clone()),
                _ => {
                    return Err(
                        Error::invalid("give each text in quotes, e.g. `predict \"a fine film\"`").at(a.span)
                    )
                }
            }
        }
        let text_data = self.data.as_ref().and_then(|d| d.text());
        let max_len = text_data.map_or(128, |d| d.max_len);
        // With `stride=`, each text's windows are classified and their logits averaged.
        let (seqs, owners): (Vec<Vec<u32>>, Vec<u32>) = match text_data.and_then(|d| d.stride) {
            Some(stride) => tok
                .encode_windows(&texts, max_len, stride)?
                .into_iter()
                .enumerate()
                .flat_map(|(i, ws)| ws.into_iter().map(move |w| (w, i as u32)))
                .unzip(),
            None => {
                let (seqs, _) = tok.encode_batch(&texts, max_len)?;
                let owners = (0..seqs.len() as u32).collect();
                (seqs, owners)
            }
        };
        let width = seqs.iter().map(Vec::len).max().unwrap_or(1);
        let mut ids = vec![tok.pad_id; seqs.len() * width];
        let mut mask = vec![0u32; seqs.len() * width];
        for (r, s) in seqs.iter().enumerate() {
            ids[r * width..r * width + s.len()].copy_from_slice(s);
            mask[r * width..r * width + s.len()].fill(1);
        }
        let batch = Batch::Text {
            ids: Tensor::from_vec(ids, (seqs.len(), width), &self.device)?,
            mask: Tensor::from_vec(mask, (seqs.len(), width), &self.device)?,
            labels: None,
        };
        let logits = model.forward(&batch, &mut Pass::eval())?.to_vec2::<f32>()?;
        let (_, pooled, _) = pool_windows(&logits, &owners);
        let pooled = Tensor::new(pooled, &self.device)?;
        let probs = forward_probabilities(&pooled)?.to_vec2::<f32>()?;
        let mut table = Table::new(
            ["text".to_string(), "label".to_string()]
                .into_iter()
                .chain(labels.iter().map(|l| format!("p({l})"))),
        );
        for (text, p) in texts.iter().zip(probs) {
            let best = p.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i);
            table.row(
                [short(text, 60), labels[best].clone()]
                    .into_iter()
                    .chain(p.iter().map(|x| format!("{x:.4}"))),
            );
        }
        sink.emit(Event::Table(table));
        Ok(())
    }
}

/// `text` cut to `n` characters with an ellipsis.
pub(crate) fn short(text: &str, n: usize) -> String {
    if text.chars().count() <= n {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(n - 1).collect::<String>())
    }
}

/// Reads a file of texts with the same columns as `like` (for `eval file=`).
impl Session {
    fn read_labelled_like(
        &self,
        like: &crate::data::TextData,
        file: &str,
        span: crate::dsl::Span,
    ) -> Result<crate::data::Labelled> {
        let path = Path::new(file);
        if path.is_dir() {
            return crate::data::Labelled::from_folder(path).map_err(|e| e.at(span));
        }
        let table = crate::data::TextTable::read(path).map_err(|e| e.at(span))?;
        let (text_col, label_col) = like.columns.clone().unwrap_or(("text".into(), "label".into()));
        let find = |c: &str| {
            table.column(c).ok_or_else(|| {
                Error::invalid(format!(
                    "'{file}' has no column '{c}' (the data's); its columns are: {}",
                    table.columns.join(", ")
                ))
                .at(span)
            })
        };
        let (ti, li) = (find(&text_col)?, find(&label_col)?);
        Ok(crate::data::Labelled { texts: table.column_values(ti), labels: table.column_values(li) })
    }
}
