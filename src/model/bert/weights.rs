//! BERT parameters: their names and shapes, reading a checkpoint, and initialising what
//! the checkpoint lacks (a fresh classification head) as Hugging Face does.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use rand::Rng;
use rand_distr::{Distribution, Normal};

use super::{BertConfig, BertTask, Flavour};
use crate::error::{bail, Error, Result};
use crate::model::Params;

/// How a parameter starts when the checkpoint lacks it.
#[derive(Clone, Copy)]
enum Init {
    Normal,
    Zeros,
    Ones,
}

/// Every parameter of the model: name (the flavour's), shape, initialisation, and whether a
/// checkpoint may lack it (heads, pooler).
fn layout(c: &BertConfig, task: &BertTask) -> Vec<(String, Vec<usize>, Init, bool)> {
    let (h, i) = (c.hidden_size, c.intermediate_size);
    let mut out = Vec::new();
    let mut add = |name: String, shape: Vec<usize>, init: Init, optional: bool| {
        out.push((c.flavour.name(&name), shape, init, optional))
    };
    let linear = |add: &mut dyn FnMut(String, Vec<usize>, Init, bool),
                  name: &str,
                  o: usize,
                  i: usize,
                  optional: bool| {
        add(format!("{name}.weight"), vec![o, i], Init::Normal, optional);
        add(format!("{name}.bias"), vec![o], Init::Zeros, optional);
    };
    let norm = |add: &mut dyn FnMut(String, Vec<usize>, Init, bool), name: &str, optional: bool| {
        add(format!("{name}.weight"), vec![h], Init::Ones, optional);
        add(format!("{name}.bias"), vec![h], Init::Zeros, optional);
    };
    add("bert.embeddings.word_embeddings.weight".into(), vec![c.vocab_size, h], Init::Normal, false);
    add(
        "bert.embeddings.position_embeddings.weight".into(),
        vec![c.max_position_embeddings, h],
        Init::Normal,
        false,
    );
    if c.flavour.has_segments() {
        add(
            "bert.embeddings.token_type_embeddings.weight".into(),
            vec![c.type_vocab_size, h],
            Init::Normal,
            false,
        );
    }
    norm(&mut add, "bert.embeddings.LayerNorm", false);
    for l in 0..c.num_hidden_layers {
        let p = format!("bert.encoder.layer.{l}");
        for n in ["query", "key", "value"] {
            linear(&mut add, &format!("{p}.attention.self.{n}"), h, h, false);
        }
        linear(&mut add, &format!("{p}.attention.output.dense"), h, h, false);
        norm(&mut add, &format!("{p}.attention.output.LayerNorm"), false);
        linear(&mut add, &format!("{p}.intermediate.dense"), i, h, false);
        linear(&mut add, &format!("{p}.output.dense"), h, i, false);
        norm(&mut add, &format!("{p}.output.LayerNorm"), false);
    }
    match task {
        BertTask::Classify(labels) => {
            linear(&mut add, "bert.pooler.dense", h, h, true);
            linear(&mut add, "classifier", labels.len(), h, true);
        }
        BertTask::MaskedLm => {
            linear(&mut add, "cls.predictions.transform.dense", h, h, true);
            norm(&mut add, "cls.predictions.transform.LayerNorm", true);
            add("cls.predictions.bias".into(), vec![c.vocab_size], Init::Zeros, true);
        }
    }
    out
}

/// Reads a checkpoint ([`crate::model::read_checkpoint`]) with tunelab's names: keys of a
/// bare encoder (`BertModel` saves `encoder.…`) get the flavour's prefix.
pub fn read_checkpoint(dir: &Path, flavour: Flavour, device: &Device) -> Result<HashMap<String, Tensor>> {
    Ok(crate::model::read_checkpoint(dir, device)?
        .into_iter()
        .map(|(k, t)| (flavour.normalise_key(&k), t))
        .collect())
}

/// Builds the parameters from checkpoint `tensors`, checking every shape, and initialises
/// the optional ones that are missing. Returns notes on what was initialised or unused.
pub fn assemble(
    c: &BertConfig,
    task: &BertTask,
    mut tensors: HashMap<String, Tensor>,
    rng: &mut impl Rng,
    device: &Device,
    origin: &str,
) -> Result<(Params, Vec<String>)> {
    let normal = Normal::new(0.0, c.initializer_range)
        .map_err(|e| Error::invalid(format!("initializer_range: {e}")))?;
    let loading = !tensors.is_empty();
    let mut named = Vec::new();
    let mut fresh = Vec::new();
    for (name, shape, init, optional) in layout(c, task) {
        let t = match tensors.remove(&name) {
            Some(t) => {
                if t.dims() != shape.as_slice() {
                    bail!(
                        "'{name}' in {origin} has shape {:?} but config.json implies {shape:?}; the weights and config do not match",
                        t.dims()
                    )
                }
                t.to_dtype(DType::F32)?
            }
            None if loading && !optional => {
                bail!(
                    "{origin} has no tensor '{name}': is it a {} checkpoint of this config? (first missing tensor)",
                    c.flavour.family()
                )
            }
            None => {
                let n: usize = shape.iter().product();
                let values: Vec<f32> = match init {
                    Init::Normal => (0..n).map(|_| normal.sample(rng) as f32).collect(),
                    Init::Zeros => vec![0.0; n],
                    Init::Ones => vec![1.0; n],
                };
                if loading {
                    fresh.push(name.clone());
                }
                Tensor::from_vec(values, shape, device)?
            }
        };
        named.push((name, t));
    }
    let mut notes = Vec::new();
    if !fresh.is_empty() {
        let heads: Vec<String> = fresh
            .iter()
            .map(|n| n.rsplit_once('.').map_or(n.clone(), |(h, _)| h.to_string()))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        notes.push(format!("initialised fresh: {}", heads.join(", ")));
    }
    tensors.retain(|k, _| !c.flavour.ignorable(k));
    if !tensors.is_empty() {
        let mut unused: Vec<&String> = tensors.keys().collect();
        unused.sort();
        notes.push(format!("{} checkpoint tensor(s) not used (e.g. {})", unused.len(), unused[0]));
    }
    Ok((Params::new(named)?, notes))
}

/// The log of smoothed token frequencies (add-0.1, so tokens never seen keep a finite, small
/// score without taking much probability from the seen ones in a small corpus), for a
/// masked-LM output bias; tokens whose count is zeroed by the caller (special tokens) get the
/// smallest score. Also returns the cross-entropy of the counted tokens under it, in nats:
/// the loss of a model that predicts these frequencies whatever the context.
pub fn token_log_prior(counts: &[u64]) -> (Vec<f32>, f64) {
    const ALPHA: f64 = 0.1;
    let n = counts.iter().sum::<u64>() as f64;
    let total = n + ALPHA * counts.len() as f64;
    let log_p: Vec<f64> = counts.iter().map(|&c| ((c as f64 + ALPHA) / total).ln()).collect();
    let loss = -counts.iter().zip(&log_p).map(|(&c, &lp)| c as f64 * lp).sum::<f64>() / n.max(1.0);
    (log_p.iter().map(|&lp| lp as f32).collect(), loss)
}

#[cfg(test)]
mod tests {
    use super::token_log_prior;

    #[test]
    fn the_token_prior_is_a_smoothed_log_distribution_with_its_loss() {
        let (prior, loss) = token_log_prior(&[0, 0, 0, 0]);
        assert!(prior.iter().all(|&p| (p - (0.25f32).ln()).abs() < 1e-6), "{prior:?}");
        assert_eq!(loss, 0.0, "no tokens, no loss");
        let counts = [99, 0, 1, 9];
        let (prior, loss) = token_log_prior(&counts);
        let total: f64 = prior.iter().map(|&p| (p as f64).exp()).sum();
        assert!((total - 1.0).abs() < 1e-6, "probabilities sum to {total}");
        assert!(prior[0] > prior[3] && prior[3] > prior[2] && prior[2] > prior[1], "{prior:?}");
        // The loss is the cross-entropy of the counts under the prior: just above their entropy.
        let n = 109.0;
        let entropy: f64 =
            counts.iter().filter(|&&c| c > 0).map(|&c| -(c as f64 / n) * (c as f64 / n).ln()).sum();
        assert!(loss > entropy && loss < entropy + 0.01, "loss {loss}, entropy {entropy}");
    }
}
