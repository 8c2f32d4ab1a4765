//! Charts as bytes: plain `f64` data in, a [`Figure`] (PNG bytes and SVG text) out.
//!
//! The module knows nothing about tensors or sessions; callers turn their history, model
//! or data set into points first. Four kinds of chart:
//!
//! - [`line_chart`] (`lines.rs`): loss curves, learning-rate ramps; optional log y axis.
//! - [`loss_surface`] (`surface.rs`): filled contour bands of a two-parameter loss with the
//!   gradient-descent path drawn on top.
//! - [`scatter_chart`] (`scatter.rs`): data points with fitted lines over them.
//! - [`heatmap()`] (`heatmap.rs`): a matrix as coloured cells, such as a confusion matrix.
//!
//! `axes.rs` holds what they share: axis ranges, ticks and their labels, legend placement.
//!
//! **Invariants**: every chart is drawn once, by code generic over the plotters backend,
//! and rendered twice (bitmap and SVG), so the PNG and the SVG always show the same
//! picture; rendering is deterministic (same input, same bytes); the embedded DejaVu Sans
//! font is registered on first use, so no system font is needed at run time.

mod axes;
mod heatmap;
mod lines;
mod scatter;
mod surface;

pub use heatmap::{heatmap, HeatmapChart};
pub use lines::{line_chart, LineChart, Series, SeriesStyle};
pub use scatter::{scatter_chart, ScatterChart};
pub use surface::{loss_surface, SurfaceChart};

use std::io::Cursor;
use std::sync::OnceLock;

use image::ImageOutputFormat;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

/// Width of every figure, in pixels.
const WIDTH: u32 = 800;
/// Height of every figure, in pixels.
const HEIGHT: u32 = 520;
/// Font family the charts ask for; [`ensure_font`] backs it with the embedded font.
const FONT: &str = "sans-serif";
/// DejaVu Sans, compiled into the binary.
const FONT_BYTES: &[u8] = include_bytes!("fonts/DejaVuSans.ttf");

/// A rendered chart: PNG bytes and SVG text of the same picture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Figure {
    /// Short machine name of the chart (`loss`, `surface`, ...), usable as a file stem.
    pub name: String,
    /// Title drawn on top of the chart.
    pub title: String,
    /// The chart as an 800x520 RGB PNG file.
    pub png: Vec<u8>,
    /// The chart as an SVG document.
    pub svg: String,
}

/// Why a chart could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// Every point was missing or not finite.
    #[error("cannot draw chart '{chart}': no finite points")]
    NoData {
        /// Name of the chart.
        chart: String,
    },
    /// A log-scale chart had no finite positive y value.
    #[error("cannot draw chart '{chart}': no positive y values for the log axis; set log_y to false")]
    NoPositiveData {
        /// Name of the chart.
        chart: String,
    },
    /// The loss was NaN at every grid point of the surface view.
    #[error("cannot draw chart '{chart}': the loss is NaN everywhere in the view; check the loss function")]
    UndefinedSurface {
        /// Name of the chart.
        chart: String,
    },
    /// The embedded font could not be registered with plotters.
    #[error("cannot load the embedded plot font; src/plot/fonts/DejaVuSans.ttf is not a valid font")]
    Font,
    /// The drawing backend failed.
    #[error("cannot draw chart '{chart}': {message}")]
    Draw {
        /// Name of the chart.
        chart: String,
        /// What the backend reported.
        message: String,
    },
    /// The bitmap could not be encoded as PNG.
    #[error("cannot encode chart '{chart}' as png: {message}")]
    Encode {
        /// Name of the chart.
        chart: String,
        /// What the encoder reported.
        message: String,
    },
}

/// Registers the embedded font as "sans-serif" the first time any chart is drawn.
fn ensure_font() -> Result<(), PlotError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| register_font(FONT, FontStyle::Normal, FONT_BYTES).is_ok());
    if ok {
        Ok(())
    } else {
        Err(PlotError::Font)
    }
}

/// A chart ready to be drawn: validated data, axis ranges and legend placement.
///
/// `draw` is written once and run on both backends; `Frame` is whatever the scene wants
/// to report about its layout (the surface reports its view, for tests).
trait Scene {
    /// What `draw` reports about where it drew.
    type Frame;
    /// Draws the whole chart on `root`; errors are the backend's message.
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<Self::Frame, String>;
}

/// Draws `scene` as PNG and as SVG; also returns the frame of the bitmap pass.
fn render<S: Scene>(name: &str, title: &str, scene: &S) -> Result<(Figure, S::Frame), PlotError> {
    ensure_font()?;
    let draw_error = |message: String| PlotError::Draw { chart: name.to_string(), message };

    let mut rgb = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
    let frame = {
        let root = BitMapBackend::with_buffer(&mut rgb, (WIDTH, HEIGHT)).into_drawing_area();
        let frame = scene.draw(&root).map_err(draw_error)?;
        root.present().map_err(|e| draw_error(e.to_string()))?;
        frame
    };
    let png = encode_png(rgb).map_err(|message| PlotError::Encode { chart: name.to_string(), message })?;

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        scene.draw(&root).map_err(draw_error)?;
        root.present().map_err(|e| draw_error(e.to_string()))?;
    }

    let figure = Figure { name: name.to_string(), title: title.to_string(), png, svg };
    Ok((figure, frame))
}

/// Encodes a WIDTH x HEIGHT RGB buffer as PNG bytes.
fn encode_png(rgb: Vec<u8>) -> Result<Vec<u8>, String> {
    let image = image::RgbImage::from_raw(WIDTH, HEIGHT, rgb)
        .ok_or_else(|| "bitmap buffer has the wrong size".to_string())?;
    let mut bytes = Cursor::new(Vec::new());
    image.write_to(&mut bytes, ImageOutputFormat::Png).map_err(|e| e.to_string())?;
    Ok(bytes.into_inner())
}

/// Turns a backend error into the message carried by [`PlotError::Draw`].
fn failed<E: std::fmt::Display>(error: E) -> String {
    error.to_string()
}

/// A chart builder with the shared layout: white page, title on top, room for labels.
///
/// `y_labels` is the width of the y tick labels and title (see `Axis::label_width`);
/// `right` is the right margin (the surface keeps room there for its colour bar), both in
/// pixels.
fn chart_builder<'a, 'b, DB: DrawingBackend>(
    root: &'a DrawingArea<DB, Shift>,
    title: &str,
    y_labels: u32,
    right: u32,
) -> ChartBuilder<'a, 'b, DB> {
    let mut builder = ChartBuilder::on(root);
    builder
        .caption(title, (FONT, 22))
        .margin(12)
        .margin_right(right)
        .x_label_area_size(46)
        .y_label_area_size(y_labels);
    builder
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn font_registers_once_and_stays_registered() {
        assert!(ensure_font().is_ok());
        assert!(ensure_font().is_ok());
    }

    #[test]
    fn error_messages_name_the_chart_and_are_lowercase() {
        let message = PlotError::NoData { chart: "loss".to_string() }.to_string();
        assert_eq!(message, "cannot draw chart 'loss': no finite points");
        let log = PlotError::NoPositiveData { chart: "lr".to_string() }.to_string();
        assert!(log.starts_with("cannot draw chart 'lr'"), "{log}");
        assert!(!log.ends_with('.'), "{log}");
    }
}
