//! The recorder: folds finished requests into per-window histograms and streams everything to
//! disk as the run goes, so that a crash loses at most the last second.
//!
//! A window is kept open while any request intended to start in it is still in flight, then
//! sealed: written to `windows.jsonl` (digest + exact histograms) and dropped from memory, so
//! memory stays flat however long the run is. `requests.jsonl` gets one line per request the
//! moment it finishes.
//!
//! A window is sealed at the first tick (every 250 ms) after its last request finished, as soon
//! as no request can still be dispatched into it: the pacer hands out intended start times in
//! order, so once a request of a later window has begun, an earlier window gets no more. Only
//! when no later request comes (low rates, the end of the run) does sealing wait one window
//! length past the window's end. So `windows.jsonl` trails `requests.jsonl` by the duration of
//! the window's slowest request plus a tick, not by two windows: a crash loses little of either.

use crate::analysis::window::{Window, WindowLine, WindowStats};
use crate::load::record::RequestRecord;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub const REQUESTS_FILE: &str = "requests.jsonl";
pub const WINDOWS_FILE: &str = "windows.jsonl";

#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    #[error("cannot create {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Live counters for a progress display.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    pub sent: u64,
    pub in_flight: u64,
    pub completed: u64,
    pub errors: u64,
    pub output_tokens: u64,
    /// The most requests in flight at once so far.
    pub peak_in_flight: u64,
    /// The most recently sealed window.
    pub last: Option<WindowStats>,
    /// Sealed windows that were client-limited (dispatch-lag p99 above the threshold), and the
    /// episodes (runs of such windows, in index order) they formed; the dispatch-lag p99 of
    /// the window that began the latest episode.
    pub client_limited_windows: u64,
    pub client_limited_episodes: u64,
    pub client_limited_lag_p99_ms: Option<f64>,
    /// Completions and errors per second of *completion* time, newest last (the last
    /// `LIVE_SECONDS`): what live decisions (stop conditions, steady-state checks) look at,
    /// because a window keyed by intended start is only complete once its slowest request is.
    pub live: std::collections::VecDeque<LiveSecond>,
}

/// Requests that finished during one second of the run.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LiveSecond {
    pub second: u64,
    pub completed: u64,
    pub errors: u64,
    /// Largest TTFT among them (ms), if any had one.
    pub max_ttft_ms: Option<f64>,
}

pub const LIVE_SECONDS: usize = 120;

/// Client-limited windows at most this many windows apart are one episode (one warning): a
/// client that is struggling is late in most windows, not all, and a warning per window is
/// noise.
pub const EPISODE_GAP: u64 = 5;

impl Progress {
    /// Error rate over the last `seconds` complete seconds before `now_s` (by completion time).
    pub fn recent_error_rate(&self, now_s: f64, seconds: u64) -> Option<f64> {
        let now = now_s as u64;
        let from = now.saturating_sub(seconds);
        let (done, errs) = self
            .live
            .iter()
            .filter(|l| l.second >= from && l.second < now)
            .fold((0, 0), |(d, e), l| (d + l.completed, e + l.errors));
        (done > 0).then(|| errs as f64 / done as f64)
    }
}

struct OpenWindow {
    window: Window,
    in_flight: u64,
}

struct Inner {
    open: BTreeMap<u64, OpenWindow>,
    /// The latest intended start begun: no request is dispatched before it any more.
    frontier_s: f64,
    total: Window,
    sealed: Vec<WindowStats>,
    requests_out: BufWriter<File>,
    windows_out: BufWriter<File>,
    progress: Progress,
    /// The index of the last client-limited window sealed: a limited window within
    /// [`EPISODE_GAP`] windows of it (either side: windows seal out of order) continues the
    /// episode.
    last_limited: Option<u64>,
    error: Option<RecorderError>,
}

pub struct Recorder {
    dir: PathBuf,
    window_len_s: f64,
    /// Dispatch-lag p99 (ms) above which a sealed window is client-limited.
    max_lag_ms: f64,
    inner: Mutex<Inner>,
}

/// What a finished run leaves in memory: the total (all windows merged) and each window's digest.
pub struct Recorded {
    pub total: Window,
    pub windows: Vec<WindowStats>,
}

impl Recorder {
    pub fn create(dir: &Path, window_len_s: f64) -> Result<Recorder, RecorderError> {
        std::fs::create_dir_all(dir).map_err(|source| RecorderError::Create {
            path: dir.to_path_buf(),
            source,
        })?;
        let open = |name: &str| {
            let path = dir.join(name);
            File::create(&path)
                .map(|f| BufWriter::with_capacity(1 << 16, f))
                .map_err(|source| RecorderError::Create { path, source })
        };
        Ok(Recorder {
            dir: dir.to_path_buf(),
            window_len_s,
            max_lag_ms: crate::load::pool::DEFAULT_MAX_DISPATCH_LAG.as_secs_f64() * 1000.0,
            inner: Mutex::new(Inner {
                open: BTreeMap::new(),
                frontier_s: 0.0,
                total: Window::new(0, 0.0),
                sealed: Vec::new(),
                requests_out: open(REQUESTS_FILE)?,
                windows_out: open(WINDOWS_FILE)?,
                progress: Progress::default(),
                last_limited: None,
                error: None,
            }),
        })
    }

    /// Judges sealed windows client-limited above `max_lag_ms` of dispatch-lag p99.
    pub fn judging(mut self, max_lag_ms: f64) -> Recorder {
        self.max_lag_ms = max_lag_ms;
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn window_len_s(&self) -> f64 {
        self.window_len_s
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves counters that are still meaningful.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a request about to be sent; returns its window index.
    pub fn begin(&self, intended_s: f64) -> u64 {
        let index = (intended_s.max(0.0) / self.window_len_s) as u64;
        let len = self.window_len_s;
        let mut g = self.lock();
        g.frontier_s = g.frontier_s.max(intended_s);
        g.progress.sent += 1;
        g.progress.in_flight += 1;
        g.progress.peak_in_flight = g.progress.peak_in_flight.max(g.progress.in_flight);
        g.open
            .entry(index)
            .or_insert_with(|| OpenWindow {
                window: Window::new(index, len),
                in_flight: 0,
            })
            .in_flight += 1;
        index
    }

    pub fn record_itl(&self, window: u64, gaps_us: &[u64]) {
        if gaps_us.is_empty() {
            return;
        }
        let mut g = self.lock();
        if let Some(w) = g.open.get_mut(&window) {
            w.window.record_itl(gaps_us);
        }
    }

    /// Records a finished request: one line to `requests.jsonl`, folded into its window.
    pub fn finish(&self, window: u64, rec: &RequestRecord) {
        let line = serde_json::to_vec(rec).expect("a request record always serializes");
        let mut g = self.lock();
        let inner = &mut *g;
        if inner.error.is_none() {
            let res = inner
                .requests_out
                .write_all(&line)
                .and_then(|_| inner.requests_out.write_all(b"\n"));
            if let Err(source) = res {
                inner.error = Some(RecorderError::Write {
                    path: self.dir.join(REQUESTS_FILE),
                    source,
                });
            }
        }
        inner.progress.in_flight -= 1;
        inner.progress.completed += 1;
        inner.progress.output_tokens += rec.output_tokens;
        if rec.outcome.is_server_error() {
            inner.progress.errors += 1;
        }
        let second = ((rec.intended_s * 1e6) as u64 + rec.e2e_us) / 1_000_000;
        let live = &mut inner.progress.live;
        if live.back().is_none_or(|l| l.second < second) {
            live.push_back(LiveSecond {
                second,
                ..LiveSecond::default()
            });
            if live.len() > LIVE_SECONDS {
                live.pop_front();
            }
        }
        if let Some(l) = live.iter_mut().rev().find(|l| l.second == second) {
            l.completed += 1;
            l.errors += u64::from(rec.outcome.is_server_error());
            if let Some(t) = rec.ttft_us {
                let t = t as f64 / 1000.0;
                l.max_ttft_ms = Some(l.max_ttft_ms.map_or(t, |m| m.max(t)));
            }
        }
        if let Some(w) = inner.open.get_mut(&window) {
            w.window.record(rec);
            w.in_flight -= 1;
        }
    }

    /// Seals every window that has nothing in flight and can get no more requests (a later
    /// one has begun, or it ended more than a window length ago), and flushes both files.
    /// Call a few times a second.
    pub fn tick(&self, now_s: f64) -> Result<(), RecorderError> {
        let grace = self.window_len_s;
        let mut g = self.lock();
        let frontier = g.frontier_s;
        let ready: Vec<u64> = g
            .open
            .iter()
            .filter(|(_, w)| {
                let end = w.window.start_s + w.window.len_s;
                w.in_flight == 0 && (end <= frontier || end + grace <= now_s)
            })
            .map(|(i, _)| *i)
            .collect();
        for index in ready {
            self.seal(&mut g, index);
        }
        self.flush(&mut g)
    }

    fn seal(&self, g: &mut Inner, index: u64) {
        let Some(open) = g.open.remove(&index) else {
            return;
        };
        let w = open.window;
        let stats = w.stats_with(self.max_lag_ms);
        if stats.client_limited {
            let p = &mut g.progress;
            p.client_limited_windows += 1;
            let continues = g
                .last_limited
                .is_some_and(|l| index.abs_diff(l) <= EPISODE_GAP);
            if !continues {
                p.client_limited_episodes += 1;
                p.client_limited_lag_p99_ms = stats.dispatch_lag_p99_ms;
            }
            g.last_limited = Some(g.last_limited.map_or(index, |l| l.max(index)));
        }
        let line = WindowLine {
            stats: stats.clone(),
            window: w,
        };
        let text = serde_json::to_vec(&line).expect("a window always serializes");
        if g.error.is_none() {
            let res = g
                .windows_out
                .write_all(&text)
                .and_then(|_| g.windows_out.write_all(b"\n"));
            if let Err(source) = res {
                g.error = Some(RecorderError::Write {
                    path: self.dir.join(WINDOWS_FILE),
                    source,
                });
            }
        }
        g.total.merge(&line.window);
        g.progress.last = Some(stats.clone());
        g.sealed.push(stats);
    }

    fn flush(&self, g: &mut Inner) -> Result<(), RecorderError> {
        if let Some(e) = g.error.take() {
            return Err(e);
        }
        g.requests_out
            .flush()
            .map_err(|source| RecorderError::Write {
                path: self.dir.join(REQUESTS_FILE),
                source,
            })?;
        g.windows_out
            .flush()
            .map_err(|source| RecorderError::Write {
                path: self.dir.join(WINDOWS_FILE),
                source,
            })
    }

    pub fn progress(&self) -> Progress {
        self.lock().progress.clone()
    }

    /// Seals all remaining windows, flushes and syncs the files.
    pub fn close(&self) -> Result<Recorded, RecorderError> {
        let mut g = self.lock();
        let rest: Vec<u64> = g.open.keys().copied().collect();
        for index in rest {
            self.seal(&mut g, index);
        }
        self.flush(&mut g)?;
        for (file, name) in [
            (g.requests_out.get_ref(), REQUESTS_FILE),
            (g.windows_out.get_ref(), WINDOWS_FILE),
        ] {
            file.sync_all().map_err(|source| RecorderError::Write {
                path: self.dir.join(name),
                source,
            })?;
        }
        let mut windows = g.sealed.clone();
        windows.sort_by_key(|w| w.index);
        Ok(Recorded {
            total: g.total.clone(),
            windows,
        })
    }
}

/// Reads `windows.jsonl` back, merging lines of the same index (a window re-opened by a late
/// dispatch is written twice), sorted by index.
pub fn read_windows(path: &Path) -> Result<Vec<Window>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut by_index: BTreeMap<u64, Window> = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parsed: WindowLine =
            serde_json::from_str(line).map_err(|e| format!("{}:{}: {e}", path.display(), n + 1))?;
        let w = parsed.window;
        match by_index.get_mut(&w.index) {
            Some(existing) => existing.merge(&w),
            None => {
                by_index.insert(w.index, w);
            }
        }
    }
    Ok(by_index.into_values().collect())
}

/// Buffers one request's inter-token gaps and hands them to the recorder in small batches:
/// bounded memory per request, and one lock per batch instead of one per token.
pub struct ItlBuffer<'a> {
    recorder: &'a Recorder,
    window: u64,
    buf: [u64; 64],
    len: usize,
}

impl<'a> ItlBuffer<'a> {
    pub fn new(recorder: &'a Recorder, window: u64) -> Self {
        ItlBuffer {
            recorder,
            window,
            buf: [0; 64],
            len: 0,
        }
    }

    pub fn push(&mut self, gap_us: u64) {
        self.buf[self.len] = gap_us;
        self.len += 1;
        if self.len == self.buf.len() {
            self.flush();
        }
    }

    pub fn flush(&mut self) {
        self.recorder.record_itl(self.window, &self.buf[..self.len]);
        self.len = 0;
    }
}

impl Drop for ItlBuffer<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::record::{Outcome, TokenSource};

    fn rec(intended_s: f64) -> RequestRecord {
        RequestRecord {
            id: 0,
            class: "chat".into(),
            intended_s,
            dispatch_lag_us: 0,
            ttft_us: Some(1000),
            e2e_us: 2000,
            itl_count: 0,
            itl_mean_us: 0,
            itl_max_us: 0,
            output_tokens: 1,
            token_source: TokenSource::Stream,
            input_tokens: 1,
            finish_reason: Some("stop".into()),
            outcome: Outcome::Ok,
            error: None,
        }
    }

    fn lines(dir: &Path) -> usize {
        std::fs::read_to_string(dir.join(WINDOWS_FILE))
            .unwrap()
            .lines()
            .count()
    }

    #[test]
    fn window_is_written_as_soon_as_a_later_request_begins_and_its_own_are_done() {
        let dir = tempfile::tempdir().unwrap();
        let r = Recorder::create(dir.path(), 1.0).unwrap();
        let w0 = r.begin(0.4);
        let w0b = r.begin(0.9);
        r.finish(w0, &rec(0.4));
        r.tick(1.05).unwrap();
        assert_eq!(
            lines(dir.path()),
            0,
            "no later request yet, one still in flight"
        );
        let w1 = r.begin(1.1);
        r.tick(1.15).unwrap();
        assert_eq!(
            lines(dir.path()),
            0,
            "window 0 still has a request in flight"
        );
        r.finish(w0b, &rec(0.9));
        r.tick(1.25).unwrap();
        assert_eq!(
            lines(dir.path()),
            1,
            "window 0 written 0.25 s after its end"
        );
        r.finish(w1, &rec(1.1));
        r.tick(2.5).unwrap();
        assert_eq!(
            lines(dir.path()),
            1,
            "window 1: nothing later began, wait the grace"
        );
        r.tick(3.0).unwrap();
        assert_eq!(lines(dir.path()), 2);
        let done = r.close().unwrap();
        assert_eq!(done.windows.len(), 2);
        assert_eq!(done.total.requests, 3);
    }
}

#[cfg(test)]
mod client_limited_tests {
    use super::*;
    use crate::load::record::{Outcome, TokenSource};

    fn rec(intended_s: f64, lag_us: u64) -> RequestRecord {
        RequestRecord {
            id: 0,
            class: "chat".into(),
            intended_s,
            dispatch_lag_us: lag_us,
            ttft_us: Some(lag_us + 1000),
            e2e_us: lag_us + 2000,
            itl_count: 0,
            itl_mean_us: 0,
            itl_max_us: 0,
            output_tokens: 1,
            token_source: TokenSource::Stream,
            input_tokens: 1,
            finish_reason: Some("stop".into()),
            outcome: Outcome::Ok,
            error: None,
        }
    }

    #[test]
    fn consecutive_client_limited_windows_are_one_episode() {
        let dir = tempfile::tempdir().unwrap();
        let r = Recorder::create(dir.path(), 1.0).unwrap().judging(10.0);
        // Windows 0-1 late (50 ms), 2 on time, 3 late (same episode: within EPISODE_GAP),
        // 4-9 on time, 10 late (a new episode): two episodes, four windows.
        let lags = (0..11u64).map(|i| {
            (
                i,
                if [0, 1, 3, 10].contains(&i) {
                    50_000
                } else {
                    100
                },
            )
        });
        for (i, lag) in lags {
            let t = i as f64 + 0.5;
            let w = r.begin(t);
            r.finish(w, &rec(t, lag));
            r.tick(t + 2.0).unwrap();
            if i == 0 {
                assert_eq!(r.progress().client_limited_episodes, 1);
                let lag = r.progress().client_limited_lag_p99_ms.unwrap();
                assert!((lag - 50.0).abs() < 0.1, "{lag}");
            }
        }
        let done = r.close().unwrap();
        let p = r.progress();
        assert_eq!(p.client_limited_windows, 4);
        assert_eq!(p.client_limited_episodes, 2);
        let flags: Vec<u64> = done
            .windows
            .iter()
            .filter(|w| w.client_limited)
            .map(|w| w.index)
            .collect();
        assert_eq!(flags, vec![0, 1, 3, 10]);
        let lag = done.windows[0].dispatch_lag_p99_ms.unwrap();
        assert!((lag - 50.0).abs() < 0.1, "{lag}");
    }
}
