//! Property tests: no input, however odd, makes the parser, completion, hints or the
//! session panic, and failing commands never change the state.
//!
//! CI runs 10^5 parser inputs (twice: arbitrary text, near-valid commands) and 10^3 + 10^2
//! session command sequences (linear, tiny BERT). The long run of docs/reliability.md:
//! `TUNELAB_FUZZ_PARSER_CASES=1000000 TUNELAB_FUZZ_SESSION_CASES=10000 TUNELAB_FUZZ_BERT_CASES=2000
//! cargo test --test fuzz_props -- --nocapture`.
//! (cargo-fuzz needs a nightly compiler, which this project does not use.)

mod common;

use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
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

/// Words that touch the text-model verbs.
const TEXT_VALUES: &[&str] =
    &["classify", "mlm", "neg", "pos", "neutral", "encoder", "embeddings", "head", "layer.0", "lora"];

/// A count from the environment, else `default` (the CI count).
fn cases(var: &str, default: u32) -> u32 {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Runs `check` on `n` inputs from `strategy` and reports the count and the time (shown with
/// `--nocapture`). A failing input is shrunk and reported as proptest does.
fn run_cases<S: Strategy>(
    name: &str,
    n: u32,
    strategy: S,
    check: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let config = ProptestConfig { cases: n, failure_persistence: None, ..ProptestConfig::default() };
    let started = std::time::Instant::now();
    TestRunner::new(config).run(&strategy, check).unwrap_or_else(|e| panic!("{name}: {e}"));
    eprintln!("{name}: {n} cases, no panic, {:.1?}", started.elapsed());
}

fn command_strategy() -> impl Strategy<Value = String> {
    let verbs: Vec<&'static str> = VERBS.iter().map(|v| v.name).collect();
    let keys: Vec<&'static str> =
        VERBS.iter().flat_map(|v| v.options.iter().map(|o| o.name)).chain(["zz", "x"]).collect();
    let values: Vec<&'static str> = VALUES.iter().chain(TEXT_VALUES).copied().collect();
    (
        proptest::sample::select(verbs),
        proptest::collection::vec(
            prop_oneof![
                proptest::sample::select(values.clone()).prop_map(|v| v.to_string()),
                (proptest::sample::select(keys), proptest::sample::select(values))
                    .prop_map(|(k, v)| format!("{k}={v}")),
            ],
            0..4,
        ),
    )
        .prop_map(|(verb, args)| format!("{verb} {}", args.join(" ")))
}

/// The parser on arbitrary text: 10^5 inputs in CI, `TUNELAB_FUZZ_PARSER_CASES=1000000` for
/// the long run (docs/reliability.md).
#[test]
fn the_parser_never_panics_on_arbitrary_text() {
    run_cases("parser, arbitrary text", cases("TUNELAB_FUZZ_PARSER_CASES", 100_000), "\\PC{0,80}", |src| {
        let _: Result<_, ParseError> = parse(&src);
        Ok(())
    });
}

/// The parser on near-valid commands: every error is one line with a span inside the text.
#[test]
fn the_parser_fails_cleanly_on_near_valid_commands() {
    let n = cases("TUNELAB_FUZZ_PARSER_CASES", 100_000);
    run_cases("parser, near-valid commands", n, command_strategy(), |src| {
        match parse(&src) {
            Ok(cmds) => prop_assert!(!cmds.is_empty() || src.trim_start().starts_with('#')),
            Err(e) => {
                prop_assert!(!e.message.is_empty() && !e.message.contains('\n'), "{:?}", e.message);
                prop_assert!(e.span.start <= src.len() + 1);
            }
        }
        Ok(())
    });
}

/// Completion and hints at every cursor position of arbitrary text.
#[test]
fn completion_and_hints_never_panic() {
    run_cases("completion and hints", cases("TUNELAB_FUZZ_COMPLETE_CASES", 2000), "\\PC{0,60}", |src| {
        for pos in char_boundaries(&src) {
            let _ = complete(&src, pos);
            let _ = hint(&src, pos);
        }
        Ok(())
    });
}

/// Runs random commands on a session `setup` builds: no panic (a caught one is an
/// "internal error"), errors are one line, and a failed command leaves the weights and the
/// training step as they were.
fn random_commands_on(setup: &dyn Fn() -> Session, cmds: Vec<String>) -> Result<(), TestCaseError> {
    let mut s = setup();
    for src in cmds {
        // Keep the file system and the clock out of it: no saving, no huge fits.
        if src.starts_with("save")
            || src.contains("n=1e3")
            || src.contains("epochs=1e3")
            || src.contains("steps=1e3")
            || src.contains("max_tokens=1e3")
            || src.starts_with("quit")
        {
            continue;
        }
        let before = (s.weights().ok(), s.history().step());
        let mut out: Vec<Event> = Vec::new();
        let result = s.run(&src, &mut out);
        let msg = out.iter().find_map(|e| match e {
            Event::Error(d) => Some(d.message.clone()),
            _ => None,
        });
        prop_assert!(!msg.as_ref().is_some_and(|m| m.starts_with("internal error")), "{src}: {msg:?}");
        if result.is_err() {
            prop_assert!(msg.as_ref().is_some_and(|m| !m.contains('\n')), "{src}: {msg:?}");
            let diverged = msg.as_ref().is_some_and(|m| m.contains(" became "));
            if !diverged {
                prop_assert_eq!(before, (s.weights().ok(), s.history().step()), "{} changed the state", src);
            }
        }
    }
    Ok(())
}

/// Random command sequences on the linear model: 10^3 in CI,
/// `TUNELAB_FUZZ_SESSION_CASES=10000` for the long run.
#[test]
fn a_linear_session_survives_random_commands() {
    std::env::set_var("HF_HUB_OFFLINE", "1");
    let setup = || {
        let mut s = Session::new();
        common::ok(&mut s, "data synthetic linear n=60; load linear; fit epochs=1 batch=8");
        s
    };
    let n = cases("TUNELAB_FUZZ_SESSION_CASES", 1000);
    let sequences = proptest::collection::vec(command_strategy(), 1..6);
    run_cases("session, linear", n, sequences, |cmds| random_commands_on(&setup, cmds));
}

/// Random command sequences on a tiny BERT classifier (tests/fixtures): 10^2 in CI,
/// `TUNELAB_FUZZ_BERT_CASES` for the long run.
#[test]
fn a_tiny_bert_session_survives_random_commands() {
    std::env::set_var("HF_HUB_OFFLINE", "1");
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (label, lines) in [
        ("neg", "dull\nawful mess\nbad"),
        ("neutral", "fine\nok then\nso so"),
        ("pos", "great fun\nlovely\ngood"),
    ] {
        let p = dir.path().join(format!("{label}.txt"));
        std::fs::write(&p, lines).unwrap();
        files.push(p.display().to_string());
    }
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-distilbert-classify");
    let setup = || {
        let mut s = Session::new();
        common::ok(
            &mut s,
            &format!(
                "data {} max_len=12 split=0.67/0.33; load {}; fit epochs=1 batch=4",
                files.join(" "),
                fixture.display()
            ),
        );
        s
    };
    let n = cases("TUNELAB_FUZZ_BERT_CASES", 100);
    let sequences = proptest::collection::vec(command_strategy(), 1..6);
    run_cases("session, tiny BERT", n, sequences, |cmds| random_commands_on(&setup, cmds));
}
