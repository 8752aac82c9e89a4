//! Latency histograms (microseconds) and their compact, exact serialization.
//!
//! Percentiles always come from HDR histograms, never from sorting lists in memory. Histograms
//! are serialized with HDR's V2 deflate encoding (base64) so that windows written by several
//! load generators can be merged exactly later, instead of averaging percentiles.

use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2DeflateSerializer};
use serde::{Deserialize, Serialize, Serializer};

/// Significant figures kept: values are exact to within 0.1%.
pub const SIGFIGS: u8 = 3;

/// A latency histogram in microseconds. Grows as needed, so it costs memory in proportion to the
/// largest value recorded, not to the largest value possible.
#[derive(Clone, Debug, PartialEq)]
pub struct Hist(pub Histogram<u64>);

#[derive(Debug, thiserror::Error)]
pub enum HistError {
    #[error("histogram is not valid base64: {0}")]
    Base64(#[from] base64::DecodeError),
    #[error("histogram cannot be decoded: {0:?}")]
    Decode(hdrhistogram::serialization::DeserializeError),
}

impl Default for Hist {
    fn default() -> Self {
        let mut h = Histogram::new(SIGFIGS).expect("3 significant figures is a valid histogram");
        h.auto(true);
        Hist(h)
    }
}

/// Percentiles of one latency metric, in milliseconds. Every field is `None` when there were no
/// samples: an absent number is never reported as zero.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Percentiles {
    pub count: u64,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
    pub mean: Option<f64>,
}

impl Hist {
    pub fn record(&mut self, micros: u64) {
        // `record` grows the histogram; `saturating_record` would clamp to its current range.
        let v = micros.max(1);
        if self.0.record(v).is_err() {
            self.0.saturating_record(v);
        }
    }

    pub fn merge(&mut self, other: &Hist) {
        // Auto-resizing histograms with the same precision always add.
        self.0
            .add(&other.0)
            .expect("auto-resizing histograms of equal precision merge");
    }

    pub fn len(&self) -> u64 {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Value at quantile `q` in milliseconds, `None` when empty.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        (!self.is_empty()).then(|| self.0.value_at_quantile(q) as f64 / 1000.0)
    }

    pub fn percentiles(&self) -> Percentiles {
        if self.is_empty() {
            return Percentiles::default();
        }
        let ms = |v: u64| v as f64 / 1000.0;
        Percentiles {
            count: self.len(),
            p50: self.quantile_ms(0.50),
            p90: self.quantile_ms(0.90),
            p95: self.quantile_ms(0.95),
            p99: self.quantile_ms(0.99),
            max: Some(ms(self.0.max())),
            mean: Some(self.0.mean() / 1000.0),
        }
    }

    pub fn encode(&self) -> String {
        let mut buf = Vec::new();
        V2DeflateSerializer::new()
            .serialize(&self.0, &mut buf)
            .expect("serializing into memory cannot fail");
        base64::engine::general_purpose::STANDARD.encode(buf)
    }

    pub fn decode(text: &str) -> Result<Hist, HistError> {
        let bytes = base64::engine::general_purpose::STANDARD.decode(text)?;
        let mut h: Histogram<u64> = Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .map_err(HistError::Decode)?;
        h.auto(true);
        Ok(Hist(h))
    }
}

impl Serialize for Hist {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.encode())
    }
}

impl<'de> Deserialize<'de> for Hist {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Hist::decode(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn exact_quantile(sorted: &[u64], q: f64) -> u64 {
        // HDR's definition: the smallest value with at least q of the samples at or below it.
        let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
        sorted[rank - 1]
    }

    #[test]
    fn percentiles_agree_with_exact_percentiles_within_precision() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut values: Vec<u64> = (0..50_000)
            .map(|_| {
                // A long-tailed latency-like distribution from 100 µs to ~10 s.
                let x: f64 = rng.random_range(0.0..1.0);
                (100.0 * (1.0 / (1.0 - x * 0.99999)).powf(2.0)) as u64
            })
            .collect();
        let mut h = Hist::default();
        for &v in &values {
            h.record(v);
        }
        values.sort_unstable();
        for q in [0.5, 0.9, 0.95, 0.99, 0.999] {
            let exact = exact_quantile(&values, q) as f64;
            let got = h.0.value_at_quantile(q) as f64;
            let rel = (got - exact).abs() / exact;
            assert!(
                rel <= 0.001,
                "q={q}: exact {exact}, hdr {got}, rel err {rel}"
            );
        }
        assert_eq!(h.0.max(), h.0.highest_equivalent(*values.last().unwrap()));
    }

    #[test]
    fn merged_shards_equal_one_histogram_of_all_samples() {
        let mut all = Hist::default();
        let mut a = Hist::default();
        let mut b = Hist::default();
        for v in 1..20_000u64 {
            let v = v * 37 % 100_003;
            all.record(v);
            if v % 2 == 0 { a.record(v) } else { b.record(v) }
        }
        let a = Hist::decode(&a.encode()).unwrap();
        let b = Hist::decode(&b.encode()).unwrap();
        let mut merged = a.clone();
        merged.merge(&b);
        assert_eq!(merged.percentiles(), all.percentiles());
        assert_eq!(merged.len(), all.len());
    }

    #[test]
    fn empty_histogram_reports_no_numbers_not_zero() {
        let p = Hist::default().percentiles();
        assert_eq!(p.count, 0);
        assert_eq!(p.p99, None);
        assert_eq!(p.mean, None);
    }
}
