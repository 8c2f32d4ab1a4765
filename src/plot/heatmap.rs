//! Heatmaps: a matrix of numbers as a grid of coloured cells, such as a confusion matrix
//! (rows the true class, columns the predicted one).

use std::ops::Range;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontTransform;

use super::axes::{self, Notation, Span};
use super::{chart_builder, failed, render, Figure, PlotError, Scene, FONT};

/// A matrix of numbers drawn as coloured cells, e.g. a confusion matrix.
#[derive(Clone, Debug)]
pub struct HeatmapChart {
    /// Short machine name, copied into the [`Figure`] and error messages.
    pub name: String,
    /// Title drawn on top.
    pub title: String,
    /// Text under the column labels (for a confusion matrix: the predicted class).
    pub x_label: String,
    /// Text left of the row labels (for a confusion matrix: the true class).
    pub y_label: String,
    /// One label per row, top to bottom; labels over 20 characters are shortened with "…".
    pub row_labels: Vec<String>,
    /// One label per column, left to right; shortened like the row labels.
    pub col_labels: Vec<String>,
    /// The matrix, row by row (`values[row][col]`); non-finite cells are drawn grey.
    pub values: Vec<Vec<f64>>,
    /// Also print each cell's value: integers in full, other values to 3 significant
    /// digits. Matrices with more than 15 rows or columns, or cells too small for the text,
    /// get no values printed.
    pub annotate: bool,
}

/// Draws a heatmap.
///
/// Row 0 is at the top and column 0 on the left, as a confusion matrix is printed. The
/// cells are as large as the page allows (square for a square matrix) and coloured on a
/// sequential scale from the smallest finite value (light) to the largest (dark); a colour
/// bar on the right reads the scale off. Column labels are turned upright when they are
/// wider than a column.
/// Fails when the matrix is empty or ragged, when the number of row or column labels does
/// not match it, or when no value is finite.
pub fn heatmap(chart: &HeatmapChart) -> Result<Figure, PlotError> {
    let scene = HeatmapScene::new(chart)?;
    render(&chart.name, &chart.title, &scene).map(|(figure, _)| figure)
}

/// Labels longer than this many characters are shortened.
const MAX_LABEL_CHARS: usize = 20;
/// Matrices with more rows or columns than this get no printed values.
const MAX_ANNOTATED: usize = 15;
/// Font sizes of the printed values: the largest, and the smallest worth printing.
const ANNOTATION_FONT: (f64, f64) = (20.0, 8.0);
/// How much longer than high (or high than long) the cells of a matrix that is not square
/// may be, when the page has room for it; a square matrix gets square cells.
const MAX_ASPECT: f64 = 2.0;
/// Gap between the grid and its tick labels, in pixels.
const LABEL_GAP: i32 = 7;
/// Room left of the row labels for the y axis title, in pixels.
const Y_TITLE_ROOM: i32 = 26;
/// Room under the column labels for the x axis title, in pixels.
const X_TITLE_ROOM: i32 = 28;
/// Gap between the grid and the colour bar, in pixels.
const BAR_GAP: i32 = 18;
/// Width of the colour bar, in pixels.
const BAR_WIDTH: i32 = 16;
/// Boxes the colour bar's gradient is drawn with.
const BAR_STEPS: usize = 64;
/// Colour of cells without a finite value.
const MISSING: RGBColor = RGBColor(0xd0, 0xd0, 0xd0);

/// Viridis at ten evenly spaced stops, light (low values) to dark (high values): the
/// surface chart's colours in reverse order.
const SCALE: [(u8, u8, u8); 10] = [
    (0xfd, 0xe7, 0x25),
    (0xb5, 0xde, 0x2b),
    (0x6e, 0xce, 0x58),
    (0x35, 0xb7, 0x79),
    (0x1f, 0x9e, 0x89),
    (0x26, 0x82, 0x8e),
    (0x31, 0x68, 0x8e),
    (0x3e, 0x49, 0x89),
    (0x48, 0x28, 0x78),
    (0x44, 0x01, 0x54),
];

/// The colour at fraction `t` of the scale: 0 light (smallest value), 1 dark (largest).
fn scale_colour(t: f64) -> RGBColor {
    let t = if t.is_finite() { t.clamp(0.0, 1.0) } else { 0.0 };
    let t = t * (SCALE.len() - 1) as f64;
    let i = (t.floor() as usize).min(SCALE.len() - 2);
    let f = t - i as f64;
    let mix = |a: u8, b: u8| (a as f64 + f * (b as f64 - a as f64)).round() as u8;
    let (a, b) = (SCALE[i], SCALE[i + 1]);
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Perceived brightness of a colour, 0 (black) to 255 (white).
fn luma(RGBColor(r, g, b): RGBColor) -> f64 {
    0.299 * r as f64 + 0.587 * g as f64 + 0.114 * b as f64
}

/// Text colour that reads on `background`: black on light colours, white on dark ones.
fn text_colour(background: RGBColor) -> RGBColor {
    if luma(background) > 140.0 {
        BLACK
    } else {
        WHITE
    }
}

/// A cell's value as printed: integers in full, other values as `notation` writes them.
fn cell_text(v: f64, notation: Notation) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        notation.format(v)
    }
}

/// `label`, shortened with "…" when it has more than `MAX_LABEL_CHARS` characters.
fn shorten(label: &str) -> String {
    if label.chars().count() <= MAX_LABEL_CHARS {
        return label.to_string();
    }
    let kept: String = label.chars().take(MAX_LABEL_CHARS - 1).collect();
    format!("{}…", kept.trim_end())
}

/// Font size of the row and column labels for a matrix with `n` rows or columns at most:
/// the mesh's 13 px while rows are tall enough, down to 9 px for about 30 classes.
fn tick_font_size(n: usize) -> f64 {
    (300.0 / n as f64).clamp(9.0, 13.0)
}

/// Width and height of `text` in `style`, in pixels; nothing for an empty text.
fn text_size<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    text: &str,
    style: &TextStyle,
) -> Result<(i32, i32), String> {
    if text.is_empty() {
        return Ok((0, 0));
    }
    let (w, h) = root.estimate_text_size(text, style).map_err(failed)?;
    Ok((w as i32, h as i32))
}

/// The width of the widest of `texts` in `style`, in pixels.
fn widest<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    texts: impl IntoIterator<Item = impl AsRef<str>>,
    style: &TextStyle,
) -> Result<i32, String> {
    texts.into_iter().try_fold(0, |most, text| Ok(most.max(text_size(root, text.as_ref(), style)?.0)))
}

/// Where the cells were drawn, in pixels; only the tests read it.
#[derive(Clone, Debug)]
#[cfg_attr(not(test), allow(dead_code))]
struct Grid {
    /// Left edge of every column, then the right edge of the last one.
    x: Vec<i32>,
    /// Top edge of every row, then the bottom edge of the last one.
    y: Vec<i32>,
}

/// A validated heatmap: its shape, colour scale and printed values.
struct HeatmapScene<'c> {
    chart: &'c HeatmapChart,
    rows: usize,
    cols: usize,
    row_labels: Vec<String>,
    col_labels: Vec<String>,
    /// The values that map to the two ends of the colour scale.
    scale: Span,
    /// The printed value of each cell, row by row (`None` for non-finite cells); empty when
    /// no values are printed.
    texts: Vec<Option<String>>,
}

impl<'c> HeatmapScene<'c> {
    fn new(chart: &'c HeatmapChart) -> Result<HeatmapScene<'c>, PlotError> {
        let shape = |message: String| PlotError::Draw { chart: chart.name.clone(), message };
        let no_data = || PlotError::NoData { chart: chart.name.clone() };
        let rows = chart.values.len();
        let cols = chart.values.first().map_or(0, Vec::len);
        if let Some((r, row)) = chart.values.iter().enumerate().find(|(_, row)| row.len() != cols) {
            return Err(shape(format!("row {r} has {} values but row 0 has {cols}", row.len())));
        }
        if rows == 0 || cols == 0 {
            return Err(no_data());
        }
        if chart.row_labels.len() != rows {
            return Err(shape(format!("{} row labels for {rows} rows", chart.row_labels.len())));
        }
        if chart.col_labels.len() != cols {
            return Err(shape(format!("{} column labels for {cols} columns", chart.col_labels.len())));
        }

        let values = || chart.values.iter().flatten().copied().filter(|v| v.is_finite());
        let span = Span::of(values()).ok_or_else(no_data)?;
        let scale = if span.is_degenerate() {
            // One value everywhere: put it in the middle of the scale.
            let half = if span.mid() == 0.0 { 1.0 } else { 0.1 * span.mid().abs() };
            span.at_least(2.0 * half)
        } else {
            span
        };

        let texts = if chart.annotate && rows.max(cols) <= MAX_ANNOTATED {
            let fractional: Vec<f64> = values().filter(|v| v.fract() != 0.0).collect();
            let notation = Notation::new(&fractional, 3);
            let text = |v: f64| v.is_finite().then(|| cell_text(v, notation));
            chart.values.iter().flatten().map(|v| text(*v)).collect()
        } else {
            Vec::new()
        };
        Ok(HeatmapScene {
            chart,
            rows,
            cols,
            row_labels: chart.row_labels.iter().map(|l| shorten(l)).collect(),
            col_labels: chart.col_labels.iter().map(|l| shorten(l)).collect(),
            scale,
            texts,
        })
    }

    /// The colour of a cell holding `v`.
    fn colour(&self, v: f64) -> RGBColor {
        if v.is_finite() {
            scale_colour(self.scale.fraction(v))
        } else {
            MISSING
        }
    }
}

impl Scene for HeatmapScene<'_> {
    type Frame = Grid;

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<Grid, String> {
        root.fill(&WHITE).map_err(failed)?;
        // The shared builder draws the title and leaves the page inside its margins; the
        // cells and labels are placed in pixels there, so the cells can be square.
        let page = chart_builder(root, &self.chart.title, 0, 12)
            .x_label_area_size(0)
            .build_cartesian_2d(0.0..1.0, 0.0..1.0)
            .map_err(failed)?
            .plotting_area()
            .get_pixel_range();

        let tick_size = tick_font_size(self.rows.max(self.cols));
        let tick = TextStyle::from((FONT, tick_size).into_font());
        // The colour bar's labels at their most (on a tall bar), to measure.
        let bar_label = TextStyle::from((FONT, 12).into_font());
        let bar_ticks = axes::linear_ticks(self.scale, axes::Y_TICKS);
        let bar_notation = Notation::for_ticks(&bar_ticks);
        let room = Room {
            row_labels: widest(root, &self.row_labels, &tick)?,
            col_labels: widest(root, &self.col_labels, &tick)?,
            line: tick_size.ceil() as i32 + 2,
            y_title: if self.chart.y_label.is_empty() { 0 } else { Y_TITLE_ROOM },
            x_title: if self.chart.x_label.is_empty() { 0 } else { X_TITLE_ROOM },
            colour_bar: BAR_GAP
                + BAR_WIDTH
                + 5
                + widest(root, bar_ticks.iter().map(|t| bar_notation.format(*t)), &bar_label)?,
        };
        let layout = Layout::new(page, (self.rows, self.cols), &room);
        let grid = layout.grid.clone();

        // Cells, with a white hairline between them while they are large enough.
        let (cell_w, cell_h) = layout.cell;
        let gap = if cell_w.min(cell_h) >= 12.0 { 1 } else { 0 };
        for (r, row) in self.chart.values.iter().enumerate() {
            for (c, v) in row.iter().enumerate() {
                let corners = [(grid.x[c], grid.y[r]), (grid.x[c + 1] - gap, grid.y[r + 1] - gap)];
                root.draw(&Rectangle::new(corners, self.colour(*v).filled())).map_err(failed)?;
            }
        }
        self.draw_values(root, &grid, (cell_w - gap as f64, cell_h - gap as f64))?;
        self.draw_labels(root, &layout, &room, &tick)?;
        self.draw_colour_bar(root, &grid, gap, &bar_label)?;
        Ok(grid)
    }
}

/// Pixel sizes of what surrounds the grid, measured before the grid is placed.
struct Room {
    /// Width of the widest row label.
    row_labels: i32,
    /// Width of the widest column label.
    col_labels: i32,
    /// Height of one line of label text.
    line: i32,
    /// Room for the y axis title (0 without one).
    y_title: i32,
    /// Room for the x axis title (0 without one).
    x_title: i32,
    /// Room for the colour bar and its labels.
    colour_bar: i32,
}

/// Where the grid goes on the page.
struct Layout {
    /// Edges of the cells.
    grid: Grid,
    /// Width and height of a cell, in pixels.
    cell: (f64, f64),
    /// Column labels written upright (reading upwards) because they are wider than a
    /// column.
    upright: bool,
}

impl Layout {
    /// Cells as large as fit beside the labels and the colour bar: square for a square
    /// matrix, otherwise up to `MAX_ASPECT` times as long one way as the other. The grid
    /// with its labels and colour bar is centred on the page.
    fn new(page: (Range<i32>, Range<i32>), (rows, cols): (usize, usize), room: &Room) -> Layout {
        let (px, py) = page;
        let (page_w, page_h) = ((px.end - px.start) as f64, (py.end - py.start) as f64);
        let left = (room.y_title + room.row_labels + LABEL_GAP) as f64;
        let right = room.colour_bar as f64;
        let aspect = if rows == cols { 1.0 } else { MAX_ASPECT };
        let cell_with = |bottom: i32| {
            let w = ((page_w - left - right) / cols as f64).max(1.0);
            let h = ((page_h - bottom as f64) / rows as f64).max(1.0);
            let side = w.min(h);
            (w.min(aspect * side), h.min(aspect * side))
        };
        let flat = LABEL_GAP + room.line + room.x_title;
        let upright = room.col_labels as f64 + 6.0 > cell_with(flat).0;
        let bottom = if upright { LABEL_GAP + room.col_labels + room.x_title } else { flat };
        let (cell_w, cell_h) = cell_with(bottom);

        let (grid_w, grid_h) = (cell_w * cols as f64, cell_h * rows as f64);
        let x0 = px.start as f64 + ((page_w - left - grid_w - right) / 2.0).max(0.0) + left;
        let y0 = py.start as f64 + ((page_h - grid_h - bottom as f64) / 2.0).max(0.0);
        let edges = |start: f64, n: usize, size: f64| {
            (0..=n).map(|i| (start + i as f64 * size).round() as i32).collect()
        };
        let grid = Grid { x: edges(x0, cols, cell_w), y: edges(y0, rows, cell_h) };
        Layout { grid, cell: (cell_w, cell_h), upright }
    }
}

impl HeatmapScene<'_> {
    /// Each cell's value at its centre, in black or white to stand out from the cell; the
    /// font shrinks so the widest value fits a `cell` (width and height in pixels), and no
    /// values are drawn when it would get too small to read.
    fn draw_values<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        grid: &Grid,
        (cell_w, cell_h): (f64, f64),
    ) -> Result<(), String> {
        if self.texts.is_empty() {
            return Ok(());
        }
        let (largest, smallest) = ANNOTATION_FONT;
        let size = (0.3 * cell_w.min(cell_h)).min(largest);
        let style = TextStyle::from((FONT, size).into_font());
        let wide = widest(root, self.texts.iter().flatten(), &style)? as f64;
        let room = cell_w - 8.0;
        let size = if wide > room { size * room / wide } else { size };
        if size < smallest {
            return Ok(());
        }
        let style = TextStyle::from((FONT, size).into_font()).pos(Pos::new(HPos::Center, VPos::Center));
        for (r, row) in self.chart.values.iter().enumerate() {
            for (c, v) in row.iter().enumerate() {
                if let Some(text) = &self.texts[r * self.cols + c] {
                    let colour = text_colour(self.colour(*v));
                    let centre = ((grid.x[c] + grid.x[c + 1]) / 2, (grid.y[r] + grid.y[r + 1]) / 2);
                    root.draw_text(text, &style.color(&colour), centre).map_err(failed)?;
                }
            }
        }
        Ok(())
    }

    /// Row labels left of the grid, column labels under it (upright when they are wider
    /// than a column), then the axis titles; when the cells are smaller than a line of
    /// text, only every few labels are written.
    fn draw_labels<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        layout: &Layout,
        room: &Room,
        tick: &TextStyle,
    ) -> Result<(), String> {
        let Grid { x, y } = &layout.grid;
        let (top, bottom) = (y[0], y[self.rows]);
        let (left, right) = (x[0], x[self.cols]);
        let (cell_w, cell_h) = layout.cell;
        let stride = |cell: f64| (room.line as f64 / cell).ceil().max(1.0) as usize;

        let row_style = tick.pos(Pos::new(HPos::Right, VPos::Center));
        for (r, label) in self.row_labels.iter().enumerate().step_by(stride(cell_h)) {
            let at = (left - LABEL_GAP, (y[r] + y[r + 1]) / 2);
            root.draw_text(label, &row_style, at).map_err(failed)?;
        }
        let (col_style, col_height) = if layout.upright {
            (
                tick.transform(FontTransform::Rotate270).pos(Pos::new(HPos::Right, VPos::Center)),
                room.col_labels,
            )
        } else {
            (tick.pos(Pos::new(HPos::Center, VPos::Top)), room.line)
        };
        let col_stride = if layout.upright { stride(cell_w) } else { 1 };
        for (c, label) in self.col_labels.iter().enumerate().step_by(col_stride) {
            let at = ((x[c] + x[c + 1]) / 2, bottom + LABEL_GAP);
            root.draw_text(label, &col_style, at).map_err(failed)?;
        }

        let title = TextStyle::from((FONT, 15).into_font());
        let x_title = title.pos(Pos::new(HPos::Center, VPos::Top));
        let x_at = ((left + right) / 2, bottom + LABEL_GAP + col_height + 8);
        root.draw_text(&self.chart.x_label, &x_title, x_at).map_err(failed)?;
        let y_title = title.transform(FontTransform::Rotate270).pos(Pos::new(HPos::Center, VPos::Center));
        let y_at = (left - LABEL_GAP - room.row_labels - room.y_title / 2, (top + bottom) / 2);
        root.draw_text(&self.chart.y_label, &y_title, y_at).map_err(failed)
    }

    /// The colour bar right of the grid, as tall as the grid: the scale from the smallest
    /// value (bottom) to the largest (top), labelled at round values.
    fn draw_colour_bar<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        grid: &Grid,
        gap: i32,
        label: &TextStyle,
    ) -> Result<(), String> {
        let left = grid.x[self.cols] - gap + BAR_GAP;
        let right = left + BAR_WIDTH;
        let (top, bottom) = (grid.y[0], grid.y[self.rows] - gap);
        let height = (bottom - top) as f64;
        let at = |fraction: f64| bottom - (height * fraction).round() as i32;
        for step in 0..BAR_STEPS {
            let (lo, hi) = (step as f64 / BAR_STEPS as f64, (step + 1) as f64 / BAR_STEPS as f64);
            let colour = scale_colour(0.5 * (lo + hi));
            root.draw(&Rectangle::new([(left, at(hi)), (right, at(lo))], colour.filled())).map_err(failed)?;
        }
        root.draw(&Rectangle::new([(left, top), (right, bottom)], BLACK.mix(0.5))).map_err(failed)?;

        // Fewer labels on a short bar, so they stay apart.
        let ticks = axes::linear_ticks(self.scale, ((height / 40.0) as usize).clamp(2, axes::Y_TICKS));
        let notation = Notation::for_ticks(&ticks);
        let style = label.pos(Pos::new(HPos::Left, VPos::Center));
        for t in ticks {
            let y = at(self.scale.fraction(t));
            root.draw(&PathElement::new(vec![(right - 4, y), (right, y)], BLACK.mix(0.5))).map_err(failed)?;
            root.draw_text(&notation.format(t), &style, (right + 5, y)).map_err(failed)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plot::{render, HEIGHT, WIDTH};

    fn strings(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    fn chart(values: Vec<Vec<f64>>, rows: &[&str], cols: &[&str], annotate: bool) -> HeatmapChart {
        HeatmapChart {
            name: "confusion".to_string(),
            title: "Confusion matrix".to_string(),
            x_label: "predicted".to_string(),
            y_label: "true".to_string(),
            row_labels: strings(rows),
            col_labels: strings(cols),
            values,
            annotate,
        }
    }

    /// The 2x2 confusion matrix of a binary classifier.
    fn binary(annotate: bool) -> HeatmapChart {
        chart(vec![vec![412.0, 88.0], vec![95.0, 405.0]], &["neg", "pos"], &["neg", "pos"], annotate)
    }

    /// A 5x5 matrix of fractions, with longer labels.
    fn five(annotate: bool) -> HeatmapChart {
        let names = ["cat", "dog", "bird", "positive", "negative"];
        let values = (0..5)
            .map(|r| {
                (0..5)
                    .map(|c| if r == c { 0.62 + 0.07 * r as f64 } else { 0.0125 * (r + 2 * c) as f64 })
                    .collect()
            })
            .collect();
        chart(values, &names, &names, annotate)
    }

    /// Renders `c`, returning the figure, its bitmap and where the cells are.
    fn rendered(c: &HeatmapChart) -> (Figure, image::RgbImage, Grid) {
        let scene = HeatmapScene::new(c).unwrap();
        let (figure, grid) = render(&c.name, &c.title, &scene).unwrap();
        let image = image::load_from_memory(&figure.png).unwrap().to_rgb8();
        (figure, image, grid)
    }

    /// The pixel at the centre of cell (r, c).
    fn centre(image: &image::RgbImage, grid: &Grid, r: usize, c: usize) -> RGBColor {
        let x = (grid.x[c] + grid.x[c + 1]) / 2;
        let y = (grid.y[r] + grid.y[r + 1]) / 2;
        let [red, green, blue] = image.get_pixel(x as u32, y as u32).0;
        RGBColor(red, green, blue)
    }

    /// The pixels in the middle third of cell (r, c), where its printed value goes.
    fn middle(image: &image::RgbImage, grid: &Grid, r: usize, c: usize) -> Vec<RGBColor> {
        let third = |edges: &[i32], i: usize| {
            let w = edges[i + 1] - edges[i];
            edges[i] + w / 3..edges[i + 1] - w / 3
        };
        let (xs, ys) = (third(&grid.x, c), third(&grid.y, r));
        ys.flat_map(|y| xs.clone().map(move |x| (x, y)))
            .map(|(x, y)| {
                let [red, green, blue] = image.get_pixel(x as u32, y as u32).0;
                RGBColor(red, green, blue)
            })
            .collect()
    }

    fn svg_has_text(svg: &str, text: &str) -> bool {
        svg.contains(&format!(">\n{text}\n<"))
    }

    #[test]
    fn png_has_the_module_size_and_svg_has_title_labels_and_values() {
        let figure = heatmap(&binary(true)).unwrap();
        assert!(figure.png.starts_with(b"\x89PNG\r\n\x1a\n"));
        let image = image::load_from_memory(&figure.png).unwrap();
        assert_eq!((image.width(), image.height()), (WIDTH, HEIGHT));
        assert_eq!((figure.name.as_str(), figure.title.as_str()), ("confusion", "Confusion matrix"));
        for text in ["Confusion matrix", "predicted", "true", "412", "88", "95", "405"] {
            assert!(svg_has_text(&figure.svg, text), "{text} missing from the svg");
        }
        // "neg" and "pos" label both a row and a column.
        for label in ["neg", "pos"] {
            assert_eq!(figure.svg.matches(&format!(">\n{label}\n<")).count(), 2, "{label}");
        }

        let figure = heatmap(&five(true)).unwrap();
        for label in ["cat", "dog", "bird", "positive", "negative"] {
            assert_eq!(figure.svg.matches(&format!(">\n{label}\n<")).count(), 2, "{label}");
        }
        for text in ["0.62", "0.69", "0.9", "0.0125", "0.0375", "0.125"] {
            assert!(svg_has_text(&figure.svg, text), "{text} missing from the svg");
        }
        assert_eq!(figure.svg.matches("rotate(270").count(), 1, "only the y title is upright");
    }

    #[test]
    fn without_annotate_no_values_are_printed() {
        let figure = heatmap(&binary(false)).unwrap();
        for text in ["412", "88", "95", "405"] {
            assert!(!svg_has_text(&figure.svg, text), "{text} printed");
        }
        assert!(svg_has_text(&figure.svg, "neg"));
    }

    #[test]
    fn row_zero_is_on_top_and_the_largest_cell_is_darkest() {
        let (_, image, grid) = rendered(&binary(false));
        assert_eq!((grid.x.len(), grid.y.len()), (3, 3));
        assert!(grid.y[0] < grid.y[1] && grid.x[0] < grid.x[1], "{grid:?}");
        // 412 (row 0, column 0) is the largest value and 88 (row 0, column 1) the smallest.
        let (largest, smallest) = (centre(&image, &grid, 0, 0), centre(&image, &grid, 0, 1));
        assert_ne!(largest, smallest);
        assert!(luma(largest) + 60.0 < luma(smallest), "{largest:?} vs {smallest:?}");
        assert_eq!(largest, scale_colour(1.0));
        assert_eq!(smallest, scale_colour(0.0));
        // The diagonal is dark, the rest light: 405 near the top of the scale, 95 near the bottom.
        assert!(luma(centre(&image, &grid, 1, 1)) < 100.0);
        assert!(luma(centre(&image, &grid, 1, 0)) > 180.0);
        // Row 0 really is the top row of the picture: above the grid is white page.
        let above = image.get_pixel(((grid.x[0] + grid.x[1]) / 2) as u32, grid.y[0] as u32 - 3).0;
        assert_eq!(above, [255, 255, 255]);
    }

    #[test]
    fn cells_are_square() {
        for c in [binary(false), five(false)] {
            let (_, _, grid) = rendered(&c);
            let w = grid.x[1] - grid.x[0];
            let h = grid.y[1] - grid.y[0];
            assert!((w - h).abs() <= 1 && w > 50, "{w}x{h}");
        }
    }

    #[test]
    fn printed_values_contrast_with_their_cell() {
        let white = |p: &RGBColor| luma(*p) > 230.0;
        let black = |p: &RGBColor| luma(*p) < 30.0;
        let (_, image, grid) = rendered(&binary(true));
        // 412 on the darkest cell is written in white, 88 on the lightest in black.
        assert!(middle(&image, &grid, 0, 0).iter().filter(|p| white(p)).count() > 20);
        assert!(middle(&image, &grid, 0, 0).iter().all(|p| !black(p)));
        assert!(middle(&image, &grid, 0, 1).iter().filter(|p| black(p)).count() > 20);
        assert!(middle(&image, &grid, 0, 1).iter().all(|p| !white(p)));

        let (_, image, grid) = rendered(&binary(false));
        assert!(middle(&image, &grid, 0, 0).iter().all(|p| *p == scale_colour(1.0)));
    }

    #[test]
    fn values_print_as_integers_or_three_digits() {
        let n = Notation::new(&[0.8123, 12.345], 3);
        assert_eq!(cell_text(412.0, n), "412");
        assert_eq!(cell_text(-3.0, n), "-3");
        assert_eq!(cell_text(0.0, n), "0");
        assert_eq!(cell_text(1234567.0, n), "1234567");
        assert_eq!(cell_text(0.8123, n), "0.812");
        assert_eq!(cell_text(12.345, n), "12.3");
        assert_eq!(cell_text(0.5, n), "0.5");
        assert_eq!(shorten("positive"), "positive");
        assert_eq!(shorten("a label that is far too long"), "a label that is far…");
    }

    #[test]
    fn the_scale_runs_from_light_to_dark() {
        let lumas: Vec<f64> = (0..=20).map(|i| luma(scale_colour(i as f64 / 20.0))).collect();
        assert!(lumas.windows(2).all(|w| w[1] < w[0]), "{lumas:?}");
        assert_eq!(text_colour(scale_colour(0.0)), BLACK);
        assert_eq!(text_colour(scale_colour(1.0)), WHITE);
    }

    #[test]
    fn bad_shapes_are_errors() {
        let ragged = chart(vec![vec![1.0, 2.0], vec![3.0]], &["a", "b"], &["a", "b"], true);
        let err = heatmap(&ragged).unwrap_err();
        assert_eq!(err.to_string(), "cannot draw chart 'confusion': row 1 has 1 values but row 0 has 2");
        let rows = chart(vec![vec![1.0, 2.0]], &["a", "b"], &["a", "b"], true);
        assert_eq!(
            heatmap(&rows).unwrap_err().to_string(),
            "cannot draw chart 'confusion': 2 row labels for 1 rows"
        );
        let cols = chart(vec![vec![1.0, 2.0]], &["a"], &["a"], true);
        let err = heatmap(&cols).unwrap_err().to_string();
        assert_eq!(err, "cannot draw chart 'confusion': 1 column labels for 2 columns");

        for values in [vec![], vec![vec![]], vec![vec![f64::NAN, f64::INFINITY]]] {
            let n = values.len();
            let cols: Vec<&str> = values.first().map_or(vec![], |r: &Vec<f64>| vec!["c"; r.len()]);
            let empty = chart(values, &vec!["r"; n], &cols, true);
            let err = heatmap(&empty).unwrap_err();
            assert!(matches!(err, PlotError::NoData { .. }), "{err}");
        }
    }

    #[test]
    fn missing_values_are_grey_and_unprinted() {
        let c = chart(vec![vec![1.0, f64::NAN], vec![3.5, 4.0]], &["a", "b"], &["x", "y"], true);
        let (figure, image, grid) = rendered(&c);
        assert_eq!(centre(&image, &grid, 0, 1), MISSING);
        assert!(svg_has_text(&figure.svg, "3.5") && !figure.svg.contains("NaN"));
    }

    #[test]
    fn one_value_everywhere_takes_the_middle_of_the_scale() {
        let c = chart(vec![vec![7.0; 3]; 3], &["a", "b", "c"], &["x", "y", "z"], true);
        let (_, image, grid) = rendered(&c);
        assert_eq!(centre(&image, &grid, 2, 2), scale_colour(0.5));
        let one = chart(vec![vec![0.0]], &["a"], &["b"], true);
        assert!(heatmap(&one).is_ok());
    }

    #[test]
    fn thirty_classes_get_every_label_upright_and_no_values() {
        let names: Vec<String> = (0..30).map(|i| format!("class{i:02}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let values = (0..30).map(|r| (0..30).map(|c| 1000.0 + (r * 30 + c) as f64).collect()).collect();
        let c = chart(values, &names, &names, true);
        let (figure, image, grid) = rendered(&c);
        assert_eq!((image.width(), image.height()), (WIDTH, HEIGHT));
        for name in &names {
            assert_eq!(figure.svg.matches(&format!(">\n{name}\n<")).count(), 2, "{name}");
        }
        assert_eq!(figure.svg.matches("rotate(270").count(), 30 + 1, "column labels and y title upright");
        // 1000 and the like label the colour bar; the cells hold 1000 to 1899.
        for value in ["1001", "1450", "1899"] {
            assert!(!svg_has_text(&figure.svg, value), "{value} printed");
        }
        let side = grid.x[1] - grid.x[0];
        assert!(side >= 10, "cells of {side} px");
        // The labels stay on the page.
        assert!(grid.y[30] + 7 + 60 < HEIGHT as i32 && grid.x[0] > 60, "{grid:?}");
    }

    #[test]
    fn other_shapes_and_sizes_stay_on_the_page() {
        // A single column gets cells wider than high, but at most twice as wide.
        let names: Vec<String> = (0..12).map(|i| format!("r{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let tall = chart((0..12).map(|i| vec![i as f64 * 12345.0]).collect(), &names, &["only"], true);
        let (figure, _, grid) = rendered(&tall);
        let (w, h) = (grid.x[1] - grid.x[0], grid.y[1] - grid.y[0]);
        assert!(w > h && w <= 2 * h + 1, "{w}x{h}");
        assert!(svg_has_text(&figure.svg, "135795"));

        // 100 classes with empty labels and titles.
        let values = (0..100).map(|r| (0..100).map(|c| (r * c) as f64).collect()).collect();
        let mut big = chart(values, &[""; 100], &[""; 100], true);
        (big.title, big.x_label, big.y_label) = (String::new(), String::new(), String::new());
        let (_, image, grid) = rendered(&big);
        assert!(grid.x[0] > 0 && grid.x[100] < WIDTH as i32 - 40, "{grid:?}");
        assert!(grid.y[0] > 0 && grid.y[100] < HEIGHT as i32, "{grid:?}");
        assert_eq!(centre(&image, &grid, 99, 99), scale_colour(1.0));
        assert_eq!(centre(&image, &grid, 0, 99), scale_colour(0.0));
    }

    #[test]
    fn rendering_is_deterministic() {
        for c in [binary(true), five(true)] {
            assert_eq!(heatmap(&c).unwrap(), heatmap(&c).unwrap());
        }
    }
}
