//! Cost per million output tokens: what a measured throughput means in money.
//!
//! Definition (the article's, made explicit):
//!
//! ```text
//! effective tok/s   = output_tok_s × utilization        (utilization = 1 when not given)
//! cost per Mtok     = gpus × price_per_gpu_hour / (effective tok/s × 3600) × 1e6
//! ```
//!
//! `output_tok_s` should be the cluster's *maximum* sustained output throughput (a ramp's
//! `max_throughput`), and `utilization` the share of that maximum production runs at on
//! average (the article uses 0.7: load tests find the max, production keeps headroom). A GPU is
//! paid for by the hour whether it is busy or not, so running at 70% of the max makes every
//! token cost 1/0.7 as much. Without `utilization` the cost is that of running flat out at the
//! measured throughput — a lower bound, and labelled as such by `utilization: null`.
//!
//! Only output tokens are counted: they are what decode-bound serving spends its time on and
//! what the load engine measures exactly; prompt tokens ride along.

use crate::analysis::saturation::RampResult;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CostError {
    #[error("invalid value '{value}' for {name} in '{row}': {reason}")]
    Invalid {
        row: String,
        name: &'static str,
        value: f64,
        reason: &'static str,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("configuration '{0}' needs output_tok_s or ramp (a ramp.json), not both or neither")]
    Throughput(String),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CostRow {
    pub name: String,
    pub gpus: u32,
    pub price_per_gpu_hour: f64,
    pub output_tok_s: f64,
    pub utilization: Option<f64>,
    pub cost_per_million_output_tokens: f64,
}

/// `cost.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CostTable {
    pub rows: Vec<CostRow>,
}

/// The formula in the module docs, checked.
pub fn cost_row(
    name: &str,
    gpus: u32,
    price_per_gpu_hour: f64,
    output_tok_s: f64,
    utilization: Option<f64>,
) -> Result<CostRow, CostError> {
    let bad = |field: &'static str, value: f64, reason| CostError::Invalid {
        row: name.to_string(),
        name: field,
        value,
        reason,
    };
    if gpus == 0 {
        return Err(bad("gpus", 0.0, "must be at least 1"));
    }
    if !(price_per_gpu_hour.is_finite() && price_per_gpu_hour >= 0.0) {
        return Err(bad(
            "price",
            price_per_gpu_hour,
            "must be a non-negative number",
        ));
    }
    if !(output_tok_s.is_finite() && output_tok_s > 0.0) {
        return Err(bad("output tok/s", output_tok_s, "must be positive"));
    }
    if let Some(u) = utilization
        && !(u > 0.0 && u <= 1.0)
    {
        return Err(bad("utilization", u, "must be in (0, 1]"));
    }
    let effective = output_tok_s * utilization.unwrap_or(1.0);
    let per_hour = f64::from(gpus) * price_per_gpu_hour;
    Ok(CostRow {
        name: name.to_string(),
        gpus,
        price_per_gpu_hour,
        output_tok_s,
        utilization,
        cost_per_million_output_tokens: per_hour / (effective * 3600.0) * 1e6,
    })
}

/// One configuration as written in a cost file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CostSpec {
    pub name: String,
    pub gpus: u32,
    pub price_per_gpu_hour: f64,
    pub output_tok_s: Option<f64>,
    /// A ramp.json (relative to the cost file) whose max throughput is used.
    pub ramp: Option<PathBuf>,
    pub utilization: Option<f64>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CostFile {
    /// Applies to rows that do not set their own.
    utilization: Option<f64>,
    configurations: Vec<CostSpec>,
}

/// Reads a YAML cost file (see `costs/example.yaml`) into a table.
pub fn load_file(path: &Path) -> Result<CostTable, CostError> {
    let read = |p: &Path| {
        // Capped, regular files only: `cost --file /dev/zero` read forever.
        crate::limits::read_text_capped(p, crate::limits::MAX_SMALL_FILE_BYTES).map_err(|e| {
            CostError::Read {
                path: p.to_path_buf(),
                source: e.into_io(),
            }
        })
    };
    let parse = |p: &Path, message: String| CostError::Parse {
        path: p.to_path_buf(),
        message,
    };
    let text = read(path)?;
    let json = crate::yaml::to_json(&text).map_err(|e| parse(path, e.to_string()))?;
    let file: CostFile = serde_path_to_error::deserialize(json)
        .map_err(|e| parse(path, format!("at {}: {}", e.path(), e.inner())))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let rows = file
        .configurations
        .iter()
        .map(|c| {
            let tok_s = match (c.output_tok_s, &c.ramp) {
                (Some(t), None) => t,
                (None, Some(ramp)) => {
                    let p = dir.join(ramp);
                    let r: RampResult =
                        serde_json::from_str(&read(&p)?).map_err(|e| parse(&p, e.to_string()))?;
                    r.max_throughput.output_tok_s
                }
                _ => return Err(CostError::Throughput(c.name.clone())),
            };
            cost_row(
                &c.name,
                c.gpus,
                c.price_per_gpu_hour,
                tok_s,
                c.utilization.or(file.utilization),
            )
        })
        .collect::<Result<_, _>>()?;
    Ok(CostTable { rows })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_gpus_at_2_49_making_3600_tok_s_cost_2_77_per_mtok() {
        // 4 × 2.49 = 9.96 $/h; 3600 tok/s × 3600 s = 12.96 Mtok/h; 9.96 / 12.96 = 0.7685.
        let r = cost_row("x", 4, 2.49, 3600.0, None).unwrap();
        assert!((r.cost_per_million_output_tokens - 0.768_518_5).abs() < 1e-6);
    }

    #[test]
    fn utilization_divides_throughput_as_in_the_article() {
        // The article's 4×H100 FP16 row: 4 × 3.50 / (3200 × 0.7 × 3600) × 1e6 = 1.736.
        let r = cost_row("4x H100", 4, 3.50, 3200.0, Some(0.7)).unwrap();
        assert!((r.cost_per_million_output_tokens - 1.736_111).abs() < 1e-5);
    }

    #[test]
    fn zero_throughput_and_utilization_above_one_are_refused() {
        assert!(cost_row("x", 1, 1.0, 0.0, None).is_err());
        assert!(cost_row("x", 1, 1.0, 10.0, Some(1.5)).is_err());
        assert!(cost_row("x", 0, 1.0, 10.0, None).is_err());
    }
}
