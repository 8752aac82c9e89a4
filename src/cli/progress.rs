//! Live progress of `faultline run` on stderr: one line redrawn in place on a terminal, a plain
//! line every few seconds otherwise (CI logs, `2> file`), so a 95 s run is never 95 s of silence.
//!
//! Log lines (tracing) go through [`StderrWriter`], which clears the status line, writes the log
//! line and redraws the status under it: the two never share a line.

use crate::runner::live::{ERROR_RATE_SECONDS, LiveStatus, Observer};
use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// The status line now on the terminal, if any.
static LINE: Mutex<Option<String>> = Mutex::new(None);

fn line() -> MutexGuard<'static, Option<String>> {
    LINE.lock().unwrap_or_else(|e| e.into_inner())
}

const CLEAR: &str = "\r\x1b[2K";

/// The one-line description of a snapshot (without a prefix).
pub fn describe(s: &LiveStatus) -> String {
    let phase = match &s.fault {
        Some(f) => format!("{} {f}", s.phase),
        None => s.phase.to_string(),
    };
    let errors = s
        .error_rate
        .map_or("-".to_string(), |e| format!("{:.1}%", e * 100.0));
    let ttft = s
        .ttft_p99_ms
        .map_or("-".to_string(), |t| format!("{t:.0} ms"));
    format!(
        "{:.0}/{:.0} s  {phase}  last {ERROR_RATE_SECONDS} s: errors {errors}  last window: TTFT p99 {ttft}  sent {}, failed {}",
        s.elapsed_s.min(s.total_s),
        s.total_s,
        s.sent,
        s.errors
    )
}

/// Columns of the terminal on stderr (80 when unknown).
fn width() -> usize {
    // SAFETY: TIOCGWINSZ fills the winsize struct we pass; fd 2 is stderr.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(2, libc::TIOCGWINSZ, &mut ws) } == 0;
    if ok && ws.ws_col > 0 {
        ws.ws_col as usize
    } else {
        80
    }
}

/// Draws `text` as the status line (on a terminal), clipped to its width; log lines (such as
/// the client-limited warning) then go above it instead of through it.
pub fn draw(text: &str) {
    let text: String = text.chars().take(width().saturating_sub(1)).collect();
    let mut l = line();
    let _ = write!(std::io::stderr(), "{CLEAR}{text}");
    *l = Some(text);
}

/// The closing line of a run whose client was the bottleneck somewhere (`None` otherwise).
pub fn client_limited_note(s: &crate::analysis::summary::Summary) -> Option<String> {
    if !s.client_limited {
        return None;
    }
    let share = s
        .client_limited_share
        .map(|x| format!(" ({:.0}%)", x * 100.0))
        .unwrap_or_default();
    let pool = match (s.peak_connections, s.max_connections) {
        (Some(p), Some(m)) => format!("; peak connections {p} of a pool of {m}"),
        _ => String::new(),
    };
    Some(format!(
        "client-limited: {} windows{share} had dispatch lag p99 above {} ms (overall p99 {}){pool}. The load generator, not the server, set the pace there: those numbers measure the client.",
        s.client_limited_windows,
        s.max_dispatch_lag_ms.unwrap_or_default(),
        s.dispatch_lag_ms
            .p99
            .map(|v| format!("{v:.1} ms"))
            .unwrap_or_else(|| "-".into()),
    ))
}

/// An observer that redraws the status line in place (`tty`) or prints `progress: ...` every
/// `every` of the run's time.
pub fn observer(tty: bool, every: Duration) -> Observer {
    let next = Mutex::new(every.as_secs_f64());
    Arc::new(move |s: &LiveStatus| {
        if tty {
            // Never wider than the terminal: a wrapped line cannot be cleared with `\r`.
            let text: String = format!("  {}", describe(s))
                .chars()
                .take(width().saturating_sub(1))
                .collect();
            let mut l = line();
            let _ = write!(std::io::stderr(), "{CLEAR}{text}");
            *l = Some(text);
        } else {
            let mut next = next.lock().unwrap_or_else(|e| e.into_inner());
            if s.elapsed_s + 1e-9 >= *next && s.phase != "done" {
                eprintln!("progress: {}", describe(s));
                while *next <= s.elapsed_s + 1e-9 {
                    *next += every.as_secs_f64().max(0.1);
                }
            }
        }
    })
}

/// Takes the status line off the terminal (when the run is over).
pub fn finish() {
    let mut l = line();
    if l.take().is_some() {
        let _ = write!(std::io::stderr(), "{CLEAR}");
    }
}

/// stderr for log lines, keeping clear of the status line.
pub struct StderrWriter;

impl Write for StderrWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let l = line();
        let mut err = std::io::stderr().lock();
        match l.as_deref() {
            Some(status) => {
                err.write_all(CLEAR.as_bytes())?;
                err.write_all(buf)?;
                if !buf.ends_with(b"\n") {
                    err.write_all(b"\n")?;
                }
                err.write_all(status.as_bytes())?;
            }
            None => err.write_all(buf)?,
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for StderrWriter {
    type Writer = StderrWriter;
    fn make_writer(&'a self) -> Self::Writer {
        StderrWriter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_names_time_phase_fault_errors_and_ttft() {
        let s = LiveStatus {
            elapsed_s: 12.4,
            total_s: 95.0,
            phase: "during",
            fault: Some("kill (pod-kill)".into()),
            error_rate: Some(0.032),
            ttft_p99_ms: Some(411.6),
            sent: 240,
            completed: 230,
            errors: 7,
        };
        assert_eq!(
            describe(&s),
            "12/95 s  during kill (pod-kill)  last 5 s: errors 3.2%  last window: TTFT p99 412 ms  sent 240, failed 7"
        );
        let quiet = LiveStatus {
            fault: None,
            phase: "warm-up",
            error_rate: None,
            ttft_p99_ms: None,
            ..s
        };
        assert!(
            describe(&quiet)
                .contains("12/95 s  warm-up  last 5 s: errors -  last window: TTFT p99 -  "),
            "{}",
            describe(&quiet)
        );
    }
}
