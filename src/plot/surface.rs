//! The loss surface of a two-parameter model as filled contour bands, with the path that
//! gradient descent took across it.

use plotters::coord::Shift;
use plotters::element::IntoDynElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::axes::{self, Axis, Notation, Span};
use super::{chart_builder, failed, render, Figure, PlotError, Scene, FONT};

/// A loss surface over two parameters with the descent path drawn on it.
pub struct SurfaceChart<'a> {
    /// Short machine name, copied into the [`Figure`] and error messages.
    pub name: String,
    /// Title drawn on top.
    pub title: String,
    /// Name of the first parameter (x axis).
    pub x_label: String,
    /// Name of the second parameter (y axis).
    pub y_label: String,
    /// The loss at (x, y); values <= 0 are clamped before taking the log, NaN leaves a hole.
    pub loss: &'a dyn Fn(f64, f64) -> f64,
    /// Parameters after each step, starting point first; non-finite points are skipped.
    pub path: Vec<(f64, f64)>,
    /// Where the loss is smallest, when known (e.g. the least-squares solution).
    pub optimum: Option<(f64, f64)>,
}

/// Draws the loss surface with the descent path.
///
/// The view holds the whole path and the optimum with a quarter of their extent as margin
/// on every side. The loss is evaluated on a grid and each cell coloured by its band of
/// log10(loss) (14 bands between the smallest and largest value seen), so band edges read
/// as contour lines; a colour bar on the right gives the loss at the edges. Fails when
/// there is neither a path point nor an optimum, or when the loss is NaN everywhere.
pub fn loss_surface(chart: &SurfaceChart) -> Result<Figure, PlotError> {
    let scene = SurfaceScene::new(chart)?;
    render(&chart.name, &chart.title, &scene).map(|(figure, _)| figure)
}

/// Grid columns and rows at which the loss is evaluated.
const GRID: (usize, usize) = (200, 130);
/// Number of colour bands.
const BANDS: usize = 14;
/// Room on the right of the plot for the colour bar, in pixels.
const COLOUR_BAR_ROOM: u32 = 104;
/// The least view width (per axis) as a fraction of the larger extent of the points.
const MIN_ASPECT: f64 = 0.3;
/// Longer paths get a marker on every few points only, so the markers stay apart.
const MAX_MARKERS: usize = 80;

/// Viridis at ten evenly spaced stops, dark (low loss) to light (high loss).
const VIRIDIS: [(u8, u8, u8); 10] = [
    (0x44, 0x01, 0x54),
    (0x48, 0x28, 0x78),
    (0x3e, 0x49, 0x89),
    (0x31, 0x68, 0x8e),
    (0x26, 0x82, 0x8e),
    (0x1f, 0x9e, 0x89),
    (0x35, 0xb7, 0x79),
    (0x6e, 0xce, 0x58),
    (0xb5, 0xde, 0x2b),
    (0xfd, 0xe7, 0x25),
];

/// The colour of band `band` (0 = lowest loss).
fn band_colour(band: usize) -> RGBColor {
    let t = band as f64 / (BANDS - 1) as f64 * (VIRIDIS.len() - 1) as f64;
    let i = (t.floor() as usize).min(VIRIDIS.len() - 2);
    let f = t - i as f64;
    let mix = |a: u8, b: u8| (a as f64 + f * (b as f64 - a as f64)).round() as u8;
    let (a, b) = (VIRIDIS[i], VIRIDIS[i + 1]);
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// The view window: the points' bounding box, at least `MIN_ASPECT` of the larger side
/// on each axis (or a unit-ish square around a single point), plus 25% on every side.
fn view_window(points: &[(f64, f64)]) -> Option<(Span, Span)> {
    let x = Span::of(points.iter().map(|p| p.0))?;
    let y = Span::of(points.iter().map(|p| p.1))?;
    let extent = x.len().max(y.len());
    let min_len = if extent > 1e-9 * x.mid().abs().max(y.mid().abs()) {
        MIN_ASPECT * extent
    } else {
        (0.5 * x.mid().abs().max(y.mid().abs())).max(1.0)
    };
    Some((x.at_least(min_len).padded(0.25), y.at_least(min_len).padded(0.25)))
}

/// The loss on the grid, quantized into bands.
struct Bands {
    /// Band of each cell, row-major from the bottom row; `None` where the loss is NaN.
    cells: Vec<Option<usize>>,
    /// log10 of the loss at the bottom of band 0 and the top of the last band.
    decades: (f64, f64),
}

impl Bands {
    /// Evaluates `loss` at the centre of every grid cell of the view.
    fn evaluate(loss: &dyn Fn(f64, f64) -> f64, x: Span, y: Span) -> Bands {
        let (cols, rows) = GRID;
        let values: Vec<f64> = (0..rows)
            .flat_map(|r| (0..cols).map(move |c| (c, r)))
            .map(|(c, r)| {
                let px = x.lo + (c as f64 + 0.5) / cols as f64 * x.len();
                let py = y.lo + (r as f64 + 0.5) / rows as f64 * y.len();
                loss(px, py)
            })
            .collect();
        // Non-positive losses take the smallest positive value seen, so the log is defined.
        let floor =
            values.iter().copied().filter(|v| *v > 0.0 && v.is_finite()).fold(f64::INFINITY, f64::min);
        let logs: Vec<f64> =
            values.iter().map(|v| if *v > 0.0 || v.is_nan() { *v } else { floor }.log10()).collect();
        let decades = Span::of(logs.iter().copied()).unwrap_or(Span { lo: 0.0, hi: 0.0 });
        let cells = logs
            .iter()
            .map(|l| {
                if l.is_nan() {
                    None
                } else if decades.len() > 0.0 {
                    let band = (decades.fraction(*l) * BANDS as f64).floor();
                    Some(band.clamp(0.0, (BANDS - 1) as f64) as usize)
                } else {
                    Some(0)
                }
            })
            .collect();
        Bands { cells, decades: (decades.lo, decades.hi) }
    }

    /// Horizontal runs of equal band: (row, first column, end column, band).
    fn runs(&self) -> Vec<(usize, usize, usize, usize)> {
        let (cols, rows) = GRID;
        let mut runs = Vec::new();
        for r in 0..rows {
            let row = &self.cells[r * cols..(r + 1) * cols];
            let mut start = 0;
            for c in 1..=cols {
                if c == cols || row[c] != row[start] {
                    if let Some(band) = row[start] {
                        runs.push((r, start, c, band));
                    }
                    start = c;
                }
            }
        }
        runs
    }

    /// The loss at the lower edge of band `edge` (`BANDS` gives the top edge).
    fn edge_loss(&self, edge: usize) -> f64 {
        let (lo, hi) = self.decades;
        10f64.powf(lo + (hi - lo) * edge as f64 / BANDS as f64)
    }
}

/// Where the surface was drawn; only the tests read it, to find points in the pixels.
#[derive(Clone, Debug)]
#[cfg_attr(not(test), allow(dead_code))]
struct View {
    /// Parameter range on the x axis.
    x: Span,
    /// Parameter range on the y axis.
    y: Span,
    /// Pixel columns and rows of the plot area.
    plot_px: (std::ops::Range<i32>, std::ops::Range<i32>),
}

/// A validated surface chart: window, bands and legend placement.
struct SurfaceScene<'c, 'a> {
    chart: &'c SurfaceChart<'a>,
    path: Vec<(f64, f64)>,
    optimum: Option<(f64, f64)>,
    x: Span,
    y: Span,
    bands: Bands,
    legend: SeriesLabelPosition,
}

impl<'c, 'a> SurfaceScene<'c, 'a> {
    fn new(chart: &'c SurfaceChart<'a>) -> Result<SurfaceScene<'c, 'a>, PlotError> {
        let finite = |p: &(f64, f64)| p.0.is_finite() && p.1.is_finite();
        let path: Vec<(f64, f64)> = chart.path.iter().copied().filter(finite).collect();
        let optimum = chart.optimum.filter(finite);
        let mut shown = path.clone();
        shown.extend(optimum);
        let (x, y) = view_window(&shown).ok_or_else(|| PlotError::NoData { chart: chart.name.clone() })?;
        let bands = Bands::evaluate(chart.loss, x, y);
        if bands.cells.iter().all(Option::is_none) {
            return Err(PlotError::UndefinedSurface { chart: chart.name.clone() });
        }
        let to_plot = |(px, py): (f64, f64)| (x.fraction(px), y.fraction(py));
        let labels = legend_labels(&path, optimum.is_some());
        let legend = axes::legend_position(
            &[path.iter().copied().map(to_plot).collect()],
            &optimum.map(to_plot).into_iter().collect::<Vec<_>>(),
            &labels,
        );
        Ok(SurfaceScene { chart, path, optimum, x, y, bands, legend })
    }
}

/// Legend entries in drawing order.
fn legend_labels(path: &[(f64, f64)], optimum: bool) -> Vec<&'static str> {
    let mut labels = Vec::new();
    if path.len() > 1 {
        labels.push("descent path");
    }
    if !path.is_empty() {
        labels.push("start");
    }
    if optimum {
        labels.push("least-squares optimum");
    }
    labels
}

/// A five-pointed star around (0, 0) in pixels, for the optimum.
fn star(outer: f64) -> Vec<(i32, i32)> {
    (0..10)
        .map(|i| {
            let r = if i % 2 == 0 { outer } else { 0.45 * outer };
            let angle = std::f64::consts::PI * (i as f64 / 5.0 - 0.5);
            ((r * angle.cos()).round() as i32, (r * angle.sin()).round() as i32)
        })
        .collect()
}

/// The star's rim as a closed polyline.
fn star_outline(outer: f64) -> Vec<(i32, i32)> {
    let mut outline = star(outer);
    outline.push(outline[0]);
    outline
}

/// Colour of the start marker.
const START: RGBColor = RGBColor(255, 140, 0);
/// Colour of the optimum star.
const OPTIMUM: RGBColor = RGBColor(230, 30, 40);

/// The path as drawn: a black line under a white one, so it shows on dark and light bands.
fn path_glyph<'a, DB: DrawingBackend + 'a>(at: (i32, i32)) -> impl IntoDynElement<'a, DB, (i32, i32)> {
    EmptyElement::at(at)
        + PathElement::new(vec![(0, 0), (24, 0)], BLACK.stroke_width(4))
        + PathElement::new(vec![(0, 0), (24, 0)], WHITE.stroke_width(2))
        + Circle::new((12, 0), 3, WHITE.filled())
        + Circle::new((12, 0), 3, BLACK)
}

/// The start marker: an orange disc with a black rim.
fn start_glyph<'a, DB: DrawingBackend + 'a>(at: (i32, i32)) -> impl IntoDynElement<'a, DB, (i32, i32)> {
    EmptyElement::at(at) + Circle::new((0, 0), 6, START.filled()) + Circle::new((0, 0), 6, BLACK)
}

/// The optimum marker: a red star with a black rim.
fn optimum_glyph<'a, DB: DrawingBackend + 'a>(at: (i32, i32)) -> impl IntoDynElement<'a, DB, (i32, i32)> {
    EmptyElement::at(at)
        + Polygon::new(star(10.0), OPTIMUM.filled())
        + PathElement::new(star_outline(10.0), BLACK.stroke_width(1))
}

impl Scene for SurfaceScene<'_, '_> {
    type Frame = View;

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<View, String> {
        root.fill(&WHITE).map_err(failed)?;
        let x = Axis::over(self.x, axes::X_TICKS);
        let y = Axis::over(self.y, axes::Y_TICKS);
        let mut chart = chart_builder(root, &self.chart.title, y.label_width(), COLOUR_BAR_ROOM)
            .build_cartesian_2d(x.linear_coord(), y.linear_coord())
            .map_err(failed)?;

        // Bands: one rectangle per horizontal run of equal band.
        let (cols, rows) = GRID;
        let cell_w = self.x.len() / cols as f64;
        let cell_h = self.y.len() / rows as f64;
        chart
            .draw_series(self.bands.runs().into_iter().map(|(r, c0, c1, band)| {
                let x0 = self.x.lo + c0 as f64 * cell_w;
                let x1 = self.x.lo + c1 as f64 * cell_w;
                let y0 = self.y.lo + r as f64 * cell_h;
                let y1 = y0 + cell_h;
                Rectangle::new([(x0, y0), (x1, y1)], band_colour(band).filled())
            }))
            .map_err(failed)?;
        axes::draw_mesh(&mut chart, (&x, &y), (&self.chart.x_label, &self.chart.y_label), false)?;

        // The descent path, its start and the optimum, with their legend entries.
        if self.path.len() > 1 {
            let points = self.path.iter().copied();
            // Segment by segment: a polyline's mitred joins shoot spikes across the chart where a
            // diverging descent reverses direction at every step.
            let segments = |style: ShapeStyle| {
                self.path.windows(2).map(move |w| PathElement::new(vec![w[0], w[1]], style))
            };
            chart.draw_series(segments(BLACK.stroke_width(4))).map_err(failed)?;
            chart.draw_series(segments(WHITE.stroke_width(2))).map_err(failed)?;
            let stride = self.path.len().div_ceil(MAX_MARKERS);
            chart
                .draw_series(points.step_by(stride).map(|p| {
                    EmptyElement::at(p)
                        + Circle::new((0, 0), 3, WHITE.filled())
                        + Circle::new((0, 0), 3, BLACK)
                }))
                .map_err(failed)?
                .label("descent path")
                .legend(path_glyph);
        }
        if let Some(&start) = self.path.first() {
            chart
                .draw_series(std::iter::once(
                    EmptyElement::at(start)
                        + Circle::new((0, 0), 6, START.filled())
                        + Circle::new((0, 0), 6, BLACK),
                ))
                .map_err(failed)?
                .label("start")
                .legend(start_glyph);
        }
        if let Some(optimum) = self.optimum {
            chart
                .draw_series(std::iter::once(
                    EmptyElement::at(optimum)
                        + Polygon::new(star(10.0), OPTIMUM.filled())
                        + PathElement::new(star_outline(10.0), BLACK.stroke_width(1)),
                ))
                .map_err(failed)?
                .label("least-squares optimum")
                .legend(optimum_glyph);
        }
        axes::draw_legend(&mut chart, self.legend.clone())?;

        let plot_px = chart.plotting_area().get_pixel_range();
        self.draw_colour_bar(root, &plot_px)?;
        Ok(View { x: self.x, y: self.y, plot_px })
    }
}

impl SurfaceScene<'_, '_> {
    /// The colour bar right of the plot: one box per band, loss at every other edge.
    fn draw_colour_bar<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        plot_px: &(std::ops::Range<i32>, std::ops::Range<i32>),
    ) -> Result<(), String> {
        let (xs, ys) = plot_px;
        let (left, right) = (xs.end + 18, xs.end + 34);
        let height = (ys.end - ys.start) as f64;
        let edge_y = |edge: usize| ys.end - (height * edge as f64 / BANDS as f64).round() as i32;
        for band in 0..BANDS {
            let rect =
                Rectangle::new([(left, edge_y(band + 1)), (right, edge_y(band))], band_colour(band).filled());
            root.draw(&rect).map_err(failed)?;
        }
        root.draw(&Rectangle::new([(left, ys.start), (right, ys.end)], BLACK.mix(0.5))).map_err(failed)?;

        let label = TextStyle::from((FONT, 12).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
        let edges: Vec<(usize, f64)> =
            (0..=BANDS).step_by(2).map(|edge| (edge, self.bands.edge_loss(edge))).collect();
        let values: Vec<f64> = edges.iter().map(|e| e.1).collect();
        let notation = Notation::new(&values, 3);
        for (edge, loss) in edges {
            let text = notation.format(loss);
            root.draw(&Text::new(text, (right + 5, edge_y(edge)), label.clone())).map_err(failed)?;
        }
        let title = TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
        root.draw(&Text::new("loss", ((left + right) / 2, ys.start - 6), title)).map_err(failed)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plot::render;

    fn bowl(w: f64, b: f64) -> f64 {
        (w - 3.0).powi(2) + (b - 2.0).powi(2) + 0.01
    }

    fn chart<'a>(loss: &'a dyn Fn(f64, f64) -> f64, path: Vec<(f64, f64)>) -> SurfaceChart<'a> {
        SurfaceChart {
            name: "surface".to_string(),
            title: "Loss surface".to_string(),
            x_label: "w".to_string(),
            y_label: "b".to_string(),
            loss,
            path,
            optimum: Some((3.0, 2.0)),
        }
    }

    /// A path from (0, 0) that creeps towards (3, 2).
    fn descent() -> Vec<(f64, f64)> {
        let mut p = (0.0, 0.0);
        let mut path = vec![p];
        for _ in 0..12 {
            p = (p.0 + 0.35 * (3.0 - p.0), p.1 + 0.35 * (2.0 - p.1));
            path.push(p);
        }
        path
    }

    /// The pixel of parameter point `p` in the rendered view.
    fn pixel_of(view: &View, p: (f64, f64)) -> (u32, u32) {
        let (xs, ys) = &view.plot_px;
        let fx = view.x.fraction(p.0);
        let fy = view.y.fraction(p.1);
        let px = xs.start as f64 + fx * (xs.end - xs.start - 1) as f64;
        let py = ys.end as f64 - 1.0 - fy * (ys.end - ys.start - 1) as f64;
        (px.round() as u32, py.round() as u32)
    }

    #[test]
    fn bands_exist_and_the_optimum_is_darker_than_the_corner() {
        let loss = bowl;
        let c = chart(&loss, descent());
        let scene = SurfaceScene::new(&c).unwrap();
        let (figure, view) = render(&c.name, &c.title, &scene).unwrap();
        let image = image::load_from_memory(&figure.png).unwrap().to_rgb8();
        assert_eq!(image.dimensions(), (800, 520));

        // The window holds the path and the optimum with a margin.
        assert!(view.x.lo < -0.5 && view.x.hi > 3.5, "{:?}", view.x);
        assert!(view.y.lo < -0.3 && view.y.hi > 2.3, "{:?}", view.y);

        // Many band colours across the plot area.
        let (xs, ys) = &view.plot_px;
        let mut colours: Vec<[u8; 3]> = (ys.start..ys.end)
            .step_by(4)
            .flat_map(|y| (xs.start..xs.end).step_by(4).map(move |x| (x, y)))
            .map(|(x, y)| image.get_pixel(x as u32, y as u32).0)
            .collect();
        colours.sort();
        colours.dedup();
        let bands: Vec<[u8; 3]> = (0..BANDS).map(band_colour).map(|c| [c.0, c.1, c.2]).collect();
        let seen = bands.iter().filter(|b| colours.contains(b)).count();
        assert!(seen >= 10, "only {seen} band colours visible");

        // The optimum's pixel differs from the corner's. Beyond the star's 10 px radius
        // the optimum sits in one of the lowest bands, the corner in a high one.
        let (ox, oy) = pixel_of(&view, (3.0, 2.0));
        let corner = image.get_pixel(xs.start as u32 + 3, ys.end as u32 - 4).0;
        assert_ne!(image.get_pixel(ox, oy).0, corner);
        let band_of = |rgb: [u8; 3]| bands.iter().position(|b| *b == rgb);
        let near = band_of(image.get_pixel(ox + 12, oy).0);
        assert!(matches!(near, Some(b) if b <= 1), "band beside the optimum: {near:?}");
        let far = band_of(corner);
        assert!(matches!(far, Some(b) if b >= BANDS / 2), "corner band: {far:?}");
    }

    #[test]
    fn svg_has_the_title_path_and_legend() {
        let loss = bowl;
        let figure = loss_surface(&chart(&loss, descent())).unwrap();
        assert!(figure.svg.contains(">\nLoss surface\n<"));
        for label in ["descent path", "start", "least-squares optimum"] {
            assert!(figure.svg.contains(&format!(">\n{label}\n<")), "{label}");
        }
        assert!(figure.svg.contains("<polygon"), "optimum star");
    }

    #[test]
    fn a_single_point_path_gets_a_sensible_window() {
        let (x, y) = view_window(&[(0.0, 0.0)]).unwrap();
        assert!(x.len() >= 1.0 && y.len() >= 1.0, "{x:?} {y:?}");
        let (x, y) = view_window(&[(100.0, 50.0)]).unwrap();
        assert!(x.lo < 100.0 && x.hi > 100.0 && x.len() >= 50.0, "{x:?}");
        assert!(y.lo < 50.0 && y.hi > 50.0, "{y:?}");
        // A path along one axis still gets height.
        let (_, y) = view_window(&[(0.0, 1.0), (4.0, 1.0)]).unwrap();
        assert!(y.len() >= 1.0, "{y:?}");

        let loss = bowl;
        let mut c = chart(&loss, vec![(1.0, 1.0)]);
        c.optimum = None;
        assert!(loss_surface(&c).is_ok());
    }

    #[test]
    fn zero_negative_and_nan_losses_are_handled() {
        // Negative in one half, NaN in a disc, zero on a line: still renders.
        let loss = |w: f64, b: f64| {
            if (w - 1.0).hypot(b - 1.0) < 0.5 {
                f64::NAN
            } else if w.round() == 2.0 {
                0.0
            } else {
                w * b
            }
        };
        let figure = loss_surface(&chart(&loss, descent())).unwrap();
        assert!(figure.png.starts_with(b"\x89PNG"));

        let flat = |_: f64, _: f64| 0.0;
        assert!(loss_surface(&chart(&flat, descent())).is_ok());

        let nan = |_: f64, _: f64| f64::NAN;
        let err = loss_surface(&chart(&nan, descent())).unwrap_err();
        assert!(matches!(err, PlotError::UndefinedSurface { .. }), "{err}");
    }

    #[test]
    fn nothing_to_frame_is_an_error() {
        let loss = bowl;
        let mut c = chart(&loss, vec![(f64::NAN, 0.0)]);
        c.optimum = None;
        let err = loss_surface(&c).unwrap_err();
        assert_eq!(err.to_string(), "cannot draw chart 'surface': no finite points");
    }

    #[test]
    fn rendering_is_deterministic() {
        let loss = bowl;
        let c = chart(&loss, descent());
        assert_eq!(loss_surface(&c).unwrap(), loss_surface(&c).unwrap());
    }
}
