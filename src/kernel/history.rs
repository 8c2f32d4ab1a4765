//! The cells this kernel has executed, for `history_request` (tail, range and search).
//!
//! Kept in memory for the kernel's life: a restarted kernel starts a new history, as it
//! starts a new session.

use jupyter_protocol::HistoryEntry;

use super::connection::Incoming;

/// The session number history entries carry (this kernel has one session).
pub const SESSION: usize = 1;

/// One executed cell.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Cell {
    /// Its execution count.
    line: usize,
    input: String,
    /// Its plain-text output.
    output: String,
}

/// The cells executed with `store_history`, oldest first.
#[derive(Clone, Debug, Default)]
pub struct History {
    cells: Vec<Cell>,
}

impl History {
    /// Records a cell.
    pub fn push(&mut self, line: usize, input: &str, output: &str) {
        self.cells.push(Cell { line, input: input.to_string(), output: output.to_string() });
    }

    /// The entries a `history_request` asks for.
    pub fn answer(&self, req: &Incoming) -> Vec<HistoryEntry> {
        let n = |default: usize| req.int("n").map_or(default, |n| n.max(0) as usize);
        let cells: Vec<&Cell> = match req.str("hist_access_type") {
            "tail" => self.tail(n(10)),
            "range" => self.range(req.int("start").unwrap_or(0), req.int("stop")),
            "search" => {
                let pattern = req.content.get("pattern").and_then(|p| p.as_str()).unwrap_or("*");
                self.search(pattern, req.bool("unique", false), req.int("n").map(|_| n(0)))
            }
            _ => Vec::new(),
        };
        let output = req.bool("output", false);
        cells
            .into_iter()
            .map(|c| {
                if output {
                    HistoryEntry::InputOutput(SESSION, c.line, (c.input.clone(), c.output.clone()))
                } else {
                    HistoryEntry::Input(SESSION, c.line, c.input.clone())
                }
            })
            .collect()
    }

    fn tail(&self, n: usize) -> Vec<&Cell> {
        self.cells.iter().skip(self.cells.len().saturating_sub(n)).collect()
    }

    /// Cells with `start <= line < stop` (no `stop`: to the end).
    fn range(&self, start: i64, stop: Option<i64>) -> Vec<&Cell> {
        let stop = stop.filter(|&s| s > 0).unwrap_or(i64::MAX);
        self.cells.iter().filter(|c| (c.line as i64) >= start && (c.line as i64) < stop).collect()
    }

    /// Cells whose input matches the glob `pattern` (`*`, `?`), the last `n` of them;
    /// `unique` keeps only the latest of equal inputs.
    fn search(&self, pattern: &str, unique: bool, n: Option<usize>) -> Vec<&Cell> {
        let mut found: Vec<&Cell> = self.cells.iter().filter(|c| glob(pattern, &c.input)).collect();
        if unique {
            let mut seen = std::collections::HashSet::new();
            found.reverse();
            found.retain(|c| seen.insert(c.input.as_str()));
            found.reverse();
        }
        if let Some(n) = n.filter(|&n| n > 0) {
            found.drain(..found.len().saturating_sub(n));
        }
        found
    }
}

/// Whether `text` matches the glob `pattern` as a whole (`*` any run, `?` any character).
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use jupyter_protocol::{Header, JupyterMessage, UnknownMessage};
    use serde_json::json;

    fn request(content: serde_json::Value) -> Incoming {
        let mut parent = JupyterMessage::new(UnknownMessage::default(), None);
        parent.header = Header { msg_type: "history_request".into(), ..parent.header };
        Incoming { parent, content }
    }

    fn lines(h: &History, content: serde_json::Value) -> Vec<usize> {
        h.answer(&request(content))
            .into_iter()
            .map(|e| match e {
                HistoryEntry::Input(_, l, _) | HistoryEntry::InputOutput(_, l, _) => l,
            })
            .collect()
    }

    #[test]
    fn tail_range_and_search() {
        let mut h = History::default();
        for (i, code) in ["seed 1", "show params", "fit", "show params"].iter().enumerate() {
            h.push(i + 1, code, "out");
        }
        assert_eq!(lines(&h, json!({"hist_access_type": "tail", "n": 2})), [3, 4]);
        assert_eq!(lines(&h, json!({"hist_access_type": "range", "start": 2, "stop": 3})), [2]);
        assert_eq!(lines(&h, json!({"hist_access_type": "range", "start": 3})), [3, 4]);
        assert_eq!(lines(&h, json!({"hist_access_type": "search", "pattern": "show*"})), [2, 4]);
        assert_eq!(lines(&h, json!({"hist_access_type": "search", "pattern": "show*", "unique": true})), [4]);
        assert_eq!(lines(&h, json!({"hist_access_type": "search", "pattern": "*", "n": 1})), [4]);
        let with_output = h.answer(&request(json!({"hist_access_type": "tail", "n": 1, "output": true})));
        assert_eq!(serde_json::to_value(&with_output).unwrap(), json!([[1, 4, ["show params", "out"]]]));
    }

    #[test]
    fn globs() {
        assert!(glob("show*", "show params"));
        assert!(glob("*par?ms", "show params"));
        assert!(!glob("show", "show params"));
        assert!(glob("*", ""));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxbyy"));
    }
}
