//! The load generator's own limits, so that its saturation never passes for the server's.
//!
//! Why: an open-loop client that cannot keep up used to open a new connection for every request
//! it was late with; at twice its ceiling that was 57,286 `connect_error`s (ephemeral ports and
//! file descriptors run out) reported as the *server's* failures. So:
//! - connections are a bounded pool (`--max-connections`): a request that finds every
//!   connection busy waits for one, and that wait is dispatch lag (intended start → actual
//!   send), measured and reported, never an error;
//! - a window whose dispatch-lag p99 is above `--max-dispatch-lag` is *client-limited*: the
//!   server got less load than the schedule meant, so its numbers measure the client.
//!
//! ## The default pool size
//! `max_connections = min(max(ceil(peak_rate × timeout × SAFETY), FLOOR), cap)` where the peak
//! rate is the schedule's highest intended rate, `timeout` the per-request timeout (`--timeout`,
//! the longest a request can hold a connection), `SAFETY` = 1.25 (Poisson bursts) and `FLOOR` =
//! 64; `cap` = the process's soft file-descriptor limit less 256 kept for files and the rest
//! (halved when the embedded sim serves in the same process: it holds the other end of every
//! connection), and never more than [`DEFAULT_CAP`] (4,096; an explicit `--max-connections`
//! may go up to [`MAX_CONNECTIONS`], about the ephemeral port range).
//!
//! Why the timeout and not a typical latency: by Little's law the requests in flight are rate ×
//! duration, and during a fault (a partition, a hung worker) every request may last the whole
//! timeout. A pool sized for the usual latency would then run dry and turn the *server's*
//! slowness into the *client's* lag, and every partition experiment would come out
//! "client-limited". Sized by the timeout, the pool only runs dry when the cap (descriptors,
//! ports) is below what the schedule needs: then the client really is the limit, and says so.
//! A closed loop needs exactly one connection per user: its default is the user count; a
//! `--max-in-flight` cap bounds the default too.
//!
//! ## Slow start
//! The pool opens up gradually: [`FIRST_SLOTS`] (256) requests may be in flight at first, and
//! once three quarters of the slots are taken the engine adds as many again, at most every
//! 250 ms and at most [`MAX_NEW_SLOTS`] (1,024) at a time, up to the limit (ahead of
//! exhaustion, so a load growing no faster than that never waits for a slot). A client that has fallen behind would
//! otherwise open thousands of connections in one burst: more SYNs than a server's accept
//! backlog holds, which come back as connect timeouts, the client's doing passed off as the
//! server's (57,286 `connect_error`s at twice the ceiling, before). A load that needs more
//! connections reaches them within a few seconds (4,096 in 1.5 s); waiting for a slot is
//! dispatch lag, so a load that outgrows the pool shows as client-limited, never as errors.
//!
//! ## What is bounded exactly
//! Requests in flight: under HTTP/1.1 each holds one connection, so `peak_connections` never
//! exceeds the limit. The sockets themselves are hyper's: when a request finds no idle
//! connection, hyper starts a connect *and* waits for one to come back, and if one comes back
//! first the new connection still opens and goes idle. Under CPU saturation that added up to a
//! third more sockets than the limit (measured: up to 5,412 connects for a pool of 4,096 when sending
//! 100,000 req/s flat out); `connections_opened` reports it. A hard cap on sockets needs a
//! connector that owns them, which reqwest's `connector_layer` (its `Conn` is sealed) cannot be.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

/// Head-room over rate × timeout (arrivals come in bursts).
pub const SAFETY: f64 = 1.25;
/// The smallest default pool.
pub const FLOOR: usize = 64;
/// File descriptors kept out of the pool for everything else the process opens.
pub const FD_RESERVE: u64 = 256;
/// The largest default pool (an explicit `--max-connections` may be larger).
pub const DEFAULT_CAP: usize = 4_096;
/// Slots open at the start of a run.
pub const FIRST_SLOTS: usize = 256;
/// Most slots added in one step (every 250 ms, while every slot is taken).
pub const MAX_NEW_SLOTS: usize = 1_024;
/// The largest pool: Linux's default ephemeral port range (32768–60999) is 28,232 ports to
/// one server address.
pub const MAX_CONNECTIONS: usize = 28_000;
/// The default `--max-dispatch-lag`.
pub const DEFAULT_MAX_DISPATCH_LAG: Duration = Duration::from_millis(10);

/// How the engine keeps its own saturation visible.
#[derive(Clone, Debug, PartialEq)]
pub struct Overload {
    /// Requests in flight (= HTTP/1.1 connections) at most; `None`: [`default_max_connections`].
    pub max_connections: Option<usize>,
    /// A window whose dispatch-lag p99 is above this is client-limited.
    pub max_dispatch_lag: Duration,
    /// The embedded sim serves in this process (it holds the server end of every connection,
    /// so the default pool gets half the descriptors).
    pub embedded_server: bool,
}

impl Default for Overload {
    fn default() -> Self {
        Overload {
            max_connections: None,
            max_dispatch_lag: DEFAULT_MAX_DISPATCH_LAG,
            embedded_server: false,
        }
    }
}

impl Overload {
    /// The pool size for a schedule whose highest rate is `peak_rate` (`None`: a closed loop
    /// or no rate) and whose own in-flight cap is `in_flight` (a closed loop's users, or
    /// `--max-in-flight`), with requests lasting at most `timeout`.
    pub fn pool_size(
        &self,
        peak_rate: Option<f64>,
        in_flight: Option<usize>,
        timeout: Duration,
    ) -> usize {
        let size = self.max_connections.unwrap_or_else(|| {
            default_max_connections(
                peak_rate,
                in_flight,
                timeout,
                fd_soft_limit(),
                self.embedded_server,
            )
        });
        size.max(1)
    }

    pub fn max_dispatch_lag_ms(&self) -> f64 {
        self.max_dispatch_lag.as_secs_f64() * 1000.0
    }
}

/// The default pool size (see the module docs for the formula). `fd_limit` is the process's
/// soft file-descriptor limit, if known.
pub fn default_max_connections(
    peak_rate: Option<f64>,
    in_flight: Option<usize>,
    timeout: Duration,
    fd_limit: Option<u64>,
    embedded_server: bool,
) -> usize {
    let cap = fd_limit
        .map(|l| {
            let free = l.saturating_sub(FD_RESERVE) / if embedded_server { 2 } else { 1 };
            (free as usize).clamp(1, DEFAULT_CAP)
        })
        .unwrap_or(DEFAULT_CAP);
    let wanted = match (peak_rate, in_flight) {
        // A closed loop (or a cap) needs no more than its own limit.
        (None, Some(n)) => n,
        (Some(r), cap_in_flight) => {
            let wanted = (r * timeout.as_secs_f64() * SAFETY).ceil();
            let by_rate = wanted.clamp(FLOOR as f64, MAX_CONNECTIONS as f64) as usize;
            cap_in_flight.map_or(by_rate, |n| by_rate.min(n))
        }
        (None, None) => FLOOR,
    };
    wanted.min(cap)
}

/// The connection pool as the engine uses it: a semaphore whose permits are the requests
/// allowed in flight, opened up gradually (see "Slow start" in the module docs).
pub struct Slots {
    sem: Arc<tokio::sync::Semaphore>,
    granted: AtomicU64,
    size: usize,
    born: std::time::Instant,
    /// When the last step was granted (µs since `born`).
    last_step_us: AtomicU64,
}

/// The least time between two slow-start steps.
pub const STEP_INTERVAL: Duration = Duration::from_millis(250);

impl Slots {
    pub fn new(size: usize) -> Slots {
        let first = size.min(FIRST_SLOTS);
        Slots {
            sem: Arc::new(tokio::sync::Semaphore::new(first)),
            granted: AtomicU64::new(first as u64),
            size,
            born: std::time::Instant::now(),
            last_step_us: AtomicU64::new(0),
        }
    }

    /// The semaphore to take permits from.
    pub fn semaphore(&self) -> &Arc<tokio::sync::Semaphore> {
        &self.sem
    }

    /// The pool's limit.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Permits granted so far.
    pub fn granted(&self) -> usize {
        self.granted.load(Ordering::Relaxed) as usize
    }

    /// Requests holding a slot now.
    pub fn in_use(&self) -> usize {
        self.granted().saturating_sub(self.sem.available_permits())
    }

    /// Whether three quarters or more of the granted slots are taken (cheap: call before
    /// [`Slots::grow`] on the hot path).
    pub fn busy(&self) -> bool {
        self.sem.available_permits() * 4 <= self.granted()
    }

    /// One slow-start step, now: see [`Slots::grow_at`].
    pub fn grow(&self) {
        self.grow_at(std::time::Instant::now());
    }

    /// One slow-start step: when three quarters of the granted slots are taken, the limit is
    /// not reached and the last step was [`STEP_INTERVAL`] ago, grant as many again (at most
    /// [`MAX_NEW_SLOTS`]). Growing ahead of exhaustion means a load that grows no faster than
    /// that never waits for a slot; the engine calls this from its tick and from the pacer.
    pub fn grow_at(&self, now: std::time::Instant) {
        let granted = self.granted();
        if !self.busy() || granted >= self.size {
            return;
        }
        let now_us = now.saturating_duration_since(self.born).as_micros() as u64;
        let last = self.last_step_us.load(Ordering::Relaxed);
        if last != 0 && now_us < last + STEP_INTERVAL.as_micros() as u64 {
            return;
        }
        if self
            .last_step_us
            .compare_exchange(last, now_us.max(1), Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return; // another caller took this step
        }
        let more = granted.min(MAX_NEW_SLOTS).min(self.size - granted).max(1);
        self.granted.fetch_add(more as u64, Ordering::Relaxed);
        self.sem.add_permits(more);
    }
}

/// The soft `RLIMIT_NOFILE` of this process.
pub fn fd_soft_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct we pass.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
    (ok && lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur)
}

/// A connector layer (for `reqwest::ClientBuilder::connector_layer`) that counts the
/// connections made: the client's own view of how many TCP connections it opened.
#[derive(Clone, Debug, Default)]
pub struct CountConnects {
    opened: Arc<AtomicU64>,
}

impl CountConnects {
    pub fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }
}

impl<S> tower_layer::Layer<S> for CountConnects {
    type Service = Counted<S>;
    fn layer(&self, inner: S) -> Counted<S> {
        Counted {
            inner,
            opened: self.opened.clone(),
        }
    }
}

/// The connector wrapped by [`CountConnects`].
#[derive(Clone, Debug)]
pub struct Counted<S> {
    inner: S,
    opened: Arc<AtomicU64>,
}

impl<S, R> tower_service::Service<R> for Counted<S>
where
    S: tower_service::Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        let fut = self.inner.call(req);
        let opened = self.opened.clone();
        Box::pin(async move {
            let conn = fut.await?;
            opened.fetch_add(1, Ordering::Relaxed);
            Ok(conn)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T30: Duration = Duration::from_secs(30);

    #[test]
    fn default_pool_is_rate_times_timeout_times_safety() {
        // 20 req/s × 30 s × 1.25 = 750: even if every request hangs to its timeout (a
        // partition), the pool does not run dry.
        assert_eq!(
            default_max_connections(Some(20.0), None, T30, Some(65_536), false),
            750
        );
        // 1 req/s would need 38: the floor.
        assert_eq!(
            default_max_connections(Some(1.0), None, T30, Some(65_536), false),
            FLOOR
        );
    }

    #[test]
    fn default_pool_stays_below_the_descriptor_limit_and_the_port_range() {
        // 10,000 req/s wants 375,000: the default cap.
        assert_eq!(
            default_max_connections(Some(10_000.0), None, T30, Some(65_536), false),
            DEFAULT_CAP
        );
        // 4,000 descriptors less the reserve leave 3,744; half with the embedded sim holding
        // the other end of each connection.
        assert_eq!(
            default_max_connections(Some(10_000.0), None, T30, Some(4_000), false),
            3_744
        );
        assert_eq!(
            default_max_connections(Some(10_000.0), None, T30, Some(4_000), true),
            1_872
        );
        assert_eq!(
            default_max_connections(Some(100_000.0), None, T30, None, false),
            DEFAULT_CAP
        );
    }

    #[test]
    fn closed_loop_and_in_flight_caps_bound_the_default() {
        assert_eq!(
            default_max_connections(None, Some(50), T30, Some(20_000), false),
            50
        );
        assert_eq!(
            default_max_connections(Some(1000.0), Some(300), T30, Some(20_000), false),
            300
        );
    }

    #[test]
    fn slots_open_up_gradually_ahead_of_exhaustion_and_no_faster_than_a_step_a_quarter_second() {
        let s = Slots::new(3_000);
        let t0 = std::time::Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert_eq!(s.granted(), FIRST_SLOTS);
        let mut held = Vec::new();
        let mut take = |s: &Slots, n: usize| {
            for _ in 0..n {
                held.push(s.semaphore().clone().try_acquire_owned().unwrap());
            }
        };
        take(&s, 191);
        s.grow_at(at(1000));
        assert_eq!(
            s.granted(),
            FIRST_SLOTS,
            "under three quarters taken: no growth"
        );
        take(&s, 1);
        s.grow_at(at(1000));
        assert_eq!(s.granted(), 512, "three quarters taken: doubled");
        take(&s, 320);
        s.grow_at(at(1100));
        assert_eq!(s.granted(), 512, "within 250 ms of the last step");
        let mut steps = Vec::new();
        for k in 1..=4 {
            s.grow_at(at(1000 + 250 * k));
            steps.push(s.granted());
            let free = s.semaphore().available_permits();
            take(&s, free);
        }
        // Doubling, then at most 1,024 a step, then the limit.
        assert_eq!(steps, vec![1024, 2048, 3000, 3000]);
        assert_eq!(s.in_use(), 3000);
    }

    #[test]
    fn an_explicit_limit_wins() {
        let o = Overload {
            max_connections: Some(7),
            ..Overload::default()
        };
        assert_eq!(o.pool_size(Some(10_000.0), None, T30), 7);
        assert_eq!(o.max_dispatch_lag_ms(), 10.0);
    }
}
