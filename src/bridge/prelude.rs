//! `tunelab_bridge`: the helper module every Rust cell can use, written in std-only Rust so
//! that a cell needs no dependency (and no build of tunelab) to read what the session
//! exported or to hand a data set back.
//!
//! ```text
//! %%rust
//! let losses: Vec<f64> = tunelab_bridge::history().iter()
//!     .filter(|r| r.kind == "step" && r.metric == "loss").map(|r| r.value).collect();
//! let path = tunelab_bridge::write_dataset("squares", &["x", "y"], &[vec![1.0, 1.0], vec![2.0, 4.0]]);
//! ```

use std::path::Path;

/// The Rust source of the `tunelab_bridge` module, reading and writing under `dir` (the
/// session's export folder, absolute).
pub fn source(dir: &Path) -> String {
    TEMPLATE.replace("@DIR@", &format!("{:?}", dir.display().to_string()))
}

const TEMPLATE: &str = r#"
#[allow(dead_code)]
mod tunelab_bridge {
    /// Where `export` writes and `write_dataset` writes.
    pub const DIR: &str = @DIR@;

    /// One number of the training record (`export history`).
    #[derive(Clone, Debug, PartialEq)]
    pub struct Record {
        pub kind: String,
        pub step: u64,
        pub epoch: Option<u64>,
        pub split: Option<String>,
        pub metric: String,
        pub value: f64,
    }

    /// The history the session last exported (`export history`).
    pub fn history() -> Vec<Record> {
        let path = format!("{DIR}/history.csv");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!("cannot read {path} ({e}); run `export history` in a tunelab cell first")
        });
        text.lines()
            .skip(1)
            .filter(|l| !l.is_empty())
            .map(|l| {
                let c: Vec<&str> = l.split(',').collect();
                Record {
                    kind: c[0].to_string(),
                    step: c[1].parse().unwrap(),
                    epoch: c[2].parse().ok(),
                    split: if c[3].is_empty() { None } else { Some(c[3].to_string()) },
                    metric: c[4].to_string(),
                    value: c[5].parse().unwrap(),
                }
            })
            .collect()
    }

    /// The training loss of every update, as (step, loss).
    pub fn losses() -> Vec<(u64, f64)> {
        history()
            .into_iter()
            .filter(|r| r.kind == "step" && r.metric == "loss")
            .map(|r| (r.step, r.value))
            .collect()
    }

    /// Writes a numeric data set as `DIR/NAME.csv` and returns its path, for
    /// `data PATH inputs=… target=…` in a tunelab cell.
    pub fn write_dataset(name: &str, columns: &[&str], rows: &[Vec<f64>]) -> String {
        std::fs::create_dir_all(DIR).expect("the export folder can be created");
        let mut text = columns.join(",");
        text.push('\n');
        for row in rows {
            assert_eq!(row.len(), columns.len(), "every row needs one value per column");
            let cells: Vec<String> = row.iter().map(|v| format!("{v:?}")).collect();
            text.push_str(&cells.join(","));
            text.push('\n');
        }
        let path = format!("{DIR}/{name}.csv");
        std::fs::write(&path, text).expect("the data set can be written");
        path
    }
}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_folder_is_a_quoted_literal() {
        let src = source(Path::new("/tmp/a \"b\""));
        assert!(src.contains(r#"pub const DIR: &str = "/tmp/a \"b\"";"#), "{src}");
        assert!(!src.contains("@DIR@"));
    }
}
