use super::*;

/// The text of every `<text>` element (plotters puts it on its own line).
fn texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| t.split_once('>'))
        .map(|(_, rest)| {
            rest.split("</text>")
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .collect()
}

fn one<'a>(points: &'a [(f64, Option<f64>)]) -> [Series<'a>; 1] {
    [Series {
        points,
        name: "value",
        faint: false,
    }]
}

#[test]
fn all_missing_values_render_as_no_data() {
    let pts = [(0.0, None), (1.0, None)];
    let svg = timeline(
        "error rate",
        "errors",
        &one(&pts),
        YFormat::Percent,
        &[],
        &[],
    )
    .unwrap();
    assert!(svg.contains("no data"));
}

#[test]
fn empty_series_renders_as_no_data_without_panicking() {
    let svg = timeline("throughput", "tok/s", &one(&[]), YFormat::Number, &[], &[]).unwrap();
    assert!(svg.contains("no data"));
}

#[test]
fn every_window_is_a_point_and_bands_and_markers_are_drawn() {
    let pts: Vec<(f64, Option<f64>)> = (0..20).map(|i| (i as f64, Some(i as f64 * 10.0))).collect();
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
    let markers = [
        Marker {
            t_s: 6.0,
            label: "a<b & c".into(),
            clear: false,
        },
        Marker {
            t_s: 10.0,
            label: String::new(),
            clear: true,
        },
    ];
    let svg = timeline(
        "tput",
        "tok/s",
        &one(&pts),
        YFormat::Number,
        &bands,
        &markers,
    )
    .unwrap();
    // The data line (the legend's sample is a 2-point path).
    assert_eq!(super::super::polylines(&svg, ORANGE), vec![2, 20]);
    assert!(
        svg.matches("<rect").count() >= 1 + 2 + 2,
        "background, bands, legend swatches"
    );
    assert!(svg.contains("a&lt;b &amp; c"), "labels are escaped: {svg}");
    assert!(!svg.contains("a<b"));
    let texts = texts(&svg);
    for t in [
        "tput",
        "pre",
        "during",
        "fault injected",
        "cleared",
        "value",
        "a&lt;b &amp; c",
    ] {
        assert!(texts.iter().any(|x| x == t), "{t} in {texts:?}");
    }
    // One badge (the cleared line has no label): in the key and on the line.
    assert_eq!(texts.iter().filter(|t| *t == "1").count(), 2, "{texts:?}");
    let badges = svg
        .split("<circle")
        .skip(1)
        .filter(|c| c.contains("fill=\"#DC2626\""))
        .count();
    assert_eq!(badges, 2, "{svg}");
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
    let svg = timeline("e", "x", &one(&pts), YFormat::Number, &[], &[]).unwrap();
    assert_eq!(
        super::super::polylines(&svg, ORANGE),
        vec![2, 2, 2],
        "the legend's sample and two segments"
    );
}

#[test]
fn a_faint_raw_line_is_drawn_under_the_main_one() {
    let raw: Vec<(f64, Option<f64>)> = (0..10).map(|i| (i as f64, Some(i as f64))).collect();
    let smooth: Vec<(f64, Option<f64>)> = (0..10).map(|i| (i as f64, Some(4.0))).collect();
    let series = [
        Series {
            points: &raw,
            name: "per window",
            faint: true,
        },
        Series {
            points: &smooth,
            name: "rolling mean",
            faint: false,
        },
    ];
    let svg = timeline("t", "x", &series, YFormat::Number, &[], &[]).unwrap();
    // (opacity, points) of the orange lines, legend samples included, in drawing order.
    let lines: Vec<(String, usize)> = svg
        .split("<polyline")
        .skip(1)
        .filter(|p| p.contains("stroke=\"#EA580C\""))
        .map(|p| {
            let attr = |k: &str| {
                p.split(&format!("{k}=\""))
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .unwrap_or("")
                    .to_string()
            };
            (attr("opacity"), attr("points").split_whitespace().count())
        })
        .collect();
    let data: Vec<&(String, usize)> = lines.iter().filter(|l| l.1 == 10).collect();
    assert_eq!(
        data,
        vec![&("0.35".to_string(), 10), &("1".to_string(), 10)],
        "raw faint first, the mean on top: {lines:?}"
    );
    let texts = texts(&svg);
    assert!(texts.iter().any(|t| t == "per window") && texts.iter().any(|t| t == "rolling mean"));
}

#[test]
fn badges_close_together_are_staggered_into_rows_and_never_overlap() {
    // The game day's lines, at ~3.1 px/s: far apart ones share a row.
    assert_eq!(stagger(&[100, 200, 300], 20), vec![0, 0, 0]);
    // Two within a badge's width: the second goes up a row, the third comes back down.
    assert_eq!(stagger(&[100, 110, 150], 20), vec![0, 1, 0]);
    let xs = [100, 105, 110, 118, 200];
    let rows = stagger(&xs, 20);
    for i in 0..xs.len() {
        for j in i + 1..xs.len() {
            if rows[i] == rows[j] {
                assert!(xs[j] - xs[i] >= 20, "{xs:?} {rows:?}");
            }
        }
    }
}

#[test]
fn the_key_flows_into_rows_without_overflowing() {
    let at = flow(&[300, 300, 300, 100], 700, 18);
    assert_eq!(at, vec![(0, 0), (0, 318), (1, 0), (1, 318)]);
    for ((_, x), w) in at.iter().zip([300, 300, 300, 100]) {
        assert!(x + w <= 700);
    }
}

#[test]
fn many_fault_labels_make_the_chart_taller_not_overlapping() {
    let pts: Vec<(f64, Option<f64>)> = (0..300).map(|i| (i as f64, Some(1.0))).collect();
    let markers: Vec<Marker> = (0..8)
        .map(|i| Marker {
            t_s: 30.0 + i as f64 * 2.0,
            label: format!("network-partition-worker-{i}"),
            clear: false,
        })
        .collect();
    let svg = timeline("e", "x", &one(&pts), YFormat::Number, &[], &markers).unwrap();
    let height: u32 = svg
        .split("height=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(height > HEIGHT + 2 * BADGE_ROW_H as u32, "{height}");
    let texts = texts(&svg);
    for i in 0..8 {
        assert!(texts.contains(&format!("network-partition-worker-{i}")));
    }
}
