//! The shipped `experiments/network-partition.yaml`, run against the embedded sim with a real
//! Prometheus started from the shipped `deploy/prometheus-sim.yml`: the partition is detected
//! through the router's metrics (the signal an operator has), within one window of the moment
//! the sim's router logged dropping the worker.
//!
//! Only what ties the files to this machine is changed: the sim's port and the Prometheus URL
//! (free ports, so tests can run side by side), where the fault definitions are, and the
//! timings are shortened (warm-up, fault start and length, load length) to keep the suite quick. The
//! probe and the fault are as shipped.

use super::{Prometheus, free_port};
use crate::shipped::{self, once, root};
use faultline::analysis::phases::Detection;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_partition_experiment_detects_through_the_routers_metrics_within_one_window_of_the_sims_truth()
 {
    let sim_addr = format!("127.0.0.1:{}", free_port());
    let deploy = std::fs::read_to_string(root().join("deploy/prometheus-sim.yml")).unwrap();
    let prom = Prometheus::start_config(
        &once(
            &deploy,
            "[\"127.0.0.1:18080\"]",
            &format!("[\"{sim_addr}\"]"),
        ),
        None,
    )
    .await;

    let shipped = shipped::experiment("network-partition");
    let mut exp = once(
        &shipped,
        "listen: \"127.0.0.1:18080\"",
        &format!("listen: \"{sim_addr}\""),
    );
    exp = once(
        &exp,
        "url: http://127.0.0.1:9090",
        &format!("url: {}", prom.url),
    );
    exp = once(&exp, "duration: 135s", "duration: 50s");
    exp = once(&exp, "duration: 60s", "duration: 20s");
    exp = once(&exp, "warmup: 15s", "warmup: 5s");
    exp = once(&exp, "at: 45s", "at: 18s");
    let run = shipped::run(&exp, "t-np-prom").await;
    let r = &run.result;

    let f = &r.faults[0];
    let eff = f
        .effective_s
        .unwrap_or_else(|| panic!("not injected: {f:#?}"));
    let events = run.sim_events();
    let applied = events
        .iter()
        .find(|e| e.kind == "policy_applied" && e.t_s >= eff - 1.0)
        .unwrap_or_else(|| panic!("no policy_applied in {events:?}"))
        .t_s;
    let removed = events
        .iter()
        .find(|e| e.kind == "router_removed" && e.worker == Some(0) && e.t_s >= applied)
        .unwrap_or_else(|| panic!("no router_removed in {events:?}"))
        .t_s;

    // Prometheus saw the sim before the fault: the probe was passing, so its failure is news.
    let probe_ok_before = r
        .events
        .iter()
        .any(|e| e.kind == "probe_ok" && e.detail.starts_with("router-workers-out") && e.t_s < eff);
    assert!(
        probe_ok_before,
        "the router probe never passed before the fault: {:#?}\nprometheus log:\n{}",
        r.events,
        prom.log()
    );
    // The pods stay Ready through a partition: only the router's view shows it.
    assert!(
        !r.events.iter().any(|e| e.kind == "probe_failed"
            && e.detail.starts_with("pods-ready")
            && e.t_s >= eff),
        "{:#?}",
        r.events
    );

    let a = f.analysis.as_ref().expect("analysed");
    let truth = removed - eff;
    match &a.detection {
        Detection::Detected { after_s, signal } => {
            eprintln!(
                "detection {after_s:.3} s via {signal}, sim's router removed worker 0 after {truth:.3} s"
            );
            assert_eq!(signal, "probe router-workers-out");
            assert!(
                (after_s - truth).abs() <= 1.0,
                "detection {after_s} s, truth {truth} s"
            );
        }
        other => panic!(
            "not detected: {other:?} (truth {truth} s); events {:#?}",
            r.events
        ),
    }
}
