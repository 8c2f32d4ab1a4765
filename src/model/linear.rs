//! The teaching model: y = x·wᵀ + b, PyTorch's `nn.Linear(inputs, 1)`.

use candle_core::{Device, Tensor};
use rand::Rng;
use serde_json::json;

use super::{Model, Params, Pass, Task};
use crate::data::Batch;
use crate::error::{bail, Result};

/// How to initialise a new linear model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Init {
    /// Uniform in ±1/√inputs, as `torch.nn.Linear` does.
    Random,
    /// All zeros (handy for teaching: the descent starts at the origin).
    Zeros,
}

/// A linear regression model with `inputs` inputs and one output, trained on mean
/// squared error. Parameters: `weight` of shape `[1, inputs]` and `bias` of shape `[1]`,
/// named as in PyTorch's `state_dict`.
pub struct Linear {
    inputs: usize,
    params: Params,
}

impl Linear {
    /// A new model on `device`, initialised from `rng`.
    pub fn new(inputs: usize, init: Init, rng: &mut impl Rng, device: &Device) -> Result<Linear> {
        let bound = 1.0 / (inputs as f64).sqrt();
        let mut draw = |n: usize| -> Vec<f32> {
            match init {
                Init::Random => (0..n).map(|_| rng.random_range(-bound..bound) as f32).collect(),
                Init::Zeros => vec![0.0; n],
            }
        };
        let weight = Tensor::from_vec(draw(inputs), (1, inputs), device)?;
        let bias = Tensor::from_vec(draw(1), 1, device)?;
        Linear::from_tensors(weight, bias)
    }

    /// A model from its two tensors (as loaded from `model.safetensors`).
    pub fn from_tensors(weight: Tensor, bias: Tensor) -> Result<Linear> {
        let (out, inputs) = match weight.dims() {
            [o, i] => (*o, *i),
            other => bail!("linear weight must have 2 dimensions [1, inputs], found {other:?}"),
        };
        if out != 1 || bias.dims() != [1] {
            bail!(
                "linear model has one output: weight must be [1, inputs] and bias [1], found {:?} and {:?}",
                weight.dims(),
                bias.dims()
            )
        }
        let params = Params::new(vec![("weight".into(), weight), ("bias".into(), bias)])?;
        Ok(Linear { inputs, params })
    }

    /// Number of inputs.
    pub fn inputs(&self) -> usize {
        self.inputs
    }
}

impl Model for Linear {
    fn family(&self) -> &'static str {
        "linear"
    }

    fn describe(&self) -> String {
        let (t, n) = (self.params.trainable_numel(), self.params.numel());
        format!(
            "linear regression y = w·x + b, {} input(s), {t}/{n} parameters trainable, MSE loss",
            self.inputs
        )
    }

    fn task(&self) -> Task {
        Task::Regression
    }

    fn params(&self) -> &Params {
        &self.params
    }

    fn params_mut(&mut self) -> &mut Params {
        &mut self.params
    }

    fn forward(&self, batch: &Batch, pass: &mut Pass) -> Result<Tensor> {
        let Batch::Regression { x, .. } = batch else {
            bail!("the linear model takes numeric data: `data synthetic linear` or `data FILE x=COLS y=COL`")
        };
        let train = pass.train;
        if x.dim(1)? != self.inputs {
            bail!(
                "the model has {} input(s) but the data has {}: `load linear` again to match the data",
                self.inputs,
                x.dim(1)?
            )
        }
        let w = self.params.tensor("weight", train)?;
        let b = self.params.tensor("bias", train)?;
        let x = x.to_dtype(w.dtype())?;
        crate::model::layers::upcast(x.matmul(&w.t()?)?.broadcast_add(&b)?)
    }

    fn loss(&self, batch: &Batch, pass: &mut Pass) -> Result<Tensor> {
        let y_hat = self.forward(batch, pass)?;
        let Batch::Regression { y: Some(y), .. } = batch else {
            bail!("this batch has no targets, so there is no loss to compute")
        };
        Ok(y_hat.sub(y)?.sqr()?.mean_all()?)
    }

    fn config(&self) -> serde_json::Value {
        json!({
            "model_type": "tunelab-linear",
            "architectures": ["Linear"],
            "in_features": self.inputs,
            "out_features": 1,
            "loss": "mse",
        })
    }

    fn group(&self, name: &str) -> Option<Vec<String>> {
        match name {
            "w" | "weights" => Some(vec!["weight".into()]),
            "b" => Some(vec!["bias".into()]),
            _ => None,
        }
    }

    fn group_names(&self) -> Vec<&'static str> {
        vec!["w", "b", "weight", "bias"]
    }

    fn input_dims(&self) -> Option<usize> {
        Some(self.inputs)
    }

    fn to_device(&self, device: &Device) -> Result<Box<dyn Model>> {
        Ok(Box::new(Linear { inputs: self.inputs, params: self.params.to_device(device)? }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn gradients_reach_every_trainable_parameter_and_match_the_formula() {
        let dev = Device::Cpu;
        let m = Linear::from_tensors(
            Tensor::new(&[[0.5f32]], &dev).unwrap(),
            Tensor::new(&[0.25f32], &dev).unwrap(),
        )
        .unwrap();
        let x = Tensor::new(&[[1f32], [2.0], [3.0]], &dev).unwrap();
        let y = Tensor::new(&[[5f32], [8.0], [11.0]], &dev).unwrap();
        let batch = Batch::Regression { x, y: Some(y) };
        let loss = m.loss(&batch, &mut Pass::train(0)).unwrap();
        let grads = loss.backward().unwrap();
        // dL/dw = 2/n Σ (w x + b - y) x ; dL/db = 2/n Σ (w x + b - y)
        let r: Vec<f64> =
            [1.0, 2.0, 3.0].iter().zip([5.0, 8.0, 11.0]).map(|(x, y)| 0.5 * x + 0.25 - y).collect();
        let dw = 2.0 / 3.0 * r.iter().zip([1.0, 2.0, 3.0]).map(|(r, x)| r * x).sum::<f64>();
        let db = 2.0 / 3.0 * r.iter().sum::<f64>();
        let gw = grads.get(m.params().get("weight").unwrap().var.as_tensor()).unwrap();
        let gb = grads.get(m.params().get("bias").unwrap().var.as_tensor()).unwrap();
        assert!((gw.flatten_all().unwrap().to_vec1::<f32>().unwrap()[0] as f64 - dw).abs() < 1e-4);
        assert!((gb.to_vec1::<f32>().unwrap()[0] as f64 - db).abs() < 1e-4);
    }

    #[test]
    fn frozen_parameters_get_no_gradient() {
        let dev = Device::Cpu;
        let mut m = Linear::new(2, Init::Random, &mut rand::rngs::StdRng::seed_from_u64(1), &dev).unwrap();
        m.params_mut().set_trainable(&[1], false);
        let x = Tensor::new(&[[1f32, 2.0]], &dev).unwrap();
        let batch = Batch::Regression { x, y: Some(Tensor::new(&[[1f32]], &dev).unwrap()) };
        let grads = m.loss(&batch, &mut Pass::train(0)).unwrap().backward().unwrap();
        assert!(grads.get(m.params().get("weight").unwrap().var.as_tensor()).is_some());
        assert!(grads.get(m.params().get("bias").unwrap().var.as_tensor()).is_none());
    }
}
