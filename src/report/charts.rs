//! Charts for the HTML report, drawn with `plotters` into SVG strings that are inlined into the
//! page.
//!
//! Why SVG strings: the report must be one self-contained file that opens offline (attached to
//! a launch review, archived by CI), so there are no scripts and no external images; inline SVG
//! scales with the page and prints sharply. Why one file per chart: each one has its own data
//! shape, and an absent number must stay visibly absent ("no data"), never drawn as 0.

mod bottleneck;
mod hockey;
mod steps;
mod timeline;

pub use bottleneck::{Bar, bottleneck};
pub use hockey::{StepPoint, hockey};
pub use steps::step_percentiles;
pub use timeline::{Band, Marker, Phase, Series, YFormat, timeline};

use plotters::prelude::*;

/// Pixel size of a full-width chart (the SVG scales with the page through its viewBox).
pub const WIDTH: u32 = 1000;
pub const HEIGHT: u32 = 330;

pub const INK: RGBColor = RGBColor(31, 41, 55);
pub const MUTED: RGBColor = RGBColor(120, 128, 140);
pub const GRID: RGBColor = RGBColor(232, 234, 238);
pub const AXIS: RGBColor = RGBColor(200, 204, 210);
pub const BLUE: RGBColor = RGBColor(37, 99, 235);
pub const ORANGE: RGBColor = RGBColor(234, 88, 12);
pub const GREEN: RGBColor = RGBColor(22, 163, 74);
pub const RED_: RGBColor = RGBColor(220, 38, 38);
pub const PURPLE: RGBColor = RGBColor(124, 58, 237);

const FONT: &str = "sans-serif";

#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("cannot draw the chart '{chart}': {message}")]
    Draw { chart: String, message: String },
}

/// Wraps a plotters error with the chart's title.
fn draw_err<E: std::fmt::Display>(chart: &str) -> impl Fn(E) -> ChartError + '_ {
    move |e| ChartError::Draw {
        chart: chart.to_string(),
        message: e.to_string(),
    }
}

/// Makes plotters' output fit for inlining: in HTML the SVG namespace is implied, so the
/// `xmlns` attribute (a URL, though never fetched) is dropped, and the chart gets a class and
/// an accessible name.
fn finish(svg: String, title: &str) -> String {
    let title = super::html::esc(title);
    svg.replacen(
        " xmlns=\"http://www.w3.org/2000/svg\"",
        &format!(" class=\"chart\" role=\"img\" aria-label=\"{title}\""),
        1,
    )
}

/// A chart frame that says "no data" instead of drawing an empty or zeroed plot.
pub fn no_data(title: &str, why: &str) -> String {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, 120)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let _ = root.draw(&Text::new(
            title.to_string(),
            (16, 14),
            (FONT, 18).into_font().color(&INK),
        ));
        let _ = root.draw(&Text::new(
            format!("no data — {why}"),
            (16, 62),
            (FONT, 16).into_font().color(&MUTED),
        ));
        let _ = root.present();
    }
    finish(svg, title)
}

/// `0..max` padded by 15%, never an empty range.
fn y_range(max: f64) -> std::ops::Range<f64> {
    let top = if max.is_finite() && max > 0.0 {
        max * 1.15
    } else {
        1.0
    };
    0.0..top
}

/// Draws the series legend in the house style, at `position`.
fn legend<'a, DB, CT>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
    title: &str,
) -> Result<(), ChartError>
where
    DB: DrawingBackend + 'a,
    CT: CoordTranslate,
{
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.9))
        .border_style(AXIS)
        .label_font((FONT, 12).into_font().color(&MUTED))
        .draw()
        .map_err(draw_err(title))
}

fn caption_style() -> TextStyle<'static> {
    (FONT, 21).into_font().color(&INK)
}

/// Axis labels. plotters writes SVG fonts at about 0.8× the size asked for, so 14 reads as
/// 11 px: the smallest that stays legible when the 1000 px chart is scaled to a page.
fn label_style() -> TextStyle<'static> {
    (FONT, 14).into_font().color(&MUTED)
}

/// Point counts of the polylines drawn in `color` (test helper: the data lines, not the axes).
#[cfg(test)]
pub(crate) fn polylines(svg: &str, color: RGBColor) -> Vec<usize> {
    let stroke = format!("stroke=\"#{:02X}{:02X}{:02X}\"", color.0, color.1, color.2);
    svg.split("<polyline")
        .skip(1)
        .filter(|p| p.split('>').next().unwrap_or("").contains(&stroke))
        .map(|p| {
            p.split("points=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .map(|pts| pts.split_whitespace().count())
                .unwrap_or(0)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_data_chart_says_so_and_has_no_namespace_url() {
        let svg = no_data("TTFT", "no windows");
        assert!(svg.contains("no data"), "{svg}");
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(!svg.contains("http"), "{svg}");
    }
}
