use super::*;
use crate::analysis::hist::Percentiles;
use crate::record::{Outcome, TokenSource};
use std::collections::BTreeMap;

fn limits() -> SlaLimits {
    SlaLimits {
        ttft_p99_ms: 1000.0,
        itl_p99_ms: 100.0,
        max_error_rate: 0.001,
        e2e_p99_ms: None,
        goodput_min: Some(0.99),
    }
}

fn pct(p99: Option<f64>) -> Percentiles {
    Percentiles {
        count: u64::from(p99.is_some()),
        p99,
        ..Percentiles::default()
    }
}

fn summary(ttft: Option<f64>, itl: Option<f64>, error_rate: Option<f64>) -> Summary {
    Summary {
        requests: 100,
        ok: 100,
        errors: 0,
        error_rate,
        errors_by_kind: BTreeMap::new(),
        duration_s: 10.0,
        target_rate: Some(10.0),
        achieved_rate: 10.0,
        ttft_ms: pct(ttft),
        itl_ms: pct(itl),
        e2e_ms: pct(Some(2000.0)),
        dispatch_lag_ms: pct(None),
        output_tokens: 0,
        input_tokens: 0,
        output_tok_s: 0.0,
        token_count_source: "usage".into(),
        ..Summary::default()
    }
}

fn record(
    ttft_ms: Option<u64>,
    itl_mean_ms: u64,
    itl_max_ms: u64,
    outcome: Outcome,
) -> RequestRecord {
    RequestRecord {
        id: 0,
        class: "fixed".into(),
        intended_s: 0.0,
        dispatch_lag_us: 0,
        ttft_us: ttft_ms.map(|t| t * 1000),
        e2e_us: 3_000_000,
        itl_count: 10,
        itl_mean_us: itl_mean_ms * 1000,
        itl_max_us: itl_max_ms * 1000,
        output_tokens: 11,
        token_source: TokenSource::Usage,
        input_tokens: 10,
        finish_reason: Some("length".into()),
        outcome,
        error: None,
    }
}

#[test]
fn all_within_limits_passes_every_check() {
    let checks = evaluate(
        &limits(),
        &summary(Some(200.0), Some(30.0), Some(0.0)),
        Some(1.0),
    );
    assert!(checks.iter().all(|c| c.passed), "{checks:?}");
    assert_eq!(checks.len(), 4);
}

#[test]
fn each_exceeded_limit_is_named() {
    let checks = evaluate(
        &limits(),
        &summary(Some(1200.0), Some(30.0), Some(0.01)),
        Some(0.5),
    );
    assert_eq!(
        failed_metrics(&checks),
        ["ttft_p99_ms", "error_rate", "goodput"]
    );
    let ttft = &checks[0];
    assert_eq!((ttft.limit, ttft.actual), (1000.0, Some(1200.0)));
}

#[test]
fn a_metric_without_data_fails_with_null_actual() {
    let checks = evaluate(&limits(), &summary(None, None, None), None);
    assert!(
        checks.iter().all(|c| !c.passed && c.actual.is_none()),
        "{checks:?}"
    );
}

#[test]
fn e2e_check_appears_only_when_a_limit_is_set() {
    let mut l = limits();
    l.e2e_p99_ms = Some(1500.0);
    let checks = evaluate(&l, &summary(Some(1.0), Some(1.0), Some(0.0)), Some(1.0));
    let e2e = checks.iter().find(|c| c.metric == "e2e_p99_ms").unwrap();
    assert!(!e2e.passed);
}

#[test]
fn goodput_counts_requests_meeting_every_per_request_limit() {
    let l = limits();
    let recs = [
        record(Some(100), 20, 400, Outcome::Ok), // good: mean ITL counts, not the max
        record(Some(1500), 20, 20, Outcome::Ok), // TTFT too slow
        record(Some(100), 150, 150, Outcome::Ok), // stream too slow
        record(None, 0, 0, Outcome::Timeout),    // failed
    ];
    assert_eq!(goodput(&l, &recs), Some(0.25));
    assert_eq!(goodput(&l, &[]), None);
}

#[test]
fn bisection_tries_both_ends_then_halves_to_precision() {
    let capacity = 37.0;
    let mut b = Bisection::new(5.0, 80.0, 0.05, 20).unwrap();
    let mut tried = vec![];
    while let Some(rate) = b.next() {
        tried.push(rate);
        b.record(rate, rate <= capacity);
    }
    assert_eq!(&tried[..3], &[5.0, 80.0, 42.5]);
    let best = b.best().unwrap();
    assert!(
        best <= capacity && best >= capacity * 0.95,
        "{best} from {tried:?}"
    );
}

#[test]
fn bisection_stops_when_lowest_rate_fails_or_highest_passes() {
    let mut b = Bisection::new(5.0, 80.0, 0.05, 20).unwrap();
    b.record(5.0, false);
    assert_eq!((b.next(), b.best()), (None, None));
    assert_eq!(b.end(), SearchEnd::NonePassed);
    let mut b = Bisection::new(5.0, 80.0, 0.05, 20).unwrap();
    b.record(5.0, true);
    b.record(80.0, true);
    assert_eq!((b.next(), b.best()), (None, Some(80.0)));
    assert_eq!(b.end(), SearchEnd::WholeRangePassed);
    let said = b.end().describe(b.best(), b.lowest_failing());
    assert!(
        said.starts_with("at least 80.00 req/s") && said.contains("raise --find-to"),
        "{said}"
    );
}

#[test]
fn bisection_that_narrows_to_precision_ends_bracketed() {
    let mut b = Bisection::new(5.0, 80.0, 0.05, 20).unwrap();
    while let Some(rate) = b.next() {
        b.record(rate, rate <= 37.0);
    }
    assert_eq!(b.end(), SearchEnd::Bracketed);
    assert!(b.lowest_failing().unwrap() > 37.0);
}

#[test]
fn bisection_stopped_early_says_interrupted_not_found() {
    let mut b = Bisection::new(5.0, 80.0, 0.05, 20).unwrap();
    b.record(5.0, true);
    assert_eq!(b.end(), SearchEnd::Interrupted);
    assert_eq!(
        b.end().describe(b.best(), None),
        "5.00 req/s so far (the search was interrupted)"
    );
}

#[test]
fn bisection_refuses_fewer_than_two_trials() {
    for n in [0, 1] {
        let err = Bisection::new(1.0, 10.0, 0.05, n).unwrap_err();
        assert!(err.to_string().contains("--max-trials"), "{err}");
    }
}

#[test]
fn bisection_respects_max_trials() {
    let mut b = Bisection::new(1.0, 1000.0, 0.001, 4).unwrap();
    let mut n = 0;
    while let Some(rate) = b.next() {
        n += 1;
        b.record(rate, rate < 3.0);
    }
    assert_eq!(n, 4);
    assert_eq!(b.end(), SearchEnd::BudgetExhausted);
    assert!(
        b.end()
            .describe(b.best(), b.lowest_failing())
            .contains("raise --max-trials"),
    );
}

#[test]
fn limits_check_refuses_error_rate_above_one() {
    let mut l = limits();
    l.max_error_rate = 1.5;
    assert!(l.check().is_err());
}
