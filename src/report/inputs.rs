//! The result files written by `faultline ramp`, `sla`, `bench` and the Prometheus analyses
//! (`ramp.json`, `sla.json`, `cost.json`, `bottleneck.json`, `bench.json`), read with the
//! writers' own types — one type per file format — so the report cannot drift from what is
//! written (it kept weaker copies before, where every number was optional). Unknown fields are
//! still ignored, so a newer faultline's file opens; a file missing a field the type requires is
//! refused with the file named.

/// "12 req/s" or "8 users": what a ramp step asked for.
pub fn step_label(st: &RampStep) -> String {
    match (st.rate, st.concurrency) {
        (Some(r), _) => format!("{} req/s", num(r)),
        (None, Some(c)) => format!("{c} users"),
        (None, None) => "-".into(),
    }
}

/// `ramp.json`, `sla.json`, `cost.json`, `bottleneck.json` and `bench.json` are read with the
/// writers' own types: one type per file format, so the report cannot drift from what is written.
pub use crate::analysis::bottleneck::{
    BottleneckReport as Bottleneck, SignalResult as BottleneckSignal,
};
pub use crate::analysis::cost::{CostRow, CostTable as Cost};
pub use crate::analysis::saturation::{
    MaxThroughput, RampResult as Ramp, Saturation, Step as RampStep,
};
pub use crate::analysis::sla::{Check as SlaCheck, SlaResult as Sla};
pub use crate::runner::bench::{BenchResult as Bench, PhaseTime as BenchPhase};

/// A number without trailing zeros, to 3 significant digits below 10: 12 → "12",
/// 12.5 → "12.5", 0.1256 → "0.126", 0.001 → "0.001".
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    if (v - v.round()).abs() < 1e-9 {
        return format!("{v:.0}");
    }
    if v.abs() >= 10.0 {
        return format!("{v:.1}");
    }
    let decimals = (2 - v.abs().log10().floor() as i32).clamp(0, 12) as usize;
    let s = format!("{v:.decimals$}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramp_json_is_read_with_the_writers_type_and_ignores_new_fields() {
        let mut written = Ramp::example(vec![]);
        written.saturation = Some(Saturation {
            step: 0,
            rate: 4.0,
            reason: crate::analysis::saturation::Reason::TtftP99,
            detail: "p99 > 2x".into(),
        });
        let mut json = serde_json::to_value(&written).unwrap();
        json["new_field"] = serde_json::json!(true);
        let read: Ramp = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(read, written);
        json.as_object_mut().unwrap().remove("recommended_rate");
        let e = serde_json::from_value::<Ramp>(json)
            .unwrap_err()
            .to_string();
        assert!(e.contains("recommended_rate"), "{e}");
    }

    #[test]
    fn num_drops_trailing_zeros() {
        assert_eq!(num(12.0), "12");
        assert_eq!(num(12.5), "12.5");
        assert_eq!(num(0.1256), "0.126");
        assert_eq!(num(0.001), "0.001");
        assert_eq!(num(2.5), "2.5");
    }
}
