//! Line charts: one or more series against a shared x axis, optionally with a log y axis.

use plotters::chart::{ChartContext, SeriesAnno, SeriesLabelPosition};
use plotters::coord::cartesian::Cartesian2d;
use plotters::coord::ranged1d::{Ranged, ValueFormatter};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::axes::{self, Axis};
use super::{chart_builder, failed, render, Figure, PlotError, Scene};

/// How a series is drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SeriesStyle {
    /// Thin semi-transparent line, for noisy per-step values such as the raw loss.
    Thin,
    /// Thick line, for the series the reader should follow (smoothed loss).
    Bold,
    /// Dashed line, for references (validation loss, closed-form fit).
    Dashed,
    /// Line with a small circle at every point, for sparse series (per-epoch values).
    Markers,
}

/// One labelled series of (x, y) points.
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend text; an empty label keeps the series out of the legend.
    pub label: String,
    /// The points in drawing order; non-finite points are skipped.
    pub points: Vec<(f64, f64)>,
    /// How the series is drawn.
    pub style: SeriesStyle,
}

/// A line chart: several series over one pair of axes.
#[derive(Clone, Debug)]
pub struct LineChart {
    /// Short machine name, copied into the [`Figure`] and error messages.
    pub name: String,
    /// Title drawn on top.
    pub title: String,
    /// Text under the x axis.
    pub x_label: String,
    /// Text beside the y axis.
    pub y_label: String,
    /// The series, drawn in order (later ones on top) with distinct colours.
    pub series: Vec<Series>,
    /// Logarithmic y axis; points with y <= 0 are then skipped.
    pub log_y: bool,
}

/// Draws a line chart.
///
/// Non-finite points are skipped (and non-positive y with `log_y`); the axes span the
/// remaining points with a small margin. A legend appears when more than one series has
/// a label, in the corner with the least data. Fails when no point is left to draw.
pub fn line_chart(chart: &LineChart) -> Result<Figure, PlotError> {
    let scene = LineScene::new(chart)?;
    render(&chart.name, &chart.title, &scene).map(|(figure, ())| figure)
}

/// Colours given to series in order (the "tab10" palette, minus grey and olive).
const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

/// The colour of the `index`-th series.
pub(super) fn series_colour(index: usize) -> RGBColor {
    PALETTE[index % PALETTE.len()]
}

/// A series after filtering, with its colour.
pub(super) struct Drawn {
    /// Legend text, `None` when the series stays out of the legend.
    pub label: Option<String>,
    /// The finite points to draw.
    pub points: Vec<(f64, f64)>,
    /// How to draw them.
    pub style: SeriesStyle,
    /// Line colour.
    pub colour: RGBColor,
}

impl Drawn {
    /// The drawable part of `series`: finite points (and positive y when `log_y`).
    pub fn new(series: &Series, colour: RGBColor, log_y: bool) -> Drawn {
        let points = series
            .points
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite() && (!log_y || *y > 0.0))
            .collect();
        Drawn {
            label: Some(series.label.clone()).filter(|l| !l.is_empty()),
            points,
            style: series.style,
            colour,
        }
    }
}

/// A validated line chart with its axes.
struct LineScene<'c> {
    chart: &'c LineChart,
    series: Vec<Drawn>,
    x: Axis,
    y: Axis,
    legend: Option<SeriesLabelPosition>,
}

impl<'c> LineScene<'c> {
    fn new(chart: &'c LineChart) -> Result<LineScene<'c>, PlotError> {
        let series: Vec<Drawn> = chart
            .series
            .iter()
            .enumerate()
            .map(|(i, s)| Drawn::new(s, series_colour(i), chart.log_y))
            .filter(|d| !d.points.is_empty())
            .collect();
        let points = || series.iter().flat_map(|s| s.points.iter().copied());
        let no_data = || {
            let finite =
                chart.series.iter().flat_map(|s| &s.points).any(|(x, y)| x.is_finite() && y.is_finite());
            let chart = chart.name.clone();
            if finite {
                PlotError::NoPositiveData { chart }
            } else {
                PlotError::NoData { chart }
            }
        };
        let x = Axis::linear(points().map(|p| p.0), axes::X_TICKS).ok_or_else(no_data)?;
        let y = if chart.log_y {
            Axis::log(points().map(|p| p.1))
        } else {
            Axis::linear(points().map(|p| p.1), axes::Y_TICKS)
        }
        .ok_or_else(no_data)?;

        let labels: Vec<&str> = series.iter().filter_map(|s| s.label.as_deref()).collect();
        let legend = (labels.len() > 1).then(|| {
            let to_plot = |(px, py): (f64, f64)| (x.fraction(px), y.fraction(py));
            let lines: Vec<Vec<(f64, f64)>> =
                series.iter().map(|s| s.points.iter().copied().map(to_plot).collect()).collect();
            axes::legend_position(&lines, &[], &labels)
        });
        Ok(LineScene { chart, series, x, y, legend })
    }

    /// Everything inside the coordinate system; generic over the y axis (linear or log).
    fn draw_on<'a, DB, X, Y>(&self, chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>) -> Result<(), String>
    where
        DB: DrawingBackend + 'a,
        X: Ranged<ValueType = f64> + ValueFormatter<f64>,
        Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
    {
        axes::draw_mesh(chart, (&self.x, &self.y), (&self.chart.x_label, &self.chart.y_label), true)?;
        for series in &self.series {
            draw_series(chart, series)?;
        }
        if let Some(position) = &self.legend {
            axes::draw_legend(chart, position.clone())?;
        }
        Ok(())
    }
}

impl Scene for LineScene<'_> {
    type Frame = ();

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        root.fill(&WHITE).map_err(failed)?;
        let mut builder = chart_builder(root, &self.chart.title, self.y.label_width(), 24);
        let x = self.x.linear_coord();
        if self.y.log {
            let mut chart = builder.build_cartesian_2d(x, self.y.log_coord()).map_err(failed)?;
            self.draw_on(&mut chart)
        } else {
            let mut chart = builder.build_cartesian_2d(x, self.y.linear_coord()).map_err(failed)?;
            self.draw_on(&mut chart)
        }
    }
}

/// Draws one series in its style and registers its legend entry.
pub(super) fn draw_series<'a, DB, X, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    series: &Drawn,
) -> Result<(), String>
where
    DB: DrawingBackend + 'a,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let colour = series.colour;
    let points = series.points.iter().copied();
    let anno = match series.style {
        SeriesStyle::Thin => chart.draw_series(LineSeries::new(points, colour.mix(0.35))),
        SeriesStyle::Bold => chart.draw_series(LineSeries::new(points, colour.stroke_width(3))),
        SeriesStyle::Dashed => chart.draw_series(DashedLineSeries::new(points, 8, 5, colour.stroke_width(2))),
        SeriesStyle::Markers => {
            chart.draw_series(LineSeries::new(points, colour.filled().stroke_width(2)).point_size(3))
        }
    }
    .map_err(failed)?;
    if let Some(label) = &series.label {
        add_legend_entry(anno.label(label.as_str()), series.style, colour);
    }
    Ok(())
}

/// Gives a series its little picture in the legend.
fn add_legend_entry<'a, DB: DrawingBackend + 'a>(
    anno: &mut SeriesAnno<'a, DB>,
    style: SeriesStyle,
    colour: RGBColor,
) {
    let line = move |width: u32, alpha: f64| {
        PathElement::new(vec![(0, 0), (24, 0)], colour.mix(alpha).stroke_width(width))
    };
    let dash = move |x0, x1| PathElement::new(vec![(x0, 0), (x1, 0)], colour.stroke_width(2));
    match style {
        SeriesStyle::Thin => anno.legend(move |at| EmptyElement::at(at) + line(2, 0.5)),
        SeriesStyle::Bold => anno.legend(move |at| EmptyElement::at(at) + line(3, 1.0)),
        SeriesStyle::Dashed => anno.legend(move |at| EmptyElement::at(at) + dash(0, 9) + dash(15, 24)),
        SeriesStyle::Markers => anno
            .legend(move |at| EmptyElement::at(at) + line(2, 1.0) + Circle::new((12, 0), 3, colour.filled())),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(label: &str, style: SeriesStyle, points: Vec<(f64, f64)>) -> Series {
        Series { label: label.to_string(), points, style }
    }

    fn chart(series: Vec<Series>, log_y: bool) -> LineChart {
        LineChart {
            name: "loss".to_string(),
            title: "Training loss".to_string(),
            x_label: "step".to_string(),
            y_label: "loss".to_string(),
            series,
            log_y,
        }
    }

    fn noisy_loss() -> Vec<(f64, f64)> {
        (0..200)
            .map(|i| {
                let step = i as f64;
                let wiggle = 0.2 * ((step * 1.7).sin() + 1.0);
                (step, 2.0 * (-step / 50.0).exp() + 0.1 + wiggle)
            })
            .collect()
    }

    /// `<polyline` elements drawn in `colour`.
    fn polylines_in(svg: &str, colour: RGBColor) -> usize {
        let stroke = format!("stroke=\"#{:02X}{:02X}{:02X}\"", colour.0, colour.1, colour.2);
        svg.lines().filter(|l| l.starts_with("<polyline") && l.contains(&stroke)).count()
    }

    #[test]
    fn png_is_an_800_by_520_image_and_svg_has_the_title() {
        let figure =
            line_chart(&chart(vec![series("loss", SeriesStyle::Thin, noisy_loss())], false)).unwrap();
        assert!(figure.png.starts_with(b"\x89PNG\r\n\x1a\n"));
        let image = image::load_from_memory(&figure.png).unwrap();
        assert_eq!((image.width(), image.height()), (800, 520));
        assert!(figure.svg.contains(">\nTraining loss\n<"), "title missing from the svg");
        assert!(figure.svg.contains(">\nstep\n<") && figure.svg.contains(">\nloss\n<"));
        assert_eq!((figure.name.as_str(), figure.title.as_str()), ("loss", "Training loss"));
    }

    #[test]
    fn svg_has_one_polyline_per_series_plus_one_per_legend_entry() {
        let raw = noisy_loss();
        let smooth: Vec<_> = raw.iter().map(|(x, y)| (*x, y * 0.9)).collect();
        let epochs: Vec<_> = raw.iter().step_by(50).copied().collect();
        let figure = line_chart(&chart(
            vec![
                series("raw", SeriesStyle::Thin, raw),
                series("smoothed", SeriesStyle::Bold, smooth),
                series("epoch", SeriesStyle::Markers, epochs),
            ],
            false,
        ))
        .unwrap();
        for i in 0..3 {
            assert_eq!(polylines_in(&figure.svg, series_colour(i)), 2, "series {i}");
        }
        assert_eq!(figure.svg.matches("<circle").count(), 4 + 1, "markers + legend dot");

        // A single series gets no legend, so exactly one polyline.
        let single = line_chart(&chart(vec![series("raw", SeriesStyle::Bold, noisy_loss())], false)).unwrap();
        assert_eq!(polylines_in(&single.svg, series_colour(0)), 1);
    }

    #[test]
    fn dashed_series_is_drawn_in_pieces() {
        let figure = line_chart(&chart(
            vec![
                series("train", SeriesStyle::Bold, noisy_loss()),
                series("valid", SeriesStyle::Dashed, vec![(0.0, 2.0), (199.0, 0.5)]),
            ],
            false,
        ))
        .unwrap();
        assert!(polylines_in(&figure.svg, series_colour(1)) > 10);
    }

    #[test]
    fn log_axis_skips_zero_and_negative_values() {
        let points = vec![(0.0, 1.0), (1.0, 0.0), (2.0, -0.5), (3.0, 0.01), (4.0, 1e-4)];
        let figure = line_chart(&chart(vec![series("loss", SeriesStyle::Markers, points)], true)).unwrap();
        let image = image::load_from_memory(&figure.png).unwrap();
        assert_eq!((image.width(), image.height()), (800, 520));
        assert_eq!(figure.svg.matches("<circle").count(), 3, "three positive points");
        assert!(figure.svg.contains(">\n1e-4\n<"), "log ticks are labelled");

        let all_bad = chart(vec![series("loss", SeriesStyle::Bold, vec![(0.0, 0.0), (1.0, -1.0)])], true);
        let err = line_chart(&all_bad).unwrap_err();
        assert!(matches!(err, PlotError::NoPositiveData { .. }), "{err}");
    }

    #[test]
    fn nothing_finite_to_plot_is_an_error() {
        let err = line_chart(&chart(vec![], false)).unwrap_err();
        assert_eq!(err.to_string(), "cannot draw chart 'loss': no finite points");
        let empty = chart(vec![series("loss", SeriesStyle::Thin, vec![])], false);
        assert!(matches!(line_chart(&empty), Err(PlotError::NoData { .. })));
        let nan = chart(
            vec![series("loss", SeriesStyle::Thin, vec![(0.0, f64::NAN), (f64::INFINITY, 1.0)])],
            false,
        );
        assert!(matches!(line_chart(&nan), Err(PlotError::NoData { .. })));
    }

    #[test]
    fn a_single_point_and_a_flat_line_still_render() {
        let one = chart(vec![series("loss", SeriesStyle::Markers, vec![(5.0, 0.3)])], false);
        assert!(line_chart(&one).is_ok());
        let flat = chart(vec![series("lr", SeriesStyle::Bold, vec![(0.0, 1e-3), (10.0, 1e-3)])], true);
        assert!(line_chart(&flat).is_ok());
    }

    #[test]
    fn rendering_is_deterministic() {
        let c = chart(
            vec![
                series("raw", SeriesStyle::Thin, noisy_loss()),
                series("valid", SeriesStyle::Dashed, vec![(0.0, 2.0), (199.0, 0.5)]),
            ],
            true,
        );
        let (a, b) = (line_chart(&c).unwrap(), line_chart(&c).unwrap());
        assert_eq!(a, b);
    }
}
