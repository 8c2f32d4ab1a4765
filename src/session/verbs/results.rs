//! `eval`, `predict`.

use candle_core::Tensor;

use super::num;
use crate::data::{Batch, Split};
use crate::dsl::{Command, Value};
use crate::error::{Error, Result};
use crate::metrics::{least_squares, mse, EvalRecord};
use crate::session::{Event, Session, Sink, Table};
use crate::train::mean_loss;

impl Session {
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

    pub(crate) fn eval(&mut self, cmd: &Command, sink: &mut dyn Sink) -> Result<()> {
        let model = self.model()?;
        let data = self.data_set()?;
        let split = self.chosen_split(cmd)?;
        model.forward(&data.batch(&data.split(split)[..1])?, false)?;
        let loss = mean_loss(model, data, split, 4096)?.expect("split checked non-empty");
        let rows = data.split(split).len();
        let mut table = Table::new(["", "learned"]).titled(format!(
            "eval on {} ({rows} rows) at step {}",
            split.name(),
            self.history.step()
        ));
        let mut closing = None;
        if model.family() == "linear" {
            let train = data.host_rows(Split::Train);
            let target = data.host_rows(split);
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
                    let gap = 100.0 * (loss - closed) / closed.max(f64::MIN_POSITIVE);
                    closing = Some(format!(
                        "the learned MSE is {gap:+.2}% from the closed-form least-squares fit (solved on the training split)"
                    ));
                }
                Err(e) => {
                    table.row([format!("{} MSE", split.name()), num(loss)]);
                    sink.emit(Event::Warning(e.to_string()));
                }
            }
        } else {
            table.row([format!("{} loss", split.name()), num(loss)]);
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
        Ok(())
    }

    pub(crate) fn predict(&mut self, cmd: &Command, sink: &mut dyn Sink) -> Result<()> {
        let model = self.model()?;
        let inputs = model.input_dims().unwrap_or(1);
        if !cmd.args.is_empty() {
            let mut rows = Vec::new();
            for a in &cmd.args {
                let xs: Vec<f64> =
                    a.value.as_list().unwrap_or_default().iter().filter_map(Value::as_f64).collect();
                if xs.len() != inputs {
                    let example = if inputs == 1 {
                        "predict 1.5".to_string()
                    } else {
                        format!("predict [{}]", vec!["1"; inputs].join(", "))
                    };
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
            let y =
                model.forward(&Batch::Regression { x, y: None }, false)?.flatten_all()?.to_vec1::<f32>()?;
            let mut table = Table::new(["input", "prediction"]);
            for (r, y) in rows.iter().zip(y) {
                let input: Vec<String> = r.iter().map(|v| num(*v)).collect();
                table.row([input.join(", "), num(y as f64)]);
            }
            sink.emit(Event::Table(table));
            return Ok(());
        }
        let data = self.data_set()?;
        let split = self.chosen_split(cmd)?;
        let rows: Vec<u32> =
            data.split(split).iter().take(cmd.usize("rows").unwrap_or(10)).copied().collect();
        let batch = data.batch(&rows)?;
        let pred = model.forward(&batch, false)?.flatten_all()?.to_vec1::<f32>()?;
        let host = data.host_rows(split);
        let mut table =
            Table::new([data.inputs.join(", "), data.target.clone(), "prediction".into(), "error".into()])
                .titled(format!("first {} rows of {}", rows.len(), split.name()));
        for ((x, y), p) in host.x.iter().zip(&host.y).zip(&pred) {
            let x: Vec<String> = x.iter().map(|v| num(*v)).collect();
            let p = *p as f64;
            table.row([x.join(", "), num(*y), num(p), num(p - y)]);
        }
        sink.emit(Event::Table(table));
        Ok(())
    }
}
