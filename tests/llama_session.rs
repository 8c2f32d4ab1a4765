//! SmolLM2-135M (a real pretrained llama-family model, from its GGUF) through the session:
//! it answers "The capital of France is" with " Paris", and light fine-tuning on Tang poems
//! (only the last two blocks and the final norm train) lowers validation perplexity while
//! every frozen tensor stays bit-identical.

mod common;

use common::{asset, cell, ok, render, tables};
use tunelab::Session;

#[test]
fn smollm2_answers_and_light_fine_tuning_lowers_perplexity() {
    let mut s = Session::new();
    ok(&mut s, &format!("load {}", asset("smollm2").display()));
    let out = render(&ok(&mut s, "generate \"The capital of France is\" greedy=true max_tokens=3"));
    assert!(out.starts_with("The capital of France is Paris"), "{out}");

    let poems = asset("poetry").join("shuimotangshi.json");
    ok(
        &mut s,
        &format!("data {} format=text text=paragraphs block=64 split=0.8/0.2 limit=40", poems.display()),
    );
    ok(&mut s, "freeze all except last=2 ln_f");
    let before = common::weights(&s);
    let ppl = |s: &mut Session| cell(tables(&ok(s, "eval split=valid"))[0], "perplexity", 1);
    let ppl0 = ppl(&mut s);
    ok(&mut s, "optimizer adamw lr=2e-4\nfit epochs=1 batch=4");
    let ppl1 = ppl(&mut s);
    println!("SmolLM2 on Tang poems, last 2 of 30 blocks trained: valid perplexity {ppl0:.2} → {ppl1:.2}");
    assert!(ppl1 < 0.75 * ppl0, "valid perplexity {ppl0} → {ppl1}: expected a drop of at least 25%");
    let after = common::weights(&s);
    let mut trained = 0;
    for ((name, a), (_, b)) in before.iter().zip(&after) {
        let trainable = name.starts_with("model.layers.28.")
            || name.starts_with("model.layers.29.")
            || name == "model.norm.weight";
        if trainable {
            trained += (a != b) as usize;
        } else {
            assert!(a == b, "{name} is frozen but changed");
        }
    }
    assert_eq!(trained, 19, "every tensor of the last two blocks and the final norm trains");
}
