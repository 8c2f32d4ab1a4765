//! The other BERT-family encoders — RoBERTa and DistilBERT — on checkpoints saved by
//! transformers (tiny random weights with non-trivial norms and biases, made by
//! tests/fixtures/make_tiny_encoders.py): same token ids and logits as transformers, every
//! parameter's gradient against finite differences, and a fine-tune → save → load round trip
//! that keeps each family's own names and config.

mod common;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use tunelab::data::Batch;
use tunelab::model::bert::{Bert, BertTask};
use tunelab::model::{Model, Pass};
use tunelab::Session;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn reference(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap()).unwrap()
}

fn labels() -> Vec<String> {
    vec!["neg".into(), "neutral".into(), "pos".into()]
}

fn load(name: &str) -> Bert {
    let task = if name.ends_with("mlm") { BertTask::MaskedLm } else { BertTask::Classify(labels()) };
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let bert = Bert::load(&fixture(name), task, &mut rng, &Device::Cpu).unwrap();
    assert!(bert.load_notes.iter().all(|n| !n.contains("fresh")), "{name}: {:?}", bert.load_notes);
    bert
}

/// The reference texts tokenized by the model's own tokenizer, padded as transformers did.
fn batch(bert: &Bert, r: &serde_json::Value) -> (Batch, Vec<Vec<u32>>) {
    let texts: Vec<String> =
        r["texts"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect();
    let (ids, _) = bert.tokenizer().unwrap().encode_batch(&texts, 64).unwrap();
    let want: Vec<Vec<u32>> = r["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect())
        .collect();
    let width = want[0].len();
    let pad = bert.tokenizer().unwrap().pad_id;
    let mut flat = Vec::new();
    let mut mask = Vec::new();
    for (got, want) in ids.iter().zip(&want) {
        let n = got.len();
        assert_eq!(got.as_slice(), &want[..n], "token ids differ from transformers'");
        flat.extend(got.iter().copied().chain(std::iter::repeat_n(pad, width - n)));
        mask.extend((0..width).map(|i| u32::from(i < n)));
    }
    let (b, d) = (ids.len(), &Device::Cpu);
    let batch = Batch::Text {
        ids: Tensor::from_vec(flat, (b, width), d).unwrap(),
        mask: Tensor::from_vec(mask.clone(), (b, width), d).unwrap(),
        labels: Some(Tensor::new(&[0u32, 2, 1], d).unwrap()),
    };
    let masks = mask.chunks(width).map(<[u32]>::to_vec).collect();
    (batch, masks)
}

/// Logits of transformers' model vs tunelab's, at every real (unpadded) position.
fn max_logit_diff(name: &str) -> f64 {
    let bert = load(name);
    let r = reference(&fixture(name));
    let (batch, masks) = batch(&bert, &r);
    let logits = bert.forward(&batch, &mut Pass::eval()).unwrap();
    let want = &r["logits"];
    let mut worst = 0f64;
    let mut compare = |got: &[f32], want: &serde_json::Value| {
        for (g, w) in got.iter().zip(want.as_array().unwrap()) {
            worst = worst.max((*g as f64 - w.as_f64().unwrap()).abs());
        }
    };
    if name.ends_with("mlm") {
        for (row, (got, mask)) in logits.to_vec3::<f32>().unwrap().iter().zip(&masks).enumerate() {
            for (pos, g) in got.iter().enumerate().filter(|(p, _)| mask[*p] == 1) {
                compare(g, &want[row][pos]);
            }
        }
    } else {
        for (row, got) in logits.to_vec2::<f32>().unwrap().iter().enumerate() {
            compare(got, &want[row]);
        }
    }
    worst
}

#[test]
fn roberta_and_distilbert_match_transformers() {
    for name in
        ["tiny-roberta-classify", "tiny-roberta-mlm", "tiny-distilbert-classify", "tiny-distilbert-mlm"]
    {
        let diff = max_logit_diff(name);
        println!("{name}: max |logit - transformers| = {diff:.2e}");
        assert!(diff < 1e-4, "{name}: logits differ from transformers' by {diff}");
    }
}

#[test]
fn every_parameter_gets_the_right_gradient() {
    for name in
        ["tiny-roberta-classify", "tiny-distilbert-classify", "tiny-roberta-mlm", "tiny-distilbert-mlm"]
    {
        let bert = load(name).cast(DType::F64).unwrap();
        let (batch, _) = batch(&bert, &reference(&fixture(name)));
        let loss_of = |b: &Bert| -> f64 {
            let mut pass = Pass { train: false, dropout: tunelab::model::layers::Dropout::disabled() };
            b.loss(&batch, &mut pass).unwrap().to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
        };
        let mut pass = Pass { train: true, dropout: tunelab::model::layers::Dropout::disabled() };
        let grads = bert.loss(&batch, &mut pass).unwrap().backward().unwrap();
        let missing = common::check_gradients(bert.params(), &grads, || loss_of(&bert), name);
        assert!(missing.is_empty(), "{name}: no gradient for {missing:?}");
    }
}

fn tensor_names(path: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        candle_core::safetensors::load(path, &Device::Cpu).unwrap().into_keys().collect();
    names.sort();
    names
}

/// Fine-tune a few steps, save, load the saved directory: the family's own names and
/// config survive (so transformers loads it), and the reloaded model gives the same logits.
#[test]
fn fine_tune_save_and_load_keep_each_family_s_layout() {
    let data = tempfile::tempdir().unwrap();
    let csv = data.path().join("reviews.csv");
    let rows: String = (0..24)
        .map(|i| {
            let (text, label) = match i % 3 {
                0 => ("the film was good and the acting was great", "pos"),
                1 => ("a dull , very long plot ! not funny", "neg"),
                _ => ("the movie is fine , not bad", "neutral"),
            };
            format!("\"{text} {i}\",{label}\n")
        })
        .collect();
    std::fs::write(&csv, format!("text,label\n{rows}")).unwrap();
    for (name, model_type, arch, lora_module) in [
        ("tiny-roberta-classify", "roberta", "RobertaForSequenceClassification", "attention.self.query"),
        ("tiny-distilbert-classify", "distilbert", "DistilBertForSequenceClassification", "attention.q_lin"),
    ] {
        let out = tempfile::tempdir().unwrap();
        let saved = out.path().join("model");
        let mut s = Session::new();
        common::ok(&mut s, &format!("load {}", fixture(name).display()));
        common::ok(&mut s, &format!("data {} text=text label=label split=0.75/0.25", csv.display()));
        common::ok(&mut s, "optimizer adamw lr=1e-2");
        let before = common::weights(&s);
        let fitted = common::render(&common::ok(&mut s, "fit epochs=2 batch=6"));
        assert!(fitted.contains("epoch 2"), "{fitted}");
        assert_ne!(before, common::weights(&s), "{name}: fit changed no weights");
        common::ok(&mut s, &format!("save {}", saved.display()));
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(saved.join("config.json")).unwrap()).unwrap();
        assert_eq!(config["architectures"][0], arch);
        assert_eq!(config["model_type"], model_type);
        assert_eq!(
            tensor_names(&saved.join("model.safetensors")),
            tensor_names(&fixture(name).join("model.safetensors")),
            "{name}: saved tensor names differ from transformers' layout"
        );
        let trained = common::weights(&s);
        let mut t = Session::new();
        common::ok(&mut t, &format!("load {}", saved.display()));
        assert_eq!(trained, common::weights(&t), "{name}: reloaded weights differ");
        // LoRA finds the family's query/value projections by default.
        common::ok(&mut t, "lora r=2");
        let params = common::render(&common::ok(&mut t, "show params"));
        assert!(params.contains(&format!("{lora_module}.lora_A.weight")), "{name}: {params}");
    }
}
