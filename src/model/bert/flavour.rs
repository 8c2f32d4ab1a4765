//! The BERT-shaped encoders tunelab trains — BERT (and MiniLM, which is one), RoBERTa /
//! XLM-R, DistilBERT — differ in parameter names, position ids, segment embeddings and the
//! classification head, not in the computation of a layer. A [`Flavour`] holds those
//! differences, so one forward pass serves them all.
//!
//! The forward pass and the parameter layout speak BERT's names (`bert.encoder.layer.3.
//! attention.self.query.weight`); [`Flavour::name`] turns each into the name the family's
//! Hugging Face checkpoints use, and that is the name the parameter carries everywhere else
//! (`show params`, `freeze`, `save`, peft adapters).

use serde_json::Value;

use super::BertConfig;
use crate::error::{bail, Error, Result};

/// Which member of the BERT family an encoder is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Flavour {
    /// BERT (`model_type: bert`), also MiniLM and other BERT-shaped checkpoints.
    #[default]
    Bert,
    /// RoBERTa and its multilingual sibling XLM-R: no segments in use, positions start after
    /// the padding index, a two-layer classification head on `<s>`.
    Roberta,
    /// DistilBERT: no segment embeddings, its own names, a ReLU pre-classifier.
    DistilBert,
}

impl Flavour {
    /// The flavour of a config.json `model_type`, if tunelab trains it.
    pub fn of_model_type(model_type: &str) -> Option<Flavour> {
        Some(match model_type {
            "bert" => Flavour::Bert,
            "roberta" | "xlm-roberta" | "camembert" => Flavour::Roberta,
            "distilbert" => Flavour::DistilBert,
            _ => return None,
        })
    }

    /// Every `model_type` of the family, for error messages.
    pub const MODEL_TYPES: &'static str = "bert, roberta, xlm-roberta, camembert, distilbert";

    /// The family name shown to users and returned by `Model::family`.
    pub fn family(self) -> &'static str {
        match self {
            Flavour::Bert => "bert",
            Flavour::Roberta => "roberta",
            Flavour::DistilBert => "distilbert",
        }
    }

    /// The name transformers gives this flavour's `model_type` and architectures.
    fn model_type(self) -> &'static str {
        self.family()
    }

    /// The `architectures` entry of a classifier / masked-LM of this flavour.
    pub fn architecture(self, masked_lm: bool) -> &'static str {
        match (self, masked_lm) {
            (Flavour::Bert, false) => "BertForSequenceClassification",
            (Flavour::Bert, true) => "BertForMaskedLM",
            (Flavour::Roberta, false) => "RobertaForSequenceClassification",
            (Flavour::Roberta, true) => "RobertaForMaskedLM",
            (Flavour::DistilBert, false) => "DistilBertForSequenceClassification",
            (Flavour::DistilBert, true) => "DistilBertForMaskedLM",
        }
    }

    /// The prefix of the encoder's parameters (`bert`, `roberta`, `distilbert`).
    pub fn prefix(self) -> &'static str {
        self.family()
    }

    /// Whether the embeddings add a segment (token-type) vector.
    pub fn has_segments(self) -> bool {
        self != Flavour::DistilBert
    }

    /// The position id of the first token: RoBERTa counts from `padding_idx + 1`.
    pub fn first_position(self, c: &BertConfig) -> usize {
        match self {
            Flavour::Roberta => c.pad_token_id + 1,
            _ => 0,
        }
    }

    /// Whether the head's first layer (the pooler) uses tanh (BERT, RoBERTa) or ReLU
    /// (DistilBERT's pre-classifier).
    pub fn pooler_tanh(self) -> bool {
        self != Flavour::DistilBert
    }

    /// The modules LoRA adapts by default: the query and value projections.
    pub fn lora_targets(self) -> &'static [&'static str] {
        match self {
            Flavour::DistilBert => &["q_lin", "v_lin"],
            _ => &["query", "value"],
        }
    }

    /// This flavour's checkpoint name of a parameter (or module prefix) that BERT calls
    /// `canonical`.
    pub fn name(self, canonical: &str) -> String {
        match self {
            Flavour::Bert => canonical.to_string(),
            Flavour::Roberta => roberta_name(canonical),
            Flavour::DistilBert => distilbert_name(canonical),
        }
    }

    /// The prefixed form of a checkpoint key saved without the task wrapper (`BertModel`,
    /// `RobertaModel`, `DistilBertModel` save `embeddings.…`), and TF-era `gamma`/`beta`
    /// norms renamed `weight`/`bias`.
    pub fn normalise_key(self, key: &str) -> String {
        let key =
            key.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias");
        let bare: &[&str] = match self {
            Flavour::DistilBert => &["embeddings.", "transformer."],
            _ => &["embeddings.", "encoder.", "pooler."],
        };
        if bare.iter().any(|p| key.starts_with(p)) {
            format!("{}.{key}", self.prefix())
        } else {
            key
        }
    }

    /// Checkpoint tensors a model of this flavour does not use and need not report: position
    /// id buffers, the decoder that ties to the word embeddings, a RoBERTa pooler that
    /// classification does not use.
    pub fn ignorable(self, key: &str) -> bool {
        key.ends_with("position_ids")
            || matches!(
                key,
                "cls.predictions.decoder.weight"
                    | "cls.predictions.decoder.bias"
                    | "lm_head.decoder.weight"
                    | "lm_head.decoder.bias"
                    | "vocab_projector.weight"
            )
            || (self == Flavour::Roberta && key.starts_with("roberta.pooler."))
    }

    /// The `model_type` written on save.
    pub fn config_model_type(self) -> &'static str {
        self.model_type()
    }
}

fn roberta_name(canonical: &str) -> String {
    const HEAD: &[(&str, &str)] = &[
        ("bert.pooler.dense", "classifier.dense"),
        ("classifier", "classifier.out_proj"),
        ("cls.predictions.transform.dense", "lm_head.dense"),
        ("cls.predictions.transform.LayerNorm", "lm_head.layer_norm"),
        ("cls.predictions.bias", "lm_head.bias"),
    ];
    for (from, to) in HEAD {
        if let Some(rest) = strip_module(canonical, from) {
            return format!("{to}{rest}");
        }
    }
    match canonical.strip_prefix("bert") {
        Some(rest) if rest.is_empty() || rest.starts_with('.') => format!("roberta{rest}"),
        _ => canonical.to_string(),
    }
}

fn distilbert_name(canonical: &str) -> String {
    const HEAD: &[(&str, &str)] = &[
        ("bert.pooler.dense", "pre_classifier"),
        ("cls.predictions.transform.dense", "vocab_transform"),
        ("cls.predictions.transform.LayerNorm", "vocab_layer_norm"),
        ("cls.predictions.bias", "vocab_projector.bias"),
        ("bert.embeddings", "distilbert.embeddings"),
        ("bert.encoder", "distilbert.transformer"),
    ];
    // Inside a layer: BERT's module path → DistilBERT's.
    const LAYER: &[(&str, &str)] = &[
        ("attention.self.query", "attention.q_lin"),
        ("attention.self.key", "attention.k_lin"),
        ("attention.self.value", "attention.v_lin"),
        ("attention.output.dense", "attention.out_lin"),
        ("attention.output.LayerNorm", "sa_layer_norm"),
        ("attention.output", "attention"),
        ("intermediate.dense", "ffn.lin1"),
        ("output.dense", "ffn.lin2"),
        ("output.LayerNorm", "output_layer_norm"),
        ("output", "ffn"),
    ];
    if let Some(rest) = canonical.strip_prefix("bert.encoder.layer.") {
        let (index, inner) = rest.split_once('.').unwrap_or((rest, ""));
        let inner = LAYER
            .iter()
            .find_map(|(from, to)| strip_module(inner, from).map(|r| format!("{to}{r}")))
            .unwrap_or_else(|| inner.to_string());
        let sep = if inner.is_empty() { "" } else { "." };
        return format!("distilbert.transformer.layer.{index}{sep}{inner}");
    }
    for (from, to) in HEAD {
        if let Some(rest) = strip_module(canonical, from) {
            return format!("{to}{rest}");
        }
    }
    match canonical.strip_prefix("bert") {
        Some(rest) if rest.is_empty() || rest.starts_with('.') => format!("distilbert{rest}"),
        _ => canonical.to_string(),
    }
}

/// What follows module `module` in `name` (`""` or `.weight`…), if `name` is in it.
fn strip_module<'a>(name: &'a str, module: &str) -> Option<&'a str> {
    let rest = name.strip_prefix(module)?;
    (rest.is_empty() || rest.starts_with('.')).then_some(rest)
}

/// A DistilBERT config.json read into BERT's field names (the raw JSON is kept apart and
/// written back on save, so DistilBERT's own names survive a round trip).
pub fn distilbert_config(raw: &Value) -> Result<BertConfig> {
    let get = |k: &str| raw.get(k);
    let usize_of = |k: &str| -> Result<usize> {
        get(k).and_then(Value::as_u64).map(|v| v as usize).ok_or_else(|| {
            Error::invalid(format!("DistilBERT config.json has no integer '{k}'; is it a DistilBERT config?"))
        })
    };
    let f64_or = |k: &str, d: f64| get(k).and_then(Value::as_f64).unwrap_or(d);
    if get("sinusoidal_pos_embds").and_then(Value::as_bool) == Some(true) {
        bail!("sinusoidal_pos_embds=true DistilBERT configs are not supported; use learned positions")
    }
    Ok(BertConfig {
        vocab_size: usize_of("vocab_size")?,
        hidden_size: usize_of("dim")?,
        num_hidden_layers: usize_of("n_layers")?,
        num_attention_heads: usize_of("n_heads")?,
        intermediate_size: usize_of("hidden_dim")?,
        hidden_act: get("activation").and_then(Value::as_str).unwrap_or("gelu").to_string(),
        hidden_dropout_prob: f64_or("dropout", 0.1),
        attention_probs_dropout_prob: f64_or("attention_dropout", 0.1),
        max_position_embeddings: usize_of("max_position_embeddings")?,
        type_vocab_size: 0,
        initializer_range: f64_or("initializer_range", 0.02),
        layer_norm_eps: 1e-12,
        pad_token_id: get("pad_token_id").and_then(Value::as_u64).unwrap_or(0) as usize,
        classifier_dropout: Some(f64_or("seq_classif_dropout", 0.2)),
        flavour: Flavour::DistilBert,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roberta_names() {
        let r = Flavour::Roberta;
        assert_eq!(
            r.name("bert.encoder.layer.1.attention.self.query.weight"),
            "roberta.encoder.layer.1.attention.self.query.weight"
        );
        assert_eq!(r.name("bert.pooler.dense.bias"), "classifier.dense.bias");
        assert_eq!(r.name("classifier.weight"), "classifier.out_proj.weight");
        assert_eq!(r.name("classifier"), "classifier.out_proj");
        assert_eq!(r.name("cls.predictions.transform.LayerNorm.weight"), "lm_head.layer_norm.weight");
        assert_eq!(r.name("cls.predictions.bias"), "lm_head.bias");
        assert_eq!(r.name("bert.embeddings"), "roberta.embeddings");
    }

    #[test]
    fn distilbert_names() {
        let d = Flavour::DistilBert;
        let pairs = [
            ("bert.embeddings.word_embeddings.weight", "distilbert.embeddings.word_embeddings.weight"),
            ("bert.embeddings.LayerNorm.bias", "distilbert.embeddings.LayerNorm.bias"),
            (
                "bert.encoder.layer.0.attention.self.key.bias",
                "distilbert.transformer.layer.0.attention.k_lin.bias",
            ),
            (
                "bert.encoder.layer.1.attention.output.dense.weight",
                "distilbert.transformer.layer.1.attention.out_lin.weight",
            ),
            (
                "bert.encoder.layer.1.attention.output.LayerNorm.weight",
                "distilbert.transformer.layer.1.sa_layer_norm.weight",
            ),
            (
                "bert.encoder.layer.2.intermediate.dense.weight",
                "distilbert.transformer.layer.2.ffn.lin1.weight",
            ),
            ("bert.encoder.layer.2.output.dense.bias", "distilbert.transformer.layer.2.ffn.lin2.bias"),
            (
                "bert.encoder.layer.2.output.LayerNorm.bias",
                "distilbert.transformer.layer.2.output_layer_norm.bias",
            ),
            ("bert.encoder.layer.2", "distilbert.transformer.layer.2"),
            ("bert.encoder", "distilbert.transformer"),
            ("bert.pooler.dense.weight", "pre_classifier.weight"),
            ("classifier.bias", "classifier.bias"),
            ("cls.predictions.transform.dense.weight", "vocab_transform.weight"),
            ("cls.predictions.bias", "vocab_projector.bias"),
        ];
        for (from, to) in pairs {
            assert_eq!(d.name(from), to, "{from}");
        }
    }

    #[test]
    fn bare_checkpoint_keys_get_the_prefix() {
        assert_eq!(Flavour::Bert.normalise_key("encoder.layer.0.x"), "bert.encoder.layer.0.x");
        assert_eq!(Flavour::Roberta.normalise_key("embeddings.x"), "roberta.embeddings.x");
        assert_eq!(
            Flavour::DistilBert.normalise_key("transformer.layer.0.x"),
            "distilbert.transformer.layer.0.x"
        );
        assert_eq!(
            Flavour::Bert.normalise_key("embeddings.LayerNorm.gamma"),
            "bert.embeddings.LayerNorm.weight"
        );
    }
}
