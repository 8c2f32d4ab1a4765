//! `plot`: loss and learning-rate curves, the loss surface with the descent path, the fit.

use std::path::PathBuf;

use crate::data::Split;
use crate::dsl::{suggestion, Command, Value};
use crate::error::{bail, Error, Result};
use crate::metrics::least_squares;
use crate::plot::{
    heatmap, line_chart, loss_surface, scatter_chart, Figure, HeatmapChart, LineChart, ScatterChart, Series,
    SeriesStyle, SurfaceChart,
};
use crate::session::snapshot::Snapshot;
use crate::session::{Event, Image, Session, Sink, Table};

/// Sums that give the MSE of y ≈ w·x + b for any (w, b) in O(1), for the surface grid.
struct Moments {
    n: f64,
    sx: f64,
    sy: f64,
    sxx: f64,
    sxy: f64,
    syy: f64,
}

impl Moments {
    fn new(x: &[f64], y: &[f64]) -> Moments {
        let mut m = Moments { n: x.len() as f64, sx: 0.0, sy: 0.0, sxx: 0.0, sxy: 0.0, syy: 0.0 };
        for (x, y) in x.iter().zip(y) {
            m.sx += x;
            m.sy += y;
            m.sxx += x * x;
            m.sxy += x * y;
            m.syy += y * y;
        }
        m
    }

    fn mse(&self, w: f64, b: f64) -> f64 {
        (w * w * self.sxx + 2.0 * w * b * self.sx + b * b * self.n - 2.0 * w * self.sxy - 2.0 * b * self.sy
            + self.syy)
            / self.n
    }
}

impl Session {
    pub(crate) fn plot(&mut self, cmd: &Command, sink: &mut dyn Sink) -> Result<()> {
        let what = cmd.arg(0).and_then(Value::as_str).unwrap_or("loss");
        if let (Some(given), true) = (cmd.given("compare"), what != "loss") {
            return Err(Error::invalid(format!(
                "compare= overlays loss curves: use `plot loss compare=…`, not `plot {what}`"
            ))
            .at(given.span));
        }
        let figure = match what {
            "loss" => self.plot_loss(cmd, sink)?,
            "lr" => self.plot_lr()?,
            "surface" => self.plot_surface()?,
            "fit" => self.plot_fit()?,
            "confusion" => self.plot_confusion()?,
            other => bail!("cannot plot '{other}'"),
        };
        let file = cmd.str("file").map(|f| {
            let p = PathBuf::from(f);
            match p.extension().and_then(|e| e.to_str()) {
                Some("png") | Some("svg") => p.with_extension(""),
                _ => p,
            }
        });
        sink.emit(Event::Image(Image { figure, file }));
        Ok(())
    }

    fn nothing_yet(&self) -> Error {
        Error::invalid("nothing to plot yet: run `fit` or `step` first")
    }

    fn plot_loss(&self, cmd: &Command, sink: &mut dyn Sink) -> Result<Figure> {
        if let Some(names) = cmd.value("compare") {
            return self.plot_loss_compare(cmd, &names, sink);
        }
        let h = &self.history;
        if h.steps.is_empty() {
            return Err(self.nothing_yet());
        }
        let mut series = vec![Series {
            label: "train loss (per step)".into(),
            points: h.steps.iter().map(|s| (s.step as f64, s.loss)).collect(),
            style: SeriesStyle::Thin,
        }];
        if !h.epochs.is_empty() {
            series.push(Series {
                label: "train loss (epoch mean)".into(),
                points: h.epochs.iter().map(|e| (e.step as f64, e.train_loss)).collect(),
                style: SeriesStyle::Bold,
            });
            let valid: Vec<(f64, f64)> =
                h.epochs.iter().filter_map(|e| e.valid_loss.map(|v| (e.step as f64, v))).collect();
            if !valid.is_empty() {
                series.push(Series {
                    label: "valid loss".into(),
                    points: valid,
                    style: SeriesStyle::Markers,
                });
            }
        }
        let (lo, hi) = h
            .steps
            .iter()
            .map(|s| s.loss)
            .filter(|l| l.is_finite() && *l > 0.0)
            .fold((f64::MAX, 0.0f64), |(a, b), l| (a.min(l), b.max(l)));
        let log_y = cmd.bool("log").unwrap_or(hi > 100.0 * lo);
        Ok(line_chart(&LineChart {
            name: "loss".into(),
            title: format!("training loss — {} steps", h.step()),
            x_label: "step".into(),
            y_label: "loss".into(),
            series,
            log_y,
        })?)
    }

    /// `plot loss compare=a,b,…`: a table of the runs side by side (trainable parameters,
    /// last losses, validation and the last `eval` accuracy), then one smoothed
    /// training-loss curve per snapshot.
    fn plot_loss_compare(&self, cmd: &Command, names: &Value, sink: &mut dyn Sink) -> Result<Figure> {
        let names: Vec<&str> = match names {
            Value::List(items) => items.iter().filter_map(Value::as_str).collect(),
            other => other.as_str().into_iter().collect(),
        };
        let span = cmd.given("compare").map(|c| c.span).unwrap_or(cmd.span);
        let mut series = Vec::new();
        let mut table = Table::new([
            "run",
            "steps",
            "trainable",
            "train loss",
            "valid loss",
            "valid accuracy",
            "last eval accuracy",
        ])
        .titled("the runs side by side");
        for name in &names {
            let Some(snap) = self.snapshots.iter().find(|s| s.name == *name) else {
                let known: Vec<&str> = self.snapshots.iter().map(|s| s.name.as_str()).collect();
                let dym = suggestion(name, known.iter().copied());
                let there = if known.is_empty() {
                    "there are none yet: take a `snapshot NAME` after each run".to_string()
                } else {
                    format!("there are: {}", known.join(", "))
                };
                return Err(Error::invalid(format!("no snapshot '{name}'{dym}; {there}")).at(span));
            };
            let steps = &snap.history().steps;
            if steps.is_empty() {
                return Err(Error::invalid(format!(
                    "snapshot '{name}' holds no training steps: take it after `fit`"
                ))
                .at(span));
            }
            let losses: Vec<f64> = steps.iter().map(|s| s.loss).collect();
            table.row(compare_row(name, snap));
            series.push(Series {
                label: format!("{name} (train loss, smoothed)"),
                points: steps.iter().map(|s| s.step as f64).zip(smoothed(&losses)).collect(),
                style: SeriesStyle::Bold,
            });
        }
        sink.emit(Event::Table(table));
        let (lo, hi) = series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .filter(|l| l.is_finite() && *l > 0.0)
            .fold((f64::MAX, 0.0f64), |(a, b), l| (a.min(l), b.max(l)));
        Ok(line_chart(&LineChart {
            name: "loss-compare".into(),
            title: format!("training loss — {}", names.join(" vs ")),
            x_label: "step".into(),
            y_label: "loss".into(),
            series,
            log_y: cmd.bool("log").unwrap_or(hi > 100.0 * lo),
        })?)
    }

    fn plot_confusion(&self) -> Result<Figure> {
        let Some(c) = &self.last_confusion else {
            bail!("no confusion matrix yet: `eval` a classifier first")
        };
        Ok(heatmap(&HeatmapChart {
            name: "confusion".into(),
            title: format!("confusion matrix — accuracy {:.4} on {} rows", c.accuracy(), c.total()),
            x_label: "predicted".into(),
            y_label: "true".into(),
            row_labels: c.labels.clone(),
            col_labels: c.labels.clone(),
            values: c.counts.iter().map(|r| r.iter().map(|v| *v as f64).collect()).collect(),
            annotate: true,
        })?)
    }

    fn plot_lr(&self) -> Result<Figure> {
        let h = &self.history;
        if h.steps.is_empty() {
            return Err(self.nothing_yet());
        }
        Ok(line_chart(&LineChart {
            name: "lr".into(),
            title: "learning rate".into(),
            x_label: "step".into(),
            y_label: "learning rate".into(),
            series: vec![Series {
                label: "lr".into(),
                points: h.steps.iter().map(|s| (s.step as f64, s.lr)).collect(),
                style: SeriesStyle::Bold,
            }],
            log_y: false,
        })?)
    }

    /// The training rows of a 1-input linear model, or an error saying why not.
    fn one_input_linear(&self, what: &str) -> Result<(Vec<f64>, Vec<f64>)> {
        let model = self.model()?;
        let data = self.numeric_data(&format!("plot {what}"))?;
        if model.family() != "linear" || model.input_dims() != Some(1) || data.dims() != 1 {
            bail!(
                "plot {what} needs a linear model with one input and 1-input data (w and b are the two axes)"
            )
        }
        let rows = data.host_rows(Split::Train);
        Ok((rows.x.iter().map(|r| r[0]).collect(), rows.y))
    }

    fn plot_surface(&self) -> Result<Figure> {
        let (x, y) = self.one_input_linear("surface")?;
        let m = Moments::new(&x, &y);
        let xs: Vec<&[f64]> = x.iter().map(std::slice::from_ref).collect();
        let optimum = least_squares(&xs, &y).ok().map(|(w, b)| (w[0], b));
        let mut path: Vec<(f64, f64)> =
            self.history.path.iter().map(|p| (p.values[0], p.values[1])).collect();
        if path.is_empty() {
            let w = self.weights()?;
            path.push((w[0].1[0] as f64, w[1].1[0] as f64));
        }
        let loss = |w: f64, b: f64| m.mse(w, b);
        Ok(loss_surface(&SurfaceChart {
            name: "surface".into(),
            title: format!("MSE over (w, b) on the training split — {} steps of descent", path.len() - 1),
            x_label: "w".into(),
            y_label: "b".into(),
            loss: &loss,
            path,
            optimum,
        })?)
    }

    fn plot_fit(&self) -> Result<Figure> {
        let (x, y) = self.one_input_linear("fit")?;
        let w = self.weights()?;
        let (lw, lb) = (w[0].1[0] as f64, w[1].1[0] as f64);
        let (lo, hi) = x.iter().fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
        let line = |w: f64, b: f64| vec![(lo, w * lo + b), (hi, w * hi + b)];
        let mut lines = vec![Series {
            label: format!("learned y = {:.4}x + {:.4}", lw, lb),
            points: line(lw, lb),
            style: SeriesStyle::Bold,
        }];
        let xs: Vec<&[f64]> = x.iter().map(std::slice::from_ref).collect();
        if let Ok((cw, cb)) = least_squares(&xs, &y) {
            lines.push(Series {
                label: format!("closed form y = {:.4}x + {:.4}", cw[0], cb),
                points: line(cw[0], cb),
                style: SeriesStyle::Dashed,
            });
        }
        let step = (x.len() / 2000).max(1);
        Ok(scatter_chart(&ScatterChart {
            name: "fit".into(),
            title: format!("data and fitted line at step {}", self.history.step()),
            x_label: self.numeric_data("plot fit")?.inputs[0].clone(),
            y_label: self.numeric_data("plot fit")?.target.clone(),
            points: x.iter().zip(&y).step_by(step).map(|(a, b)| (*a, *b)).collect(),
            lines,
        })?)
    }
}

/// One run's row of the `plot loss compare=` table.
fn compare_row(name: &str, snap: &Snapshot) -> Vec<String> {
    let h = snap.history();
    let (trainable, total) = snap.trainable();
    let last_epoch = h.epochs.last();
    let tail = &h.steps[h.steps.len().saturating_sub(10)..];
    let train = last_epoch
        .map(|e| e.train_loss)
        .unwrap_or_else(|| tail.iter().map(|s| s.loss).sum::<f64>() / tail.len().max(1) as f64);
    let opt = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{v:.4}"));
    let eval = h.evals.iter().rev().find(|e| e.metric == "accuracy");
    vec![
        name.to_string(),
        h.step().to_string(),
        format!("{trainable} ({:.1}%)", 100.0 * trainable as f64 / total.max(1) as f64),
        format!("{train:.4}"),
        opt(last_epoch.and_then(|e| e.valid_loss)),
        opt(last_epoch.and_then(|e| e.valid_accuracy)),
        eval.map_or("—".to_string(), |e| format!("{:.4} ({})", e.value, e.split)),
    ]
}

/// A trailing mean over a window of a tenth of the run (1 to 50 steps), so curves of
/// noisy per-step losses can be told apart when several share a chart.
fn smoothed(values: &[f64]) -> Vec<f64> {
    let window = (values.len() / 10).clamp(1, 50);
    (0..values.len())
        .map(|i| {
            let from = (i + 1).saturating_sub(window);
            values[from..=i].iter().sum::<f64>() / (i + 1 - from) as f64
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{smoothed, Moments};

    #[test]
    fn smoothing_averages_a_trailing_window() {
        let v: Vec<f64> = (0..20).map(|i| if i % 2 == 0 { 1.0 } else { 3.0 }).collect();
        let s = smoothed(&v);
        assert_eq!(s.len(), 20);
        assert_eq!(s[0], 1.0); // the first point is itself
        assert!(s[2..].iter().all(|x| (x - 2.0).abs() < 0.34), "{s:?}"); // a window of 2 or 3
        assert_eq!(smoothed(&[5.0]), vec![5.0]);
    }

    #[test]
    fn moments_give_the_mse() {
        let x = [1.0, 2.0, 3.0];
        let y = [2.0, 4.5, 5.5];
        let m = Moments::new(&x, &y);
        let direct: f64 = x.iter().zip(&y).map(|(x, y)| (1.5 * x + 0.5 - y).powi(2)).sum::<f64>() / 3.0;
        assert!((m.mse(1.5, 0.5) - direct).abs() < 1e-12);
    }
}
