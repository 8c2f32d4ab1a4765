//! Scatter charts: data points as dots, fitted lines drawn over them.

use plotters::chart::SeriesLabelPosition;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::axes::{self, Axis};
use super::lines::{draw_series, series_colour, Drawn, Series};
use super::{chart_builder, failed, render, Figure, PlotError, Scene};

/// A scatter chart: points plus line series on top (e.g. "learned" and "closed form").
#[derive(Clone, Debug)]
pub struct ScatterChart {
    /// Short machine name, copied into the [`Figure`] and error messages.
    pub name: String,
    /// Title drawn on top.
    pub title: String,
    /// Text under the x axis.
    pub x_label: String,
    /// Text beside the y axis.
    pub y_label: String,
    /// The data points; non-finite ones are skipped.
    pub points: Vec<(f64, f64)>,
    /// Lines drawn over the points, in order, with distinct colours.
    pub lines: Vec<Series>,
}

/// Draws a scatter chart: small semi-transparent dots, then the lines.
///
/// The axes span the points and the lines. When more than one line has a label, a legend
/// lists "data" and the lines. Fails when neither points nor lines have a finite point.
pub fn scatter_chart(chart: &ScatterChart) -> Result<Figure, PlotError> {
    let scene = ScatterScene::new(chart)?;
    render(&chart.name, &chart.title, &scene).map(|(figure, ())| figure)
}

/// Colour of the dots; lines take the palette from its second colour on.
fn dot_colour() -> RGBColor {
    series_colour(0)
}

/// A validated scatter chart with its axes.
struct ScatterScene<'c> {
    chart: &'c ScatterChart,
    dots: Vec<(f64, f64)>,
    lines: Vec<Drawn>,
    x: Axis,
    y: Axis,
    legend: Option<SeriesLabelPosition>,
}

impl<'c> ScatterScene<'c> {
    fn new(chart: &'c ScatterChart) -> Result<ScatterScene<'c>, PlotError> {
        let dots: Vec<(f64, f64)> =
            chart.points.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite()).collect();
        let lines: Vec<Drawn> = chart
            .lines
            .iter()
            .enumerate()
            .map(|(i, s)| Drawn::new(s, series_colour(i + 1), false))
            .filter(|d| !d.points.is_empty())
            .collect();
        let all = || dots.iter().copied().chain(lines.iter().flat_map(|l| l.points.iter().copied()));
        let no_data = || PlotError::NoData { chart: chart.name.clone() };
        let x = Axis::linear(all().map(|p| p.0), axes::X_TICKS).ok_or_else(no_data)?;
        let y = Axis::linear(all().map(|p| p.1), axes::Y_TICKS).ok_or_else(no_data)?;

        let mut labels: Vec<&str> = lines.iter().filter_map(|l| l.label.as_deref()).collect();
        let legend = (labels.len() > 1).then(|| {
            if !dots.is_empty() {
                labels.insert(0, "data");
            }
            let to_plot = |(px, py): (f64, f64)| (x.fraction(px), y.fraction(py));
            let paths: Vec<Vec<(f64, f64)>> =
                lines.iter().map(|l| l.points.iter().copied().map(to_plot).collect()).collect();
            let dots: Vec<(f64, f64)> = dots.iter().copied().map(to_plot).collect();
            axes::legend_position(&paths, &dots, &labels)
        });
        Ok(ScatterScene { chart, dots, lines, x, y, legend })
    }
}

impl Scene for ScatterScene<'_> {
    type Frame = ();

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        root.fill(&WHITE).map_err(failed)?;
        let mut chart = chart_builder(root, &self.chart.title, self.y.label_width(), 24)
            .build_cartesian_2d(self.x.linear_coord(), self.y.linear_coord())
            .map_err(failed)?;
        axes::draw_mesh(&mut chart, (&self.x, &self.y), (&self.chart.x_label, &self.chart.y_label), true)?;

        let dot = dot_colour().mix(0.45).filled();
        let anno = chart.draw_series(self.dots.iter().map(|p| Circle::new(*p, 3, dot))).map_err(failed)?;
        if self.legend.is_some() && !self.dots.is_empty() {
            anno.label("data").legend(move |at| Circle::new((at.0 + 12, at.1), 3, dot));
        }
        for line in &self.lines {
            draw_series(&mut chart, line)?;
        }
        if let Some(position) = &self.legend {
            axes::draw_legend(&mut chart, position.clone())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plot::SeriesStyle;

    fn line(label: &str, style: SeriesStyle, w: f64, b: f64) -> Series {
        Series { label: label.to_string(), points: vec![(-1.0, b - w), (4.0, b + 4.0 * w)], style }
    }

    fn chart(points: Vec<(f64, f64)>, lines: Vec<Series>) -> ScatterChart {
        ScatterChart {
            name: "fit".to_string(),
            title: "Linear fit".to_string(),
            x_label: "x".to_string(),
            y_label: "y".to_string(),
            points,
            lines,
        }
    }

    fn data() -> Vec<(f64, f64)> {
        (0..40)
            .map(|i| {
                let x = -1.0 + 5.0 * i as f64 / 39.0;
                (x, 3.0 * x + 2.0 + 0.8 * (i as f64 * 2.3).sin())
            })
            .collect()
    }

    #[test]
    fn dots_and_lines_are_all_drawn() {
        let c = chart(
            data(),
            vec![
                line("learned", SeriesStyle::Bold, 2.9, 2.1),
                line("closed form", SeriesStyle::Dashed, 3.0, 2.0),
            ],
        );
        let figure = scatter_chart(&c).unwrap();
        let image = image::load_from_memory(&figure.png).unwrap();
        assert_eq!((image.width(), image.height()), (800, 520));
        assert!(figure.svg.contains(">\nLinear fit\n<"));
        // 40 dots and one legend dot.
        assert_eq!(figure.svg.matches("<circle").count(), 41);
        for (i, name) in ["learned", "closed form", "data"].iter().enumerate() {
            assert!(figure.svg.contains(&format!(">\n{name}\n<")), "legend entry {i}");
        }
        let learned = series_colour(1);
        let stroke = format!("#{:02X}{:02X}{:02X}", learned.0, learned.1, learned.2);
        assert!(figure.svg.contains(&stroke), "learned line colour");
    }

    #[test]
    fn non_finite_points_are_skipped_and_nothing_left_is_an_error() {
        let mut points = data();
        points.push((f64::NAN, 1.0));
        points.push((1.0, f64::INFINITY));
        let figure = scatter_chart(&chart(points, vec![])).unwrap();
        assert_eq!(figure.svg.matches("<circle").count(), 40);

        let err = scatter_chart(&chart(vec![(f64::NAN, 0.0)], vec![])).unwrap_err();
        assert_eq!(err.to_string(), "cannot draw chart 'fit': no finite points");
    }

    #[test]
    fn rendering_is_deterministic() {
        let c = chart(data(), vec![line("learned", SeriesStyle::Bold, 2.9, 2.1)]);
        assert_eq!(scatter_chart(&c).unwrap(), scatter_chart(&c).unwrap());
    }
}
