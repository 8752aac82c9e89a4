//! Plain-text numbers shared by the Markdown reports and the terminal tables of `ramp`: one
//! spelling of "no data" ("-", never 0) and one precision per kind of number.

/// Whole milliseconds, `-` when there is no number.
pub fn ms(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.0} ms"))
        .unwrap_or_else(|| "-".into())
}

/// A rate as a percentage with two decimals, `-` when there is no number.
pub fn pct(v: Option<f64>) -> String {
    v.map(|v| format!("{:.2}%", v * 100.0))
        .unwrap_or_else(|| "-".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_numbers_read_as_a_dash_not_zero() {
        assert_eq!(ms(None), "-");
        assert_eq!(pct(None), "-");
        assert_eq!(ms(Some(41.6)), "42 ms");
        assert_eq!(pct(Some(0.0123)), "1.23%");
    }
}
