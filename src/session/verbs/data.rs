//! `data`: labelled text for classification, numeric columns for regression, or synthetic
//! data for the teaching case.

use std::path::Path;

use crate::data::{
    read_corpus, synthetic_linear, Balance, Dataset, LabelSet, Labelled, NumericData, Split, TextData,
    TextOptions, TextTable,
};
use crate::dsl::{suggestion, Command, Span, Value};
use crate::error::{bail, Error, Result};
use crate::session::{Event, Session, Sink};

const SYNTHETIC_ONLY: [&str; 4] = ["n", "w", "b", "noise"];
const TEXT_ONLY: [&str; 13] = [
    "text",
    "label",
    "max_len",
    "stride",
    "clean",
    "augment",
    "augment_p",
    "valid",
    "test",
    "limit",
    "format",
    "block",
    "balance",
];
const NUMERIC_ONLY: [&str; 2] = ["x", "y"];

fn list_f64(v: Option<Value>) -> Vec<f64> {
    v.and_then(|v| v.as_list().map(|l| l.iter().filter_map(Value::as_f64).collect())).unwrap_or_default()
}

/// Rejects options that belong to another kind of data.
fn reject(cmd: &Command, keys: &[&str], why: &str) -> Result<()> {
    for key in keys {
        if cmd.given(key).is_some() {
            return Err(Error::invalid(format!("{key}= {why}")).at(cmd.span_of(key)));
        }
    }
    Ok(())
}

/// The index of column `name` in `table`, or an error pointing at option `key`.
fn column(table: &TextTable, name: &str, cmd: &Command, key: &str) -> Result<usize> {
    table.column(name).ok_or_else(|| {
        let dym = suggestion(name, table.columns.iter().map(String::as_str));
        Error::invalid(format!(
            "column '{name}' not found in '{}'{dym}; its columns are: {}",
            table.path.display(),
            table.columns.join(", ")
        ))
        .at(cmd.span_of(key))
    })
}

fn is_table(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| ["csv", "tsv", "tab", "jsonl", "ndjson"].contains(&e.to_ascii_lowercase().as_str()))
}

impl Session {
    pub(crate) fn data(&mut self, cmd: &Command, sink: &mut dyn Sink) -> Result<()> {
        let source = cmd.arg(0).and_then(Value::as_str).unwrap_or_default().to_string();
        let spec = super::autosave::DataSpec::new(cmd, &self.rng, self.settings.seed);
        let mut rng = self.rng.clone();
        let data = if source == "synthetic" {
            self.build_synthetic(cmd, &mut rng)?
        } else if self.wants_text(cmd, &source)? {
            self.read_text_data(cmd, &source, &mut rng)?
        } else {
            self.read_numeric_data(cmd, &source, &mut rng)?
        };
        self.announce_data(&data, sink);
        let previous = self.data.replace(data);
        if let Err(e) = self.prepare_data_announce(sink) {
            self.data = previous;
            return Err(e);
        }
        self.rng = rng;
        self.step_queue.clear();
        self.data_spec = Some(spec);
        Ok(())
    }

    /// Whether `data SOURCE …` is text: text options given, a folder, .txt files, or a
    /// table with `text` and `label` columns and no numeric options.
    fn wants_text(&self, cmd: &Command, source: &str) -> Result<bool> {
        if TEXT_ONLY.iter().any(|k| cmd.given(k).is_some()) {
            return Ok(true);
        }
        if NUMERIC_ONLY.iter().any(|k| cmd.given(k).is_some()) {
            return Ok(false);
        }
        let path = Path::new(source);
        if path.is_dir() || !is_table(path) {
            return Ok(true);
        }
        let table = TextTable::read(path).map_err(|e| e.at(cmd.args[0].span))?;
        Ok(table.column("text").is_some() && table.column("label").is_some())
    }

    fn build_synthetic(&self, cmd: &Command, rng: &mut impl rand::Rng) -> Result<Dataset> {
        reject(cmd, &NUMERIC_ONLY, "names a column of a file; synthetic data has inputs x and target y")?;
        reject(cmd, &TEXT_ONLY, "applies to text data, not `data synthetic linear`")?;
        if let Some(extra) = cmd.args.get(2) {
            return Err(Error::invalid("`data synthetic` takes one generator: linear").at(extra.span));
        }
        if let Some(g) = cmd.args.get(1).filter(|g| g.value.as_str() != Some("linear")) {
            return Err(Error::invalid(format!(
                "unknown generator '{}': use `data synthetic linear`",
                g.value
            ))
            .at(g.span));
        }
        let w = list_f64(cmd.value("w"));
        let (b, noise, n) =
            (cmd.f64("b").unwrap_or(2.0), cmd.f64("noise").unwrap_or(0.1), cmd.usize("n").unwrap_or(1000));
        let (rows, y) = synthetic_linear(n, &w, b, noise, rng);
        let inputs: Vec<String> =
            if w.len() == 1 { vec!["x".into()] } else { (1..=w.len()).map(|i| format!("x{i}")).collect() };
        let ws: Vec<String> = w.iter().map(|v| v.to_string()).collect();
        let source = format!("synthetic linear w={} b={b} noise={noise}", ws.join(","));
        self.numeric_table(cmd, source, (inputs, "y".into()), rows, y, rng)
    }

    /// Numeric rows split and shuffled as the command says (`split=`, `shuffle=`).
    fn numeric_table(
        &self,
        cmd: &Command,
        source: String,
        (inputs, target): (Vec<String>, String),
        rows: Vec<Vec<f64>>,
        y: Vec<f64>,
        rng: &mut impl rand::Rng,
    ) -> Result<Dataset> {
        let fractions = list_f64(cmd.value("split"));
        let shuffle = cmd.bool("shuffle").unwrap_or(true);
        let data = NumericData::new(source, inputs, target, rows, y, &fractions, shuffle, rng, &self.device)?;
        Ok(Dataset::Numeric(data))
    }

    fn read_numeric_data(&self, cmd: &Command, source: &str, rng: &mut impl rand::Rng) -> Result<Dataset> {
        reject(
            cmd,
            &SYNTHETIC_ONLY,
            "only applies to `data synthetic linear`; a file's columns are chosen with x= and y=",
        )?;
        if let Some(extra) = cmd.args.get(1) {
            return Err(Error::invalid(format!(
                "'{}': several files are for text (one per label); numeric data comes from one file",
                extra.value
            ))
            .at(extra.span));
        }
        let path = Path::new(source);
        let table = TextTable::read(path).map_err(|e| e.at(cmd.args[0].span))?;
        let y_name = cmd.str("y").unwrap_or_else(|| table.columns.last().cloned().unwrap_or_default());
        let yi = column(&table, &y_name, cmd, "y")?;
        let x_names: Vec<String> = match cmd.value("x") {
            Some(Value::List(items)) => items.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
            _ => table.columns.iter().filter(|c| **c != y_name).cloned().collect(),
        };
        if x_names.is_empty() {
            bail!("'{source}' has only the target column '{y_name}'; name input columns with x=")
        }
        if x_names.contains(&y_name) {
            return Err(Error::invalid(format!(
                "'{y_name}' is both an input and the target; drop it from x="
            ))
            .at(cmd.span_of("x")));
        }
        let xi = x_names.iter().map(|n| column(&table, n, cmd, "x")).collect::<Result<Vec<_>>>()?;
        let (rows, y) = table.numeric(&xi, yi)?;
        self.numeric_table(cmd, source.into(), (x_names, y_name), rows, y, rng)
    }

    /// Reads one text source: a table (text=/label= columns), .txt files (one per label),
    /// or a folder.
    fn read_labelled(&self, cmd: &Command, paths: &[(String, Span)]) -> Result<Labelled> {
        let first = Path::new(&paths[0].0);
        if first.is_dir() {
            if paths.len() > 1 {
                return Err(Error::invalid("give one folder, or several .txt files").at(paths[1].1));
            }
            return Labelled::from_folder(first).map_err(|e| e.at(paths[0].1));
        }
        if is_table(first) {
            if paths.len() > 1 {
                return Err(
                    Error::invalid("give one table (csv/tsv/jsonl), or several .txt files").at(paths[1].1)
                );
            }
            let table = TextTable::read(first).map_err(|e| e.at(paths[0].1))?;
            let text_col = cmd.str("text").unwrap_or_else(|| "text".into());
            let label_col = cmd.str("label").unwrap_or_else(|| "label".into());
            let ti = column(&table, &text_col, cmd, "text")?;
            let li = column(&table, &label_col, cmd, "label")?;
            return Ok(Labelled { texts: table.column_values(ti), labels: table.column_values(li) });
        }
        let files: Vec<&Path> = paths.iter().map(|(p, _)| Path::new(p.as_str())).collect();
        for (f, (_, span)) in files.iter().zip(paths) {
            if !f.is_file() {
                return Err(Error::Read {
                    path: f.to_path_buf(),
                    reason: "no such file; check the path".into(),
                }
                .at(*span));
            }
        }
        Labelled::from_files(&files)
    }

    fn read_text_data(&self, cmd: &Command, source: &str, rng: &mut impl rand::Rng) -> Result<Dataset> {
        reject(cmd, &SYNTHETIC_ONLY, "only applies to `data synthetic linear`")?;
        reject(cmd, &NUMERIC_ONLY, "names a numeric column; for text use text= and label=")?;
        let paths: Vec<(String, Span)> =
            cmd.args.iter().map(|a| (a.value.as_str().unwrap_or_default().to_string(), a.span)).collect();
        let corpus = cmd.str("format").as_deref() == Some("text") || cmd.given("block").is_some();
        let block = if corpus {
            let block = cmd.usize("block").unwrap_or(128);
            if block < 2 {
                return Err(Error::invalid("block=1 leaves no next token to predict; use block=128 or so")
                    .at(cmd.span_of("block")));
            }
            for key in ["label", "max_len", "augment", "stride"] {
                if cmd.given(key).is_some() {
                    return Err(Error::invalid(format!(
                        "{key}= applies to labelled text; a format=text corpus is packed into block= tokens"
                    ))
                    .at(cmd.span_of(key)));
                }
            }
            Some(block)
        } else {
            None
        };
        let read = |paths: &[(String, Span)]| -> Result<Labelled> {
            if corpus {
                let field = cmd.str("text").unwrap_or_else(|| "text".into());
                let mut texts = Vec::new();
                for (p, span) in paths {
                    texts.extend(read_corpus(Path::new(p), &field).map_err(|e| e.at(*span))?);
                }
                let labels = vec!["text".to_string(); texts.len()];
                Ok(Labelled { texts, labels })
            } else {
                self.read_labelled(cmd, paths)
            }
        };
        let main = read(&paths)?;
        let extra = |key: &str| -> Result<Option<Labelled>> {
            match cmd.str(key) {
                Some(p) => Ok(Some(read(&[(p, cmd.span_of(key))])?)),
                None => Ok(None),
            }
        };
        let (valid, test) = (extra("valid")?, extra("test")?);
        let model_labels =
            self.model.as_ref().and_then(|m| m.labels()).map(|l| LabelSet { names: l.to_vec() });
        let fractions = list_f64(cmd.value("split"));
        let opts = TextOptions {
            fractions: &fractions,
            shuffle: cmd.bool("shuffle").unwrap_or(true),
            clean: cmd.bool("clean").unwrap_or(true),
            augment: (cmd.usize("augment").unwrap_or(0), cmd.f64("augment_p").unwrap_or(0.1)),
            max_len: cmd.usize("max_len").unwrap_or(128),
            limit: cmd.usize("limit"),
            labels: model_labels.as_ref().filter(|_| self.model_is_trained_classifier() && !corpus),
            block,
            balance: cmd.str("balance").as_deref().and_then(Balance::from_name),
        };
        let name = if paths.len() > 1 {
            paths.iter().map(|p| p.0.as_str()).collect::<Vec<_>>().join(" ")
        } else {
            source.to_string()
        };
        let stride = cmd.usize("stride");
        if let Some(stride) = stride.filter(|s| *s >= opts.max_len) {
            return Err(Error::invalid(format!(
                "stride={stride} must be below max_len={}: it is the overlap between consecutive windows; \
                 use e.g. stride={}",
                opts.max_len,
                opts.max_len / 2
            ))
            .at(cmd.span_of("stride")));
        }
        let mut data = TextData::new(name, main, valid, test, &opts, rng)?;
        data.stride = stride;
        if paths.len() == 1 && is_table(Path::new(&paths[0].0)) && !corpus {
            data.columns = Some((
                cmd.str("text").unwrap_or_else(|| "text".into()),
                cmd.str("label").unwrap_or_else(|| "label".into()),
            ));
        }
        Ok(Dataset::Text(data))
    }

    /// Whether the loaded model is a classifier whose labels the data must follow (it has
    /// been trained or was loaded with a trained head).
    pub(crate) fn model_is_trained_classifier(&self) -> bool {
        self.model.as_ref().is_some_and(|m| m.labels().is_some())
            && (self.history.step() > 0 || self.head_from_checkpoint)
    }

    fn announce_data(&self, data: &Dataset, sink: &mut dyn Sink) {
        let sizes: Vec<String> =
            Split::ALL.iter().map(|s| format!("{} {}", s.name(), data.split(*s).len())).collect();
        match data {
            Dataset::Numeric(d) => {
                sink.emit(Event::Text(format!(
                    "data: {} — {} rows, {} input(s) ({}) → {}; split {}",
                    d.source,
                    d.len(),
                    d.dims(),
                    d.inputs.join(", "),
                    d.target,
                    sizes.join(" / ")
                )));
                if let Some(inputs) =
                    self.model.as_ref().and_then(|m| m.input_dims()).filter(|i| *i != d.dims())
                {
                    sink.emit(Event::Warning(format!(
                        "the loaded model has {inputs} input(s) but this data has {}: run `load linear` again",
                        d.dims()
                    )));
                }
            }
            Dataset::Text(d) => {
                let r = &d.report;
                let cleaned = if r.empty + r.duplicates > 0 {
                    format!("; cleaning dropped {} empty and {} duplicate text(s)", r.empty, r.duplicates)
                } else {
                    String::new()
                };
                let mut augmented = if r.augmented > 0 {
                    format!("; {} augmented copies added to train", r.augmented)
                } else {
                    String::new()
                };
                let what = match d.block {
                    Some(b) => format!("a corpus for language modelling, packed into blocks of {b} tokens"),
                    None => format!("labels {}", d.label_set.describe()),
                };
                if let Some((how, before, after)) = r.rebalanced {
                    let how = if how == Balance::Oversample { "oversampled" } else { "undersampled" };
                    augmented += &format!("; train {how} from {before} to {after} rows (even labels)");
                }
                sink.emit(Event::Text(format!(
                    "data: {} — {} texts, {what}; split {} texts{cleaned}{augmented}",
                    d.source,
                    d.len(),
                    sizes.join(" / ")
                )));
                if d.block.is_some() {
                    return;
                }
                if d.label_set.names.len() == 1 {
                    sink.emit(Event::Warning(format!(
                        "one label only ({}): fine for `task=mlm`; a classifier needs a file per label or a label column",
                        d.label_set.names[0]
                    )));
                }
                if let Some(w) = imbalance_warning(d) {
                    sink.emit(Event::Warning(w));
                }
            }
        }
    }
}

/// A warning when the training labels are more uneven than 1:4 (largest class over four
/// times the smallest), with the remedies; `None` when they are even enough.
pub(crate) fn imbalance_warning(d: &TextData) -> Option<String> {
    let counts = d.class_counts(Split::Train);
    let lo = counts.iter().copied().filter(|c| *c > 0).min()?;
    let hi = counts.iter().copied().max()?;
    (hi > 4 * lo).then(|| {
        let shown: Vec<String> = d.label_set.names.iter().zip(&counts).map(|(n, c)| format!("{n} {c}")).collect();
        format!(
            "the training labels are imbalanced ({}, ratio 1:{:.1}): accuracy can mislead, look at the per-class \
             report; remedies: `loss weights=auto` or `data … balance=oversample`",
            shown.join(", "),
            hi as f64 / lo as f64
        )
    })
}
