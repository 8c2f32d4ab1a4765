//! Axis ranges, tick marks, tick labels and legend placement shared by the charts.

use std::ops::Range;

use plotters::chart::{ChartContext, SeriesLabelPosition};
use plotters::coord::cartesian::Cartesian2d;
use plotters::coord::combinators::{LogCoord, WithKeyPoints};
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::{failed, FONT};

/// Fraction of an axis added on each side of the data.
const MARGIN: f64 = 0.04;
/// About how many ticks an x axis gets.
pub(super) const X_TICKS: usize = 8;
/// About how many ticks a y axis gets.
pub(super) const Y_TICKS: usize = 6;

/// A closed interval of one axis, in data units.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Span {
    /// Lower end.
    pub lo: f64,
    /// Upper end.
    pub hi: f64,
}

impl Span {
    /// The smallest span holding every finite value; `None` when there is none.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Span> {
        values.into_iter().filter(|v| v.is_finite()).fold(None, |span: Option<Span>, v| {
            Some(match span {
                None => Span { lo: v, hi: v },
                Some(s) => Span { lo: s.lo.min(v), hi: s.hi.max(v) },
            })
        })
    }

    /// Length of the span.
    pub fn len(self) -> f64 {
        self.hi - self.lo
    }

    /// Middle of the span.
    pub fn mid(self) -> f64 {
        0.5 * (self.lo + self.hi)
    }

    /// True when the span is a single value (up to rounding), which no axis can show.
    pub fn is_degenerate(self) -> bool {
        self.len() <= 1e-9 * self.lo.abs().max(self.hi.abs())
    }

    /// The span centred on the same middle with at least `min_len` length.
    pub fn at_least(self, min_len: f64) -> Span {
        if self.len() >= min_len {
            return self;
        }
        let mid = self.mid();
        Span { lo: mid - 0.5 * min_len, hi: mid + 0.5 * min_len }
    }

    /// The span grown by `fraction` of its length on each side.
    pub fn padded(self, fraction: f64) -> Span {
        let pad = fraction * self.len();
        Span { lo: self.lo - pad, hi: self.hi + pad }
    }

    /// Where `v` falls in the span: 0 at `lo`, 1 at `hi`.
    pub fn fraction(self, v: f64) -> f64 {
        (v - self.lo) / self.len()
    }

    /// The span as a plotters range.
    pub fn range(self) -> Range<f64> {
        self.lo..self.hi
    }
}

/// One axis of a chart: its span, tick marks and scale.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Axis {
    /// The data range shown.
    pub span: Span,
    /// Labelled ticks, inside the span.
    pub ticks: Vec<f64>,
    /// Logarithmic scale (the span is then positive).
    pub log: bool,
    /// How the tick labels are written.
    pub notation: Notation,
}

impl Axis {
    /// An axis over exactly `span` with the given ticks.
    fn with_ticks(span: Span, ticks: Vec<f64>, log: bool) -> Axis {
        let notation = Notation::for_ticks(&ticks);
        Axis { span, ticks, log, notation }
    }

    /// A linear axis over exactly `span`, with about `target` ticks.
    pub fn over(span: Span, target: usize) -> Axis {
        Axis::with_ticks(span, linear_ticks(span, target), false)
    }

    /// A linear axis for `values`: their range (widened when degenerate) with a margin.
    pub fn linear(values: impl IntoIterator<Item = f64>, target: usize) -> Option<Axis> {
        let span = Span::of(values)?;
        let span = if span.is_degenerate() {
            let half = if span.mid() == 0.0 { 1.0 } else { 0.1 * span.mid().abs() };
            span.at_least(2.0 * half)
        } else {
            span
        };
        Some(Axis::over(span.padded(MARGIN), target))
    }

    /// A log axis for the finite positive `values`; others are ignored.
    ///
    /// A degenerate range is widened to a factor of 2 either way; the margin is taken in
    /// decades, so both ends stay positive.
    pub fn log(values: impl IntoIterator<Item = f64>) -> Option<Axis> {
        let decades = Span::of(values.into_iter().filter(|v| *v > 0.0).map(f64::log10))?;
        let decades = if decades.len() < 1e-9 { decades.at_least(0.6) } else { decades };
        let decades = decades.padded(MARGIN);
        let span = Span { lo: 10f64.powf(decades.lo), hi: 10f64.powf(decades.hi) };
        Some(Axis::with_ticks(span, log_ticks(span), true))
    }

    /// The label of tick `v`.
    pub fn label(&self, v: f64) -> String {
        self.notation.format(v)
    }

    /// Where `v` falls along the axis: 0 at the low end, 1 at the high end.
    pub fn fraction(&self, v: f64) -> f64 {
        if self.log {
            (v.log10() - self.span.lo.log10()) / (self.span.hi.log10() - self.span.lo.log10())
        } else {
            self.span.fraction(v)
        }
    }

    /// The plotters coordinate of a linear axis, with our ticks.
    pub fn linear_coord(&self) -> Ticked {
        Ticked {
            linear: self.span.range().into(),
            ticks: self.ticks.clone(),
            minor: linear_ticks(self.span, 5 * self.ticks.len().max(1)),
        }
    }

    /// The plotters coordinate of a log axis, with our ticks.
    pub fn log_coord(&self) -> WithKeyPoints<LogCoord<f64>> {
        self.span.range().log_scale().with_key_points(self.ticks.clone())
    }

    /// Width in pixels that the tick labels and the title of this axis need when it is
    /// the y axis.
    pub fn label_width(&self) -> u32 {
        let longest = self.ticks.iter().map(|t| self.label(*t).chars().count()).max().unwrap_or(1);
        (40.0 + 8.5 * longest as f64).round() as u32
    }
}

/// A linear plotters coordinate whose ticks (and grid lines) are ours.
///
/// plotters' own `WithKeyPoints` over a linear range cannot take a label formatter, so
/// this small wrapper stands in for it.
pub(super) struct Ticked {
    linear: RangedCoordf64,
    ticks: Vec<f64>,
    minor: Vec<f64>,
}

impl Ranged for Ticked {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.linear.map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            self.minor.clone()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.linear.range()
    }
}

/// Evenly spaced "round" ticks (1, 2 or 5 times a power of ten) inside `span`.
pub(super) fn linear_ticks(span: Span, target: usize) -> Vec<f64> {
    let raw = span.len() / target.max(1) as f64;
    let power = 10f64.powf(raw.log10().floor());
    let step =
        [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * power).find(|step| *step >= raw).unwrap_or(10.0 * power);
    let first = (span.lo / step).ceil();
    let last = (span.hi / step).floor();
    if !(step > 0.0 && first.is_finite() && last.is_finite() && last - first <= 1000.0) {
        return Vec::new(); // a span no axis can show sensibly; draw it without ticks
    }
    (first as i64..=last as i64).map(|i| i as f64 * step).collect()
}

/// Ticks for a log axis: powers of ten, with 2 and 5 (or every digit) in between when
/// there is room; a range inside one decade falls back to linear ticks.
pub(super) fn log_ticks(span: Span) -> Vec<f64> {
    const MAX_TICKS: usize = 10;
    let first = span.lo.log10().floor() as i32;
    let last = span.hi.log10().ceil() as i32;
    let in_span = |v: &f64| *v >= span.lo * (1.0 - 1e-9) && *v <= span.hi * (1.0 + 1e-9);
    let with = |mantissas: &[f64], every: i32| -> Vec<f64> {
        (first..=last)
            .filter(|k| k.rem_euclid(every) == 0)
            .flat_map(|k| mantissas.iter().map(move |m| m * 10f64.powi(k)))
            .filter(in_span)
            .collect()
    };
    for mantissas in [&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0][..], &[1.0, 2.0, 5.0], &[1.0]] {
        let ticks = with(mantissas, 1);
        if ticks.len() <= MAX_TICKS {
            return if ticks.len() >= 3 { ticks } else { linear_ticks(span, 5) };
        }
    }
    let every = (last - first) / MAX_TICKS as i32 + 1;
    with(&[1.0], every)
}

/// How the numbers on one axis (or colour bar) are written: the same number of
/// significant digits and the same notation for all, so labels line up and compare.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Notation {
    /// Significant digits.
    pub digits: usize,
    /// Scientific notation (`2.5e-4`) instead of plain decimals.
    pub scientific: bool,
}

impl Notation {
    /// Plain decimals unless a nonzero value is below 0.001 or at least 100000.
    pub fn new(values: &[f64], digits: usize) -> Notation {
        let scientific = values.iter().any(|v| *v != 0.0 && !(1e-3..1e5).contains(&v.abs()));
        Notation { digits, scientific }
    }

    /// The fewest digits that write every tick to within a millionth of the gap between
    /// neighbouring ticks, so no two labels read the same.
    pub fn for_ticks(ticks: &[f64]) -> Notation {
        let gap =
            ticks.windows(2).map(|w| (w[1] - w[0]).abs()).filter(|g| *g > 0.0).fold(f64::INFINITY, f64::min);
        let exact = |digits: usize| {
            ticks.iter().all(|t| {
                let tolerance = if gap.is_finite() { 1e-6 * gap } else { 1e-9 * t.abs() };
                (round_to(*t, digits) - t).abs() <= tolerance
            })
        };
        let digits = (1..=15).find(|d| exact(*d)).unwrap_or(15);
        Notation::new(ticks, digits)
    }

    /// Writes `v`, dropping trailing zeros.
    pub fn format(self, v: f64) -> String {
        if v == 0.0 {
            return "0".to_string();
        }
        let rounded = round_to(v, self.digits);
        if self.scientific {
            format!("{rounded:e}")
        } else {
            format!("{rounded}")
        }
    }
}

/// `v` rounded to `digits` significant digits.
fn round_to(v: f64, digits: usize) -> f64 {
    format!("{:.*e}", digits.saturating_sub(1), v).parse().unwrap_or(v)
}

/// Draws the axes, tick labels, axis titles and (when `grid`) light grid lines.
///
/// `x` and `y` are the axes the chart was built with; they write the tick labels.
pub(super) fn draw_mesh<DB, X, Y>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<X, Y>>,
    (x, y): (&Axis, &Axis),
    (x_label, y_label): (&str, &str),
    grid: bool,
) -> Result<(), String>
where
    DB: DrawingBackend,
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let x_tick = |v: &f64| x.label(*v);
    let y_tick = |v: &f64| y.label(*v);
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(x_label)
        .y_desc(y_label)
        .x_label_formatter(&x_tick)
        .y_label_formatter(&y_tick)
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 15))
        .bold_line_style(BLACK.mix(0.12))
        .light_line_style(BLACK.mix(0.04));
    if !grid {
        mesh.disable_mesh();
    }
    mesh.draw().map_err(failed)
}

/// Corners and edges a legend may take, best first when equally free.
const LEGEND_SPOTS: [SeriesLabelPosition; 6] = [
    SeriesLabelPosition::UpperRight,
    SeriesLabelPosition::UpperLeft,
    SeriesLabelPosition::LowerLeft,
    SeriesLabelPosition::LowerRight,
    SeriesLabelPosition::UpperMiddle,
    SeriesLabelPosition::LowerMiddle,
];

/// The legend spot that covers the fewest data points.
///
/// `lines` are polylines and `dots` single points, both in plot fractions (0..1 on each
/// axis, y up); segments are sampled so a line crossing a corner counts as data there.
/// The legend size is estimated from its entry count and longest label.
pub(super) fn legend_position(
    lines: &[Vec<(f64, f64)>],
    dots: &[(f64, f64)],
    labels: &[&str],
) -> SeriesLabelPosition {
    // Rough size of the plot area and of a legend row, in pixels.
    const PLOT_W: f64 = 660.0;
    const PLOT_H: f64 = 400.0;
    let longest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0) as f64;
    let w = (56.0 + 7.5 * longest) / PLOT_W;
    let h = (14.0 + 20.0 * labels.len() as f64) / PLOT_H;
    let pad = 0.02;

    let mut samples: Vec<(f64, f64)> = dots.to_vec();
    for line in lines {
        samples.extend(line.first());
        for pair in line.windows(2) {
            let ((x0, y0), (x1, y1)) = (pair[0], pair[1]);
            let steps = (((x1 - x0).hypot(y1 - y0) / 0.01).ceil() as usize).clamp(1, 100);
            samples.extend((1..=steps).map(|i| {
                let t = i as f64 / steps as f64;
                (x0 + t * (x1 - x0), y0 + t * (y1 - y0))
            }));
        }
    }

    let covered = |spot: &SeriesLabelPosition| {
        let (x0, y0) = match spot {
            SeriesLabelPosition::UpperLeft => (0.0, 1.0 - h),
            SeriesLabelPosition::LowerLeft => (0.0, 0.0),
            SeriesLabelPosition::LowerRight => (1.0 - w, 0.0),
            SeriesLabelPosition::UpperMiddle => (0.5 - 0.5 * w, 1.0 - h),
            SeriesLabelPosition::LowerMiddle => (0.5 - 0.5 * w, 0.0),
            _ => (1.0 - w, 1.0 - h),
        };
        samples
            .iter()
            .filter(|(x, y)| *x >= x0 - pad && *x <= x0 + w + pad && *y >= y0 - pad && *y <= y0 + h + pad)
            .count()
    };
    let mut best = LEGEND_SPOTS[0].clone();
    let mut fewest = usize::MAX;
    for spot in LEGEND_SPOTS {
        let n = covered(&spot);
        if n < fewest {
            fewest = n;
            best = spot;
        }
    }
    best
}

/// Draws the legend at `position` with the shared look.
pub(super) fn draw_legend<'a, DB, X, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    position: SeriesLabelPosition,
) -> Result<(), String>
where
    DB: DrawingBackend + 'a,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    chart
        .configure_series_labels()
        .position(position)
        .margin(10)
        .legend_area_size(34)
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.88))
        .border_style(BLACK.mix(0.35))
        .draw()
        .map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_value_axis_is_widened_around_it() {
        let span = Axis::linear([5.0, 5.0], 6).unwrap().span;
        assert!(span.lo < 5.0 && span.hi > 5.0 && span.len() > 0.5, "{span:?}");
        let zero = Axis::linear([0.0], 6).unwrap().span;
        assert!(zero.lo <= -1.0 && zero.hi >= 1.0, "{zero:?}");
        let log = Axis::log([0.5]).unwrap().span;
        assert!(log.lo > 0.0 && log.lo < 0.5 && log.hi > 0.5, "{log:?}");
    }

    #[test]
    fn axes_skip_non_finite_and_log_skips_non_positive() {
        assert_eq!(Axis::linear([f64::NAN, f64::INFINITY], 6), None);
        assert_eq!(Axis::log([0.0, -1.0, f64::NAN]), None);
        let span = Axis::log([-3.0, 0.0, 0.01, 10.0]).unwrap().span;
        assert!(span.lo > 0.0 && span.lo < 0.01 && span.hi > 10.0, "{span:?}");
    }

    #[test]
    fn log_ticks_are_round_and_inside_the_span() {
        let wide = log_ticks(Span { lo: 1e-4, hi: 20.0 });
        assert_eq!(wide.len(), 6, "{wide:?}");
        assert!((wide[0] - 1e-4).abs() < 1e-12 && (wide[5] - 10.0).abs() < 1e-9);
        let narrow = log_ticks(Span { lo: 0.31, hi: 0.38 });
        assert!(narrow.len() >= 3, "{narrow:?}");
        assert!(narrow.iter().all(|t| (0.31..=0.38).contains(t)), "{narrow:?}");
        let huge = log_ticks(Span { lo: 1e-30, hi: 1e30 });
        assert!(huge.len() <= 10 && huge.len() >= 3, "{huge:?}");
    }

    #[test]
    fn tick_labels_are_short_distinct_and_share_one_notation() {
        let labels = |ticks: &[f64]| {
            let n = Notation::for_ticks(ticks);
            ticks.iter().map(|t| n.format(*t)).collect::<Vec<_>>()
        };
        assert_eq!(labels(&[0.0, 0.1, 0.2, 0.30000000000000004]), ["0", "0.1", "0.2", "0.3"]);
        assert_eq!(labels(&[0.0, 0.5, 1.0, 1.5]), ["0", "0.5", "1", "1.5"]);
        assert_eq!(labels(&[10000.0, 12000.0]), ["10000", "12000"]);
        assert_eq!(labels(&[5e-4, 1e-3, 2e-3]), ["5e-4", "1e-3", "2e-3"]);
        assert_eq!(labels(&[0.0, 250000.0]), ["0", "2.5e5"]);
        let close = labels(&[1.00001e-4, 1.000015e-4, 1.00002e-4]);
        assert_eq!(close, ["1.00001e-4", "1.000015e-4", "1.00002e-4"]);
        let colour_bar = Notation::new(&[0.0113, 2.5], 3);
        assert_eq!(colour_bar.format(0.011345), "0.0113");
    }

    #[test]
    fn legend_avoids_the_corner_with_data() {
        // A falling loss curve fills the upper left and lower right, not the upper right.
        let falling = vec![(0.0, 1.0), (0.2, 0.3), (1.0, 0.05)];
        assert_eq!(legend_position(&[falling], &[], &["loss", "smoothed"]), SeriesLabelPosition::UpperRight);
        // A rising curve passes through the upper right.
        let rising = vec![(0.0, 0.0), (1.0, 1.0)];
        let spot = legend_position(&[rising], &[], &["a", "b"]);
        assert!(matches!(spot, SeriesLabelPosition::UpperLeft), "{spot:?}");
    }
}
