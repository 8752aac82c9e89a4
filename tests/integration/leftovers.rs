//! Dead-man timers left running on this machine (the "node" of every fault test: `local`, or the
//! loopback sshd). A timer is a shell whose last argument is its marker, with a `sleep` in its
//! process group; a cancel that kills only the shell leaves that `sleep` running for the rest of
//! its delay (an hour for a by-hand inject), so "no timer with the marker" is not enough: these
//! helpers remember the timers' pids while they live and afterwards look for anything left in
//! their process groups.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

struct Proc {
    pid: u32,
    ppid: u32,
    pgid: u32,
    zombie: bool,
    args: Vec<String>,
}

fn processes() -> Vec<Proc> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        // Gone meanwhile: skip. `stat` is `PID (COMM) STATE PPID PGRP ...`; COMM may hold spaces.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let (Some(state), Some(ppid), Some(pgid)) = (fields.first(), fields.get(1), fields.get(2))
        else {
            continue;
        };
        all.push(Proc {
            pid,
            ppid: ppid.parse().unwrap_or(0),
            pgid: pgid.parse().unwrap_or(0),
            zombie: *state == "Z",
            args: cmdline
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect(),
        });
    }
    all
}

/// Pids of the live timer shells (`sh -c SCRIPT MARKER`) whose last argument is `marker`. Not
/// the `nohup`/`setsid` it is exec'd through, which carry the marker too for a moment (the arm
/// command returns as soon as the timer is in the background); a shell's child between its
/// fork and its exec (the `sleep` on its way) does, and is counted.
pub fn timers(marker: &str) -> BTreeSet<u32> {
    processes()
        .into_iter()
        .filter(|p| {
            !p.zombie
                && p.args.first().is_some_and(|a| a == "sh")
                && p.args.last().is_some_and(|a| a == marker)
        })
        .map(|p| p.pid)
        .collect()
}

/// [`timers`], once the timer shell is up (waits up to 5 s for it; empty if it never is).
pub fn armed(marker: &str) -> BTreeSet<u32> {
    let start = Instant::now();
    loop {
        let t = timers(marker);
        if !t.is_empty() || start.elapsed() > Duration::from_secs(5) {
            return t;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The embedded sim's worker processes among `ppid`'s children: a `sleep 2147483647` each, its
/// `argv[0]` renamed `<state dir>/bin/sim-worker-N` (`faultline::common::sim_names`).
pub fn sim_workers(ppid: u32) -> BTreeSet<u32> {
    processes()
        .into_iter()
        .filter(|p| !p.zombie && p.ppid == ppid)
        .filter(|p| {
            p.args.len() == 2
                && p.args[1] == "2147483647"
                && p.args[0]
                    .rsplit_once("/bin/sim-worker-")
                    .is_some_and(|(_, n)| n.parse::<usize>().is_ok())
        })
        .map(|p| p.pid)
        .collect()
}

/// Those of `pids` still running ("PID: ARGS"), after waiting up to 3 s for them to exit.
pub fn alive(pids: &BTreeSet<u32>) -> Vec<String> {
    let find = || -> Vec<String> {
        processes()
            .into_iter()
            .filter(|p| !p.zombie && pids.contains(&p.pid))
            .map(|p| format!("{}: {}", p.pid, p.args.join(" ")))
            .collect()
    };
    let start = Instant::now();
    loop {
        let left = find();
        if left.is_empty() || start.elapsed() > Duration::from_secs(3) {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What is still running of these timers ("PID: ARGS"): a timer shell itself, or anything in its
/// process group (its `sleep`, a restore it runs). Waits up to 3 s for signalled processes to
/// exit (on a busy machine a killed process may take a moment to be scheduled and die).
pub fn left_of(timers: &BTreeSet<u32>) -> Vec<String> {
    let find = || -> Vec<String> {
        processes()
            .into_iter()
            .filter(|p| !p.zombie && (timers.contains(&p.pid) || timers.contains(&p.pgid)))
            .map(|p| format!("{}: {}", p.pid, p.args.join(" ")))
            .collect()
    };
    let start = Instant::now();
    loop {
        let left = find();
        if left.is_empty() || start.elapsed() > Duration::from_secs(3) {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Remembers every timer shell with `marker` seen while it runs (a run arms and cancels its
/// timers inside `execute::run`, out of the test's reach).
pub struct Watch {
    stop: Arc<AtomicBool>,
    seen: std::thread::JoinHandle<BTreeSet<u32>>,
}

impl Watch {
    pub fn start(marker: String) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let seen = std::thread::spawn(move || {
            let mut seen = BTreeSet::new();
            while !flag.load(Ordering::Relaxed) {
                seen.extend(timers(&marker));
                std::thread::sleep(Duration::from_millis(50));
            }
            seen
        });
        Watch { stop, seen }
    }

    /// The timers seen.
    pub fn stop(self) -> BTreeSet<u32> {
        self.stop.store(true, Ordering::Relaxed);
        self.seen.join().unwrap()
    }
}
