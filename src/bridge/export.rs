//! The training record as a CSV file, in long format: one row per number.
//!
//! Columns: `kind,step,epoch,split,metric,value`, where `kind` is `step` (an update: `loss`,
//! `lr`), `epoch` (`train_loss`, `valid_loss`, `valid_accuracy`) or `eval` (one `eval` result:
//! its split and metric). Empty cells are written as nothing. A long format keeps the file
//! readable by a few lines of std-only Rust ([`super::prelude`]), pandas or a spreadsheet.

use std::io::Write;
use std::path::Path;

use crate::metrics::History;

/// The header line of an exported history.
pub const HISTORY_HEADER: &str = "kind,step,epoch,split,metric,value";

/// One number of the training record.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// `step`, `epoch` or `eval`.
    pub kind: String,
    /// Update number.
    pub step: u64,
    /// Epoch number (none for `eval` rows).
    pub epoch: Option<u64>,
    /// The split an `eval` row was measured on.
    pub split: Option<String>,
    /// What was measured (`loss`, `lr`, `train_loss`, `valid_loss`, `valid_accuracy`, or the
    /// metric of an `eval`).
    pub metric: String,
    /// Its value.
    pub value: f64,
}

/// Every number in `history`, in the order it was recorded within each kind.
pub fn records(history: &History) -> Vec<Record> {
    let mut out = Vec::new();
    let mut push = |kind: &str, step, epoch, split: Option<&str>, metric: &str, value| {
        out.push(Record {
            kind: kind.into(),
            step,
            epoch,
            split: split.map(Into::into),
            metric: metric.into(),
            value,
        })
    };
    for s in &history.steps {
        push("step", s.step, Some(s.epoch), None, "loss", s.loss);
        push("step", s.step, Some(s.epoch), None, "lr", s.lr);
    }
    for e in &history.epochs {
        push("epoch", e.step, Some(e.epoch), None, "train_loss", e.train_loss);
        if let Some(v) = e.valid_loss {
            push("epoch", e.step, Some(e.epoch), Some("valid"), "valid_loss", v);
        }
        if let Some(v) = e.valid_accuracy {
            push("epoch", e.step, Some(e.epoch), Some("valid"), "valid_accuracy", v);
        }
    }
    for r in &history.evals {
        push("eval", r.step, None, Some(&r.split), &r.metric, r.value);
    }
    out
}

/// Writes `history` to `path` as CSV (see the module docs); returns the number of rows.
pub fn write_history(history: &History, path: &Path) -> std::io::Result<usize> {
    let rows = records(history);
    let mut text = String::from(HISTORY_HEADER);
    text.push('\n');
    for r in &rows {
        // `{:?}` prints the shortest text that parses back to the same f64.
        text.push_str(&format!(
            "{},{},{},{},{},{:?}\n",
            r.kind,
            r.step,
            r.epoch.map(|e| e.to_string()).unwrap_or_default(),
            r.split.as_deref().unwrap_or(""),
            r.metric,
            r.value
        ));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(rows.len())
}

/// Reads a file [`write_history`] wrote.
pub fn read_history(path: &Path) -> std::io::Result<Vec<Record>> {
    let text = std::fs::read_to_string(path)?;
    let bad = |line: usize, what: &str| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}:{line}: {what}; re-export it with `export history`", path.display()),
        )
    };
    let mut lines = text.lines();
    if lines.next() != Some(HISTORY_HEADER) {
        return Err(bad(1, &format!("the header is not `{HISTORY_HEADER}`")));
    }
    let mut out = Vec::new();
    for (i, line) in lines.enumerate() {
        let cells: Vec<&str> = line.split(',').collect();
        let [kind, step, epoch, split, metric, value] = cells[..] else {
            return Err(bad(i + 2, "expected 6 cells"));
        };
        let num = |s: &str| s.parse::<u64>().map_err(|_| bad(i + 2, &format!("'{s}' is not a count")));
        out.push(Record {
            kind: kind.into(),
            step: num(step)?,
            epoch: if epoch.is_empty() { None } else { Some(num(epoch)?) },
            split: (!split.is_empty()).then(|| split.to_string()),
            metric: metric.into(),
            value: value.parse().map_err(|_| bad(i + 2, &format!("'{value}' is not a number")))?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{EpochRecord, EvalRecord, StepRecord};

    #[test]
    fn history_round_trips_exactly() {
        let history = History {
            steps: vec![
                StepRecord { step: 1, epoch: 1, loss: 0.1 + 0.2, lr: 1e-3 },
                StepRecord { step: 2, epoch: 1, loss: 1.0 / 3.0, lr: 1e-3 },
            ],
            epochs: vec![EpochRecord {
                epoch: 1,
                step: 2,
                train_loss: 0.5,
                valid_loss: Some(0.25),
                valid_accuracy: None,
                complete: true,
            }],
            evals: vec![EvalRecord { step: 2, split: "test".into(), metric: "mse".into(), value: 7e-9 }],
            path: Vec::new(),
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/history.csv");
        assert_eq!(write_history(&history, &path).unwrap(), 7);
        let back = read_history(&path).unwrap();
        assert_eq!(back, records(&history));
        assert_eq!(back[2].value, 1.0 / 3.0);
        assert_eq!(back[6].split.as_deref(), Some("test"));
        std::fs::write(&path, "kind,step\n").unwrap();
        assert!(read_history(&path).unwrap_err().to_string().contains("export history"));
    }
}
