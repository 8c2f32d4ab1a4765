//! Weight gradients handed to the training step beside candle's `GradStore`.
//!
//! candle's backward adds every gradient it receives into the store: the first time it
//! meets a tensor it zero-fills a gradient of the tensor's size and then adds the incoming
//! one into it, making a third tensor. For a weight matrix that is two parameter-sized
//! passes and a fresh parameter-sized allocation per step, on one thread — about 2 GB of
//! memory traffic per step of a 135M-parameter model — to compute `0 + dW`.
//!
//! While a [`GradSink`] is open on a thread, the fused dense layers ([`super::linear`])
//! give the gradients of their weight and bias, when those are variables, to the sink
//! instead of to candle, and the training step takes them from [`GradSink::finish`]. The
//! embedding lookup ([`super::embedding`]) adds its rows into the sink's gradient of the
//! table — in place into the output layer's part when the two are tied. A variable that
//! also gets a gradient through candle's own ops has one part in each; the step adds them. With no sink open (every backward pass
//! outside `fit`), nothing changes.

use std::cell::RefCell;
use std::collections::HashMap;

use candle_core::{Tensor, TensorId};

use super::Real;

thread_local! {
    static SINK: RefCell<Option<HashMap<TensorId, Tensor>>> = const { RefCell::new(None) };
}

/// Collects weight gradients from the fused dense layers during one backward pass on this
/// thread; closing it (by [`finish`](Self::finish) or by dropping it) stops the collection.
#[must_use = "gradients are collected only while the sink is open"]
pub struct GradSink(());

impl GradSink {
    /// Opens the sink on this thread (a sink already open is emptied).
    pub fn open() -> GradSink {
        SINK.with(|s| *s.borrow_mut() = Some(HashMap::new()));
        GradSink(())
    }

    /// Closes the sink and returns what it collected, by the variable's tensor id.
    pub fn finish(self) -> HashMap<TensorId, Tensor> {
        SINK.with(|s| s.borrow_mut().take()).unwrap_or_default()
    }
}

impl Drop for GradSink {
    fn drop(&mut self) {
        SINK.with(|s| s.borrow_mut().take());
    }
}

/// Adds a gradient of `table` with `add` (which adds into the slice it is given) into the
/// open sink's gradient of `table`, in place, or into fresh zeros when the sink has none
/// yet, and returns `None`; with no sink open, or when `table` is not a variable, returns
/// zeros + `add` for candle's store. (In place is safe: every tensor in the sink was made
/// for it, by a kernel's backward or by an add, and no one else holds it until
/// [`GradSink::finish`].)
pub(super) fn add_into<T: Real>(
    table: &Tensor,
    add: impl FnOnce(&mut [T]),
) -> candle_core::Result<Option<Tensor>> {
    let open = SINK.with(|s| s.borrow().is_some());
    if !(open && table.is_variable()) {
        return zeros_plus(table, add).map(Some);
    }
    SINK.with(|s| {
        let mut s = s.borrow_mut();
        let sink = s.as_mut().expect("checked open above, on this thread");
        let writable = |t: &Tensor| t.dtype() == T::DTYPE && t.device().is_cpu() && t.is_contiguous();
        let sum = match sink.remove(&table.id()) {
            Some(earlier) if writable(&earlier) => {
                super::adamw::with_slice_mut::<T>(&earlier, |dw| {
                    add(dw);
                    Ok(())
                })?;
                earlier
            }
            Some(earlier) => earlier.add(&zeros_plus(table, add)?)?,
            None => zeros_plus(table, add)?,
        };
        sink.insert(table.id(), sum);
        Ok(None)
    })
}

/// A tensor of `like`'s shape: zeros with `add` applied.
fn zeros_plus<T: Real>(like: &Tensor, add: impl FnOnce(&mut [T])) -> candle_core::Result<Tensor> {
    let mut dw = vec![T::zero(); like.elem_count()];
    add(&mut dw);
    Tensor::from_vec(dw, like.shape(), like.device())
}

/// Hands `grad`, the gradient of `input`, to the open sink when `input` is a variable and
/// returns `None`; otherwise returns `grad` for candle's store. Two gradients of one
/// variable are added, in the order they come, as candle would add them.
pub(super) fn divert(input: &Tensor, grad: Option<Tensor>) -> candle_core::Result<Option<Tensor>> {
    let Some(grad) = grad else { return Ok(None) };
    if !input.is_variable() {
        return Ok(Some(grad));
    }
    SINK.with(|s| {
        let mut s = s.borrow_mut();
        let Some(sink) = s.as_mut() else { return Ok(Some(grad)) };
        let sum = match sink.remove(&input.id()) {
            Some(earlier) => earlier.add(&grad)?,
            None => grad,
        };
        sink.insert(input.id(), sum);
        Ok(None)
    })
}
