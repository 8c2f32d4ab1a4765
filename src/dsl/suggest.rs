//! "Did you mean …?" for misspelt verbs, options and choices.

/// The candidate closest to `word`, if one is close enough to be a likely typo
/// (edit distance ≤ 1 for short words, ≤ 2 otherwise, or `word` a prefix of exactly one).
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let word = word.to_lowercase();
    let candidates: Vec<&str> = candidates.into_iter().collect();
    let limit = if word.chars().count() <= 3 { 1 } else { 2 };
    let best = candidates.iter().map(|c| (strsim::damerau_levenshtein(&word, c), *c)).min_by_key(|(d, _)| *d);
    if let Some((d, c)) = best {
        if d <= limit {
            return Some(c);
        }
    }
    let mut prefixed = candidates.iter().filter(|c| word.len() >= 2 && c.starts_with(&word));
    match (prefixed.next(), prefixed.next()) {
        (Some(c), None) => Some(c),
        _ => None,
    }
}

/// `" (did you mean 'x'?)"` or an empty string, to append to an error message.
pub fn suggestion<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    did_you_mean(word, candidates).map(|c| format!(" (did you mean '{c}'?)")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_find_their_word() {
        let verbs = ["fit", "eval", "epochs", "optimizer", "predict"];
        assert_eq!(did_you_mean("fitt", verbs), Some("fit"));
        assert_eq!(did_you_mean("epcohs", verbs), Some("epochs"));
        assert_eq!(did_you_mean("optimiser", verbs), Some("optimizer"));
        assert_eq!(did_you_mean("pred", verbs), Some("predict"));
        assert_eq!(did_you_mean("zzzzzz", verbs), None);
        assert_eq!(suggestion("evl", verbs), " (did you mean 'eval'?)");
    }
}
