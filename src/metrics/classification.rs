//! Classification metrics: the confusion matrix and everything derived from it, laid out
//! like scikit-learn's `classification_report`.

/// Counts of (true class, predicted class) pairs.
#[derive(Clone, Debug, PartialEq)]
pub struct Confusion {
    /// Class names, by class id.
    pub labels: Vec<String>,
    /// `counts[true][predicted]`.
    pub counts: Vec<Vec<usize>>,
}

/// Precision, recall, F1 and support of one class (or an average).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClassScores {
    /// Of the predictions of this class, the fraction that were right.
    pub precision: f64,
    /// Of the rows of this class, the fraction found.
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    pub f1: f64,
    /// Rows of this class.
    pub support: usize,
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

impl Confusion {
    /// The matrix of `truth` against `predicted` class ids.
    pub fn new(labels: Vec<String>, truth: &[u32], predicted: &[u32]) -> Confusion {
        let k = labels.len();
        let mut counts = vec![vec![0; k]; k];
        for (&t, &p) in truth.iter().zip(predicted) {
            counts[t as usize][p as usize] += 1;
        }
        Confusion { labels, counts }
    }

    /// Number of rows.
    pub fn total(&self) -> usize {
        self.counts.iter().flatten().sum()
    }

    /// Fraction predicted correctly.
    pub fn accuracy(&self) -> f64 {
        ratio((0..self.labels.len()).map(|i| self.counts[i][i]).sum(), self.total())
    }

    /// Scores of each class.
    pub fn per_class(&self) -> Vec<ClassScores> {
        (0..self.labels.len())
            .map(|c| {
                let tp = self.counts[c][c];
                let predicted: usize = self.counts.iter().map(|row| row[c]).sum();
                let support: usize = self.counts[c].iter().sum();
                let (precision, recall) = (ratio(tp, predicted), ratio(tp, support));
                let f1 = if precision + recall == 0.0 {
                    0.0
                } else {
                    2.0 * precision * recall / (precision + recall)
                };
                ClassScores { precision, recall, f1, support }
            })
            .collect()
    }

    /// Unweighted mean over classes.
    pub fn macro_avg(&self) -> ClassScores {
        average(&self.per_class(), |_| 1.0)
    }

    /// Mean over classes weighted by support.
    pub fn weighted_avg(&self) -> ClassScores {
        average(&self.per_class(), |s| s.support as f64)
    }

    /// The report as rows: one per class, then accuracy, macro avg, weighted avg
    /// (columns: name, precision, recall, f1-score, support).
    pub fn report_rows(&self) -> Vec<[String; 5]> {
        let f = |x: f64| format!("{x:.4}");
        let mut rows: Vec<[String; 5]> = self
            .labels
            .iter()
            .zip(self.per_class())
            .map(|(l, s)| [l.clone(), f(s.precision), f(s.recall), f(s.f1), s.support.to_string()])
            .collect();
        let total = self.total().to_string();
        rows.push(["accuracy".into(), String::new(), String::new(), f(self.accuracy()), total.clone()]);
        for (name, s) in [("macro avg", self.macro_avg()), ("weighted avg", self.weighted_avg())] {
            rows.push([name.into(), f(s.precision), f(s.recall), f(s.f1), total.clone()]);
        }
        rows
    }
}

fn average(scores: &[ClassScores], weight: impl Fn(&ClassScores) -> f64) -> ClassScores {
    let total: f64 = scores.iter().map(&weight).sum();
    let mean = |g: fn(&ClassScores) -> f64| {
        if total == 0.0 {
            0.0
        } else {
            scores.iter().map(|s| g(s) * weight(s)).sum::<f64>() / total
        }
    };
    ClassScores {
        precision: mean(|s| s.precision),
        recall: mean(|s| s.recall),
        f1: mean(|s| s.f1),
        support: scores.iter().map(|s| s.support).sum(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reference: sklearn.metrics.classification_report(y_true, y_pred, digits=4) for
    // y_true = [0,0,0,1,1,2], y_pred = [0,1,0,1,2,2].
    #[test]
    fn matches_sklearn() {
        let c = Confusion::new(
            vec!["a".into(), "b".into(), "c".into()],
            &[0, 0, 0, 1, 1, 2],
            &[0, 1, 0, 1, 2, 2],
        );
        assert_eq!(c.counts, vec![vec![2, 1, 0], vec![0, 1, 1], vec![0, 0, 1]]);
        let rows = c.report_rows();
        assert_eq!(rows[0], ["a", "1.0000", "0.6667", "0.8000", "3"].map(String::from));
        assert_eq!(rows[1], ["b", "0.5000", "0.5000", "0.5000", "2"].map(String::from));
        assert_eq!(rows[2], ["c", "0.5000", "1.0000", "0.6667", "1"].map(String::from));
        assert_eq!(rows[3], ["accuracy", "", "", "0.6667", "6"].map(String::from));
        assert_eq!(rows[4], ["macro avg", "0.6667", "0.7222", "0.6556", "6"].map(String::from));
        assert_eq!(rows[5], ["weighted avg", "0.7500", "0.6667", "0.6778", "6"].map(String::from));
    }
}
