//! `help`, `device`, `seed`, `batch`, `epochs`.

use candle_core::Device;
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::dsl::{help, Command};
use crate::error::{bail, Error, Result};
use crate::session::{Event, Session, Sink};
use crate::train::Precision;

/// The name a device is shown and chosen by.
pub(crate) fn device_name(d: &Device) -> String {
    match d {
        Device::Cpu => "cpu".into(),
        Device::Cuda(_) => match d.location() {
            candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
            _ => "cuda".into(),
        },
        Device::Metal(_) => "metal".into(),
    }
}

fn open_device(name: &str) -> Result<Device> {
    let no_cuda = || {
        Error::invalid(format!(
            "cannot use '{name}': this tunelab was built without CUDA; build the CUDA binary \
             with `scripts/cuda-toolchain.sh build` (README: GPU), or use `device cpu`"
        ))
    };
    match name {
        "cpu" => Ok(Device::Cpu),
        _ => {
            let ordinal = match name.strip_prefix("cuda") {
                Some("") => 0,
                Some(rest) => match rest.strip_prefix(':').and_then(|n| n.parse::<usize>().ok()) {
                    Some(n) => n,
                    None => bail!("unknown device '{name}': use cpu, cuda, cuda:N (e.g. cuda:1) or auto"),
                },
                None => bail!("unknown device '{name}': use cpu, cuda, cuda:N or auto"),
            };
            if !candle_core::utils::cuda_is_available() {
                return Err(no_cuda());
            }
            Device::new_cuda(ordinal).map_err(|e| {
                let e = first_line(&e);
                Error::invalid(format!("cannot open {name}: {e}; check `nvidia-smi`, or use `device cpu`"))
            })
        }
    }
}

/// `device auto`: the first GPU when this build has CUDA and one opens, else the CPU,
/// with a one-line warning when a CUDA build finds no usable GPU.
fn auto_device() -> (Device, Option<String>) {
    if !candle_core::utils::cuda_is_available() {
        return (Device::Cpu, None);
    }
    match Device::new_cuda(0) {
        Ok(d) => (d, None),
        Err(e) => {
            let why = first_line(&e);
            (Device::Cpu, Some(format!("no CUDA device opens ({why}); using cpu — check `nvidia-smi`")))
        }
    }
}

/// The first line of a candle error: with `RUST_BACKTRACE` set, candle appends a backtrace.
fn first_line(e: &candle_core::Error) -> String {
    e.to_string().lines().next().unwrap_or_default().to_string()
}

impl Session {
    pub(crate) fn help(&mut self, cmd: &Command, sink: &mut dyn Sink) -> Result<()> {
        let text = match cmd.arg(0).and_then(|v| v.as_str()) {
            None => help::overview(),
            Some(topic) => help::help_for(topic).map_err(|m| Error::invalid(m).at(cmd.args[0].span))?,
        };
        sink.emit(Event::Text(text.trim_end().to_string()));
        Ok(())
    }

    pub(crate) fn device_cmd(&mut self, cmd: &Command, sink: &mut dyn Sink) -> Result<()> {
        let Some(name) = cmd.arg(0).and_then(|v| v.as_str()) else {
            let mut line = format!("device {}", device_name(&self.device));
            if self.device.is_cpu() {
                let threads = candle_core::utils::get_num_threads();
                let blas = crate::model::kernels::blas::describe();
                line += &format!(" ({threads} threads; matrix products on {blas})");
            }
            sink.emit(Event::Text(line));
            return Ok(());
        };
        let name = name.to_ascii_lowercase();
        let device = if name == "auto" {
            let (device, warning) = auto_device();
            if let Some(w) = warning {
                sink.emit(Event::Warning(w));
            }
            device
        } else {
            open_device(&name).map_err(|e| e.at(cmd.args[0].span))?
        };
        if device.same_device(&self.device) {
            sink.emit(Event::Text(format!("device {} (unchanged)", device_name(&device))));
            return Ok(());
        }
        // Move everything aside first; assign only when all moves succeeded.
        let model = self.model.as_ref().map(|m| m.to_device(&device)).transpose()?;
        let optimizer = self.optimizer.to_device(&device)?;
        let data = self.data.as_ref().map(|d| d.to_device(&device)).transpose()?;
        let distill = match &self.distill {
            Some(d) => Some(d.lock().unwrap_or_else(|e| e.into_inner()).to_device(&device)?),
            None => None,
        };
        let moved: Vec<&str> =
            [model.as_ref().map(|_| "model"), data.as_ref().map(|_| "data")].into_iter().flatten().collect();
        self.model = model;
        self.optimizer = optimizer;
        self.data = data;
        self.distill = distill.map(|d| std::sync::Arc::new(std::sync::Mutex::new(d)));
        self.last_grads = None;
        let what = if moved.is_empty() { String::new() } else { format!(" (moved {})", moved.join(" and ")) };
        sink.emit(Event::Text(format!("device {}{what}", device_name(&device))));
        self.device = device;
        Ok(())
    }

    /// `precision [f32|bf16|f16]`: shows or sets the compute precision. The weights and
    /// the optimizer state stay f32; only forward and backward passes change.
    pub(crate) fn precision(&mut self, cmd: &Command, sink: &mut dyn Sink) -> Result<()> {
        let described = |p: Precision| match p {
            Precision::F32 => "precision f32: weights, activations and gradients in f32".to_string(),
            half => format!(
                "precision {0}: forward and backward in {0} (norms, softmax and losses in f32); weights and \
                 optimizer state stay f32{1}",
                half.name(),
                if half.scales_loss() { "; dynamic loss scaling" } else { "" }
            ),
        };
        let Some(name) = cmd.arg(0).and_then(|v| v.as_str()) else {
            sink.emit(Event::Text(described(self.settings.precision)));
            return Ok(());
        };
        let Some(precision) = Precision::parse(name) else {
            return Err(Error::invalid(format!("unknown precision '{name}': use f32, bf16 or f16")));
        };
        if precision != Precision::F32 && self.device.is_cpu() {
            sink.emit(Event::Warning(format!(
                "{} on the CPU runs slower than f32 (no native half-precision arithmetic there); it pays on a GPU",
                precision.name()
            )));
        }
        if precision.scales_loss() && !self.settings.precision.scales_loss() {
            self.loss_scaler = Default::default();
        }
        self.settings.precision = precision;
        if let Some(m) = self.model.as_deref_mut() {
            m.params_mut().set_compute(Some(precision.compute()));
        }
        sink.emit(Event::Text(described(precision)));
        Ok(())
    }

    pub(crate) fn seed(&mut self, cmd: &Command, sink: &mut dyn Sink) -> Result<()> {
        if let Some(seed) = cmd.arg(0).and_then(|v| v.as_i64()) {
            self.settings.seed = seed as u64;
            self.rng = StdRng::seed_from_u64(seed as u64);
            self.step_queue.clear();
        }
        sink.emit(Event::Text(format!("seed {}", self.settings.seed)));
        Ok(())
    }

    pub(crate) fn batch(&mut self, cmd: &Command, sink: &mut dyn Sink) -> Result<()> {
        if let Some(n) = cmd.arg(0).and_then(|v| v.as_i64()) {
            self.settings.batch = n as usize;
        }
        sink.emit(Event::Text(format!("batch {}", self.settings.batch)));
        Ok(())
    }

    pub(crate) fn epochs(&mut self, cmd: &Command, sink: &mut dyn Sink) -> Result<()> {
        if let Some(n) = cmd.arg(0).and_then(|v| v.as_i64()) {
            self.settings.epochs = n as usize;
        }
        sink.emit(Event::Text(format!("epochs {}", self.settings.epochs)));
        Ok(())
    }
}
