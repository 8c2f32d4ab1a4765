//! Llama-family GGUF files (llama.cpp's format) as trainable models: the metadata becomes a
//! [`LlamaConfig`], every tensor is dequantized to f32 and renamed to transformers' layout
//! (undoing llama.cpp's interleaved rotary permutation of the q/k rows, so the same
//! half-split rotary forward serves both sources), and the tokenizer is rebuilt from the
//! metadata when no `tokenizer.json` lies beside the file.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::{Device, Tensor};
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, Tokenizer};

use super::LlamaConfig;
use crate::data::TextTokenizer;
use crate::error::{bail, Error, Result};
use crate::model::layers::unpermute_rotary;

/// What a GGUF file holds, in transformers' terms.
pub struct GgufModel {
    /// The model's shape.
    pub config: LlamaConfig,
    /// Dequantized f32 tensors under transformers' names.
    pub tensors: HashMap<String, Tensor>,
    /// The tokenizer built from the metadata (`None` when the metadata has none).
    pub tokenizer: Option<TextTokenizer>,
}

fn read_error(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::Read { path: path.to_path_buf(), reason: reason.to_string() }
}

/// Typed access to the metadata, naming the missing key in errors.
struct Meta<'a> {
    path: &'a Path,
    map: &'a HashMap<String, Value>,
}

impl Meta<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.map.get(key)
    }

    fn usize(&self, key: &str) -> Result<usize> {
        let v = self.get(key).ok_or_else(|| {
            read_error(
                self.path,
                format!("the GGUF metadata has no '{key}'; is it a complete llama-family model?"),
            )
        })?;
        Ok(v.to_u64().or_else(|_| v.to_u32().map(u64::from)).map_err(|e| read_error(self.path, e))? as usize)
    }

    fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        self.get(key).is_some().then(|| self.usize(key)).transpose()
    }

    fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        self.get(key)
            .map(|v| v.to_f32().map(f64::from).or_else(|_| v.to_f64()).map_err(|e| read_error(self.path, e)))
            .transpose()
    }

    fn opt_u32(&self, key: &str) -> Option<u32> {
        self.get(key).and_then(|v| v.to_u32().ok().or_else(|| v.to_u64().ok().map(|x| x as u32)))
    }

    fn string(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(|v| v.to_string().ok()).map(String::as_str)
    }

    fn strings(&self, key: &str) -> Result<Vec<String>> {
        let Some(v) = self.get(key) else { return Ok(Vec::new()) };
        let items = v.to_vec().map_err(|e| read_error(self.path, format!("'{key}': {e}")))?;
        items
            .iter()
            .map(|s| Ok(s.to_string().map_err(|e| read_error(self.path, format!("'{key}': {e}")))?.clone()))
            .collect()
    }
}

/// Reads a llama-family GGUF file: config, dequantized tensors (onto `device`) and the
/// metadata's tokenizer.
pub fn read(path: &Path, device: &Device) -> Result<GgufModel> {
    let mut file = File::open(path).map_err(|e| read_error(path, e))?;
    let content = Content::read(&mut file).map_err(|e| read_error(path, format!("not a GGUF file: {e}")))?;
    let meta = Meta { path, map: &content.metadata };
    let arch = meta.string("general.architecture").unwrap_or("");
    if arch != "llama" {
        bail!(
            "'{}' is a GGUF of architecture '{arch}'; only llama-family GGUFs (Llama, SmolLM2, TinyLlama) load here",
            path.display()
        )
    }
    let config = config_of(&meta, &content)?;
    config.validate()?;
    let mut tensors = HashMap::new();
    for name in content.tensor_infos.keys() {
        let Some(hf) = hf_name(name) else {
            if name == "rope_freqs.weight" {
                bail!(
                    "'{}' has rope_freqs (scaled rotary embeddings), which are not supported",
                    path.display()
                )
            }
            bail!("'{}' holds tensor '{name}', which a llama model does not have", path.display())
        };
        let q = content.tensor(&mut file, name, &Device::Cpu).map_err(|e| read_error(path, e))?;
        let mut t = q.dequantize(&Device::Cpu).map_err(|e| read_error(path, format!("'{name}': {e}")))?;
        if hf.ends_with("q_proj.weight") {
            t = unpermute_rotary(&t, config.num_attention_heads)?;
        } else if hf.ends_with("k_proj.weight") {
            t = unpermute_rotary(&t, config.kv_heads())?;
        }
        tensors.insert(hf, t.to_device(device)?);
    }
    let tokenizer = tokenizer_of(&meta, path)?;
    Ok(GgufModel { config, tensors, tokenizer })
}

/// transformers' name for a GGUF tensor name.
fn hf_name(name: &str) -> Option<String> {
    let fixed = match name {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some(f.into());
    }
    let rest = name.strip_prefix("blk.")?;
    let (layer, part) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let hf = match part {
        "attn_norm.weight" => "input_layernorm.weight",
        "ffn_norm.weight" => "post_attention_layernorm.weight",
        "attn_q.weight" => "self_attn.q_proj.weight",
        "attn_k.weight" => "self_attn.k_proj.weight",
        "attn_v.weight" => "self_attn.v_proj.weight",
        "attn_output.weight" => "self_attn.o_proj.weight",
        "ffn_gate.weight" => "mlp.gate_proj.weight",
        "ffn_up.weight" => "mlp.up_proj.weight",
        "ffn_down.weight" => "mlp.down_proj.weight",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf}"))
}

/// The config from the `llama.*` metadata (and the embedding's shape where the vocabulary
/// size is left out).
fn config_of(meta: &Meta, content: &Content) -> Result<LlamaConfig> {
    let k = |s: &str| format!("llama.{s}");
    let hidden = meta.usize(&k("embedding_length"))?;
    let heads = meta.usize(&k("attention.head_count"))?;
    let vocab = match meta.opt_usize(&k("vocab_size"))? {
        Some(v) => v,
        None => match content.tensor_infos.get("token_embd.weight") {
            Some(info) => info.shape.dims().first().copied().unwrap_or(0),
            None => meta.strings("tokenizer.ggml.tokens")?.len(),
        },
    };
    if let Some(kind) = meta.string(&k("rope.scaling.type")).filter(|t| *t != "none") {
        bail!("'{}' uses '{kind}' rotary scaling, which is not supported", meta.path.display())
    }
    let head_dim = meta.opt_usize(&k("attention.key_length"))?.filter(|d| *d != hidden / heads.max(1));
    let eos = meta.opt_u32("tokenizer.ggml.eos_token_id");
    Ok(LlamaConfig {
        vocab_size: vocab,
        hidden_size: hidden,
        intermediate_size: meta.usize(&k("feed_forward_length"))?,
        num_hidden_layers: meta.usize(&k("block_count"))?,
        num_attention_heads: heads,
        num_key_value_heads: Some(meta.opt_usize(&k("attention.head_count_kv"))?.unwrap_or(heads)),
        head_dim,
        max_position_embeddings: meta.opt_usize(&k("context_length"))?.unwrap_or(2048),
        rms_norm_eps: meta.opt_f64(&k("attention.layer_norm_rms_epsilon"))?.unwrap_or(1e-5),
        rope_theta: Some(meta.opt_f64(&k("rope.freq_base"))?.unwrap_or(10000.0)),
        rope_parameters: None,
        rope_scaling: None,
        tie_word_embeddings: !content.tensor_infos.contains_key("output.weight"),
        attention_dropout: 0.0,
        attention_bias: false,
        mlp_bias: false,
        hidden_act: "silu".into(),
        initializer_range: 0.02,
        bos_token_id: meta.opt_u32("tokenizer.ggml.bos_token_id"),
        eos_token_id: eos.map(serde_json::Value::from),
    })
}

/// The byte-level BPE tokenizer of the metadata (`tokenizer.ggml.model` = `gpt2`): vocabulary
/// and merges, control tokens as special added tokens, the pre-tokenizer llama.cpp names in
/// `tokenizer.ggml.pre` (SmolLM2's `smollm`, like StarCoder's, splits every digit apart
/// before GPT-2's byte-level split, as SmolLM2's own tokenizer.json does), a beginning-of-
/// text token only when `tokenizer.ggml.add_bos_token` says so. `None` without tokens.
fn tokenizer_of(meta: &Meta, path: &Path) -> Result<Option<TextTokenizer>> {
    let tokens = meta.strings("tokenizer.ggml.tokens")?;
    if tokens.is_empty() {
        return Ok(None);
    }
    let beside = "put the model's tokenizer.json beside the .gguf file";
    match meta.string("tokenizer.ggml.model") {
        Some("gpt2") => {}
        other => bail!(
            "the GGUF tokenizer model '{}' cannot be rebuilt (only byte-level BPE, 'gpt2'); {beside}",
            other.unwrap_or("?")
        ),
    }
    let split_digits = match meta.string("tokenizer.ggml.pre").unwrap_or("default") {
        "default" | "gpt2" => false,
        "smollm" | "starcoder" | "refact" | "codeshell" => true,
        other => bail!("the GGUF pre-tokenizer '{other}' is not known here; {beside}"),
    };
    let merges: Vec<(String, String)> = meta
        .strings("tokenizer.ggml.merges")?
        .iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| read_error(path, format!("merge '{m}' is not two tokens; {beside}")))
        })
        .collect::<Result<_>>()?;
    let vocab: Vocab = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| read_error(path, format!("the GGUF vocabulary is no usable BPE: {e}; {beside}")))?;
    let mut inner = Tokenizer::new(bpe);
    let byte_level = ByteLevel::new(false, true, true);
    if split_digits {
        inner.with_pre_tokenizer(Some(Sequence::new(vec![Digits::new(true).into(), byte_level.into()])));
    } else {
        inner.with_pre_tokenizer(Some(byte_level));
    }
    inner.with_decoder(Some(ByteLevel::new(false, true, true)));
    // Token types (llama.cpp): 3 control, 4 user-defined; both match before the BPE.
    let types: Vec<i64> = match meta.get("tokenizer.ggml.token_type").map(Value::to_vec) {
        Some(Ok(v)) => v.iter().map(|t| t.to_i32().map(i64::from).unwrap_or(1)).collect(),
        _ => Vec::new(),
    };
    let added: Vec<AddedToken> = types
        .iter()
        .enumerate()
        .filter(|(_, t)| **t == 3 || **t == 4)
        .map(|(i, t)| AddedToken::from(tokens[i].clone(), *t == 3))
        .collect();
    inner.add_special_tokens(&added);
    let id_token = |key: &str| meta.opt_u32(key).filter(|&i| (i as usize) < tokens.len());
    let (bos, eos) = (id_token("tokenizer.ggml.bos_token_id"), id_token("tokenizer.ggml.eos_token_id"));
    let add_bos = meta.get("tokenizer.ggml.add_bos_token").and_then(|v| v.to_bool().ok()).unwrap_or(false);
    if let (true, Some(b)) = (add_bos, bos) {
        let name = tokens[b as usize].clone();
        let template = TemplateProcessing::builder()
            .try_single(format!("{name} $A"))
            .and_then(|t| t.special_tokens(vec![(name.clone(), b)]).build().map_err(|e| e.to_string()))
            .map_err(|e| read_error(path, format!("beginning-of-text template: {e}")))?;
        inner.with_post_processor(Some(template));
    }
    let mut tok = TextTokenizer::from_tokenizer(inner, format!("{} (GGUF metadata)", path.display()))?;
    if let Some(e) = eos {
        tok.eos_id = Some(e);
    }
    tok.pad_id = id_token("tokenizer.ggml.padding_token_id").or(eos).unwrap_or(tok.pad_id);
    let name = |id: Option<u32>| id.map(|i| serde_json::Value::from(tokens[i as usize].clone()));
    let mut config = serde_json::json!({
        "tokenizer_class": "GPT2Tokenizer",
        "add_bos_token": add_bos,
        "add_prefix_space": false,
        "clean_up_tokenization_spaces": false,
        "model_max_length": meta.opt_usize("llama.context_length")?.unwrap_or(2048),
        "bos_token": name(bos),
        "eos_token": name(eos),
        "pad_token": name(Some(tok.pad_id)),
        "unk_token": name(id_token("tokenizer.ggml.unknown_token_id")),
    });
    if let Some(chat) = meta.string("tokenizer.chat_template") {
        config["chat_template"] = chat.into();
    }
    Ok(Some(tok.with_config(config)))
}
