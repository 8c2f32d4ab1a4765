//! BLEU and ROUGE-L against the reference implementations (sacrebleu, rouge-score) on fixed
//! strings; the numbers come from tests/fixtures/make_text_overlap_reference.py, so no
//! Python is needed here.

use tunelab::metrics::{corpus_bleu, rouge_l, Tokenize};

fn tokenize(name: &str) -> Tokenize {
    match name {
        "whitespace" => Tokenize::Whitespace,
        "char" => Tokenize::Chars,
        "rouge" => Tokenize::Rouge,
        other => panic!("unknown tokenize {other}"),
    }
}

fn strings(v: &serde_json::Value) -> Vec<&str> {
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect()
}

fn reference() -> serde_json::Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/text_overlap_reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Corpus BLEU-4, its precisions, brevity penalty and lengths match sacrebleu to 1e-9.
#[test]
fn bleu_matches_sacrebleu() {
    let r = reference();
    let cases = r["bleu"].as_array().unwrap();
    assert!(cases.len() >= 8);
    for case in cases {
        let (hyps, refs) = (strings(&case["hypotheses"]), strings(&case["references"]));
        let b = corpus_bleu(&hyps, &refs, tokenize(case["tokenize"].as_str().unwrap()));
        let want = case["score"].as_f64().unwrap();
        println!("BLEU {:8.4} (sacrebleu {want:8.4}) {hyps:?}", b.score);
        assert!((b.score - want).abs() < 1e-9, "{hyps:?}: BLEU {} vs sacrebleu {want}", b.score);
        for (p, w) in b.precisions.iter().zip(case["precisions"].as_array().unwrap()) {
            assert!((p - w.as_f64().unwrap()).abs() < 1e-9, "{hyps:?}: precisions {:?} vs {w}", b.precisions);
        }
        assert!((b.brevity_penalty - case["bp"].as_f64().unwrap()).abs() < 1e-12, "{hyps:?}");
        assert_eq!(
            (b.hyp_len as u64, b.ref_len as u64),
            (case["sys_len"].as_u64().unwrap(), case["ref_len"].as_u64().unwrap())
        );
    }
}

/// ROUGE-L precision, recall and F-measure match rouge-score to 1e-12.
#[test]
fn rouge_l_matches_rouge_score() {
    let r = reference();
    for case in r["rouge_l"].as_array().unwrap() {
        let (cand, refr) = (case["candidate"].as_str().unwrap(), case["reference"].as_str().unwrap());
        let s = rouge_l(cand, refr, tokenize(case["tokenize"].as_str().unwrap()));
        let want = [&case["precision"], &case["recall"], &case["fmeasure"]].map(|v| v.as_f64().unwrap());
        println!("ROUGE-L F {:.6} (rouge-score {:.6}) {cand:?} / {refr:?}", s.fmeasure, want[2]);
        for (got, want) in [s.precision, s.recall, s.fmeasure].iter().zip(want) {
            assert!((got - want).abs() < 1e-12, "{cand:?} vs {refr:?}: {s:?} vs {want}");
        }
    }
}
