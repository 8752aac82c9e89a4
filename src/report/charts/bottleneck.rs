//! Server-side saturation per signal (GPU utilization, KV-cache use, queue depth, ...) as
//! horizontal bars, the primary bottleneck highlighted. A signal Prometheus had no data for is
//! written "no data" in its row: an empty bar would read as "0% busy", which is a claim the
//! data does not make.

use super::{
    AXIS, BLUE, ChartError, FONT, GRID, INK, MUTED, RED_, WIDTH, caption_style, draw_err, finish,
    label_style, no_data,
};
use plotters::prelude::*;

/// One signal: its saturation (1.0 = at capacity) or `None` when it had no data.
#[derive(Clone, Debug)]
pub struct Bar {
    pub name: String,
    pub value: Option<f64>,
    pub primary: bool,
}

pub fn bottleneck(title: &str, bars: &[Bar]) -> Result<String, ChartError> {
    if bars.is_empty() {
        return Ok(no_data(title, "no signals"));
    }
    let err = draw_err(title);
    let n = bars.len();
    let x_max = bars.iter().filter_map(|b| b.value).fold(1.0_f64, f64::max) * 1.1;
    let height = (70 + 34 * n as u32).max(160);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(&err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, caption_style())
            .margin(14)
            .x_label_area_size(36)
            .y_label_area_size(220)
            .build_cartesian_2d(0.0..x_max, (0..n).into_segmented())
            .map_err(&err)?;
        let label = |v: &SegmentValue<usize>| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                bars.get(*i).map(|b| b.name.clone()).unwrap_or_default()
            }
            SegmentValue::Last => String::new(),
        };
        chart
            .configure_mesh()
            .x_desc("saturation (1.0 = at capacity)")
            .y_label_formatter(&label)
            .y_labels(n)
            .disable_y_mesh()
            .light_line_style(TRANSPARENT)
            .bold_line_style(GRID)
            .axis_style(AXIS)
            .label_style(label_style())
            .axis_desc_style(label_style())
            .draw()
            .map_err(&err)?;
        for (i, b) in bars.iter().enumerate() {
            match b.value {
                Some(v) => {
                    let color = if b.primary { RED_ } else { BLUE };
                    let mut rect = Rectangle::new(
                        [
                            (0.0, SegmentValue::Exact(i)),
                            (v, SegmentValue::Exact(i + 1)),
                        ],
                        color.mix(if b.primary { 0.85 } else { 0.6 }).filled(),
                    );
                    rect.set_margin(6, 6, 0, 0);
                    chart.draw_series([rect]).map_err(&err)?;
                    chart
                        .draw_series([Text::new(
                            format!("{v:.2}{}", if b.primary { "  primary" } else { "" }),
                            (v + x_max * 0.01, SegmentValue::CenterOf(i)),
                            (FONT, 12).into_font().color(&INK),
                        )])
                        .map_err(&err)?;
                }
                None => {
                    chart
                        .draw_series([Text::new(
                            "no data".to_string(),
                            (x_max * 0.01, SegmentValue::CenterOf(i)),
                            (FONT, 13).into_font().color(&MUTED),
                        )])
                        .map_err(&err)?;
                }
            }
        }
        // The capacity line.
        chart
            .draw_series([PathElement::new(
                vec![(1.0, SegmentValue::Exact(0)), (1.0, SegmentValue::Last)],
                MUTED.stroke_width(1),
            )])
            .map_err(&err)?;
        root.present().map_err(&err)?;
    }
    Ok(finish(svg, title))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_signals_say_no_data_instead_of_a_zero_bar() {
        let bars = [
            Bar {
                name: "gpu_util".into(),
                value: Some(0.97),
                primary: true,
            },
            Bar {
                name: "kv_cache".into(),
                value: None,
                primary: false,
            },
        ];
        let svg = bottleneck("bottleneck", &bars).unwrap();
        assert!(svg.contains("no data"), "{svg}");
        assert!(svg.contains("kv_cache"));
        assert!(svg.contains("0.97"));
    }

    #[test]
    fn no_signals_render_as_no_data() {
        assert!(bottleneck("b", &[]).unwrap().contains("no data"));
    }
}
