//! Latency percentiles (p50/p95/p99) per ramp step, one chart per metric: how the tail pulls
//! away from the median as the load grows, which the hockey stick's two lines only hint at.

use super::{
    AXIS, BLUE, ChartError, GRID, HEIGHT, ORANGE, RED_, WIDTH, caption_style, draw_err, finish,
    label_style, legend, no_data, y_range,
};
use plotters::prelude::*;

/// `steps`: (achieved load, [p50, p95, p99] in ms).
pub fn step_percentiles(
    title: &str,
    x_desc: &str,
    y_desc: &str,
    steps: &[(f64, [Option<f64>; 3])],
) -> Result<String, ChartError> {
    if steps.iter().all(|(_, p)| p.iter().all(Option::is_none)) {
        return Ok(no_data(title, "no ramp step with samples"));
    }
    let err = draw_err(title);
    let x_max = steps.iter().map(|s| s.0).fold(0.0_f64, f64::max) * 1.1;
    let x_max = if x_max > 0.0 { x_max } else { 1.0 };
    let y_max = steps
        .iter()
        .flat_map(|s| s.1)
        .flatten()
        .fold(0.0_f64, f64::max);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH / 2, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(&err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, caption_style())
            .margin(14)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..x_max, y_range(y_max))
            .map_err(&err)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .x_label_formatter(&|v| crate::report::inputs::num(*v))
            .y_label_formatter(&|v| crate::report::inputs::num(*v))
            .light_line_style(TRANSPARENT)
            .bold_line_style(GRID)
            .axis_style(AXIS)
            .label_style(label_style())
            .axis_desc_style(label_style())
            .draw()
            .map_err(&err)?;
        for (i, (name, color)) in [("p50", BLUE), ("p95", ORANGE), ("p99", RED_)]
            .into_iter()
            .enumerate()
        {
            let pts: Vec<(f64, f64)> = steps
                .iter()
                .filter_map(|(x, p)| p[i].map(|v| (*x, v)))
                .collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                .map_err(&err)?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
            chart
                .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))
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
        let svg = step_percentiles("ITL", "req/s", "ms", &[(3.0, [None, None, None])]).unwrap();
        assert!(svg.contains("no data"));
    }

    #[test]
    fn each_percentile_is_a_line_with_a_point_per_step() {
        let steps: Vec<(f64, [Option<f64>; 3])> = (1..=4)
            .map(|i| (i as f64, [Some(10.0), Some(20.0), Some(30.0 * i as f64)]))
            .collect();
        let svg = step_percentiles("TTFT", "req/s", "ms", &steps).unwrap();
        for color in [BLUE, ORANGE, RED_] {
            assert_eq!(
                super::super::polylines(&svg, color),
                vec![4, 2],
                "line + legend"
            );
        }
        assert!(svg.matches("<circle").count() >= 12);
    }
}
