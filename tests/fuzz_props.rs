//! Property tests: no input, however odd, makes the parser, completion, hints or the
//! session panic, and failing commands never change the state.

mod common;

use proptest::prelude::*;
use tunelab::dsl::complete::{complete, hint};
use tunelab::dsl::table::VERBS;
use tunelab::dsl::{parse, ParseError};
use tunelab::{Event, Session};

fn char_boundaries(s: &str) -> Vec<usize> {
    (0..=s.len()).filter(|i| s.is_char_boundary(*i)).collect()
}

/// Words that make interesting values: numbers of every shape, ranges, lists, splits,
/// choices, quotes and junk.
const VALUES: &[&str] = &[
    "0",
    "1",
    "2",
    "-1",
    "2e-5",
    "1e3",
    "0.5",
    "nan",
    "inf",
    "abc",
    "0..2",
    "3..",
    "..1",
    "0.8/0.2",
    "0.8/0.1/0.1",
    "true",
    "no",
    "[1, 2]",
    "[]",
    "1,2",
    "\"q q\"",
    "'x'",
    "linear",
    "synthetic",
    "loss",
    "surface",
    "sgd",
    "adam",
    "cosine",
    "test",
    "params",
    "all",
    "w",
    "b",
    "cuda",
    "cpu",
    "=",
    ";",
    "#",
    "\\",
    "[",
    "]",
    "\"",
];

fn command_strategy() -> impl Strategy<Value = String> {
    let verbs: Vec<&'static str> = VERBS.iter().map(|v| v.name).collect();
    let keys: Vec<&'static str> =
        VERBS.iter().flat_map(|v| v.options.iter().map(|o| o.name)).chain(["zz", "x"]).collect();
    (
        proptest::sample::select(verbs),
        proptest::collection::vec(
            prop_oneof![
                proptest::sample::select(VALUES).prop_map(|v| v.to_string()),
                (proptest::sample::select(keys), proptest::sample::select(VALUES))
                    .prop_map(|(k, v)| format!("{k}={v}")),
            ],
            0..4,
        ),
    )
        .prop_map(|(verb, args)| format!("{verb} {}", args.join(" ")))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(src in "\\PC{0,60}") {
        let _: Result<_, ParseError> = parse(&src);
        for pos in char_boundaries(&src) {
            let _ = complete(&src, pos);
            let _ = hint(&src, pos);
        }
    }

    #[test]
    fn near_valid_commands_parse_or_fail_cleanly(src in command_strategy()) {
        match parse(&src) {
            Ok(cmds) => prop_assert!(!cmds.is_empty() || src.trim_start().starts_with('#')),
            Err(e) => {
                prop_assert!(!e.message.is_empty() && !e.message.contains('\n'), "{:?}", e.message);
                prop_assert!(e.span.start <= src.len() + 1);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

    /// Random commands on a live session: no panic, errors are one line, and a failed
    /// command leaves the weights and the training step as they were.
    #[test]
    fn session_survives_random_commands(cmds in proptest::collection::vec(command_strategy(), 1..6)) {
        let mut s = Session::new();
        common::ok(&mut s, "data synthetic linear n=60; load linear; fit epochs=1 batch=8");
        for src in cmds {
            // Keep the file system and the clock out of it: no saving, no huge fits.
            if src.starts_with("save") || src.contains("n=1e3") || src.contains("epochs=1e3")
                || src.contains("steps=1e3") || src.starts_with("quit") {
                continue;
            }
            let before = (s.weights().ok(), s.history().step());
            let mut out: Vec<Event> = Vec::new();
            let result = s.run(&src, &mut out);
            if result.is_err() {
                let msg = out.iter().find_map(|e| match e { Event::Error(d) => Some(d.message.clone()), _ => None });
                prop_assert!(msg.as_ref().is_some_and(|m| !m.contains('\n')), "{src}: {msg:?}");
                let diverged = msg.as_ref().is_some_and(|m| m.contains("loss became") || m.contains("loss is"));
                if !diverged {
                    prop_assert_eq!(before, (s.weights().ok(), s.history().step()), "{} changed the state", src);
                }
            }
        }
    }
}
