//! `data`: a file's numeric columns, or synthetic data.

use std::path::Path;

use crate::data::{synthetic_linear, Dataset, Split, TextTable};
use crate::dsl::{suggestion, Command, Value};
use crate::error::{bail, Error, Result};
use crate::session::{Event, Session, Sink};

const SYNTHETIC_ONLY: [&str; 4] = ["n", "w", "b", "noise"];

impl Session {
    pub(crate) fn data(&mut self, cmd: &Command, sink: &mut dyn Sink) -> Result<()> {
        let source = cmd.arg(0).and_then(Value::as_str).unwrap_or_default().to_string();
        let fractions: Vec<f64> = cmd
            .value("split")
            .and_then(|v| v.as_list().map(|l| l.iter().filter_map(Value::as_f64).collect()))
            .unwrap_or_default();
        let shuffle = cmd.bool("shuffle").unwrap_or(true);
        let mut rng = self.rng.clone();

        let data = if source == "synthetic" {
            for key in ["x", "y"] {
                if cmd.given(key).is_some() {
                    return Err(Error::invalid(format!(
                        "{key}= names a column of a file; synthetic data has inputs x and target y"
                    ))
                    .at(cmd.span_of(key)));
                }
            }
            let w: Vec<f64> = cmd
                .value("w")
                .and_then(|v| v.as_list().map(|l| l.iter().filter_map(Value::as_f64).collect()))
                .unwrap_or_default();
            let b = cmd.f64("b").unwrap_or(2.0);
            let noise = cmd.f64("noise").unwrap_or(0.1);
            let n = cmd.usize("n").unwrap_or(1000);
            let (rows, y) = synthetic_linear(n, &w, b, noise, &mut rng);
            let inputs: Vec<String> = if w.len() == 1 {
                vec!["x".into()]
            } else {
                (1..=w.len()).map(|i| format!("x{i}")).collect()
            };
            let ws: Vec<String> = w.iter().map(|v| v.to_string()).collect();
            let source = format!("synthetic linear w={} b={b} noise={noise}", ws.join(","));
            Dataset::new(source, inputs, "y".into(), rows, y, &fractions, shuffle, &mut rng, &self.device)?
        } else {
            if let Some(g) = cmd.args.get(1) {
                return Err(Error::invalid(format!(
                    "'{}' only applies to synthetic data: `data synthetic {}`",
                    g.value, g.value
                ))
                .at(g.span));
            }
            for key in SYNTHETIC_ONLY {
                if cmd.given(key).is_some() {
                    return Err(Error::invalid(format!(
                        "{key}= only applies to `data synthetic linear`; a file's columns are chosen with x= and y="
                    ))
                    .at(cmd.span_of(key)));
                }
            }
            let path = Path::new(&source);
            if path.is_dir() {
                return Err(Error::invalid(format!(
                    "'{source}' is a directory; give a csv, tsv or jsonl file"
                ))
                .at(cmd.args[0].span));
            }
            let table = TextTable::read(path).map_err(|e| e.at(cmd.args[0].span))?;
            let column = |name: &str, key: &str| -> Result<usize> {
                table.column(name).ok_or_else(|| {
                    let dym = suggestion(name, table.columns.iter().map(String::as_str));
                    Error::invalid(format!(
                        "column '{name}' not found in '{source}'{dym}; its columns are: {}",
                        table.columns.join(", ")
                    ))
                    .at(cmd.span_of(key))
                })
            };
            let y_name = cmd.str("y").unwrap_or_else(|| table.columns.last().cloned().unwrap_or_default());
            let yi = column(&y_name, "y")?;
            let x_names: Vec<String> = match cmd.value("x") {
                Some(Value::List(items)) => {
                    items.iter().filter_map(|v| v.as_str().map(str::to_string)).collect()
                }
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
            let xi = x_names.iter().map(|n| column(n, "x")).collect::<Result<Vec<_>>>()?;
            let (rows, y) = table.numeric(&xi, yi)?;
            Dataset::new(
                source.clone(),
                x_names,
                y_name,
                rows,
                y,
                &fractions,
                shuffle,
                &mut rng,
                &self.device,
            )?
        };

        let sizes: Vec<String> =
            Split::ALL.iter().map(|s| format!("{} {}", s.name(), data.split(*s).len())).collect();
        sink.emit(Event::Text(format!(
            "data: {} — {} rows, {} input(s) ({}) → {}; split {}",
            data.source,
            data.len(),
            data.dims(),
            data.inputs.join(", "),
            data.target,
            sizes.join(" / ")
        )));
        if let Some(m) = &self.model {
            if let Some(inputs) = m.input_dims().filter(|d| *d != data.dims()) {
                sink.emit(Event::Warning(format!(
                    "the loaded model has {inputs} input(s) but this data has {}: run `load linear` again",
                    data.dims()
                )));
            }
        }
        self.rng = rng;
        self.data = Some(data);
        self.step_queue.clear();
        Ok(())
    }
}
