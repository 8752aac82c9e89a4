//! The dead-man switch: a detached timer on the target node that runs the restore command after
//! the fault's deadline plus a margin, in case faultline never comes back (killed, network cut,
//! laptop closed). A normal restore cancels it.
//!
//! Mechanism: `nohup setsid sh -c 'sleep S; RESTORE' MARKER </dev/null >/dev/null 2>&1 &`.
//! - `nohup` + `setsid` detach it from the SSH session (no SIGHUP when the channel closes) and
//!   make it the leader of its own process group, so cancelling kills the `sleep` with it;
//!   `setsid` is used only where it exists (util-linux, nearly everywhere).
//! - `MARKER` becomes the timer shell's `$0`, i.e. the *last* argument of its
//!   `/proc/PID/cmdline`. It is unique per run, fault and host
//!   (`faultline-deadman:RUN:FAULT:HOST`), is computed in `prepare` and stored in the undo data,
//!   so `cancel` finds the timer by that exact argument, never by a pid that may have been
//!   reused, and works from a fresh process (`faultline recover`).
//! - Chosen over `systemd-run --on-active`: it needs nothing but a POSIX shell, so it also works
//!   in containers and on nodes without systemd. It does not survive a reboot of the node, which
//!   is fine for GPU compute modes (they reset on driver reload) and is why `recover` still
//!   exists.
//! - On a `sudo: true` host the timer itself runs as the login user (arming and cancelling need
//!   no root: the user owns the process); only the restore command inside it uses `sudo -n`,
//!   so the sudoers rule stays limited to the programs that restore (nvidia-smi), not a shell.

use crate::fault::exec::shell_quote;
use chrono::{DateTime, Utc};
use std::time::Duration;

/// The marker that names one timer.
pub fn marker(run_id: &str, fault_id: &str, host: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    format!(
        "faultline-deadman:{}:{}:{}",
        clean(run_id),
        clean(fault_id),
        clean(host)
    )
}

/// Seconds to sleep: until `deadline + margin`, counted from `now` (at least one second).
pub fn delay_secs(deadline: DateTime<Utc>, margin: Duration, now: DateTime<Utc>) -> u64 {
    let until = (deadline - now).num_milliseconds().max(0) as u64;
    let total_ms = until + margin.as_millis() as u64;
    total_ms.div_ceil(1000).max(1)
}

/// The shell command that arms a timer running `restore` after `delay_s` seconds; prints the
/// timer's pid.
pub fn arm_command(marker: &str, delay_s: u64, restore: &str) -> String {
    let script = format!("sleep {delay_s}; {restore}");
    let (script, marker) = (shell_quote(&script), shell_quote(marker));
    format!(
        "if command -v setsid >/dev/null 2>&1; then \
         nohup setsid sh -c {script} {marker} </dev/null >/dev/null 2>&1 & \
         else nohup sh -c {script} {marker} </dev/null >/dev/null 2>&1 & fi; echo $!"
    )
}

/// A loop over the live timers whose last argument is exactly `marker`, running `body` with the
/// timer's pid in `$p`. Only processes named `sh` (or `nohup`/`setsid`: a timer still on its way
/// to `sh -c`, which an early restore must not miss) have their arguments read; the name comes
/// from `/proc/PID/comm` with the shell's own `read` (no fork), while reading every process's
/// arguments cost two forks per process: on a loaded machine over a second of CPU for each
/// restore, on the node whose service the run is measuring.
fn each_timer(marker: &str, body: &str) -> String {
    let m = shell_quote(marker);
    format!(
        "for d in /proc/[0-9]*; do \
         {{ read -r n < \"$d/comm\"; }} 2>/dev/null || continue; \
         case \"$n\" in sh|nohup|setsid) ;; *) continue ;; esac; \
         a=$(tr '\\000' '\\n' < \"$d/cmdline\" 2>/dev/null | tail -n 1); \
         if [ \"$a\" = {m} ]; then p=${{d#/proc/}}; {body} fi; \
         done; true"
    )
}

/// The shell command that cancels every timer whose last argument is exactly `marker` and prints
/// the pids it cancelled. Finding none is not an error: the timer may have fired already, or
/// never been armed.
///
/// The timer's `sleep` must go with its shell: killing the shell alone leaves the `sleep`
/// running, re-parented to init, for the rest of its delay (an hour for a by-hand inject). So
/// the signal goes to the timer's process group (`kill -TERM -PID`: written without `--`,
/// which dash's and busybox's `kill` refuse, and then nothing but the fallback ran). Without
/// `setsid` the shell leads no group; then its children are found (`/proc/*/stat`: `PID (comm)
/// STATE PPID ...`) before the shell is signalled, in one `kill` with the shell first, so the
/// shell never sees its `sleep` end and never runs the restore.
pub fn cancel_command(marker: &str) -> String {
    each_timer(
        marker,
        "kill -TERM \"-$p\" 2>/dev/null || { \
         c=$(grep -ls \"^[0-9]* (.*) . $p \" /proc/[0-9]*/stat | cut -d/ -f3); \
         kill -TERM \"$p\" $c 2>/dev/null; }; echo \"$p\";",
    )
}

/// A command that prints the pids of the live timers with `marker` (empty when none).
pub fn find_command(marker: &str) -> String {
    each_timer(marker, "echo \"$p\";")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_is_unique_per_run_fault_host_and_shell_safe() {
        assert_eq!(
            marker("run 1", "lock;gpu", "node-7"),
            "faultline-deadman:run_1:lock_gpu:node-7"
        );
    }

    #[test]
    fn delay_counts_from_now_to_deadline_plus_margin() {
        let now = Utc::now();
        let d = now + chrono::Duration::seconds(30);
        assert_eq!(delay_secs(d, Duration::from_secs(60), now), 90);
        // A deadline already past still leaves the margin.
        assert_eq!(
            delay_secs(
                now - chrono::Duration::seconds(5),
                Duration::from_secs(2),
                now
            ),
            2
        );
        assert_eq!(delay_secs(now, Duration::ZERO, now), 1);
    }

    #[test]
    fn arm_command_quotes_the_restore_and_puts_the_marker_last() {
        let c = arm_command("faultline-deadman:r:f:h", 12, "echo 'it''s' back");
        assert!(
            c.contains(r#"sh -c 'sleep 12; echo '\''it'\'''\''s'\'' back' 'faultline-deadman:r:f:h' </dev/null"#),
            "{c}"
        );
        assert!(c.ends_with("echo $!"), "{c}");
    }

    #[test]
    fn cancel_command_matches_the_exact_marker_argument() {
        let c = cancel_command("faultline-deadman:r:f:h");
        assert!(c.contains(r#"[ "$a" = 'faultline-deadman:r:f:h' ]"#), "{c}");
        // No `--`: dash and busybox refuse it, and the `sleep` outlived the cancel.
        assert!(c.contains(r#"kill -TERM "-$p" 2>/dev/null ||"#), "{c}");
        assert!(!c.contains("--"), "{c}");
        // Only shells are read: the scan forks per process read.
        assert!(
            c.contains(r#"case "$n" in sh|nohup|setsid) ;; *) continue ;; esac; a=$(tr"#),
            "{c}"
        );
    }
}
