//! GPT-2 parameters: names and shapes as transformers' `GPT2LMHeadModel` state_dict has
//! them, reading a checkpoint, and GPT-2's initialisation for a fresh model.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use rand::Rng;
use rand_distr::{Distribution, Normal};

use super::Gpt2Config;
use crate::error::{bail, Error, Result};
use crate::model::Params;

/// How a parameter starts in a fresh model.
#[derive(Clone, Copy)]
enum Init {
    /// Normal with the configured standard deviation.
    Normal,
    /// Normal scaled by 1/√(2·layers): the residual projections, as GPT-2 does.
    Residual,
    Zeros,
    Ones,
}

/// Every parameter: name, shape, initialisation. `Conv1D` weights are `[in, out]`.
fn layout(c: &Gpt2Config) -> Vec<(String, Vec<usize>, Init)> {
    let (e, inner) = (c.n_embd, c.inner());
    let mut out = vec![
        ("transformer.wte.weight".into(), vec![c.vocab_size, e], Init::Normal),
        ("transformer.wpe.weight".into(), vec![c.n_positions, e], Init::Normal),
    ];
    let norm = |out: &mut Vec<(String, Vec<usize>, Init)>, name: String| {
        out.push((format!("{name}.weight"), vec![e], Init::Ones));
        out.push((format!("{name}.bias"), vec![e], Init::Zeros));
    };
    for l in 0..c.n_layer {
        let p = format!("transformer.h.{l}");
        norm(&mut out, format!("{p}.ln_1"));
        for (name, i, o, init) in [
            ("attn.c_attn", e, 3 * e, Init::Normal),
            ("attn.c_proj", e, e, Init::Residual),
            ("mlp.c_fc", e, inner, Init::Normal),
            ("mlp.c_proj", inner, e, Init::Residual),
        ] {
            out.push((format!("{p}.{name}.weight"), vec![i, o], init));
            out.push((format!("{p}.{name}.bias"), vec![o], Init::Zeros));
            if name == "attn.c_proj" {
                norm(&mut out, format!("{p}.ln_2"));
            }
        }
    }
    norm(&mut out, "transformer.ln_f".into());
    out
}

/// The parameter names and shapes, in order.
pub fn names_and_shapes(c: &Gpt2Config) -> Vec<(String, Vec<usize>)> {
    layout(c).into_iter().map(|(n, s, _)| (n, s)).collect()
}

/// tunelab's name for a checkpoint key: the original OpenAI-converted checkpoints leave out
/// the `transformer.` prefix.
fn normalise(key: &str) -> String {
    if ["wte.", "wpe.", "h.", "ln_f."].iter().any(|p| key.starts_with(p)) {
        format!("transformer.{key}")
    } else {
        key.to_string()
    }
}

/// Reads a checkpoint ([`crate::model::read_checkpoint`]) with tunelab's names.
pub fn read_checkpoint(dir: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    Ok(crate::model::read_checkpoint(dir, device)?.into_iter().map(|(k, t)| (normalise(&k), t)).collect())
}

/// The parameters from checkpoint `tensors` (every one required, shapes checked), or all
/// freshly initialised from `rng` when `tensors` is empty.
pub fn assemble(
    c: &Gpt2Config,
    mut tensors: HashMap<String, Tensor>,
    rng: &mut impl Rng,
    device: &Device,
    origin: &str,
) -> Result<Params> {
    let std = c.initializer_range;
    let normal = Normal::new(0.0, std).map_err(|e| Error::invalid(format!("initializer_range: {e}")))?;
    let residual = Normal::new(0.0, std / (2.0 * c.n_layer as f64).sqrt())
        .map_err(|e| Error::invalid(format!("initializer_range: {e}")))?;
    let loading = !tensors.is_empty();
    let mut named = Vec::new();
    for (name, shape, init) in layout(c) {
        let t = match tensors.remove(&name) {
            Some(t) if t.dims() != shape.as_slice() => bail!(
                "'{name}' in {origin} has shape {:?} but config.json implies {shape:?}; the weights and config do not match",
                t.dims()
            ),
            Some(t) => t.to_dtype(DType::F32)?,
            None if loading => {
                bail!("{origin} has no tensor '{name}': is it a GPT-2 checkpoint of this config? (first missing tensor)")
            }
            None => {
                let n: usize = shape.iter().product();
                let values: Vec<f32> = match init {
                    Init::Normal => (0..n).map(|_| normal.sample(rng) as f32).collect(),
                    Init::Residual => (0..n).map(|_| residual.sample(rng) as f32).collect(),
                    Init::Zeros => vec![0.0; n],
                    Init::Ones => vec![1.0; n],
                };
                Tensor::from_vec(values, shape, device)?
            }
        };
        named.push((name, t));
    }
    Params::new(named)
}
