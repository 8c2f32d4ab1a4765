//! GPT-2 through the session: light fine-tuning on the Chinese poetry corpus (frozen blocks
//! stay bit-identical), generation, save → load, and the errors of bad input.

mod common;

use common::{asset, err, ok, render, tables};
use tunelab::Session;

fn setup(s: &mut Session, extra: &str) {
    let vocab = asset("gpt2_tokenizer");
    let poems = asset("poetry").join("shuimotangshi.json");
    ok(
        s,
        &format!(
            "seed 7\nload gpt2 config=tiny vocab={}\ndata {} format=text text=paragraphs block=32 split=0.85/0.15 limit=50 {extra}",
            vocab.display(),
            poems.display()
        ),
    );
}

fn valid_perplexity(s: &mut Session) -> f64 {
    let out = ok(s, "eval split=valid");
    common::cell(tables(&out)[0], "perplexity", 1)
}

#[test]
fn light_fine_tuning_lowers_perplexity_and_keeps_frozen_blocks() {
    let mut s = Session::new();
    setup(&mut s, "");
    // Light fine-tuning: the first block and the position embeddings stay frozen; the last
    // block, the final norm and the (tied) token embeddings / head train.
    ok(&mut s, "freeze all except last=1 ln_f head");
    let before = common::weights(&s);
    let ppl0 = valid_perplexity(&mut s);
    ok(&mut s, "snapshot before");
    ok(&mut s, "optimizer adamw lr=1e-2\nfit epochs=3 batch=8");
    let ppl1 = valid_perplexity(&mut s);
    println!("valid perplexity {ppl0:.1} → {ppl1:.1}");
    assert!(ppl1 < 0.5 * ppl0, "perplexity {ppl0} → {ppl1}: expected at least halved");
    let after = common::weights(&s);
    for ((name, a), (_, b)) in before.iter().zip(&after) {
        let trainable = name.starts_with("transformer.h.1.")
            || name.starts_with("transformer.ln_f")
            || name == "transformer.wte.weight";
        if trainable {
            assert!(a != b, "{name} should have trained");
        } else {
            assert!(a == b, "{name} is frozen but changed");
        }
    }
    // Generation streams text that continues the prompt, the same for the same seed.
    let a = render(&ok(&mut s, "generate \"床前明月光\" max_tokens=16 seed=3"));
    let b = render(&ok(&mut s, "generate \"床前明月光\" max_tokens=16 seed=3"));
    assert!(a.starts_with("床前明月光"), "{a}");
    assert_eq!(a.lines().next(), b.lines().next());
    // Before/after side by side.
    let out = ok(&mut s, "compare generate \"月\" max_tokens=8 greedy=true");
    let t = tables(&out)[0];
    assert!(t.columns[0].contains("before") && t.columns[1].contains("now"), "{}", t.to_text());
    assert!(t.rows[0].iter().all(|c| c.starts_with('月')), "{}", t.to_text());
    assert_ne!(t.rows[0][0], t.rows[0][1], "fine-tuning changed nothing greedy decoding shows");
}

#[test]
fn saved_models_load_back_identically() {
    let mut s = Session::new();
    setup(&mut s, "");
    ok(&mut s, "fit epochs=1 batch=16");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("poet");
    ok(&mut s, &format!("save {}", path.display()));
    for f in ["config.json", "model.safetensors", "tokenizer.json", "vocab.json", "merges.txt"] {
        assert!(path.join(f).is_file(), "save wrote no {f}");
    }
    let text = std::fs::read_to_string(path.join("config.json")).unwrap();
    let config: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(config["model_type"], "gpt2");
    assert_eq!(config["architectures"][0], "GPT2LMHeadModel");
    let want = render(&ok(&mut s, "eval split=valid"));
    let sample = render(&ok(&mut s, "generate \"春\" max_tokens=10 greedy=true"));
    // Loading the directory replaces the model; the data (and its split) stay.
    ok(&mut s, &format!("load {}", path.display()));
    let got = render(&ok(&mut s, "eval split=valid"));
    let table = |r: &str| {
        r.lines().skip_while(|l| !l.contains("next-token loss")).take(2).collect::<Vec<_>>().join("\n")
    };
    assert_eq!(table(&got), table(&want));
    assert_eq!(
        render(&ok(&mut s, "generate \"春\" max_tokens=10 greedy=true")).lines().next(),
        sample.lines().next()
    );
}

#[test]
fn bad_input_gets_one_clear_line() {
    let mut s = Session::new();
    let e = err(&mut s, "generate \"hello\"");
    assert!(e.contains("no model loaded") || e.contains("language model"), "{e}");
    setup(&mut s, "");
    let long = "月".repeat(80);
    let e = err(&mut s, &format!("generate \"{long}\""));
    assert!(e.contains("context holds 64") && e.contains("shorten the prompt"), "{e}");
    let e = err(&mut s, "generate \"月\" temperature=0");
    assert!(e.contains("greedy=true"), "{e}");
    let e = err(&mut s, "generate \"月\" top_p=1.5");
    assert!(e.contains("top_p=1.5"), "{e}");
    let e = err(&mut s, "generate \"\"");
    assert!(e.contains("prompt is empty"), "{e}");
    let e = err(&mut s, "generate \"月\" max_tokens=8 min_tokens=9");
    assert!(e.contains("min_tokens=9 is more than max_tokens=8"), "{e}");
    let poems = asset("poetry").join("shuimotangshi.json");
    let e = err(&mut s, &format!("data {} format=text text=paragraphs block=128", poems.display()));
    assert!(e.contains("block=128 is longer than the model's context of 64"), "{e}");
    let e = err(&mut s, &format!("data {} format=text text=body", poems.display()));
    assert!(e.contains("no text field 'body'") && e.contains("paragraphs"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "\n\n  \n").unwrap();
    let e = err(&mut s, &format!("data {} format=text", empty.display()));
    assert!(e.contains("no text to learn from"), "{e}");
    let e = err(&mut s, "freeze all except last=9");
    assert!(e.contains("has 2 numbered layers"), "{e}");
    // The session is intact: the model still generates.
    ok(&mut s, "generate \"月\" max_tokens=3");
}

/// LoRA on GPT-2's Conv1D projections (stored [in, out]): fresh adapters change nothing,
/// training leaves the base bit-identical, and merging gives the same model.
#[test]
fn lora_adapts_gpt2s_conv1d_projections() {
    let mut s = Session::new();
    setup(&mut s, "");
    let loss = |s: &mut Session| common::cell(tables(&ok(s, "eval split=valid"))[0], "next-token loss", 1);
    let base = common::weights(&s);
    let l0 = loss(&mut s);
    ok(&mut s, "lora r=4 alpha=8");
    assert_eq!(loss(&mut s), l0, "B = 0: the adapted model is the base model");
    ok(&mut s, "optimizer adamw lr=1e-2\nfit epochs=1 batch=8");
    let l1 = loss(&mut s);
    assert!(l1 < l0, "LoRA training lowered nothing: {l0} → {l1}");
    let after = common::weights(&s);
    for (name, values) in &base {
        let now = after.iter().find(|(n, _)| n == name).map(|(_, v)| v);
        assert_eq!(now, Some(values), "base weight {name} changed under LoRA");
    }
    ok(&mut s, "lora merge");
    let merged = loss(&mut s);
    assert!((merged - l1).abs() < 1e-4, "merged {merged} vs unmerged {l1}");
}
