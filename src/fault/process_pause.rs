//! `process-pause`: freeze a process on a host with SIGSTOP and thaw it with SIGCONT — a hung
//! worker, the classic gray failure: the process is there, its port is open, its pod is Ready,
//! and it answers nothing.
//!
//! Matching is exact and counted, because a pattern that matches more than meant freezes the
//! wrong thing: `pattern` is an extended regular expression that must match the *whole* command
//! line (`pgrep -x -f`: arguments joined by spaces), and `prepare` refuses 0 matches or more than
//! `max_processes`. The shell running the query is never a match (its own pid is excluded).
//!
//! The undo data records each pid with its start time (`/proc/PID/stat` field 22), so restore —
//! and the dead-man timer, and `faultline recover` in a new process — continue exactly those
//! processes and never a later process that reused a pid. Restore is idempotent and tolerates
//! processes that exited meanwhile. Verify reads `/proc/PID/stat` and wants state `T`.
//!
//! On a `sudo: true` host `kill` runs through `sudo -n` (the sudoers rule names `/usr/bin/kill`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::fault::deadman;
use crate::fault::exec::{ExecError, Host, quote_output, shell_quote};
use crate::fault::{
    DescribeCx, FaultContext, HostRef, Lifetime, Problem, Reach, SimBinding, Target, Verification,
};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// The host (a name from the experiment's `hosts` section).
    pub host: String,
    /// An extended regular expression matching a process's whole command line (`pgrep -x -f`).
    pub pattern: String,
    /// Refuse when more processes than this match (0 matches is always refused).
    #[serde(default = "one")]
    pub max_processes: u32,
    /// The node-side dead-man switch continues the processes this long after the deadline.
    #[serde(default = "default_margin", with = "crate::duration::serde")]
    #[schemars(with = "String")]
    pub deadman_margin: Duration,
}

fn one() -> u32 {
    1
}
fn default_margin() -> Duration {
    Duration::from_secs(60)
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Undo {
    pub host: String,
    pub processes: Vec<Paused>,
    pub deadman: Option<String>,
}

/// One process, as `/proc` names it: pid and start time (clock ticks after boot).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Paused {
    pub pid: u32,
    pub start: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error(
        "process-pause: no process on host {host:?} has a command line matching {pattern:?} in full (pgrep -x -f)"
    )]
    NoMatch { host: String, pattern: String },
    #[error(
        "process-pause: {count} processes on host {host:?} match {pattern:?} (pids {pids:?}), more than max_processes {max}; narrow the pattern or raise max_processes"
    )]
    TooMany {
        host: String,
        pattern: String,
        count: usize,
        max: u32,
        pids: Vec<u32>,
    },
    #[error("cannot read {cmd:?} on host {host:?}: line {line:?}")]
    Parse {
        host: String,
        cmd: String,
        line: String,
    },
    #[error("process-pause did not take effect on host {host:?}: {what}")]
    NotInEffect { host: String, what: String },
    #[error("restore did not take effect on host {host:?}: {what}")]
    NotRestored { host: String, what: String },
}

/// Prints `PID START` for every process whose whole command line matches `pattern`, except the
/// shell running this (and its subshells, which share its command line).
pub fn match_command(pattern: &str) -> String {
    format!(
        "me=$$; for p in $(pgrep -x -f -- {}); do [ \"$p\" = \"$me\" ] && continue; \
         s=$(sed 's/.*) //' /proc/$p/stat 2>/dev/null) || continue; [ -n \"$s\" ] || continue; \
         set -- $s; [ \"$2\" = \"$me\" ] && continue; echo \"$p ${{20}}\"; done; true",
        shell_quote(pattern)
    )
}

/// A guard that is true only while `p` is the same process (same start time).
fn same(p: &Paused) -> String {
    format!(
        "[ \"$(sed 's/.*) //' /proc/{}/stat 2>/dev/null | cut -d' ' -f20)\" = {} ]",
        p.pid, p.start
    )
}

/// Sends `sig` to every recorded process that is still the same process; never fails.
pub fn signal_command(sig: &str, ps: &[Paused], sudo: bool) -> String {
    let kill = if sudo { "sudo -n kill" } else { "kill" };
    let mut parts: Vec<String> = ps
        .iter()
        .map(|p| format!("{{ {} && {kill} -{sig} {}; }}", same(p), p.pid))
        .collect();
    parts.push("true".into());
    parts.join("; ")
}

/// Prints `PID STATE` of every recorded process that is still the same process.
fn states_command(ps: &[Paused]) -> String {
    let mut parts: Vec<String> = ps
        .iter()
        .map(|p| {
            format!(
                "{{ {} && echo \"{} $(sed 's/.*) //' /proc/{}/stat | cut -c1)\"; }}",
                same(p),
                p.pid,
                p.pid
            )
        })
        .collect();
    parts.push("true".into());
    parts.join("; ")
}

pub fn parse_matches(text: &str) -> Result<Vec<Paused>, String> {
    let mut out = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (pid, start) = line.split_once(' ').ok_or_else(|| line.to_string())?;
        out.push(Paused {
            pid: pid.parse().map_err(|_| line.to_string())?,
            start: start.trim().parse().map_err(|_| line.to_string())?,
        });
    }
    out.sort_by_key(|p| p.pid);
    Ok(out)
}

async fn states(host: &Host, ps: &[Paused], t: Duration) -> Result<Vec<(u32, char)>, Error> {
    let cmd = states_command(ps);
    let out = host.run_ok(&cmd, t).await?;
    let mut v = Vec::new();
    for line in out.stdout.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let parsed = line
            .split_once(' ')
            .and_then(|(p, s)| Some((p.parse().ok()?, s.chars().next()?)));
        v.push(parsed.ok_or_else(|| Error::Parse {
            host: host.name().to_string(),
            cmd: "states of the recorded pids".into(),
            line: line.to_string(),
        })?);
    }
    Ok(v)
}

/// The matches now: refused when none or more than `max_processes`.
pub async fn prepare(p: &Params, ctx: &FaultContext) -> Result<Undo, Error> {
    let host = ctx.hosts.get(&p.host)?;
    let cmd = match_command(&p.pattern);
    let out = host.run_ok(&cmd, ctx.command_timeout).await?;
    let processes = parse_matches(&out.stdout).map_err(|line| Error::Parse {
        host: p.host.clone(),
        cmd: cmd.clone(),
        line,
    })?;
    if processes.is_empty() {
        return Err(Error::NoMatch {
            host: p.host.clone(),
            pattern: p.pattern.clone(),
        });
    }
    if processes.len() > p.max_processes as usize {
        return Err(Error::TooMany {
            host: p.host.clone(),
            pattern: p.pattern.clone(),
            count: processes.len(),
            max: p.max_processes,
            pids: processes.iter().map(|x| x.pid).collect(),
        });
    }
    Ok(Undo {
        host: p.host.clone(),
        processes,
        deadman: (!p.deadman_margin.is_zero())
            .then(|| deadman::marker(&ctx.run_id, &ctx.fault_id, &p.host)),
    })
}

/// The match count is right, and on a `sudo: true` host `sudo -n kill` is allowed.
pub async fn preflight(p: &Params, ctx: &FaultContext) -> Result<(), Error> {
    prepare(p, ctx).await?;
    let host = ctx.hosts.get(&p.host)?;
    if host.sudo() {
        let cmd = "sudo -n -l kill";
        let out = host.run(cmd, ctx.command_timeout).await?;
        if !out.success() {
            return Err(Error::Exec(ExecError::SudoRefused {
                host: p.host.clone(),
                cmd: "sudo -n kill".into(),
                said: format!(
                    "`sudo -n -l kill` says kill is not allowed ({})",
                    quote_output(&out.stdout, &out.stderr)
                ),
            }));
        }
    }
    Ok(())
}

pub async fn inject(p: &Params, ctx: &FaultContext, undo: &Undo) -> Result<(), Error> {
    let host = ctx.hosts.get(&undo.host)?;
    let t = ctx.command_timeout;
    if let Some(marker) = &undo.deadman {
        let delay = deadman::delay_secs(ctx.deadline, p.deadman_margin, chrono::Utc::now());
        let restore = signal_command("CONT", &undo.processes, host.sudo());
        let out = host
            .run_ok(&deadman::arm_command(marker, delay, &restore), t)
            .await?;
        tracing::info!(host = %undo.host, pid = %out.stdout.trim(), delay_s = delay, "dead-man timer armed");
    }
    host.run_ok(&signal_command("STOP", &undo.processes, host.sudo()), t)
        .await?;
    Ok(())
}

/// Every recorded process is stopped (`T` in `/proc/PID/stat`).
pub async fn verify(_p: &Params, ctx: &FaultContext, undo: &Undo) -> Result<Verification, Error> {
    let host = ctx.hosts.get(&undo.host)?;
    // SIGSTOP is delivered asynchronously: give the kernel a moment.
    let mut last = Vec::new();
    for _ in 0..20 {
        last = states(&host, &undo.processes, ctx.command_timeout).await?;
        if last.len() == undo.processes.len() && last.iter().all(|(_, s)| *s == 'T') {
            return Ok(Verification::Verified);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(Error::NotInEffect {
        host: undo.host.clone(),
        what: format!(
            "recorded {:?}, found (pid, state) {last:?}; want every one in state T",
            undo.processes.iter().map(|p| p.pid).collect::<Vec<_>>()
        ),
    })
}

/// SIGCONT to exactly the recorded processes that still exist; none may stay stopped.
pub async fn restore(_p: &Params, ctx: &FaultContext, undo: &Undo) -> Result<(), Error> {
    let host = ctx.hosts.get(&undo.host)?;
    let t = ctx.command_timeout;
    host.run_ok(&signal_command("CONT", &undo.processes, host.sudo()), t)
        .await?;
    let mut still = Vec::new();
    for _ in 0..20 {
        still = states(&host, &undo.processes, t)
            .await?
            .into_iter()
            .filter(|(_, s)| *s == 'T')
            .collect();
        if still.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !still.is_empty() {
        return Err(Error::NotRestored {
            host: undo.host.clone(),
            what: format!("(pid, state) {still:?} still stopped after SIGCONT"),
        });
    }
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
        if self.pattern.trim().is_empty() {
            out.push(Problem::new(
                &["pattern"],
                self.pattern.clone(),
                "needs a pattern matching the whole command line of the process to pause",
            ));
        }
        if self.max_processes == 0 {
            out.push(Problem::new(
                &["max_processes"],
                "0",
                "must be at least 1 (0 matches are always refused)",
            ));
        }
        out
    }

    fn reach(&self) -> Reach {
        Reach {
            targets: vec![Target::Host(self.host.clone())],
            hosts: vec![HostRef::new(&self.host, &["host"])],
            kube: Vec::new(),
            load: false,
        }
    }

    fn describe(&self, _cx: &DescribeCx) -> String {
        format!(
            "SIGSTOP the processes on host {} whose command line is {:?} (at most {})",
            self.host, self.pattern, self.max_processes
        )
    }

    fn describe_end(&self, end: Option<&str>) -> String {
        format!(
            ", SIGCONT exactly those processes at {}",
            end.unwrap_or("the end")
        )
    }

    fn lifetime(&self) -> Lifetime {
        Lifetime::Held
    }

    fn deadman_margin(&self) -> Option<Duration> {
        Some(self.deadman_margin)
    }

    /// Nothing to rewrite: the pattern names a real process on the host. (The sim's workers
    /// live inside the sim process; see the notes on what stands in for them.)
    fn bind_to_sim(&mut self, sim: &SimBinding) {
        if let Some(pattern) = sim.worker_process(&self.host, &self.pattern) {
            self.pattern = pattern;
        }
    }

    fn is_permanent(_: &Error) -> bool {
        false
    }

    fn example() -> Self {
        Params {
            host: "gpu-node-1".into(),
            pattern: "python3 -m vllm.entrypoints.openai.api_server .*".into(),
            max_processes: 1,
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

    #[test]
    fn signals_go_only_to_the_same_process_by_start_time() {
        let c = signal_command(
            "CONT",
            &[Paused {
                pid: 42,
                start: 9001,
            }],
            true,
        );
        assert_eq!(
            c,
            "{ [ \"$(sed 's/.*) //' /proc/42/stat 2>/dev/null | cut -d' ' -f20)\" = 9001 ] && sudo -n kill -CONT 42; }; true"
        );
    }

    #[test]
    fn matches_parse_sorted_and_bad_lines_are_quoted() {
        assert_eq!(
            parse_matches("12 5\n3 7\n").unwrap(),
            [Paused { pid: 3, start: 7 }, Paused { pid: 12, start: 5 }]
        );
        assert_eq!(parse_matches("x y").unwrap_err(), "x y");
    }

    #[test]
    fn an_empty_pattern_and_zero_max_are_problems() {
        let mut p = Params::example();
        p.pattern = " ".into();
        p.max_processes = 0;
        let paths: Vec<String> = p.problems().iter().map(|x| x.path.join(".")).collect();
        assert_eq!(paths, ["pattern", "max_processes"]);
    }
}
