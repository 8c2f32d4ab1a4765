//! GPT-2: parity with transformers' GPT2LMHeadModel on the real gpt2 configuration and
//! tokenizer (deterministic pseudo-random weights, see tests/fixtures/make_gpt2_reference.py),
//! generation with and without the key/value cache, and gradients against finite
//! differences.

mod common;

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use common::asset;
use rand::SeedableRng;
use tunelab::data::{Batch, TextTokenizer};
use tunelab::model::causal::{generate, Sampling};
use tunelab::model::gpt2::{Gpt2, Gpt2Config};
use tunelab::model::{Model, Pass};

fn reference() -> serde_json::Value {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/gpt2_reference.json"))
            .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn fnv1a(name: &str) -> u64 {
    name.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01B3))
}

/// The fixture's weights: element i of tensor `name` from SplitMix64(FNV-1a(name) + i).
fn value(name: &str, shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    let base = fnv1a(name);
    let (scale, offset) =
        if name.ends_with("ln_1.weight") || name.ends_with("ln_2.weight") || name.ends_with("ln_f.weight") {
            (0.1, 1.0)
        } else if name.ends_with(".bias") {
            (0.02, 0.0)
        } else {
            (0.02 * 3f64.sqrt(), 0.0)
        };
    let values: Vec<f32> = (0..n as u64)
        .map(|i| {
            let mut z = base.wrapping_add(i).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let u = (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0;
            (offset + scale * u) as f32
        })
        .collect();
    Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
}

fn gpt2_tokenizer() -> TextTokenizer {
    let dir = asset("gpt2_tokenizer");
    TextTokenizer::from_bpe(&dir.join("vocab.json"), &dir.join("merges.txt")).unwrap()
}

fn reference_model() -> Gpt2 {
    let config = Gpt2Config::preset("small", 50257).unwrap();
    let tensors: HashMap<String, Tensor> =
        Gpt2::layout(&config).into_iter().map(|(n, s)| (n.clone(), value(&n, &s))).collect();
    Gpt2::from_tensors(config, tensors, gpt2_tokenizer(), &Device::Cpu).unwrap()
}

fn text_batch(ids: &[u32]) -> Batch {
    let n = ids.len();
    Batch::Text {
        ids: Tensor::from_slice(ids, (1, n), &Device::Cpu).unwrap(),
        mask: Tensor::ones((1, n), DType::U32, &Device::Cpu).unwrap(),
        labels: None,
    }
}

#[test]
fn gpt2_matches_transformers_on_the_gpt2_configuration() {
    let r = reference();
    let model = reference_model();
    let tok = model.tokenizer().unwrap();
    for (name, head) in r["weights_head"].as_object().unwrap() {
        let got =
            model.params().get(name).unwrap().var.as_tensor().flatten_all().unwrap().narrow(0, 0, 4).unwrap();
        let got = got.to_vec1::<f32>().unwrap();
        for (g, w) in got.iter().zip(head.as_array().unwrap()) {
            assert!((*g as f64 - w.as_f64().unwrap()).abs() < 1e-7, "{name}: {got:?} vs {head}");
        }
    }
    let mut worst = 0f64;
    for case in r["cases"].as_array().unwrap() {
        let want_ids: Vec<u32> =
            case["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let ids = tok.encode_plain(case["prompt"].as_str().unwrap()).unwrap();
        assert_eq!(ids, want_ids, "tokenizer differs from GPT-2's on {}", case["prompt"]);
        let batch = text_batch(&ids);
        let logits = model.forward(&batch, &mut Pass::eval()).unwrap().squeeze(0).unwrap();
        let rows = logits.to_vec2::<f32>().unwrap();
        for (row, key) in [(rows.len() - 1, "last_logits_head"), (0, "first_logits_head")] {
            for (g, w) in rows[row].iter().zip(case[key].as_array().unwrap()) {
                worst = worst.max((*g as f64 - w.as_f64().unwrap()).abs());
            }
        }
        let last = &rows[rows.len() - 1];
        let lse = last.iter().map(|x| (*x as f64).exp()).sum::<f64>().ln();
        worst = worst.max((lse - case["last_logsumexp"].as_f64().unwrap()).abs());
        let loss = model.loss(&batch, &mut Pass::eval()).unwrap().to_scalar::<f32>().unwrap() as f64;
        assert!(
            (loss - case["loss"].as_f64().unwrap()).abs() < 1e-4,
            "loss {loss} vs {}; logits differ by {worst:e}",
            case["loss"]
        );
        // Greedy continuation, with and without the cache, equals transformers' generate().
        let want: Vec<u32> =
            case["greedy"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        for cached in [true, false] {
            let lm = model.causal().unwrap();
            let got = generate(lm, &ids, want.len(), &Sampling::greedy(), 0, cached, &mut |_| true).unwrap();
            assert_eq!(got, want, "greedy continuation (cached: {cached})");
        }
    }
    println!("largest logit difference to transformers: {worst:e}");
    assert!(worst < 1e-4, "largest logit difference to transformers {worst:e}");
}

/// A tiny random GPT-2 with the real GPT-2 vocabulary, in f64.
fn tiny() -> Gpt2 {
    let tok = gpt2_tokenizer();
    let mut config = Gpt2Config::preset("tiny", tok.vocab_size()).unwrap();
    config.n_embd = 8;
    config.n_positions = 16;
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    Gpt2::random(config, None, tok, &mut rng, &Device::Cpu).unwrap().cast(DType::F64).unwrap()
}

#[test]
fn every_parameter_gets_the_finite_difference_gradient() {
    let model = tiny();
    let ids = model.tokenizer().unwrap().encode_plain("The cat sat on the mat.").unwrap();
    let batch = text_batch(&ids);
    let no_dropout = || Pass { train: true, dropout: tunelab::model::layers::Dropout::disabled() };
    let loss_of = |m: &Gpt2| m.loss(&batch, &mut Pass::eval()).unwrap().to_scalar::<f64>().unwrap();
    let grads = model.loss(&batch, &mut no_dropout()).unwrap().backward().unwrap();
    let missing = common::check_gradients(model.params(), &grads, || loss_of(&model), "gpt2");
    assert!(missing.is_empty(), "no gradient for {missing:?}");
}

/// A classifier reads the last real token: a row's logits do not change when the batch
/// pads it to a longer row's length.
#[test]
fn the_classifier_reads_the_last_real_token() {
    let tok = gpt2_tokenizer();
    let config = Gpt2Config::preset("tiny", tok.vocab_size()).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let labels = vec!["neg".to_string(), "pos".to_string()];
    let model = Gpt2::random(config, Some(labels), tok, &mut rng, &Device::Cpu).unwrap();
    assert_eq!(model.labels().unwrap(), ["neg", "pos"]);
    assert!(model.causal().is_none(), "a classifier does not generate");
    let short = model.tokenizer().unwrap().encode_plain("a fine film").unwrap();
    let long = model.tokenizer().unwrap().encode_plain("a long and winding story that goes nowhere").unwrap();
    let alone = model.forward(&text_batch(&short), &mut Pass::eval()).unwrap().to_vec2::<f32>().unwrap();
    let w = long.len();
    let mut ids = long.clone();
    ids.extend(short.iter().copied().chain(std::iter::repeat_n(50256, w - short.len())));
    let mut mask = vec![1u32; w];
    mask.extend((0..w).map(|i| (i < short.len()) as u32));
    let batch = Batch::Text {
        ids: Tensor::from_vec(ids, (2, w), &Device::Cpu).unwrap(),
        mask: Tensor::from_vec(mask, (2, w), &Device::Cpu).unwrap(),
        labels: Some(Tensor::new(&[0u32, 1], &Device::Cpu).unwrap()),
    };
    let padded = model.forward(&batch, &mut Pass::eval()).unwrap().to_vec2::<f32>().unwrap();
    for (a, b) in alone[0].iter().zip(&padded[1]) {
        assert!((a - b).abs() < 1e-5, "{alone:?} vs {padded:?}");
    }
    let config = Model::config(&model);
    assert_eq!(config["architectures"][0], "GPT2ForSequenceClassification");
    assert_eq!(config["pad_token_id"], 50256);
}
