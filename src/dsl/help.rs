//! `help` and `help VERB`, generated from the verb table.

use super::suggest;
use super::table::{find_verb, verb_names, Group, VerbSpec, VERBS};

/// The overview: every verb by group with its summary.
pub fn overview() -> String {
    let mut out = String::from("tunelab commands (type `help VERB` for details):\n");
    for group in Group::ALL {
        out.push_str(&format!("\n{}:\n", group.title()));
        for v in VERBS.iter().filter(|v| v.group == group) {
            out.push_str(&format!("  {:<10} {}\n", v.name, v.summary));
        }
    }
    out.push_str(
        "\nSyntax: verb args key=value …   # comment; `;` or a new line separates commands;\n\
         a trailing \\ continues a line; numbers like 2e-5, ranges 0..8, lists a,b or [a, b],\n\
         \"quoted text\".\n",
    );
    out
}

/// The page for one verb: usage, details, arguments, options with defaults, examples.
pub fn verb_help(verb: &VerbSpec) -> String {
    let mut out = format!("{} — {}\n\nusage: {}\n", verb.name, verb.summary, verb.usage());
    if !verb.aliases.is_empty() {
        out.push_str(&format!("also: {}\n", verb.aliases.join(", ")));
    }
    out.push_str(&format!("\n{}\n", wrap(verb.details, 78)));
    if !verb.args.is_empty() {
        out.push_str("\narguments:\n");
        for a in verb.args {
            let req = if a.required { "" } else { " (optional)" };
            out.push_str(&format!("  {:<16} {}{req}\n", a.name, a.doc));
        }
    }
    if !verb.options.is_empty() {
        out.push_str("\noptions:\n");
        for o in verb.options {
            let key = format!("{}={}", o.name, o.kind.placeholder());
            let default = o.default.map(|d| format!(" [default {d}]")).unwrap_or_default();
            out.push_str(&format!("  {key:<22} {}{default}\n", o.doc));
        }
    }
    out.push_str("\nexamples:\n");
    for e in verb.examples {
        out.push_str(&format!("  {e}\n"));
    }
    out
}

/// `help TOPIC`: the verb's page, or an error message with a suggestion.
pub fn help_for(topic: &str) -> Result<String, String> {
    find_verb(topic).map(verb_help).ok_or_else(|| {
        format!(
            "no help for '{topic}'{}; type `help` for the list of verbs",
            suggest::suggestion(topic, verb_names())
        )
    })
}

fn wrap(text: &str, width: usize) -> String {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overview_lists_every_verb() {
        let text = overview();
        for v in VERBS {
            assert!(text.contains(&format!("  {:<10} {}", v.name, v.summary)), "{}", v.name);
        }
    }

    #[test]
    fn verb_page_has_usage_options_and_defaults() {
        let text = help_for("data").unwrap();
        assert!(text.contains("usage: data SOURCE"));
        assert!(text.contains("noise=X"));
        assert!(text.contains("[default 0.1]"));
        assert!(help_for("fitt").unwrap_err().contains("did you mean 'fit'"));
    }
}
