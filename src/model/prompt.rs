//! Prompt tuning (Lester et al. 2021), as peft's `PROMPT_TUNING`: `tokens` trainable
//! embedding vectors (the parameter `prompt_embeddings`, `[tokens, hidden]`) are put
//! before every sequence's token embeddings, with attention on them; the base weights are
//! frozen and only the prompt (and a classifier's head) trains. A family opts in by
//! prepending [`Params::prompt_embeddings`] in its forward pass (BERT classifiers do; the
//! pooler then reads the first virtual token, as in peft).

use candle_core::{Device, Tensor};
use rand::Rng;

use super::{name_matches, Param, Params};
use crate::error::{bail, Result};

/// The parameter holding the virtual tokens (peft's tensor name too).
pub const PROMPT: &str = "prompt_embeddings";

impl Params {
    /// The number of virtual tokens, when prompt tuning is attached.
    pub fn prompt_tokens(&self) -> Option<usize> {
        self.get(PROMPT).map(|p| p.var.dims()[0])
    }

    /// The virtual tokens `[tokens, hidden]` to prepend, when attached.
    pub fn prompt_embeddings(&self, train: bool) -> Result<Option<Tensor>> {
        Ok(match self.get(PROMPT) {
            Some(_) => Some(self.tensor(PROMPT, train)?),
            None => None,
        })
    }

    /// These parameters with `init` (`[tokens, hidden]`) as trainable virtual tokens; all
    /// other parameters frozen except those under `keep` (a classifier's head).
    pub fn with_prompt(&self, init: Tensor, keep: &[String]) -> Result<Params> {
        if self.lora().is_some() || self.bottleneck().is_some() || self.get(PROMPT).is_some() {
            bail!("the model already has adapters (LoRA, bottleneck or a prompt); `undo` first: one method at a time")
        }
        let mut items: Vec<Param> = self
            .iter()
            .map(|p| Param { trainable: keep.iter().any(|k| name_matches(k, &p.name)), ..p.clone() })
            .collect();
        items.push(Param {
            name: PROMPT.into(),
            var: candle_core::Var::from_tensor(&init)?,
            trainable: true,
        });
        Ok(Params::from_parts(items, None))
    }
}

/// Initial virtual tokens: rows of the word-embedding matrix `words` `[vocab, hidden]` at
/// random token ids (peft's `SAMPLE_VOCAB`), so the prompt starts in the embeddings' range.
pub fn sample_vocab(words: &Tensor, tokens: usize, rng: &mut impl Rng) -> Result<Tensor> {
    let vocab = words.dim(0)?;
    let ids: Vec<u32> = (0..tokens).map(|_| rng.random_range(0..vocab as u32)).collect();
    let ids = Tensor::from_vec(ids, tokens, &Device::Cpu)?.to_device(words.device())?;
    Ok(words.index_select(&ids, 0)?.copy()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn prompts_freeze_the_base_and_start_from_the_vocabulary() {
        let words = Tensor::arange(0f32, 12.0, &Device::Cpu).unwrap().reshape((6, 2)).unwrap();
        let p = Params::new(vec![("emb.weight".into(), words.clone())]).unwrap();
        let init = sample_vocab(&words, 3, &mut rand::rngs::StdRng::seed_from_u64(0)).unwrap();
        let rows = init.to_vec2::<f32>().unwrap();
        assert!(rows.iter().all(|r| r[1] == r[0] + 1.0 && r[0] % 2.0 == 0.0));
        let q = p.with_prompt(init, &[]).unwrap();
        assert_eq!(q.prompt_tokens(), Some(3));
        assert!(!q.get("emb.weight").unwrap().trainable);
        assert!(q
            .with_prompt(Tensor::zeros((1, 2), candle_core::DType::F32, &Device::Cpu).unwrap(), &[])
            .is_err());
    }
}
