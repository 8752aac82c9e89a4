//! A metric over the run's time (one point per window) with the experiment's phases shaded and
//! each fault's start and clearing drawn as lines: the picture that shows at a glance when the
//! fault bit, how hard, and when the system came back.

use super::{
    AXIS, BLUE, ChartError, FONT, GREEN, GRID, HEIGHT, INK, ORANGE, RED_, WIDTH, caption_style,
    draw_err, finish, label_style, legend, no_data, y_range,
};
use plotters::prelude::*;

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

/// A vertical line: a fault taking effect (`clear == false`) or being cleared.
#[derive(Clone, Debug)]
pub struct Marker {
    pub t_s: f64,
    pub label: String,
    pub clear: bool,
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

/// Draws `points` (window start, value; `None` = no sample in that window, drawn as a gap).
pub fn timeline(
    title: &str,
    y_desc: &str,
    points: &[(f64, Option<f64>)],
    y_format: YFormat,
    bands: &[Band],
    markers: &[Marker],
) -> Result<String, ChartError> {
    if points.iter().all(|(_, v)| v.is_none()) {
        return Ok(no_data(title, "no windows with samples"));
    }
    let err = draw_err(title);
    let x_max = points
        .iter()
        .map(|p| p.0 + 1.0)
        .chain(bands.iter().map(|b| b.to_s))
        .chain(markers.iter().map(|m| m.t_s))
        .fold(1.0_f64, f64::max);
    let y_max = points.iter().filter_map(|p| p.1).fold(0.0_f64, f64::max);
    let y_max = match y_format {
        // Error rates: keep a 5% floor so a quiet run does not look like a spike.
        YFormat::Percent => y_max.max(0.05),
        YFormat::Number => y_max,
    };
    let yr = y_range(y_max);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(&err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, caption_style())
            .margin(14)
            .x_label_area_size(40)
            .y_label_area_size(64)
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

        let mut labelled = Vec::new();
        for b in bands {
            let color = b.phase.color();
            let rect = Rectangle::new(
                [(b.from_s, yr.start), (b.to_s, yr.end)],
                color.mix(0.10).filled(),
            );
            let drawn = chart.draw_series(std::iter::once(rect)).map_err(&err)?;
            if !labelled.contains(&b.phase) {
                labelled.push(b.phase);
                drawn.label(b.phase.name()).legend(move |(x, y)| {
                    Rectangle::new([(x, y - 6), (x + 18, y + 6)], color.mix(0.25).filled())
                });
            }
        }
        for m in markers {
            let color = if m.clear { GREEN } else { RED_ };
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(m.t_s, yr.start), (m.t_s, yr.end)],
                    color.stroke_width(2),
                )))
                .map_err(&err)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    m.label.clone(),
                    (m.t_s, yr.end),
                    (FONT, 12).into_font().color(&INK),
                )))
                .map_err(&err)?;
        }

        // Consecutive windows with a value form one line; a window without samples is a gap.
        let mut segments: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
        for (t, v) in points {
            match v {
                Some(v) => segments.last_mut().expect("one segment").push((*t, *v)),
                None if !segments.last().expect("one segment").is_empty() => {
                    segments.push(Vec::new())
                }
                None => {}
            }
        }
        let mut first = true;
        for seg in segments.into_iter().filter(|s| !s.is_empty()) {
            let single = seg.len() == 1;
            let drawn = chart
                .draw_series(LineSeries::new(seg.clone(), ORANGE.stroke_width(2)))
                .map_err(&err)?;
            if first {
                first = false;
                drawn.label(y_desc).legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], ORANGE.stroke_width(2))
                });
            }
            if single {
                chart
                    .draw_series(seg.into_iter().map(|p| Circle::new(p, 3, ORANGE.filled())))
                    .map_err(&err)?;
            }
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight, title)?;
        root.present().map_err(&err)?;
    }
    Ok(finish(svg, title))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_missing_values_render_as_no_data() {
        let svg = timeline(
            "error rate",
            "errors",
            &[(0.0, None), (1.0, None)],
            YFormat::Percent,
            &[],
            &[],
        )
        .unwrap();
        assert!(svg.contains("no data"));
    }

    #[test]
    fn empty_series_renders_as_no_data_without_panicking() {
        let svg = timeline("throughput", "tok/s", &[], YFormat::Number, &[], &[]).unwrap();
        assert!(svg.contains("no data"));
    }

    #[test]
    fn every_window_is_a_point_and_bands_and_markers_are_drawn() {
        let pts: Vec<(f64, Option<f64>)> =
            (0..20).map(|i| (i as f64, Some(i as f64 * 10.0))).collect();
        let bands = [
            Band {
                from_s: 2.0,
                to_s: 6.0,
                phase: Phase::Pre,
            },
            Band {
                from_s: 6.0,
                to_s: 10.0,
                phase: Phase::During,
            },
        ];
        let markers = [Marker {
            t_s: 6.0,
            label: "a<b & c".into(),
            clear: false,
        }];
        let svg = timeline("tput", "tok/s", &pts, YFormat::Number, &bands, &markers).unwrap();
        // The data line and the 2-point legend sample.
        assert_eq!(super::super::polylines(&svg, ORANGE), vec![20, 2]);
        assert!(
            svg.matches("<rect").count() >= 1 + 2 + 2,
            "background, bands, legend"
        );
        assert!(svg.contains("a&lt;b &amp; c"), "labels are escaped: {svg}");
        assert!(!svg.contains("a<b"));
    }

    #[test]
    fn a_gap_in_the_data_splits_the_line() {
        let pts = [
            (0.0, Some(1.0)),
            (1.0, Some(2.0)),
            (2.0, None),
            (3.0, Some(1.0)),
            (4.0, Some(1.0)),
        ];
        let svg = timeline("e", "x", &pts, YFormat::Number, &[], &[]).unwrap();
        assert_eq!(
            super::super::polylines(&svg, ORANGE),
            vec![2, 2, 2],
            "two segments and the legend"
        );
    }
}
