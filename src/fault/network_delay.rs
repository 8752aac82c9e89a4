//! `network-delay`: add delay, jitter and packet loss on one interface of a node with `tc
//! netem`, over SSH (or on a `local` host), optionally only towards given destinations — and
//! take away exactly what was added, never anything else.
//!
//! Why it is built this way:
//! - **Only on an interface the kernel still runs with its default root qdisc.** A root qdisc
//!   someone configured (shaping, a CNI's own, a second fault) would have to be replaced, and
//!   `tc qdisc show` does not print enough to put every such qdisc back as it was. So `prepare`
//!   reads `tc qdisc show dev IF`, records it, and refuses an interface whose root qdisc has a
//!   handle other than `0:` (the kernel's default: `noqueue`, `pfifo_fast`, `fq_codel`, `mq`).
//! - **Our qdisc carries a fixed handle (`fa17:`)** and restore deletes it *by that handle*
//!   (`tc qdisc del dev IF root handle fa17:`): the kernel itself refuses ("Invalid handle") if
//!   the root qdisc is another one, so neither restore nor the dead-man switch can delete a
//!   qdisc faultline did not add, even if someone replaced ours in the meantime. Restore reads
//!   first and deletes only when ours is there: gone already is success (idempotent).
//! - **Towards given destinations only**: a `prio` qdisc with four bands as root (the default
//!   priomap uses bands 1–3, so normal traffic flows as before), netem on band 4, and one `u32`
//!   filter per destination (`match ip dst A/N [match ip dport P 0xffff]`) steering to it.
//!   Deleting the root takes the band, the netem and the filters with it.
//! - **The dead-man switch** (`deadman.rs`) runs the same delete-by-handle on the node after the
//!   fault's deadline plus a margin, so a lost faultline does not leave a node slow for ever.
//! - `tc` is a command prefix (`tc` by default), like `nvidia_smi` for gpu-lockout: `ip netns
//!   exec NS tc` acts in a network namespace (what the tests do).
//! - Kernels without `sch_netem` (or `sch_prio`) answer "Specified qdisc kind is unknown": that
//!   is reported as such, naming the kernel option, instead of as a generic tc failure.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::time::Duration;

use crate::fault::deadman;
use crate::fault::exec::{ExecError, Host, Output, quote_output};
use crate::fault::{
    DescribeCx, FaultContext, HostRef, Lifetime, Problem, Reach, SimBinding, Target, Verification,
};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// The host (a name from the experiment's `hosts` section).
    pub host: Box<str>,
    /// The interface on that host (`eth0`); its egress is delayed.
    pub interface: Box<str>,
    /// Added one-way delay on egress.
    #[serde(default, with = "crate::duration::serde")]
    #[schemars(with = "String")]
    pub delay: Duration,
    /// Random variation of the delay (± this, at most `delay`).
    #[serde(default, with = "crate::duration::serde")]
    #[schemars(with = "String")]
    pub jitter: Duration,
    /// Packets dropped, in percent (0–100).
    #[serde(default)]
    pub loss_percent: f64,
    /// Only traffic to these destinations is affected (empty: all egress traffic).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destinations: Vec<Destination>,
    /// The tc command on the host (a prefix, used as written; e.g. `ip netns exec NS tc`).
    #[serde(default = "default_tc")]
    pub tc: Box<str>,
    /// The node-side dead-man switch removes the qdisc this long after the fault's deadline.
    #[serde(default = "default_margin", with = "crate::duration::serde")]
    #[schemars(with = "String")]
    pub deadman_margin: Duration,
}

/// One destination: an address or a CIDR block, optionally one destination port.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Destination {
    /// `10.0.0.7`, `10.0.0.0/24`, `fd00::7` or `fd00::/64`.
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

fn default_tc() -> Box<str> {
    "tc".into()
}
fn default_margin() -> Duration {
    Duration::from_secs(60)
}

/// The handle of the root qdisc this kind adds; restore deletes only a root with this handle.
pub const HANDLE: &str = "fa17:";
/// The netem under the `prio` band, when destinations are given.
pub const NETEM_HANDLE: &str = "fa18:";
/// The band (class of the prio root) that holds the netem.
pub const BAND: &str = "fa17:4";

/// Undo data: what was there, what we added, and the dead-man timer's marker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Undo {
    pub host: String,
    pub interface: String,
    /// `tc qdisc show dev IF` before inject, as printed (for the record and the tests).
    pub before: String,
    /// The handle of the root qdisc we add (restore deletes exactly this one).
    pub handle: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadman: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error("host {host:?} has no interface {interface:?}: {said}")]
    NoSuchInterface {
        host: String,
        interface: String,
        said: String,
    },
    #[error(
        "interface {interface:?} on host {host:?} already has a root qdisc that is not the kernel's default: {line:?}; network-delay only adds to an interface with its default qdisc (remove that one first, or pick another interface) — it never replaces or deletes a qdisc it did not add"
    )]
    ExistingQdisc {
        host: String,
        interface: String,
        line: String,
    },
    #[error(
        "the kernel of host {host:?} has no {qdisc} qdisc ({cmd:?} says {said:?}): load the module (`modprobe sch_{qdisc}`) or use a kernel built with CONFIG_NET_SCH_{}", .qdisc.to_ascii_uppercase()
    )]
    KernelLacks {
        host: String,
        qdisc: &'static str,
        cmd: String,
        said: String,
    },
    #[error("{cmd:?} on host {host:?} failed ({status}): {output}")]
    Tc {
        host: String,
        cmd: String,
        status: String,
        output: String,
    },
    #[error(
        "network-delay did not take effect on {interface:?} of host {host:?}: wanted {want}, `tc qdisc show` says:\n{shown}"
    )]
    NotInEffect {
        host: String,
        interface: String,
        want: String,
        shown: String,
    },
    #[error(
        "restore did not take effect on {interface:?} of host {host:?}: qdisc {HANDLE} is still there:\n{shown}"
    )]
    NotRestored {
        host: String,
        interface: String,
        shown: String,
    },
}

// ---------------------------------------------------------------------------------------------
// Reading `tc qdisc show`.

/// One line of `tc qdisc show`: `qdisc netem fa18: parent fa17:4 limit 1000 delay 100ms  20ms`.
#[derive(Clone, Debug, PartialEq)]
pub struct QdiscLine {
    pub kind: String,
    pub handle: String,
    /// `None`: the root qdisc.
    pub parent: Option<String>,
    /// The whole line, as printed.
    pub text: String,
}

/// Parses the lines of `tc qdisc show dev IF` (other lines are ignored).
pub fn parse_qdiscs(text: &str) -> Vec<QdiscLine> {
    text.lines()
        .filter_map(|line| {
            let t: Vec<&str> = line.split_whitespace().collect();
            if t.first() != Some(&"qdisc") || t.len() < 4 {
                return None;
            }
            let parent = match t[3] {
                "root" => None,
                "parent" => Some(t.get(4).copied().unwrap_or("").to_string()),
                _ => Some(String::new()),
            };
            Some(QdiscLine {
                kind: t[1].to_string(),
                handle: t[2].to_string(),
                parent,
                text: line.trim().to_string(),
            })
        })
        .collect()
}

/// The root qdisc, if the text names one.
pub fn root(qdiscs: &[QdiscLine]) -> Option<&QdiscLine> {
    qdiscs.iter().find(|q| q.parent.is_none())
}

/// A time as tc prints it (`100ms`, `1.5s`, `150us`, `20ns`).
pub fn parse_tc_time(s: &str) -> Option<Duration> {
    let (num, mult) = if let Some(n) = s.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = s.strip_suffix("ns") {
        (n, 1e-9)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else {
        return None;
    };
    let v: f64 = num.parse().ok()?;
    (v >= 0.0).then(|| Duration::from_secs_f64(v * mult))
}

/// What a netem line says: (delay, jitter, loss percent).
pub fn netem_settings(line: &str) -> (Duration, Duration, f64) {
    let t: Vec<&str> = line.split_whitespace().collect();
    let mut delay = Duration::ZERO;
    let mut jitter = Duration::ZERO;
    let mut loss = 0.0;
    for (i, w) in t.iter().enumerate() {
        match *w {
            "delay" => {
                if let Some(d) = t.get(i + 1).and_then(|s| parse_tc_time(s)) {
                    delay = d;
                    if let Some(j) = t.get(i + 2).and_then(|s| parse_tc_time(s)) {
                        jitter = j;
                    }
                }
            }
            "loss" => {
                let v = t.get(i + 1).map(|s| s.trim_end_matches('%'));
                // `loss random 1%` on some versions.
                let v = match v {
                    Some("random") => t.get(i + 2).map(|s| s.trim_end_matches('%')),
                    v => v,
                };
                loss = v.and_then(|s| s.parse().ok()).unwrap_or(0.0);
            }
            _ => {}
        }
    }
    (delay, jitter, loss)
}

fn close(a: Duration, b: Duration) -> bool {
    let (a, b) = (a.as_secs_f64(), b.as_secs_f64());
    (a - b).abs() <= 1e-6_f64.max(b * 0.01)
}

// ---------------------------------------------------------------------------------------------
// Commands.

/// A duration as tc takes it, exact to the microsecond.
fn tc_time(d: Duration) -> String {
    format!("{}us", d.as_micros())
}

fn netem_args(p: &Params) -> String {
    let mut s = String::from("netem");
    if !p.delay.is_zero() {
        s += &format!(" delay {}", tc_time(p.delay));
        if !p.jitter.is_zero() {
            s += &format!(" {}", tc_time(p.jitter));
        }
    }
    if p.loss_percent > 0.0 {
        s += &format!(" loss {}%", p.loss_percent);
    }
    s
}

/// The tc commands that add the fault, in order (each to be run privileged).
pub fn add_commands(p: &Params) -> Vec<String> {
    let (tc, dev) = (p.tc.trim(), &p.interface);
    if p.destinations.is_empty() {
        return vec![format!(
            "{tc} qdisc add dev {dev} root handle {HANDLE} {}",
            netem_args(p)
        )];
    }
    let mut cmds = vec![
        format!(
            "{tc} qdisc add dev {dev} root handle {HANDLE} prio bands 4 priomap 1 2 2 2 1 2 0 0 1 1 1 1 1 1 1 1"
        ),
        format!(
            "{tc} qdisc add dev {dev} parent {BAND} handle {NETEM_HANDLE} {}",
            netem_args(p)
        ),
    ];
    for d in &p.destinations {
        let (addr, v6) = normalized_destination(&d.address).unwrap_or((d.address.clone(), false));
        // One filter priority per protocol: the kernel refuses an IPv6 filter at a priority
        // that already holds IPv4 ones ("Protocol mismatch for filter with specified priority").
        let (proto, m, prio) = if v6 {
            ("ipv6", "ip6", 2)
        } else {
            ("ip", "ip", 1)
        };
        let port = d
            .port
            .map(|p| format!(" match {m} dport {p} 0xffff"))
            .unwrap_or_default();
        cmds.push(format!(
            "{tc} filter add dev {dev} parent {HANDLE} protocol {proto} prio {prio} u32 match {m} dst {addr}{port} flowid {BAND}"
        ));
    }
    cmds
}

/// The command that removes what `add_commands` added (and nothing else: the kernel refuses a
/// root of another handle).
pub fn delete_command(tc: &str, interface: &str) -> String {
    format!(
        "{} qdisc del dev {interface} root handle {HANDLE}",
        tc.trim()
    )
}

fn show_command(tc: &str, interface: &str) -> String {
    format!("{} qdisc show dev {interface}", tc.trim())
}

/// `A` or `A/N` as `A/N` (a bare address gets /32 or /128), and whether it is IPv6.
fn normalized_destination(s: &str) -> Option<(String, bool)> {
    let (a, n) = match s.split_once('/') {
        Some((a, n)) => (a, Some(n.parse::<u8>().ok()?)),
        None => (s, None),
    };
    let ip: IpAddr = a.trim().parse().ok()?;
    let max = if ip.is_ipv6() { 128 } else { 32 };
    let n = n.unwrap_or(max);
    (n <= max).then(|| (format!("{ip}/{n}"), ip.is_ipv6()))
}

/// Interface names as Linux allows them (1–15 bytes, no `/`, `:` or whitespace), restricted
/// to the characters that need no shell quoting.
pub fn valid_interface(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

// ---------------------------------------------------------------------------------------------
// Life cycle.

fn tc_failure(host: &Host, cmd: &str, out: &Output) -> Error {
    let said = quote_output(&out.stdout, &out.stderr);
    if said.contains("Cannot find device") {
        return Error::NoSuchInterface {
            host: host.name().to_string(),
            interface: cmd
                .split_whitespace()
                .skip_while(|w| *w != "dev")
                .nth(1)
                .unwrap_or("")
                .to_string(),
            said,
        };
    }
    if said.contains("Specified qdisc kind is unknown") {
        let qdisc = if cmd.contains(" prio ") {
            "prio"
        } else {
            "netem"
        };
        return Error::KernelLacks {
            host: host.name().to_string(),
            qdisc,
            cmd: cmd.to_string(),
            said,
        };
    }
    match host.failure(cmd, out) {
        e @ ExecError::SudoRefused { .. } => Error::Exec(e),
        _ => Error::Tc {
            host: host.name().to_string(),
            cmd: cmd.to_string(),
            status: out.status.to_string(),
            output: said,
        },
    }
}

async fn show(p: &Params, host: &Host, t: Duration) -> Result<String, Error> {
    // Read through sudo on a sudo host: proves the permission in preflight.
    let cmd = host.privileged(&show_command(&p.tc, &p.interface));
    let out = host.run(&cmd, t).await?;
    if !out.success() {
        return Err(tc_failure(host, &cmd, &out));
    }
    Ok(out.stdout)
}

/// Reachable, tc present, the interface there with its default root qdisc.
pub async fn preflight(p: &Params, ctx: &FaultContext) -> Result<(), Error> {
    prepare(p, ctx).await.map(|_| ())
}

pub async fn prepare(p: &Params, ctx: &FaultContext) -> Result<Undo, Error> {
    let host = ctx.hosts.get(&p.host)?;
    let before = show(p, &host, ctx.command_timeout).await?;
    if let Some(r) = root(&parse_qdiscs(&before))
        && r.handle != "0:"
    {
        return Err(Error::ExistingQdisc {
            host: p.host.to_string(),
            interface: p.interface.to_string(),
            line: r.text.clone(),
        });
    }
    Ok(Undo {
        host: p.host.to_string(),
        interface: p.interface.to_string(),
        before,
        handle: HANDLE.into(),
        deadman: (!p.deadman_margin.is_zero())
            .then(|| deadman::marker(&ctx.run_id, &ctx.fault_id, &p.host)),
    })
}

pub async fn inject(p: &Params, ctx: &FaultContext, undo: &Undo) -> Result<(), Error> {
    let host = ctx.hosts.get(&undo.host)?;
    let t = ctx.command_timeout;
    // The safety net first: if faultline dies from here on, the node removes our qdisc itself.
    if let Some(marker) = &undo.deadman {
        let delay = deadman::delay_secs(ctx.deadline, p.deadman_margin, chrono::Utc::now());
        let restore = host.privileged(&delete_command(&p.tc, &undo.interface));
        let cmd = deadman::arm_command(marker, delay, &format!("{restore} 2>/dev/null"));
        let out = host.run_ok(&cmd, t).await?;
        tracing::info!(host = %undo.host, pid = %out.stdout.trim(), delay_s = delay, "dead-man timer armed");
    }
    for c in add_commands(p) {
        let cmd = host.privileged(&c);
        let out = host.run(&cmd, t).await?;
        if !out.success() {
            return Err(tc_failure(&host, &cmd, &out));
        }
    }
    Ok(())
}

/// What the fault wants, in words (for errors and plans).
fn settings_text(p: &Params) -> String {
    let mut parts = Vec::new();
    if !p.delay.is_zero() {
        let mut d = format!("delay {}", humantime::format_duration(p.delay));
        if !p.jitter.is_zero() {
            d += &format!(" ± {}", humantime::format_duration(p.jitter));
        }
        parts.push(d);
    }
    if p.loss_percent > 0.0 {
        parts.push(format!("loss {}%", p.loss_percent));
    }
    parts.join(", ")
}

pub async fn verify(p: &Params, ctx: &FaultContext, undo: &Undo) -> Result<Verification, Error> {
    let host = ctx.hosts.get(&undo.host)?;
    let shown = show(p, &host, ctx.command_timeout).await?;
    let qdiscs = parse_qdiscs(&shown);
    let netem_handle = if p.destinations.is_empty() {
        HANDLE
    } else {
        NETEM_HANDLE
    };
    let ok = qdiscs.iter().any(|q| {
        let (d, j, l) = netem_settings(&q.text);
        q.kind == "netem"
            && q.handle == netem_handle
            && close(d, p.delay)
            && close(j, p.jitter)
            && (l - p.loss_percent).abs() < 0.01
    }) && (p.destinations.is_empty()
        || root(&qdiscs).is_some_and(|r| r.handle == HANDLE && r.kind == "prio"));
    if !ok {
        return Err(Error::NotInEffect {
            host: undo.host.clone(),
            interface: undo.interface.clone(),
            want: format!("netem {netem_handle} with {}", settings_text(p)),
            shown,
        });
    }
    if !p.destinations.is_empty() {
        let cmd = format!(
            "{} filter show dev {} parent {HANDLE}",
            p.tc.trim(),
            undo.interface
        );
        let out = host
            .run_ok(&host.privileged(&cmd), ctx.command_timeout)
            .await?;
        let steering = out
            .stdout
            .lines()
            .filter(|l| l.contains(&format!("flowid {BAND}")))
            .count();
        if steering < p.destinations.len() {
            return Err(Error::NotInEffect {
                host: undo.host.clone(),
                interface: undo.interface.clone(),
                want: format!("{} filters to {BAND}", p.destinations.len()),
                shown: out.stdout,
            });
        }
    }
    Ok(Verification::Verified)
}

pub async fn restore(p: &Params, ctx: &FaultContext, undo: &Undo) -> Result<(), Error> {
    let host = ctx.hosts.get(&undo.host)?;
    let t = ctx.command_timeout;
    let now = show(p, &host, t).await?;
    if root(&parse_qdiscs(&now)).is_some_and(|r| r.handle == undo.handle) {
        let cmd = host.privileged(&delete_command(&p.tc, &undo.interface));
        let out = host.run(&cmd, t).await?;
        if !out.success() {
            return Err(tc_failure(&host, &cmd, &out));
        }
        let after = show(p, &host, t).await?;
        if root(&parse_qdiscs(&after)).is_some_and(|r| r.handle == undo.handle) {
            return Err(Error::NotRestored {
                host: undo.host.clone(),
                interface: undo.interface.clone(),
                shown: after,
            });
        }
    }
    // Only now that the qdisc is gone is the safety net no longer needed.
    if let Some(marker) = &undo.deadman {
        let out = host.run_ok(&deadman::cancel_command(marker), t).await?;
        tracing::info!(host = %undo.host, pids = %out.stdout.trim(), "dead-man timer cancelled");
    }
    Ok(())
}

impl crate::fault::FaultKind for Params {
    type Undo = Undo;
    type Error = Error;

    fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        if !valid_interface(&self.interface) {
            out.push(Problem::new(
                &["interface"],
                &*self.interface,
                "not an interface name (1–15 characters of A–Z, a–z, 0–9, '-', '_', '.')",
            ));
        }
        if self.delay.is_zero() && self.loss_percent == 0.0 {
            out.push(Problem::new(
                &["delay"],
                "0s",
                "with no delay and no loss_percent the fault does nothing; set either",
            ));
        }
        if !(0.0..=100.0).contains(&self.loss_percent) || self.loss_percent.is_nan() {
            out.push(Problem::new(
                &["loss_percent"],
                self.loss_percent.to_string(),
                "must be between 0 and 100",
            ));
        }
        if self.jitter > self.delay {
            out.push(Problem::new(
                &["jitter"],
                humantime::format_duration(self.jitter).to_string(),
                format!(
                    "is larger than the delay ({}): netem would reorder and clamp at zero",
                    humantime::format_duration(self.delay)
                ),
            ));
        }
        if self.tc.trim().is_empty() {
            out.push(Problem::new(&["tc"], "", "needs a command"));
        }
        for (i, d) in self.destinations.iter().enumerate() {
            if normalized_destination(&d.address).is_none() {
                out.push(Problem::new(
                    &["destinations", &i.to_string(), "address"],
                    &d.address,
                    "not an IP address or CIDR block (10.0.0.7, 10.0.0.0/24, fd00::/64)",
                ));
            }
            if d.port == Some(0) {
                out.push(Problem::new(
                    &["destinations", &i.to_string(), "port"],
                    "0",
                    "port 0 is no port",
                ));
            }
        }
        out
    }

    fn reach(&self) -> Reach {
        Reach {
            targets: vec![Target::Host(self.host.to_string())],
            hosts: vec![HostRef::new(&self.host, &["host"])],
            kube: Vec::new(),
            load: false,
        }
    }

    fn describe(&self, _cx: &DescribeCx) -> String {
        let to = if self.destinations.is_empty() {
            String::new()
        } else {
            let d: Vec<String> = self
                .destinations
                .iter()
                .map(|d| match d.port {
                    Some(p) => format!("{}:{p}", d.address),
                    None => d.address.clone(),
                })
                .collect();
            format!(" towards {}", d.join(", "))
        };
        format!(
            "{} on {} of host {}{to} (tc netem via `{}`)",
            settings_text(self),
            self.interface,
            self.host,
            self.tc.trim()
        )
    }

    fn describe_end(&self, end: Option<&str>) -> String {
        format!(", remove the added qdisc at {}", end.unwrap_or("the end"))
    }

    fn lifetime(&self) -> Lifetime {
        Lifetime::Held
    }

    fn deadman_margin(&self) -> Option<Duration> {
        Some(self.deadman_margin)
    }

    fn bind_to_sim(&mut self, _sim: &SimBinding) {}

    fn is_permanent(e: &Error) -> bool {
        matches!(e, Error::KernelLacks { .. } | Error::ExistingQdisc { .. })
    }

    fn example() -> Self {
        Params {
            host: "node-1".into(),
            interface: "eth0".into(),
            delay: Duration::from_millis(100),
            jitter: Duration::from_millis(20),
            loss_percent: 0.0,
            destinations: Vec::new(),
            tc: default_tc(),
            deadman_margin: default_margin(),
        }
    }

    async fn preflight(&self, ctx: &FaultContext) -> Result<(), Error> {
        preflight(self, ctx).await
    }
    async fn prepare(&self, ctx: &FaultContext) -> Result<Undo, Error> {
        prepare(self, ctx).await
    }
    async fn inject(&self, ctx: &FaultContext, undo: &Undo) -> Result<(), Error> {
        inject(self, ctx, undo).await
    }
    async fn verify(&self, ctx: &FaultContext, undo: &Undo) -> Result<Verification, Error> {
        verify(self, ctx, undo).await
    }
    async fn restore(&self, ctx: &FaultContext, undo: &Undo) -> Result<(), Error> {
        restore(self, ctx, undo).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::FaultKind;

    /// `tc qdisc show dev eth0` on an interface with the default multiqueue root.
    const SHOW_DEFAULT_MQ: &str = "\
qdisc mq 0: root
qdisc fq_codel 0: parent :2 limit 10240p flows 1024 quantum 1514 target 5ms interval 100ms memory_limit 32Mb ecn drop_batch 64
qdisc fq_codel 0: parent :1 limit 10240p flows 1024 quantum 1514 target 5ms interval 100ms memory_limit 32Mb ecn drop_batch 64
";
    /// After `add_commands` with a destination (iproute2 6.x).
    const SHOW_PRIO_NETEM: &str = "\
qdisc prio fa17: root refcnt 2 bands 4 priomap 1 2 2 2 1 2 0 0 1 1 1 1 1 1 1 1
qdisc netem fa18: parent fa17:4 limit 1000 delay 100ms  20ms loss 1.5%
";
    const SHOW_ROOT_NETEM: &str = "qdisc netem fa17: root refcnt 2 limit 1000 delay 1.5s  150us\n";
    const SHOW_HTB: &str =
        "qdisc htb 1: root refcnt 2 r2q 10 default 0x10 direct_packets_stat 0 direct_qlen 1000\n";

    fn params() -> Params {
        Params::example()
    }

    #[test]
    fn the_default_root_is_recognised_and_a_configured_one_is_not() {
        let q = parse_qdiscs(SHOW_DEFAULT_MQ);
        assert_eq!(q.len(), 3);
        assert_eq!(root(&q).unwrap().handle, "0:");
        assert_eq!(q[1].parent.as_deref(), Some(":2"));
        let q = parse_qdiscs(SHOW_HTB);
        assert_eq!(root(&q).unwrap().kind, "htb");
        assert_eq!(root(&q).unwrap().handle, "1:");
        assert!(parse_qdiscs("").is_empty());
    }

    #[test]
    fn netem_settings_are_read_as_tc_prints_them() {
        let q = parse_qdiscs(SHOW_PRIO_NETEM);
        assert_eq!(
            netem_settings(&q[1].text),
            (Duration::from_millis(100), Duration::from_millis(20), 1.5)
        );
        let q = parse_qdiscs(SHOW_ROOT_NETEM);
        assert_eq!(
            netem_settings(&q[0].text),
            (Duration::from_millis(1500), Duration::from_micros(150), 0.0)
        );
        assert_eq!(parse_tc_time("100ms"), Some(Duration::from_millis(100)));
        assert_eq!(parse_tc_time("limit"), None);
    }

    #[test]
    fn commands_carry_our_handle_and_steer_only_the_destinations() {
        let mut p = params();
        p.loss_percent = 1.5;
        assert_eq!(
            add_commands(&p),
            vec!["tc qdisc add dev eth0 root handle fa17: netem delay 100000us 20000us loss 1.5%"]
        );
        p.destinations = vec![
            Destination {
                address: "10.0.0.7".into(),
                port: Some(8000),
            },
            Destination {
                address: "fd00::/64".into(),
                port: None,
            },
        ];
        let c = add_commands(&p);
        assert_eq!(c.len(), 4, "{c:?}");
        assert!(c[0].contains("root handle fa17: prio bands 4"), "{c:?}");
        assert!(c[1].contains("parent fa17:4 handle fa18: netem"), "{c:?}");
        assert_eq!(
            c[2],
            "tc filter add dev eth0 parent fa17: protocol ip prio 1 u32 match ip dst 10.0.0.7/32 match ip dport 8000 0xffff flowid fa17:4"
        );
        assert_eq!(
            c[3],
            "tc filter add dev eth0 parent fa17: protocol ipv6 prio 2 u32 match ip6 dst fd00::/64 flowid fa17:4"
        );
        assert_eq!(
            delete_command("tc", "eth0"),
            "tc qdisc del dev eth0 root handle fa17:"
        );
    }

    #[test]
    fn problems_name_the_key_and_the_value() {
        let paths = |p: &Params| -> Vec<(String, String)> {
            p.problems()
                .into_iter()
                .map(|x| (x.path.join("."), x.value))
                .collect()
        };
        assert!(params().problems().is_empty());
        let mut p = params();
        p.delay = Duration::ZERO;
        p.jitter = Duration::ZERO;
        assert_eq!(paths(&p), vec![("delay".into(), "0s".into())]);
        p.loss_percent = 150.0;
        assert_eq!(paths(&p), vec![("loss_percent".into(), "150".into())]);
        let mut p = params();
        p.jitter = Duration::from_millis(200);
        assert_eq!(paths(&p), vec![("jitter".into(), "200ms".into())]);
        let mut p = params();
        p.interface = "eth0; reboot".into();
        assert_eq!(paths(&p)[0].0, "interface");
        p.interface = "a-name-longer-than-15".into();
        assert_eq!(paths(&p)[0].0, "interface");
        let mut p = params();
        p.destinations = vec![
            Destination {
                address: "10.0.0.300".into(),
                port: None,
            },
            Destination {
                address: "10.0.0.0/33".into(),
                port: Some(0),
            },
        ];
        assert_eq!(
            paths(&p),
            vec![
                ("destinations.0.address".into(), "10.0.0.300".into()),
                ("destinations.1.address".into(), "10.0.0.0/33".into()),
                ("destinations.1.port".into(), "0".into()),
            ]
        );
    }

    #[test]
    fn a_kernel_without_netem_is_named_as_such() {
        use std::os::unix::process::ExitStatusExt;
        let host = Host::new("node-7", crate::fault::exec::HostSpec::Local);
        let out = Output {
            status: std::process::ExitStatus::from_raw(2 << 8),
            stdout: String::new(),
            stderr: "Error: Specified qdisc kind is unknown.\n".into(),
        };
        let e = tc_failure(
            &host,
            "tc qdisc add dev eth0 root handle fa17: netem delay 1us",
            &out,
        )
        .to_string();
        assert!(
            e.contains("CONFIG_NET_SCH_NETEM") && e.contains("node-7"),
            "{e}"
        );
    }

    #[test]
    fn undo_round_trips_through_json() {
        let u = Undo {
            host: "n".into(),
            interface: "eth0".into(),
            before: SHOW_DEFAULT_MQ.into(),
            handle: HANDLE.into(),
            deadman: Some("faultline-deadman:r:f:n".into()),
        };
        let v = serde_json::to_value(&u).unwrap();
        assert_eq!(serde_json::from_value::<Undo>(v).unwrap(), u);
    }
}
