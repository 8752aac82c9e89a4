use super::*;
use crate::analysis::hist::Percentiles;
use std::collections::BTreeMap;

fn summary(ttft_p99: Option<f64>, error_rate: f64, tok_s: f64) -> Summary {
    let requests = 1000;
    let errors = (error_rate * requests as f64).round() as u64;
    Summary {
        requests,
        ok: requests - errors,
        errors,
        error_rate: Some(error_rate),
        errors_by_kind: BTreeMap::new(),
        duration_s: 10.0,
        target_rate: None,
        achieved_rate: 100.0,
        ttft_ms: Percentiles {
            count: requests,
            p99: ttft_p99,
            ..Percentiles::default()
        },
        itl_ms: Percentiles::default(),
        e2e_ms: Percentiles::default(),
        dispatch_lag_ms: Percentiles::default(),
        output_tokens: (tok_s * 10.0) as u64,
        input_tokens: 0,
        output_tok_s: tok_s,
        token_count_source: "usage".into(),
        ..Summary::default()
    }
}

fn step(rate: f64, ttft_p99: f64, error_rate: f64, tok_s: f64) -> Step {
    Step {
        rate: Some(rate),
        concurrency: None,
        summary: summary(Some(ttft_p99), error_rate, tok_s),
        out_dir: format!("steps/{rate}"),
    }
}

/// A healthy curve: latency flat, throughput proportional to the rate.
fn healthy(rates: &[f64]) -> Vec<Step> {
    rates
        .iter()
        .map(|&r| step(r, 100.0, 0.0, r * 100.0))
        .collect()
}

#[test]
fn ttft_above_k_times_first_step_fires_ttft_reason_with_numbers() {
    let mut steps = healthy(&[10.0, 20.0, 30.0, 40.0]);
    steps[2].summary.ttft_ms.p99 = Some(250.0);
    let sat = find_saturation(&Criteria::default(), &steps).unwrap();
    assert_eq!((sat.step, sat.rate, sat.reason), (2, 30.0, Reason::TtftP99));
    assert!(sat.detail.contains("250 ms"), "{}", sat.detail);
    assert!(sat.detail.contains("baseline 100 ms"), "{}", sat.detail);
}

#[test]
fn given_baseline_replaces_the_first_step() {
    let steps = healthy(&[10.0, 20.0]);
    let criteria = Criteria {
        baseline_ttft_p99_ms: Some(40.0),
        ..Criteria::default()
    };
    let sat = find_saturation(&criteria, &steps).unwrap();
    assert_eq!((sat.step, sat.reason), (0, Reason::TtftP99));
}

#[test]
fn error_rate_above_limit_fires_error_reason() {
    let mut steps = healthy(&[10.0, 20.0, 30.0]);
    steps[1].summary = summary(Some(100.0), 0.02, 2000.0);
    let sat = find_saturation(&Criteria::default(), &steps).unwrap();
    assert_eq!((sat.step, sat.reason), (1, Reason::ErrorRate));
    assert!(sat.detail.contains("2.00% > limit 1.00%"), "{}", sat.detail);
}

#[test]
fn flat_throughput_under_rising_rate_fires_plateau_reason() {
    let mut steps = healthy(&[10.0, 20.0, 30.0]);
    steps[2].summary.output_tok_s = 2040.0; // +2% while the rate rose 50%
    let sat = find_saturation(&Criteria::default(), &steps).unwrap();
    assert_eq!((sat.step, sat.reason), (2, Reason::ThroughputPlateau));
}

#[test]
fn flat_throughput_at_the_same_offered_load_is_not_a_plateau() {
    let steps = vec![
        step(10.0, 100.0, 0.0, 1000.0),
        step(10.0, 100.0, 0.0, 1000.0),
    ];
    assert_eq!(find_saturation(&Criteria::default(), &steps), None);
}

#[test]
fn disabled_criteria_do_not_fire() {
    let mut steps = healthy(&[10.0, 20.0, 30.0]);
    steps[1].summary = summary(Some(900.0), 0.5, 2000.0);
    steps[2].summary = summary(Some(900.0), 0.5, 2000.0);
    let off = Criteria {
        ttft_k: None,
        baseline_ttft_p99_ms: None,
        max_error_rate: None,
        plateau: None,
    };
    assert_eq!(find_saturation(&off, &steps), None);
}

#[test]
fn step_with_no_ttft_is_judged_by_errors_only() {
    let mut steps = healthy(&[10.0, 20.0]);
    steps[1].summary = summary(None, 1.0, 0.0);
    let sat = find_saturation(&Criteria::default(), &steps).unwrap();
    assert_eq!(sat.reason, Reason::ErrorRate);
}

#[test]
fn early_stop_allows_exactly_one_confirming_step() {
    assert!(!should_stop(None, 10));
    assert!(!should_stop(Some(3), 4)); // the saturated step itself just ran
    assert!(should_stop(Some(3), 5)); // one confirming step ran
}

#[test]
fn recommended_point_is_fraction_of_saturation_rate() {
    let mut steps = healthy(&[10.0, 20.0, 30.0, 40.0]);
    steps[3].summary.ttft_ms.p99 = Some(500.0);
    let r = analyze(steps, Criteria::default(), 0.7, true);
    assert_eq!(r.saturation.as_ref().unwrap().rate, 40.0);
    assert!((r.recommended_rate - 28.0).abs() < 1e-9);
    assert!(!r.recommended_is_extrapolated);
    assert_eq!(r.max_throughput.rate, 40.0);
    assert_eq!(r.baseline_ttft_p99_ms, Some(100.0));
}

#[test]
fn no_saturation_recommends_fraction_of_highest_rate_and_flags_it() {
    let r = analyze(healthy(&[5.0, 10.0, 15.0]), Criteria::default(), 0.5, false);
    assert_eq!(r.saturation, None);
    assert!((r.recommended_rate - 7.5).abs() < 1e-9);
    assert!(r.recommended_is_extrapolated);
}

#[test]
fn max_throughput_is_the_best_step_even_past_saturation() {
    let mut steps = healthy(&[10.0, 20.0, 30.0]);
    steps[1].summary.ttft_ms.p99 = Some(300.0);
    let r = analyze(steps, Criteria::default(), 0.7, false);
    assert_eq!(r.saturation.unwrap().step, 1);
    assert_eq!(r.max_throughput.rate, 30.0);
}

#[test]
fn closed_loop_steps_use_achieved_rate_and_user_count() {
    let mut steps: Vec<Step> = [1u64, 2, 4]
        .iter()
        .map(|&c| Step {
            rate: None,
            concurrency: Some(c),
            summary: summary(Some(100.0), 0.0, c as f64 * 100.0),
            out_dir: String::new(),
        })
        .collect();
    steps[2].summary.output_tok_s = 201.0;
    steps[2].summary.achieved_rate = 7.0;
    let sat = find_saturation(&Criteria::default(), &steps).unwrap();
    assert_eq!((sat.reason, sat.rate), (Reason::ThroughputPlateau, 7.0));
}

#[test]
fn ramp_json_has_the_documented_shape() {
    let r = analyze(healthy(&[10.0, 20.0]), Criteria::default(), 0.7, false);
    let v = serde_json::to_value(&r).unwrap();
    for key in [
        "steps",
        "baseline_ttft_p99_ms",
        "saturation",
        "max_throughput",
        "recommended_rate",
        "fraction",
        "recommended_is_extrapolated",
        "stopped_early",
        "criteria",
    ] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    assert!(v["steps"][0]["summary"]["ttft_ms"].is_object());
    assert!(v["steps"][0]["concurrency"].is_null());
}

#[test]
fn criteria_check_refuses_k_at_or_below_one() {
    let c = Criteria {
        ttft_k: Some(1.0),
        ..Criteria::default()
    };
    assert!(c.check().is_err());
    assert!(Criteria::default().check().is_ok());
}

#[test]
fn a_client_limited_step_is_never_the_saturation_point() {
    // Step 3 (30/s) looks saturated (TTFT ×5), but only because the client could not send:
    // it and everything after it are left out; nothing before saturated.
    let mut steps = healthy(&[10.0, 20.0, 30.0, 40.0]);
    steps[2].summary.ttft_ms.p99 = Some(500.0);
    steps[2].summary.client_limited = true;
    steps[2].summary.client_limited_share = Some(0.4);
    steps[3].summary.error_rate = Some(0.5);
    let r = analyze(steps, Criteria::default(), 0.75, false);
    assert_eq!(r.saturation, None);
    let c = r.client_limited_from.as_ref().unwrap();
    assert_eq!((c.step, c.rate, c.share), (2, 30.0, Some(0.4)));
    // Recommended from the last clean step (20/s), not the highest tested one.
    assert_eq!(r.recommended_rate, 15.0);
    assert!(r.recommended_is_extrapolated);
}

#[test]
fn saturation_before_the_client_gave_out_still_counts() {
    let mut steps = healthy(&[10.0, 20.0, 30.0, 40.0]);
    steps[1].summary.ttft_ms.p99 = Some(500.0);
    steps[3].summary.client_limited = true;
    let r = analyze(steps, Criteria::default(), 0.5, false);
    assert_eq!(r.saturation.as_ref().map(|s| s.step), Some(1));
    assert_eq!(r.recommended_rate, 10.0);
    assert_eq!(r.client_limited_from.as_ref().map(|c| c.step), Some(3));
}
