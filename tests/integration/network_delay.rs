//! `network-delay` against the real kernel: a veth pair into a network namespace this test
//! creates, the kind acting on the host side through a `local` host and the real `tc`.
//!
//! Two tests measure netem itself (added latency, the destination filter) and need a kernel
//! with `sch_netem` and `sch_prio`. The VM this was written on runs a kernel built without
//! them (`CONFIG_NET_SCH_NETEM is not set`, `CONFIG_NET_SCH_PRIO is not set`): they are
//! `#[ignore]`d with that reason and run with `--ignored` where the kernel has them; they fail
//! (not skip) with the reason when it does not. Everything else here — reading and refusing
//! qdiscs, restore by handle, the dead-man switch, `faultline recover` in a new process — runs
//! on any kernel: where netem is missing, the qdisc the kind would have added is stood in for by
//! a `pfifo` with the kind's handle, which is what restore and the dead-man switch act on.

use chrono::Utc;
use faultline::fault::exec::{HostSpec, Hosts};
use faultline::fault::ledger::{Entry, Ledger};
use faultline::fault::network_delay::{self, Destination, HANDLE, Params};
use faultline::fault::{FaultContext, FaultError, FaultKind, FaultSpec, Verification};
use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd} (scripts/test.sh installs it): {e}"))
}

fn must(cmd: &str, args: &[&str]) {
    let out = run(cmd, args);
    assert!(
        out.status.success(),
        "`{cmd} {}` exited with {}: {}\n(network-delay tests need root and iproute2)",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// A namespace with a veth pair to the host: `host_ip` on the host side, `ns_ip` and `ns_ip2`
/// inside (a /29 of its own). Dropped: the veth and the namespace are deleted.
struct Link {
    ns: String,
    host_if: String,
    ns_ip: String,
    ns_ip2: String,
}

impl Link {
    fn create() -> Link {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let pid = std::process::id();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let block = (pid.wrapping_mul(13).wrapping_add(n * 7)) % (256 * 32);
        let (x, y) = (block / 32, (block % 32) * 8);
        let ip = |k: u32| format!("10.232.{x}.{}", y + k);
        let link = Link {
            ns: format!("fld-{pid}-{n}"),
            host_if: format!("fld{pid}-{n}"),
            ns_ip: ip(2),
            ns_ip2: ip(3),
        };
        must("ip", &["netns", "add", &link.ns]);
        must(
            "ip",
            &[
                "link",
                "add",
                &link.host_if,
                "type",
                "veth",
                "peer",
                "name",
                "veth0",
                "netns",
                &link.ns,
            ],
        );
        must(
            "ip",
            &[
                "addr",
                "add",
                &format!("{}/29", ip(1)),
                "dev",
                &link.host_if,
            ],
        );
        must("ip", &["link", "set", &link.host_if, "up"]);
        for a in [&link.ns_ip, &link.ns_ip2] {
            must(
                "ip",
                &[
                    "netns",
                    "exec",
                    &link.ns,
                    "ip",
                    "addr",
                    "add",
                    &format!("{a}/29"),
                    "dev",
                    "veth0",
                ],
            );
        }
        must(
            "ip",
            &[
                "netns", "exec", &link.ns, "ip", "link", "set", "veth0", "up",
            ],
        );
        link
    }

    fn qdiscs(&self) -> String {
        let out = run("tc", &["qdisc", "show", "dev", &self.host_if]);
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn root_handle(&self) -> Option<String> {
        network_delay::root(&network_delay::parse_qdiscs(&self.qdiscs())).map(|q| q.handle.clone())
    }

    /// Adds a root qdisc as someone else (or, with [`HANDLE`], in place of the kind's netem).
    fn add_root(&self, handle: &str) {
        must(
            "tc",
            &[
                "qdisc",
                "add",
                "dev",
                &self.host_if,
                "root",
                "handle",
                handle,
                "pfifo",
            ],
        );
    }

    fn params(&self, delay_ms: u64) -> Params {
        Params {
            host: "node".into(),
            interface: self.host_if.as_str().into(),
            delay: Duration::from_millis(delay_ms),
            jitter: Duration::ZERO,
            loss_percent: 0.0,
            destinations: Vec::new(),
            tc: "tc".into(),
            deadman_margin: Duration::from_secs(60),
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        let _ = run("ip", &["link", "del", &self.host_if]);
        let _ = run("ip", &["netns", "del", &self.ns]);
    }
}

fn ctx(test: &str, deadline_s: i64) -> FaultContext {
    let hosts = BTreeMap::from([("node".to_string(), HostSpec::Local)]);
    let mut c = FaultContext::new(
        &format!("{test}-{}", std::process::id()),
        "f1",
        Arc::new(Hosts::new(hosts)),
        Utc::now() + chrono::Duration::seconds(deadline_s),
    );
    c.command_timeout = Duration::from_secs(20);
    c
}

/// Live dead-man timers with this marker.
fn timers(marker: &str) -> usize {
    let cmd = faultline::fault::deadman::find_command(marker);
    let out = run("sh", &["-c", &cmd]);
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// Injects; where the kernel lacks netem, the error must say exactly that, and the kind's qdisc
/// is stood in for by a pfifo with its handle. Returns whether netem is real here.
async fn inject_or_stand_in(
    spec: &FaultSpec,
    c: &FaultContext,
    undo: &serde_json::Value,
    link: &Link,
) -> bool {
    match spec.inject(c, undo).await {
        Ok(()) => true,
        Err(FaultError::NetworkDelay(e @ network_delay::Error::KernelLacks { .. })) => {
            let msg = e.to_string();
            assert!(
                msg.contains("CONFIG_NET_SCH_NETEM") && msg.contains("\"node\""),
                "{msg}"
            );
            link.add_root(HANDLE);
            false
        }
        Err(e) => panic!("inject failed for another reason than a kernel without netem: {e}"),
    }
}

#[tokio::test]
async fn prepare_records_the_default_qdisc_and_refuses_one_someone_configured() {
    let link = Link::create();
    let c = ctx("nd-prepare", 30);
    let spec = FaultSpec::NetworkDelay(link.params(100));
    let undo = spec.prepare(&c).await.unwrap();
    assert_eq!(undo["before"].as_str().unwrap(), link.qdiscs());
    assert_eq!(
        link.root_handle().as_deref(),
        Some("0:"),
        "{}",
        link.qdiscs()
    );
    assert_eq!(undo["handle"], HANDLE);

    link.add_root("1:");
    let before = link.qdiscs();
    let e = spec.prepare(&c).await.unwrap_err().to_string();
    assert!(
        e.contains("qdisc pfifo 1: root")
            && e.contains(&link.host_if)
            && e.contains("never replaces"),
        "{e}"
    );
    assert_eq!(link.qdiscs(), before, "prepare touched the interface");

    // A missing interface is named.
    let mut p = link.params(100);
    p.interface = "fld-nosuch".into();
    let e = FaultSpec::NetworkDelay(p)
        .prepare(&c)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("fld-nosuch") && e.contains("no interface"),
        "{e}"
    );
}

#[tokio::test]
async fn restore_removes_exactly_its_qdisc_and_is_idempotent_and_never_deletes_another() {
    let link = Link::create();
    let c = ctx("nd-restore", 30);
    let spec = FaultSpec::NetworkDelay(link.params(100));
    let before = link.qdiscs();
    let undo = spec.prepare(&c).await.unwrap();
    let marker = undo["deadman"].as_str().unwrap().to_string();
    inject_or_stand_in(&spec, &c, &undo, &link).await;
    assert_eq!(link.root_handle().as_deref(), Some(HANDLE));
    assert_eq!(timers(&marker), 1, "one dead-man timer armed");
    spec.restore(&c, &undo).await.unwrap();
    assert_eq!(
        link.qdiscs(),
        before,
        "restore left the interface other than before"
    );
    assert_eq!(timers(&marker), 0, "the dead-man timer survived restore");
    // Again: nothing to do, still fine.
    spec.restore(&c, &undo).await.unwrap();
    assert_eq!(link.qdiscs(), before);

    // Someone else's root qdisc in its place is left alone by restore.
    link.add_root("1:");
    spec.restore(&c, &undo).await.unwrap();
    assert_eq!(
        link.root_handle().as_deref(),
        Some("1:"),
        "{}",
        link.qdiscs()
    );
    // And by the dead-man's command (the kernel checks the handle).
    let out = run(
        "sh",
        &["-c", &network_delay::delete_command("tc", &link.host_if)],
    );
    assert!(!out.status.success());
    assert_eq!(link.root_handle().as_deref(), Some("1:"));
}

#[tokio::test]
async fn the_deadman_switch_removes_the_qdisc_on_its_own() {
    let link = Link::create();
    let before = link.qdiscs();
    // Deadline now, margin 1 s: the node removes the qdisc about a second from now.
    let c = ctx("nd-deadman", 0);
    let mut p = link.params(100);
    p.deadman_margin = Duration::from_secs(1);
    let spec = FaultSpec::NetworkDelay(p);
    let undo = spec.prepare(&c).await.unwrap();
    inject_or_stand_in(&spec, &c, &undo, &link).await;
    assert_eq!(link.root_handle().as_deref(), Some(HANDLE));
    let start = Instant::now();
    while link.root_handle().as_deref() == Some(HANDLE) && start.elapsed() < Duration::from_secs(15)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = start.elapsed();
    assert_eq!(
        link.qdiscs(),
        before,
        "the dead-man switch did not remove it ({took:?})"
    );
    assert!(
        took >= Duration::from_millis(500),
        "fired too early: {took:?}"
    );
}

#[tokio::test]
async fn a_new_faultline_process_removes_the_qdisc_from_the_ledger_alone() {
    let link = Link::create();
    let dir = tempfile::tempdir().unwrap();
    let ledger_path = dir.path().join("ledger.jsonl");
    let before = link.qdiscs();
    let c = ctx("nd-recover", 30);
    let spec = FaultSpec::NetworkDelay(link.params(100));
    let undo = spec.prepare(&c).await.unwrap();
    let marker = undo["deadman"].as_str().unwrap().to_string();
    Ledger::at(ledger_path.clone())
        .record_inject(&Entry::new(&c, &spec, &undo).unwrap())
        .unwrap();
    inject_or_stand_in(&spec, &c, &undo, &link).await;
    // Nothing restored here. `faultline recover` skips entries whose injecting process still
    // runs (this test), so the fresh process is `faultline restore ID`, which restores from the
    // ledger entry alone just as recover does.
    assert_eq!(link.root_handle().as_deref(), Some(HANDLE));
    let id = format!("{}/f1", c.run_id);
    let out = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(["restore", &id, "--ledger", ledger_path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "recover exited with {}: {} {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(link.qdiscs(), before);
    assert_eq!(timers(&marker), 0, "recover left the dead-man timer");
    assert!(Ledger::at(ledger_path).outstanding().unwrap().is_empty());
}

/// Median time of a TCP connect to a closed port inside the namespace (the RST comes back).
fn connect_ms(ip: &str, port: u16) -> f64 {
    let addr: SocketAddr = format!("{ip}:{port}").parse().unwrap();
    let mut v: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            let r = TcpStream::connect_timeout(&addr, Duration::from_secs(5));
            assert!(r.is_err(), "nothing listens on {addr}");
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[2]
}

fn kernel_has_netem(link: &Link) -> bool {
    let out = run(
        "tc",
        &[
            "qdisc",
            "add",
            "dev",
            &link.host_if,
            "root",
            "handle",
            "ffee:",
            "netem",
            "delay",
            "1us",
        ],
    );
    let _ = run(
        "tc",
        &[
            "qdisc",
            "del",
            "dev",
            &link.host_if,
            "root",
            "handle",
            "ffee:",
        ],
    );
    out.status.success()
}

#[tokio::test]
#[ignore = "needs a kernel with sch_netem and sch_prio (this session's VM kernel has neither)"]
async fn a_100ms_delay_adds_at_least_100ms_and_restore_takes_it_away() {
    let link = Link::create();
    assert!(
        kernel_has_netem(&link),
        "this kernel has no sch_netem (CONFIG_NET_SCH_NETEM)"
    );
    let c = ctx("nd-latency", 30);
    let spec = FaultSpec::NetworkDelay(link.params(100));
    let before_q = link.qdiscs();
    let before = connect_ms(&link.ns_ip, 9);
    let undo = spec.prepare(&c).await.unwrap();
    spec.inject(&c, &undo).await.unwrap();
    assert_eq!(
        spec.verify(&c, &undo).await.unwrap(),
        Verification::Verified
    );
    let during = connect_ms(&link.ns_ip, 9);
    spec.restore(&c, &undo).await.unwrap();
    let after = connect_ms(&link.ns_ip, 9);
    eprintln!(
        "connect RTT median: before {before:.2} ms, during {during:.2} ms, after {after:.2} ms"
    );
    assert!(during - before >= 100.0, "added {:.2} ms", during - before);
    assert!(
        after < before + 20.0,
        "after restore {after:.2} ms vs {before:.2} ms"
    );
    assert_eq!(link.qdiscs(), before_q);
}

#[tokio::test]
#[ignore = "needs a kernel with sch_netem and sch_prio (this session's VM kernel has neither)"]
async fn the_destination_filter_delays_only_the_listed_address_and_port() {
    let link = Link::create();
    assert!(
        kernel_has_netem(&link),
        "this kernel has no sch_netem (CONFIG_NET_SCH_NETEM)"
    );
    let c = ctx("nd-filter", 30);
    let mut p = link.params(100);
    p.destinations = vec![Destination {
        address: link.ns_ip.clone(),
        port: Some(9),
    }];
    let spec = FaultSpec::NetworkDelay(p);
    let undo = spec.prepare(&c).await.unwrap();
    spec.inject(&c, &undo).await.unwrap();
    assert_eq!(
        spec.verify(&c, &undo).await.unwrap(),
        Verification::Verified
    );
    let listed = connect_ms(&link.ns_ip, 9);
    let other_port = connect_ms(&link.ns_ip, 10);
    let other_addr = connect_ms(&link.ns_ip2, 9);
    spec.restore(&c, &undo).await.unwrap();
    eprintln!(
        "listed {listed:.2} ms, other port {other_port:.2} ms, other address {other_addr:.2} ms"
    );
    assert!(listed >= 100.0, "{listed:.2} ms");
    assert!(
        other_port < 50.0 && other_addr < 50.0,
        "{other_port:.2} / {other_addr:.2} ms"
    );
}

#[test]
fn the_example_names_the_host_it_acts_on() {
    let p = Params::example();
    assert_eq!(p.reach().host_names(), vec!["node-1".to_string()]);
}

/// The `u32` filter lines the kind adds, against the real kernel (under an `htb` root with the
/// kind's handle, since this kernel has no `prio`): IPv4 and IPv6, with and without a port, are
/// all accepted, and `tc filter show` prints one `flowid fa17:4` per filter, which verify counts.
#[test]
fn the_destination_filters_are_accepted_by_the_kernel_one_flowid_line_each() {
    let link = Link::create();
    let mut p = link.params(100);
    p.destinations = vec![
        Destination {
            address: link.ns_ip.clone(),
            port: Some(9),
        },
        Destination {
            address: "10.233.0.0/24".into(),
            port: None,
        },
        Destination {
            address: "fd00::/64".into(),
            port: Some(8000),
        },
    ];
    must(
        "tc",
        &[
            "qdisc",
            "add",
            "dev",
            &link.host_if,
            "root",
            "handle",
            HANDLE,
            "htb",
        ],
    );
    let cmds = network_delay::add_commands(&p);
    for c in &cmds[2..] {
        must("sh", &["-c", c]);
    }
    let out = run(
        "tc",
        &["filter", "show", "dev", &link.host_if, "parent", HANDLE],
    );
    let shown = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        shown
            .lines()
            .filter(|l| l.contains("flowid fa17:4"))
            .count(),
        3,
        "{shown}"
    );
}
