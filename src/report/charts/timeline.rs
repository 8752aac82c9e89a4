//! A metric over the run's time (one point per window) with the experiment's phases shaded and
//! each fault's start and clearing drawn as lines: the picture that shows at a glance when the
//! fault bit, how hard, and when the system came back.

use super::{
    AXIS, BLUE, ChartError, FONT, GREEN, GRID, HEIGHT, INK, MUTED, ORANGE, RED_, WIDTH,
    caption_style, draw_err, finish, label_style, no_data, y_range,
};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// The phase a shaded band stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Pre,
    During,
    Recovery,
}

impl Phase {
    fn color(self) -> RGBColor {
        match self {
            Phase::Pre => BLUE,
            Phase::During => RED_,
            Phase::Recovery => GREEN,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Phase::Pre => "pre",
            Phase::During => "during",
            Phase::Recovery => "recovery",
        }
    }
}

/// A shaded time range.
#[derive(Clone, Debug)]
pub struct Band {
    pub from_s: f64,
    pub to_s: f64,
    pub phase: Phase,
}

/// A vertical line: a fault taking effect (`clear == false`) or being cleared. A non-empty
/// `label` (the fault's name) gets a numbered badge on the line and an entry in the chart's key.
#[derive(Clone, Debug)]
pub struct Marker {
    pub t_s: f64,
    pub label: String,
    pub clear: bool,
}

/// One line of the chart: the metric per window.
#[derive(Clone, Copy, Debug)]
pub struct Series<'a> {
    /// Window start, value; `None` = no sample in that window, drawn as a gap.
    pub points: &'a [(f64, Option<f64>)],
    /// Its name in the legend.
    pub name: &'a str,
    /// Drawn thin and pale under the main line (the raw values behind a smoothed line).
    pub faint: bool,
}

/// How the y axis reads.
#[derive(Clone, Copy, Debug)]
pub enum YFormat {
    /// Fractions shown as percent (error rate).
    Percent,
    /// Plain numbers (tok/s, ms).
    Number,
}

impl YFormat {
    fn fmt(self, v: f64) -> String {
        match self {
            YFormat::Percent => format!("{:.0}%", v * 100.0),
            YFormat::Number if v >= 1000.0 => format!("{:.1}k", v / 1000.0),
            YFormat::Number => crate::report::inputs::num(v),
        }
    }
}

const MARGIN: u32 = 14;
const Y_LABELS: u32 = 64;
/// The title row; the key of numbered faults starts below it.
const TITLE_H: i32 = 30;
const KEY_ROW_H: i32 = 18;
/// One row of badges above the plot.
const BADGE_ROW_H: i32 = 20;
const BADGE_R: i32 = 8;
/// Font size of the key and the legend (plotters renders it at about 0.8×: 11 px).
const SMALL: f64 = 14.0;
/// Average advance of a `SMALL` sans-serif glyph, to lay text out without measuring it.
const CHAR_W: f64 = 5.8;

fn text_w(s: &str) -> i32 {
    (s.chars().count() as f64 * CHAR_W).ceil() as i32
}

/// Places items of the given widths left to right in rows of `width` pixels; returns each
/// item's (row, x offset).
fn flow(widths: &[i32], width: i32, gap: i32) -> Vec<(usize, i32)> {
    let mut row = 0;
    let mut x = 0;
    widths
        .iter()
        .map(|&w| {
            if x > 0 && x + w > width {
                row += 1;
                x = 0;
            }
            let at = (row, x);
            x += w + gap;
            at
        })
        .collect()
}

/// Staggers badges centred at pixel `xs` (in time order) into rows so that none overlaps
/// another: each goes into the first row whose last badge is at least `min_gap` to its left.
fn stagger(xs: &[i32], min_gap: i32) -> Vec<usize> {
    let mut last: Vec<i32> = Vec::new();
    xs.iter()
        .map(|&x| match last.iter().position(|&l| x - l >= min_gap) {
            Some(r) => {
                last[r] = x;
                r
            }
            None => {
                last.push(x);
                last.len() - 1
            }
        })
        .collect()
}

/// Draws the series over the run's time with the phases shaded and the faults marked.
///
/// Layout, top to bottom: the title with the legend on its right, the key of the numbered
/// faults, a strip of numbered badges (one per labelled marker, staggered into rows when two
/// would touch), and the plot. Labels never sit over the data or over each other, whatever the
/// number of faults.
pub fn timeline(
    title: &str,
    y_desc: &str,
    series: &[Series],
    y_format: YFormat,
    bands: &[Band],
    markers: &[Marker],
) -> Result<String, ChartError> {
    if series
        .iter()
        .all(|s| s.points.iter().all(|(_, v)| v.is_none()))
    {
        return Ok(no_data(title, "no windows with samples"));
    }
    let err = draw_err(title);
    let x_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0 + 1.0))
        .chain(bands.iter().map(|b| b.to_s))
        .chain(markers.iter().map(|m| m.t_s))
        .fold(1.0_f64, f64::max);
    let y_max = series
        .iter()
        .flat_map(|s| s.points.iter().filter_map(|p| p.1))
        .fold(0.0_f64, f64::max);
    let y_max = match y_format {
        // Error rates: keep a 5% floor so a quiet run does not look like a spike.
        YFormat::Percent => y_max.max(0.05),
        YFormat::Number => y_max,
    };
    let yr = y_range(y_max);

    // The key: "1 name" per labelled marker, flowed into rows under the title.
    let labelled: Vec<&Marker> = markers.iter().filter(|m| !m.label.is_empty()).collect();
    let keys: Vec<String> = labelled
        .iter()
        .enumerate()
        .map(|(i, m)| format!("{} {}", i + 1, m.label.trim()))
        .collect();
    let key_w: Vec<i32> = keys.iter().map(|k| text_w(k) + 2 * BADGE_R).collect();
    let inner = (WIDTH - 2 * MARGIN) as i32;
    let key_at = flow(&key_w, inner - 16, 18);
    let key_rows = key_at.last().map_or(0, |k| k.0 as i32 + 1);
    // Badge rows from the approximate x of each line (the exact x is known once the chart is
    // built; the difference is a pixel or two, well inside the gap).
    let left = (MARGIN + Y_LABELS) as f64;
    let right = (WIDTH - MARGIN) as f64;
    let approx_x = |t: f64| (left + t / x_max * (right - left)).round() as i32;
    let rows = stagger(
        &labelled.iter().map(|m| approx_x(m.t_s)).collect::<Vec<_>>(),
        2 * BADGE_R + 4,
    );
    let badge_rows = rows.iter().max().map_or(0, |r| *r as i32 + 1);
    let header = TITLE_H + key_rows * KEY_ROW_H + badge_rows * BADGE_ROW_H + 4;
    let height = HEIGHT as i32 + key_rows * KEY_ROW_H + badge_rows * BADGE_ROW_H;

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height as u32)).into_drawing_area();
        root.fill(&WHITE).map_err(&err)?;
        root.draw(&Text::new(
            title.to_string(),
            (MARGIN as i32 + 2, 6),
            caption_style(),
        ))
        .map_err(&err)?;
        legend_row(&root, series, bands, markers).map_err(&err)?;
        let small = (FONT, SMALL).into_font().color(&INK);
        for (i, (row, x)) in key_at.iter().enumerate() {
            let (x, y) = (
                MARGIN as i32 + 2 + x,
                TITLE_H + *row as i32 * KEY_ROW_H + KEY_ROW_H / 2,
            );
            badge(&root, (x + BADGE_R, y), i + 1).map_err(&err)?;
            root.draw(&Text::new(
                labelled[i].label.trim().to_string(),
                (x + 2 * BADGE_R + 4, y),
                small.pos(Pos::new(HPos::Left, VPos::Center)),
            ))
            .map_err(&err)?;
        }

        let (_, plot_area) = root.split_vertically(header);
        let mut chart = ChartBuilder::on(&plot_area)
            .margin(MARGIN)
            .margin_top(4)
            .x_label_area_size(40)
            .y_label_area_size(Y_LABELS)
            .build_cartesian_2d(0.0..x_max, yr.clone())
            .map_err(&err)?;
        chart
            .configure_mesh()
            .x_desc("time since start (s)")
            .y_desc(y_desc)
            .y_label_formatter(&|v| y_format.fmt(*v))
            .x_label_formatter(&|v| crate::report::inputs::num(*v))
            .light_line_style(TRANSPARENT)
            .bold_line_style(GRID)
            .axis_style(AXIS)
            .label_style(label_style())
            .axis_desc_style(label_style())
            .draw()
            .map_err(&err)?;

        for b in bands {
            let rect = Rectangle::new(
                [(b.from_s, yr.start), (b.to_s, yr.end)],
                b.phase.color().mix(0.10).filled(),
            );
            chart.draw_series(std::iter::once(rect)).map_err(&err)?;
        }
        for m in markers {
            let color = if m.clear { GREEN } else { RED_ };
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(m.t_s, yr.start), (m.t_s, yr.end)],
                    color.stroke_width(2),
                )))
                .map_err(&err)?;
        }
        // Badges: in the strip above the plot, the nearest row first.
        for (i, (m, row)) in labelled.iter().zip(&rows).enumerate() {
            let (x, top) = chart.backend_coord(&(m.t_s, yr.end));
            let y = top - BADGE_ROW_H / 2 - 2 - *row as i32 * BADGE_ROW_H;
            root.draw(&PathElement::new(
                vec![(x, y + BADGE_R), (x, top)],
                RED_.stroke_width(1),
            ))
            .map_err(&err)?;
            badge(&root, (x, y), i + 1).map_err(&err)?;
        }

        for s in series.iter().filter(|s| s.faint) {
            for seg in segments(s.points) {
                chart
                    .draw_series(LineSeries::new(seg, ORANGE.mix(0.35).stroke_width(1)))
                    .map_err(&err)?;
            }
        }
        for s in series.iter().filter(|s| !s.faint) {
            for seg in segments(s.points) {
                let single = seg.len() == 1;
                chart
                    .draw_series(LineSeries::new(seg.clone(), ORANGE.stroke_width(2)))
                    .map_err(&err)?;
                if single {
                    chart
                        .draw_series(seg.into_iter().map(|p| Circle::new(p, 3, ORANGE.filled())))
                        .map_err(&err)?;
                }
            }
        }
        root.present().map_err(&err)?;
    }
    Ok(finish(svg, title))
}

/// Consecutive windows with a value form one line; a window without samples is a gap.
fn segments(points: &[(f64, Option<f64>)]) -> Vec<Vec<(f64, f64)>> {
    let mut segments: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
    for (t, v) in points {
        match v {
            Some(v) => segments.last_mut().expect("one segment").push((*t, *v)),
            None if !segments.last().expect("one segment").is_empty() => segments.push(Vec::new()),
            None => {}
        }
    }
    segments.retain(|s| !s.is_empty());
    segments
}

/// A red disc with a white number.
fn badge<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    (x, y): (i32, i32),
    n: usize,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.draw(&Circle::new((x, y), BADGE_R, RED_.filled()))?;
    root.draw(&Text::new(
        n.to_string(),
        (x, y),
        (FONT, 13)
            .into_font()
            .style(FontStyle::Bold)
            .color(&WHITE)
            .pos(Pos::new(HPos::Center, VPos::Center)),
    ))
}

/// The legend, right-aligned on the title's row: the phases present, the two kinds of
/// fault line, and the series.
fn legend_row<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    series: &[Series],
    bands: &[Band],
    markers: &[Marker],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    enum Swatch {
        Fill(RGBAColor),
        Line(RGBAColor, u32),
    }
    let mut items: Vec<(Swatch, String)> = Vec::new();
    for phase in [Phase::Pre, Phase::During, Phase::Recovery] {
        if bands.iter().any(|b| b.phase == phase) {
            items.push((Swatch::Fill(phase.color().mix(0.25)), phase.name().into()));
        }
    }
    if markers.iter().any(|m| !m.clear) {
        items.push((Swatch::Line(RED_.to_rgba(), 2), "fault injected".into()));
    }
    if markers.iter().any(|m| m.clear) {
        items.push((Swatch::Line(GREEN.to_rgba(), 2), "cleared".into()));
    }
    for s in series {
        let (c, w) = if s.faint {
            (ORANGE.mix(0.35), 1)
        } else {
            (ORANGE.to_rgba(), 2)
        };
        items.push((Swatch::Line(c, w), s.name.to_string()));
    }
    let widths: Vec<i32> = items.iter().map(|(_, t)| 22 + text_w(t)).collect();
    let total: i32 = widths.iter().sum::<i32>() + 12 * (items.len() as i32 - 1).max(0);
    let mut x = WIDTH as i32 - MARGIN as i32 - total;
    let y = 14;
    let style = (FONT, SMALL).into_font().color(&MUTED);
    for ((swatch, text), w) in items.iter().zip(widths) {
        match swatch {
            Swatch::Fill(c) => {
                root.draw(&Rectangle::new([(x, y - 6), (x + 16, y + 6)], c.filled()))?
            }
            Swatch::Line(c, width) => root.draw(&PathElement::new(
                vec![(x, y), (x + 16, y)],
                c.stroke_width(*width),
            ))?,
        }
        root.draw(&Text::new(
            text.clone(),
            (x + 22, y),
            style.pos(Pos::new(HPos::Left, VPos::Center)),
        ))?;
        x += w + 12;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
