//! Plain corpora for language modelling (`data FILE format=text`): the samples of a text,
//! JSON, JSON-lines or csv file, before they are tokenized and packed into blocks.

use std::path::Path;

use super::TextTable;
use crate::error::{bail, Error, Result};

/// The samples of `path`:
/// - `.txt` (or any other extension): blank-line-separated blocks when the file has blank
///   lines, else one sample per line;
/// - `.json`: an array of objects, the `field` of each (a string, or a list of strings
///   joined by newlines, like a poem's lines);
/// - `.jsonl` / `.csv` / `.tsv`: the `field` column of each row.
pub fn read_corpus(path: &Path, field: &str) -> Result<Vec<String>> {
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).unwrap_or_default();
    let read = || {
        std::fs::read_to_string(path).map_err(|e| Error::Read {
            path: path.to_path_buf(),
            reason: match e.kind() {
                std::io::ErrorKind::NotFound => "no such file; check the path".into(),
                std::io::ErrorKind::InvalidData => "not UTF-8 text; save it as UTF-8".into(),
                _ => e.to_string(),
            },
        })
    };
    let samples: Vec<String> = match ext.as_str() {
        "json" => from_json(path, &read()?, field)?,
        "jsonl" | "ndjson" | "csv" | "tsv" | "tab" => {
            let table = TextTable::read(path)?;
            let Some(c) = table.column(field) else {
                bail!(
                    "'{}' has no field '{field}'; its fields are: {} (choose one with text=)",
                    path.display(),
                    table.columns.join(", ")
                )
            };
            table.column_values(c)
        }
        _ => from_plain(&read()?),
    };
    let samples: Vec<String> =
        samples.into_iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
    if samples.is_empty() {
        bail!("'{}' holds no text to learn from (it is empty or only blank lines)", path.display())
    }
    Ok(samples)
}

fn from_plain(text: &str) -> Vec<String> {
    let has_blank_line = text.lines().any(|l| l.trim().is_empty());
    if has_blank_line {
        text.split("\n\n").flat_map(|b| b.split("\r\n\r\n")).map(str::to_string).collect()
    } else {
        text.lines().map(str::to_string).collect()
    }
}

fn from_json(path: &Path, text: &str, field: &str) -> Result<Vec<String>> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| Error::Read { path: path.to_path_buf(), reason: format!("invalid JSON: {e}") })?;
    let Some(items) = value.as_array() else {
        bail!("'{}' is not a JSON array of objects; use jsonl or a text file", path.display())
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match item.get(field) {
            Some(serde_json::Value::String(s)) => out.push(s.clone()),
            Some(serde_json::Value::Array(lines)) => {
                out.push(lines.iter().filter_map(|l| l.as_str()).collect::<Vec<_>>().join("\n"))
            }
            _ => {
                let keys: Vec<String> =
                    item.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
                bail!(
                    "an item of '{}' has no text field '{field}'; its fields are: {} (choose one with text=)",
                    path.display(),
                    keys.join(", ")
                )
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_splits_on_blank_lines_or_lines() {
        assert_eq!(from_plain("a b\nc\n\nd\n"), ["a b\nc", "d\n"]);
        assert_eq!(from_plain("a\nb\n"), ["a", "b"]);
    }

    #[test]
    fn json_fields_may_be_lists_of_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("poems.json");
        std::fs::write(&p, r#"[{"title": "t", "paragraphs": ["一二", "三四"]}, {"paragraphs": "五"}]"#)
            .unwrap();
        assert_eq!(read_corpus(&p, "paragraphs").unwrap(), ["一二\n三四", "五"]);
        let e = read_corpus(&p, "text").unwrap_err().to_string();
        assert!(e.contains("no text field 'text'") && e.contains("paragraphs"), "{e}");
        std::fs::write(&p, "[]").unwrap();
        assert!(read_corpus(&p, "text").unwrap_err().to_string().contains("no text to learn from"));
    }
}
