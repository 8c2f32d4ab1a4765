//! Tables from csv, tsv and jsonl files.

use std::path::{Path, PathBuf};

use crate::error::{bail, Error, Result};

/// A file's rows as text, with its column names; typed later by what the user asks for.
#[derive(Clone, Debug)]
pub struct TextTable {
    /// The file read.
    pub path: PathBuf,
    /// Column names (the header, or the keys of the first jsonl object).
    pub columns: Vec<String>,
    rows: Vec<Vec<String>>,
    lines: Vec<u64>,
}

/// The format a file is read as, from its extension.
fn delimiter_for(path: &Path, first_line: &str) -> Option<u8> {
    match path.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()).as_deref() {
        Some("jsonl") | Some("ndjson") => None,
        Some("tsv") | Some("tab") => Some(b'\t'),
        Some("csv") => Some(b','),
        _ if first_line.contains('\t') => Some(b'\t'),
        _ => Some(b','),
    }
}

fn read_error(path: &Path, reason: impl Into<String>) -> Error {
    Error::Read { path: path.to_path_buf(), reason: reason.into() }
}

impl TextTable {
    /// Reads a csv/tsv (with a header row) or jsonl file.
    pub fn read(path: &Path) -> Result<TextTable> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            let cwd = std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default();
            match e.kind() {
                std::io::ErrorKind::NotFound => {
                    read_error(path, format!("no such file (relative paths start at {cwd}); check the path"))
                }
                std::io::ErrorKind::InvalidData => read_error(path, "not UTF-8 text; save it as UTF-8"),
                _ => read_error(path, e.to_string()),
            }
        })?;
        let first = text.lines().next().unwrap_or("");
        let table = match delimiter_for(path, first) {
            Some(d) => Self::from_delimited(path, &text, d)?,
            None => Self::from_jsonl(path, &text)?,
        };
        if table.rows.is_empty() {
            return Err(read_error(path, "no data rows below the header; is it the right file?"));
        }
        Ok(table)
    }

    fn from_delimited(path: &Path, text: &str, delimiter: u8) -> Result<TextTable> {
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .flexible(false)
            .trim(csv::Trim::All)
            .from_reader(text.as_bytes());
        let columns: Vec<String> = reader
            .headers()
            .map_err(|e| read_error(path, format!("bad header: {e}")))?
            .iter()
            .map(str::to_string)
            .collect();
        let mut rows = Vec::new();
        let mut lines = Vec::new();
        for rec in reader.records() {
            let rec = rec.map_err(|e| {
                read_error(path, format!("{e}; every row needs as many fields as the header"))
            })?;
            lines.push(rec.position().map_or(0, |p| p.line()));
            rows.push(rec.iter().map(str::to_string).collect());
        }
        Ok(TextTable { path: path.to_path_buf(), columns, rows, lines })
    }

    fn from_jsonl(path: &Path, text: &str) -> Result<TextTable> {
        let mut columns: Vec<String> = Vec::new();
        let mut rows = Vec::new();
        let mut lines = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let obj: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line)
                .map_err(|e| read_error(path, format!("line {}: not a JSON object: {e}", i + 1)))?;
            if columns.is_empty() {
                columns = obj.keys().cloned().collect();
            }
            let row = columns
                .iter()
                .map(|c| match obj.get(c) {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(v) => v.to_string(),
                    None => String::new(),
                })
                .collect();
            rows.push(row);
            lines.push(i as u64 + 1);
        }
        Ok(TextTable { path: path.to_path_buf(), columns, rows, lines })
    }

    /// Number of data rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are no data rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Every value of column `c`, as text.
    pub fn column_values(&self, c: usize) -> Vec<String> {
        self.rows.iter().map(|r| r[c].clone()).collect()
    }

    /// Index of the column called `name`.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// The columns `x` as numbers, and `y`. A cell that is not a number is an error naming
    /// the line and column.
    pub fn numeric(&self, x: &[usize], y: usize) -> Result<(Vec<Vec<f64>>, Vec<f64>)> {
        let mut rows = Vec::with_capacity(self.rows.len());
        let mut ys = Vec::with_capacity(self.rows.len());
        for (r, line) in self.rows.iter().zip(&self.lines) {
            let num = |c: usize| -> Result<f64> {
                let cell = &r[c];
                match cell.parse::<f64>() {
                    Ok(v) if v.is_finite() => Ok(v),
                    _ => {
                        let what =
                            if cell.is_empty() { "is empty".to_string() } else { format!("has '{cell}'") };
                        bail!(
                            "'{}' line {line}: column '{}' {what}, which is not a number; fix or remove that row",
                            self.path.display(),
                            self.columns[c]
                        )
                    }
                }
            };
            rows.push(x.iter().map(|&c| num(c)).collect::<Result<Vec<_>>>()?);
            ys.push(num(y)?);
        }
        Ok((rows, ys))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Numeric = (Vec<String>, String, Vec<Vec<f64>>, Vec<f64>);

    fn read_numeric(path: &Path, x: Option<&[String]>, y: Option<&str>) -> Result<Numeric> {
        let t = TextTable::read(path)?;
        let y_name = y.map(str::to_string).unwrap_or_else(|| t.columns.last().cloned().unwrap());
        let x_names: Vec<String> = match x {
            Some(names) => names.to_vec(),
            None => t.columns.iter().filter(|c| **c != y_name).cloned().collect(),
        };
        let xi = x_names
            .iter()
            .map(|n| t.column(n).ok_or_else(|| Error::invalid(format!("column '{n}' not found"))))
            .collect::<Result<Vec<_>>>()?;
        let (rows, ys) = t.numeric(&xi, t.column(&y_name).unwrap())?;
        Ok((x_names, y_name, rows, ys))
    }

    #[test]
    fn reads_csv_tsv_and_jsonl() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("d.csv");
        std::fs::write(&csv, "a,b,y\n1,2,3\n4,5,6\n").unwrap();
        let (x, y, rows, ys) = read_numeric(&csv, None, None).unwrap();
        assert_eq!((x, y), (vec!["a".to_string(), "b".to_string()], "y".to_string()));
        assert_eq!((rows, ys), (vec![vec![1.0, 2.0], vec![4.0, 5.0]], vec![3.0, 6.0]));

        let tsv = dir.path().join("d.tsv");
        std::fs::write(&tsv, "x\ty\n1\t2\n").unwrap();
        assert_eq!(read_numeric(&tsv, None, None).unwrap().3, vec![2.0]);

        let jl = dir.path().join("d.jsonl");
        std::fs::write(&jl, "{\"x\": 1.5, \"y\": 2}\n\n{\"x\": 2.5, \"y\": 4}\n").unwrap();
        let (_, _, rows, ys) = read_numeric(&jl, Some(&["x".into()]), Some("y")).unwrap();
        assert_eq!((rows, ys), (vec![vec![1.5], vec![2.5]], vec![2.0, 4.0]));
    }

    #[test]
    fn errors_name_the_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("d.csv");
        std::fs::write(&csv, "x,y\n1,2\nabc,3\n").unwrap();
        let e = read_numeric(&csv, None, None).unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("column 'x'") && e.contains("'abc'"), "{e}");
        let e = read_numeric(&csv, Some(&["z".into()]), None).unwrap_err().to_string();
        assert!(e.contains("column 'z' not found"), "{e}");
        let e = read_numeric(&dir.path().join("none.csv"), None, None).unwrap_err().to_string();
        assert!(e.contains("no such file"), "{e}");
    }
}
