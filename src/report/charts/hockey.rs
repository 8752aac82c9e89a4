//! The latency–throughput "hockey stick" of a ramp: TTFT against achieved load, one point per
//! step. Latency stays nearly flat until the cluster saturates, then bends up; the saturation
//! step and the recommended operating point are marked so the chart answers "how much load can
//! we take" without reading the table.

use super::{
    AXIS, BLUE, ChartError, FONT, GRID, HEIGHT, INK, ORANGE, PURPLE, RED_, WIDTH, caption_style,
    draw_err, finish, label_style, legend, no_data, y_range,
};
use plotters::prelude::*;

/// One ramp step: achieved load and its TTFT percentiles (ms).
#[derive(Clone, Debug)]
pub struct StepPoint {
    pub x: f64,
    pub p50: Option<f64>,
    pub p99: Option<f64>,
}

/// `saturation` indexes `points`; `recommended_x` is drawn as a vertical line.
pub fn hockey(
    title: &str,
    x_desc: &str,
    points: &[StepPoint],
    saturation: Option<usize>,
    recommended_x: Option<f64>,
) -> Result<String, ChartError> {
    if points.iter().all(|p| p.p50.is_none() && p.p99.is_none()) {
        return Ok(no_data(title, "no ramp step with TTFT samples"));
    }
    let err = draw_err(title);
    let x_max = points
        .iter()
        .map(|p| p.x)
        .chain(recommended_x)
        .fold(0.0_f64, f64::max)
        * 1.1;
    let x_max = if x_max > 0.0 { x_max } else { 1.0 };
    let y_max = points
        .iter()
        .flat_map(|p| [p.p50, p.p99])
        .flatten()
        .fold(0.0_f64, f64::max);
    let yr = y_range(y_max);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT + 40)).into_drawing_area();
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
            .x_desc(x_desc)
            .y_desc("TTFT (ms)")
            .x_label_formatter(&|v| crate::report::inputs::num(*v))
            .y_label_formatter(&|v| crate::report::inputs::num(*v))
            .light_line_style(TRANSPARENT)
            .bold_line_style(GRID)
            .axis_style(AXIS)
            .label_style(label_style())
            .axis_desc_style(label_style())
            .draw()
            .map_err(&err)?;
        if let Some(x) = recommended_x {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(x, yr.start), (x, yr.end)],
                    PURPLE.stroke_width(2),
                )))
                .map_err(&err)?
                .label(format!("recommended ({x:.1})"))
                .legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], PURPLE.stroke_width(2))
                });
        }
        for (name, color, pick) in [
            (
                "TTFT p99",
                RED_,
                (|p: &StepPoint| p.p99) as fn(&StepPoint) -> Option<f64>,
            ),
            ("TTFT p50", BLUE, |p: &StepPoint| p.p50),
        ] {
            let pts: Vec<(f64, f64)> = points
                .iter()
                .filter_map(|p| pick(p).map(|v| (p.x, v)))
                .collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                .map_err(&err)?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
            chart
                .draw_series(pts.into_iter().map(|p| Circle::new(p, 4, color.filled())))
                .map_err(&err)?;
        }
        if let Some(p) = saturation.and_then(|i| points.get(i)) {
            let y = p.p99.or(p.p50).unwrap_or(yr.end / 2.0);
            chart
                .draw_series([Circle::new((p.x, y), 9, ORANGE.stroke_width(3))])
                .map_err(&err)?
                .label("saturation")
                .legend(|(x, y)| Circle::new((x + 9, y), 5, ORANGE.stroke_width(2)));
            chart
                .draw_series(std::iter::once(Text::new(
                    "    saturation".to_string(),
                    (p.x, y),
                    (FONT, 13).into_font().color(&INK),
                )))
                .map_err(&err)?;
        }
        legend(&mut chart, SeriesLabelPosition::UpperLeft, title)?;
        root.present().map_err(&err)?;
    }
    Ok(finish(svg, title))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_without_samples_render_as_no_data() {
        let svg = hockey(
            "h",
            "req/s",
            &[StepPoint {
                x: 1.0,
                p50: None,
                p99: None,
            }],
            Some(0),
            Some(1.0),
        )
        .unwrap();
        assert!(svg.contains("no data"));
        assert!(
            hockey("h", "req/s", &[], None, None)
                .unwrap()
                .contains("no data")
        );
    }

    #[test]
    fn saturation_and_recommended_points_are_marked() {
        let pts: Vec<StepPoint> = (1..=5)
            .map(|i| StepPoint {
                x: i as f64 * 4.0,
                p50: Some(100.0 * i as f64),
                p99: Some(150.0 * (i * i) as f64),
            })
            .collect();
        let svg = hockey("h", "req/s", &pts, Some(4), Some(12.0)).unwrap();
        assert!(svg.contains("saturation"));
        assert!(svg.contains("recommended (12.0)"));
        assert!(svg.matches("<circle").count() >= 10, "{svg}");
    }
}
