//! Llama-family models: the real SmolLM2-135M-Instruct GGUF (shared/ASSETS.md, fetched by
//! scripts/fetch_assets.py) against transformers' reading of the same file
//! (tests/fixtures/make_smollm2_reference.py): logits, greedy generation, the tokenizer
//! rebuilt from the GGUF metadata. Tiny random llamas: the key/value cache, padding,
//! gradients against finite differences, save → load.

mod common;

use std::collections::HashMap;
use std::sync::OnceLock;

use candle_core::{DType, Device, Tensor};
use common::asset;
use rand::SeedableRng;
use tunelab::data::{Batch, TextTokenizer};
use tunelab::model::causal::{generate, CausalLm, Sampling};
use tunelab::model::layers::Dropout;
use tunelab::model::llama::{Llama, LlamaConfig};
use tunelab::model::{Model, Pass};

fn reference() -> &'static serde_json::Value {
    static R: OnceLock<serde_json::Value> = OnceLock::new();
    R.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/smollm2_reference.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    })
}

fn u32s(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

/// SmolLM2 read once for all tests of this file (dequantizing takes a few seconds).
fn smollm2() -> &'static Llama {
    static M: OnceLock<Llama> = OnceLock::new();
    M.get_or_init(|| {
        let path = asset("smollm2").join("SmolLM2-135M-Instruct.Q4_1.gguf");
        Llama::from_gguf(&path, &Device::Cpu).unwrap()
    })
}

/// Tolerance: logits agree with transformers to 1e-4 of the logit scale (the largest
/// |logit| over the prompt, 27.4), i.e. about 2.7e-3 absolute, after 30 layers in f32.
const RELATIVE_TOLERANCE: f64 = 1e-4;

#[test]
fn smollm2_gguf_matches_transformers_logits() {
    let r = reference();
    let model = smollm2();
    assert_eq!(model.config().num_hidden_layers, 30);
    assert!(model.config().tie_word_embeddings);
    let tok = model.tokenizer().unwrap();
    let ids = tok.encode_plain(r["prompt"].as_str().unwrap()).unwrap();
    assert_eq!(ids, u32s(&r["prompt_ids"]), "prompt token ids");
    let n = ids.len();
    let batch = Batch::Text {
        ids: Tensor::from_vec(ids, (1, n), &Device::Cpu).unwrap(),
        mask: Tensor::ones((1, n), DType::U32, &Device::Cpu).unwrap(),
        labels: None,
    };
    let logits = model.forward(&batch, &mut Pass::eval()).unwrap().squeeze(0).unwrap();
    let logits = logits.to_vec2::<f32>().unwrap();
    let mut worst = 0f64;
    for (pos, row) in r["logits_first64"].as_array().unwrap().iter().enumerate() {
        for (k, v) in row.as_array().unwrap().iter().enumerate() {
            worst = worst.max((logits[pos][k] as f64 - v.as_f64().unwrap()).abs());
        }
    }
    let last = &logits[n - 1];
    for (id, v) in u32s(&r["last_top16_ids"]).iter().zip(r["last_top16"].as_array().unwrap()) {
        worst = worst.max((last[*id as usize] as f64 - v.as_f64().unwrap()).abs());
    }
    let scale = r["logit_scale"].as_f64().unwrap();
    println!("largest logit difference to transformers: {worst:.2e} (scale {scale})");
    assert!(worst <= RELATIVE_TOLERANCE * scale, "largest logit difference {worst:e} at scale {scale}");
}

#[test]
fn smollm2_greedy_generation_matches_transformers_with_and_without_cache() {
    let r = reference();
    let model = smollm2();
    let prompt = u32s(&r["prompt_ids"]);
    let want = u32s(&r["greedy_ids"]);
    let cached = generate(model, &prompt, 20, &Sampling::greedy(), 0, true, &mut |_| true).unwrap();
    assert_eq!(cached, want, "greedy continuation with the cache");
    let text = model.tokenizer().unwrap().decode(&cached).unwrap();
    assert!(text.starts_with(" Paris"), "continuation {text:?}");
    assert_eq!(text, r["greedy_text"].as_str().unwrap());
    let uncached = generate(model, &prompt, 20, &Sampling::greedy(), 0, false, &mut |_| true).unwrap();
    assert_eq!(uncached, cached, "generation without the cache");
}

#[test]
fn tokenizer_from_gguf_metadata_matches_transformers() {
    let r = reference();
    let model = smollm2();
    let tok = model.tokenizer().unwrap();
    for (text, want) in r["texts"].as_array().unwrap().iter().zip(r["text_ids"].as_array().unwrap()) {
        let text = text.as_str().unwrap();
        let ids = tok.encode_plain(text).unwrap();
        assert_eq!(ids, u32s(want), "token ids of {text:?}");
        assert_eq!(tok.decode(&ids).unwrap(), text, "decoding {text:?}");
    }
    // No beginning-of-text token is added (tokenizer.ggml.add_bos_token = false).
    let (batch, _) = tok.encode_batch(&["The capital of France is".to_string()], 32).unwrap();
    assert_eq!(batch[0], u32s(&r["prompt_ids"]));
    assert_eq!(tok.eos_id, Some(r["eos_id"].as_u64().unwrap() as u32));
    assert_eq!(tok.pad_id, r["pad_id"].as_u64().unwrap() as u32);
    assert_eq!(model.stop_ids(), vec![2]);
    assert_eq!(tok.vocab_size(), 49152);
}

/// A character-level tokenizer over `a`–`z` and space (the tiny models need one to save).
fn letters() -> TextTokenizer {
    let vocab: tokenizers::models::bpe::Vocab =
        (b'a'..=b'z').chain([b' ']).enumerate().map(|(i, c)| ((c as char).to_string(), i as u32)).collect();
    let bpe = tokenizers::models::bpe::BPE::builder().vocab_and_merges(vocab, vec![]).build().unwrap();
    TextTokenizer::from_tokenizer(tokenizers::Tokenizer::new(bpe), "letters").unwrap()
}

/// A tiny random llama with grouped-query attention (4 query heads, 2 key/value heads).
fn tiny(tied: bool, seed: u64) -> Llama {
    let mut config = LlamaConfig::tiny(32, 16, 2, 4, 2);
    config.tie_word_embeddings = tied;
    config.eos_token_id = Some(31.into());
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    Llama::random(config, letters(), &mut rng, &Device::Cpu).unwrap()
}

#[test]
fn cache_gives_the_same_tokens_as_rerunning_the_sequence() {
    for tied in [false, true] {
        // Larger weights than the default 0.02 so the argmax changes from step to step.
        let model = tiny(tied, 7);
        for p in model.params().iter() {
            if !p.name.contains("norm") {
                let t = p.var.as_tensor();
                p.var.set(&(t * 40.0).unwrap()).unwrap();
            }
        }
        let prompt = [3u32, 1, 4, 1, 5];
        let a = generate(&model, &prompt, 24, &Sampling::greedy(), 0, true, &mut |_| true).unwrap();
        let b = generate(&model, &prompt, 24, &Sampling::greedy(), 0, false, &mut |_| true).unwrap();
        assert_eq!(a, b, "tied={tied}");
        assert!(
            a.iter().collect::<std::collections::BTreeSet<_>>().len() > 2,
            "degenerate continuation {a:?}"
        );
        // Sampled generation draws the same tokens too.
        let s = Sampling { greedy: false, temperature: 0.9, top_k: 10, top_p: 0.95, min_tokens: 0 };
        let a = generate(&model, &prompt, 24, &s, 42, true, &mut |_| true).unwrap();
        let b = generate(&model, &prompt, 24, &s, 42, false, &mut |_| true).unwrap();
        assert_eq!(a, b, "sampled, tied={tied}");
    }
}

#[test]
fn min_tokens_holds_back_the_end_of_text_token() {
    // A zero final norm makes every logit 0, and greedy's argmax takes the last of equal
    // values: the end-of-text token (31) at every step.
    let model = tiny(false, 3);
    let norm = model.params().iter().find(|p| p.name == "model.norm.weight").unwrap();
    norm.var.set(&norm.var.as_tensor().zeros_like().unwrap()).unwrap();
    let prompt = [3u32, 1, 4];
    let first = generate(&model, &prompt, 10, &Sampling::greedy(), 0, true, &mut |_| true).unwrap();
    assert_eq!(first, [31], "stops at once without min_tokens");
    let held = Sampling { min_tokens: 5, ..Sampling::greedy() };
    let out = generate(&model, &prompt, 10, &held, 0, true, &mut |_| true).unwrap();
    assert_eq!(out.len(), 6, "{out:?}");
    assert!(out[..5].iter().all(|&t| t != 31) && out[5] == 31, "{out:?}");
}

fn batch(rows: &[&[u32]]) -> Batch {
    let w = rows.iter().map(|r| r.len()).max().unwrap();
    let mut ids = vec![0u32; rows.len() * w];
    let mut mask = vec![0u32; rows.len() * w];
    for (i, r) in rows.iter().enumerate() {
        ids[i * w..i * w + r.len()].copy_from_slice(r);
        mask[i * w..i * w + r.len()].fill(1);
    }
    Batch::Text {
        ids: Tensor::from_vec(ids, (rows.len(), w), &Device::Cpu).unwrap(),
        mask: Tensor::from_vec(mask, (rows.len(), w), &Device::Cpu).unwrap(),
        labels: None,
    }
}

#[test]
fn padding_does_not_change_the_real_tokens_logits() {
    let model = tiny(false, 1);
    let short: &[u32] = &[4, 8, 15];
    let alone = model.forward(&batch(&[short]), &mut Pass::eval()).unwrap();
    let padded = model.forward(&batch(&[&[16, 23, 42 % 32, 9, 9, 1], short]), &mut Pass::eval()).unwrap();
    let a = alone.squeeze(0).unwrap();
    let b = padded.get(1).unwrap().narrow(0, 0, 3).unwrap();
    let d = (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(d < 1e-5, "padding changed the logits by {d}");
    assert_eq!(padded.dims(), [2, 6, 32]);
}

#[test]
fn gradients_reach_every_parameter_and_match_finite_differences() {
    for tied in [false, true] {
        let model = tiny(tied, 3).cast(DType::F64).unwrap();
        let b = batch(&[&[1, 2, 3, 4, 5, 6], &[7, 8, 9, 10]]);
        let loss_of = |m: &Llama| -> f64 {
            let mut pass = Pass { train: false, dropout: Dropout::disabled() };
            m.loss(&b, &mut pass).unwrap().to_scalar::<f64>().unwrap()
        };
        let mut pass = Pass { train: true, dropout: Dropout::disabled() };
        let grads = model.loss(&b, &mut pass).unwrap().backward().unwrap();
        for p in model.params().iter() {
            let g = grads
                .get(p.var.as_tensor())
                .map(|g| g.abs().unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap());
            assert!(g.is_none_or(|g| g != 0.0), "all-zero gradient for {}", p.name);
        }
        let missing =
            common::check_gradients(model.params(), &grads, || loss_of(&model), &format!("tied={tied}"));
        assert!(missing.is_empty(), "tied={tied}: no gradient for {missing:?}");
        let expected = 1 + 2 * 9 + 1 + usize::from(!tied);
        assert_eq!(model.params().len(), expected);
    }
}

#[test]
fn saved_models_load_with_identical_logits() {
    for tied in [false, true] {
        let model = tiny(tied, 5);
        let dir = tempfile::tempdir().unwrap();
        tunelab::model::save_model(&model, dir.path()).unwrap();
        tunelab::model::save_tokenizer(&model, dir.path()).unwrap();
        let config = tunelab::model::read_json(&dir.path().join("config.json")).unwrap();
        assert_eq!(config["model_type"], "llama");
        assert_eq!(config["architectures"][0], "LlamaForCausalLM");
        assert_eq!(config["tie_word_embeddings"], tied);
        let names: HashMap<String, Tensor> =
            tunelab::model::read_tensors(&dir.path().join("model.safetensors"), &Device::Cpu).unwrap();
        assert_eq!(names.contains_key("lm_head.weight"), !tied);
        assert!(names.contains_key("model.layers.1.self_attn.k_proj.weight"));
        let back = Llama::load(dir.path(), &Device::Cpu).unwrap();
        let b = batch(&[&[1, 2, 3, 4, 5], &[6, 7]]);
        let x =
            model.forward(&b, &mut Pass::eval()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let y = back.forward(&b, &mut Pass::eval()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(x, y, "tied={tied}");
        assert_eq!(back.config(), model.config());
        // The same weights split in two shards with an index, as larger checkpoints come.
        let mut weight_map = serde_json::Map::new();
        let mut shards = [HashMap::new(), HashMap::new()];
        for (i, (name, t)) in names.into_iter().enumerate() {
            let file = format!("model-0000{}-of-00002.safetensors", i % 2 + 1);
            weight_map.insert(name.clone(), file.into());
            shards[i % 2].insert(name, t);
        }
        std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
        for (i, shard) in shards.iter().enumerate() {
            let file = dir.path().join(format!("model-0000{}-of-00002.safetensors", i + 1));
            tunelab::model::write_tensors(shard, &file).unwrap();
        }
        let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
        std::fs::write(dir.path().join("model.safetensors.index.json"), index.to_string()).unwrap();
        let sharded = Llama::open(dir.path(), &Device::Cpu).unwrap();
        let z =
            sharded.forward(&b, &mut Pass::eval()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(x, z, "sharded, tied={tied}");
    }
}

#[test]
fn freeze_groups_and_layers_name_llama_parameters() {
    let model = tiny(false, 0);
    let count = |pattern: &str| model.params().matching(pattern).len();
    assert_eq!(model.layer_count(), 2);
    assert_eq!(count(&model.layer_prefix(1)), 9);
    for g in model.group_names() {
        let patterns = model.group(g).unwrap();
        assert!(patterns.iter().map(|p| count(p)).sum::<usize>() > 0, "group {g} selects nothing");
    }
    assert_eq!(count(&model.group("norms").unwrap()[0]), 5);
    assert_eq!(model.group("head").unwrap(), ["lm_head"]);
    assert_eq!(tiny(true, 0).group("head").unwrap(), ["model.embed_tokens"]);
}

/// By hand (not in CI): writes SmolLM2 as tunelab saves it, for
/// `make_smollm2_reference.py ASSET_DIR --check-saved DIR` to load in transformers:
/// `TUNELAB_SAVE_DIR=/tmp/smollm2-saved cargo test --test llama save_smollm2 -- --ignored`.
#[test]
#[ignore]
fn save_smollm2_for_transformers() {
    let dir = std::path::PathBuf::from(std::env::var("TUNELAB_SAVE_DIR").expect("set TUNELAB_SAVE_DIR"));
    let model = smollm2();
    tunelab::model::save_model(model, &dir).unwrap();
    tunelab::model::save_tokenizer(model, &dir).unwrap();
    let back = Llama::load(&dir, &Device::Cpu).unwrap();
    let b = batch(&[&u32s(&reference()["prompt_ids"])]);
    let x = model.forward(&b, &mut Pass::eval()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let y = back.forward(&b, &mut Pass::eval()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(x, y);
    assert_eq!(back.tokenizer().unwrap().pad_id, model.tokenizer().unwrap().pad_id);
    assert_eq!(back.tokenizer().unwrap().eos_id, model.tokenizer().unwrap().eos_id);
}

/// llama.cpp's conversion of a q/k projection to the interleaved rotary layout.
fn permute_for_gguf(w: &Tensor, heads: usize) -> Tensor {
    let (out, inp) = w.dims2().unwrap();
    w.reshape((heads, 2, out / heads / 2, inp))
        .unwrap()
        .transpose(1, 2)
        .unwrap()
        .contiguous()
        .unwrap()
        .reshape((out, inp))
        .unwrap()
}

/// A tiny model written as llama.cpp writes a GGUF (its tensor names, metadata keys, the
/// interleaved q/k rows, a byte-level BPE vocabulary) reads back as the same model.
#[test]
fn a_gguf_written_like_llama_cpp_reads_back_as_the_same_model() {
    use candle_core::quantized::gguf_file::{self, Value};
    use candle_core::quantized::{GgmlDType, QTensor};
    let model = tiny(false, 11);
    let c = model.config().clone();
    let gguf_name = |hf: &str| -> String {
        let fixed = [
            ("model.embed_tokens.weight", "token_embd.weight"),
            ("model.norm.weight", "output_norm.weight"),
            ("lm_head.weight", "output.weight"),
        ];
        if let Some((_, g)) = fixed.iter().find(|(h, _)| *h == hf) {
            return g.to_string();
        }
        let rest = hf.strip_prefix("model.layers.").unwrap();
        let (layer, part) = rest.split_once('.').unwrap();
        let part = match part {
            "input_layernorm.weight" => "attn_norm.weight",
            "post_attention_layernorm.weight" => "ffn_norm.weight",
            "self_attn.q_proj.weight" => "attn_q.weight",
            "self_attn.k_proj.weight" => "attn_k.weight",
            "self_attn.v_proj.weight" => "attn_v.weight",
            "self_attn.o_proj.weight" => "attn_output.weight",
            "mlp.gate_proj.weight" => "ffn_gate.weight",
            "mlp.up_proj.weight" => "ffn_up.weight",
            "mlp.down_proj.weight" => "ffn_down.weight",
            other => panic!("{other}"),
        };
        format!("blk.{layer}.{part}")
    };
    let tensors: Vec<(String, QTensor)> = model
        .params()
        .iter()
        .map(|p| {
            let mut t = p.var.as_tensor().clone();
            if p.name.ends_with("q_proj.weight") {
                t = permute_for_gguf(&t, c.num_attention_heads);
            } else if p.name.ends_with("k_proj.weight") {
                t = permute_for_gguf(&t, c.kv_heads());
            }
            (gguf_name(&p.name), QTensor::quantize(&t, GgmlDType::F32).unwrap())
        })
        .collect();
    // 32 tokens: an end-of-text control token, a–z, Ġ (space) and three merges' results.
    let mut tokens = vec!["<|endoftext|>".to_string()];
    tokens.extend((b'a'..=b'z').map(|b| (b as char).to_string()));
    tokens.extend(["Ġ", "Ġa", "ab", "Ġab", "."].map(String::from));
    let types: Vec<Value> = (0..32).map(|i| Value::I32(if i == 0 { 3 } else { 1 })).collect();
    let strings = |v: Vec<&str>| Value::Array(v.into_iter().map(|s| Value::String(s.into())).collect());
    let u32v = |x: usize| Value::U32(x as u32);
    let metadata: Vec<(&str, Value)> = vec![
        ("general.architecture", Value::String("llama".into())),
        ("llama.block_count", u32v(c.num_hidden_layers)),
        ("llama.context_length", u32v(c.max_position_embeddings)),
        ("llama.embedding_length", u32v(c.hidden_size)),
        ("llama.feed_forward_length", u32v(c.intermediate_size)),
        ("llama.attention.head_count", u32v(c.num_attention_heads)),
        ("llama.attention.head_count_kv", u32v(c.kv_heads())),
        ("llama.rope.freq_base", Value::F32(c.theta() as f32)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(c.rms_norm_eps as f32)),
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.pre", Value::String("smollm".into())),
        ("tokenizer.ggml.tokens", strings(tokens.iter().map(String::as_str).collect())),
        ("tokenizer.ggml.token_type", Value::Array(types)),
        ("tokenizer.ggml.merges", strings(vec!["Ġ a", "a b", "Ġa b"])),
        ("tokenizer.ggml.eos_token_id", Value::U32(0)),
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    let mut file = std::fs::File::create(&path).unwrap();
    let meta_refs: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut file, &meta_refs, &tensor_refs).unwrap();
    drop(file);

    let back = Llama::open(dir.path(), &Device::Cpu).unwrap();
    assert!(!back.config().tie_word_embeddings);
    let b = batch(&[&[1, 2, 3, 4, 5, 6, 7], &[8, 9, 10]]);
    let x = model.forward(&b, &mut Pass::eval()).unwrap();
    let y = back.forward(&b, &mut Pass::eval()).unwrap();
    let d = (x - y).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(d < 1e-5, "logits differ by {d}");
    let tok = back.tokenizer().unwrap();
    assert_eq!(tok.encode_plain("ab ab.").unwrap(), [29, 30, 31]);
    assert_eq!(tok.encode_plain("<|endoftext|>b").unwrap(), [0, 2]);
    assert_eq!(tok.decode(&[29, 30, 31]).unwrap(), "ab ab.");
    assert_eq!((tok.eos_id, tok.pad_id, back.stop_ids()), (Some(0), 0, vec![0]));
}

#[test]
fn bad_gguf_files_fail_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.gguf");
    std::fs::write(&path, "not a model").unwrap();
    let e = Llama::from_gguf(&path, &Device::Cpu).err().unwrap().to_string();
    assert!(e.contains("not a GGUF file"), "{e}");
    let e = Llama::from_gguf(&dir.path().join("missing.gguf"), &Device::Cpu).err().unwrap().to_string();
    assert!(e.contains("missing.gguf"), "{e}");
    use candle_core::quantized::gguf_file::{self, Value};
    let path = dir.path().join("qwen.gguf");
    let arch = Value::String("qwen2".into());
    gguf_file::write(&mut std::fs::File::create(&path).unwrap(), &[("general.architecture", &arch)], &[])
        .unwrap();
    let e = Llama::from_gguf(&path, &Device::Cpu).err().unwrap().to_string();
    assert!(e.contains("architecture 'qwen2'") && e.contains("llama-family"), "{e}");
}

/// The real model trains: with everything frozen but the last two layers (as the
/// walkthrough's light fine-tuning), only those layers get gradients, and one plain
/// gradient step lowers the loss on the text it was taken on.
#[test]
fn smollm2_light_fine_tuning_step_lowers_the_loss() {
    let path = asset("smollm2").join("SmolLM2-135M-Instruct.Q4_1.gguf");
    let mut model = Llama::from_gguf(&path, &Device::Cpu).unwrap();
    let all: Vec<usize> = (0..model.params().len()).collect();
    model.params_mut().set_trainable(&all, false);
    for layer in [28, 29] {
        let idx = model.params().matching(&model.layer_prefix(layer));
        model.params_mut().set_trainable(&idx, true);
    }
    let tok = model.tokenizer().unwrap();
    let ids = tok.encode_plain("Moonlight falls on the quiet river, and the boat drifts home.").unwrap();
    let b = batch(&[&ids]);
    let eval = |m: &Llama| m.loss(&b, &mut Pass::eval()).unwrap().to_scalar::<f32>().unwrap();
    let before = eval(&model);
    let mut pass = Pass { train: true, dropout: Dropout::disabled() };
    let grads = model.loss(&b, &mut pass).unwrap().backward().unwrap();
    let mut stepped = 0;
    for p in model.params().iter() {
        let g = grads.get(p.var.as_tensor());
        assert_eq!(g.is_some(), p.trainable, "{}: gradient present = trainable", p.name);
        if let Some(g) = g {
            p.var.set(&(p.var.as_tensor() - (g * 0.05).unwrap()).unwrap()).unwrap();
            stepped += 1;
        }
    }
    assert_eq!(stepped, 18);
    let after = eval(&model);
    println!("loss before {before:.4}, after one step {after:.4}");
    assert!(after < before - 0.05, "loss {before} → {after}");
}

#[test]
fn bf16_weights_give_close_losses_and_gradients() {
    let model = tiny(true, 9);
    let b = batch(&[&[1, 2, 3, 4, 5, 6], &[7, 8, 9]]);
    let full = model.loss(&b, &mut Pass::eval()).unwrap().to_scalar::<f32>().unwrap();
    let half = model.cast(DType::BF16).unwrap();
    let mut pass = Pass { train: true, dropout: Dropout::disabled() };
    let loss = half.loss(&b, &mut pass).unwrap();
    assert_eq!(loss.dtype(), DType::F32);
    let grads = loss.backward().unwrap();
    assert!(half.params().iter().all(|p| grads.get(p.var.as_tensor()).is_some()));
    let half = loss.to_scalar::<f32>().unwrap();
    assert!((half - full).abs() < 2e-2 * full, "bf16 loss {half} vs f32 {full}");
}
