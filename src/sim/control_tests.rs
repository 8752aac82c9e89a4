//! The sim's fault surfaces with real processes, real signals and real sockets on 127.0.0.1:
//! what a fault does to the workers, the router and the requests, and the ground truth it leaves.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::nvsmi::GpuState;
use super::{SimConfig, SimControl, SimEvent, SimHandle, WorkerState, start};
use crate::common::ComputeMode;

const INTERVAL: Duration = Duration::from_millis(100);
const FAILURES: u32 = 2;
const RESTART: Duration = Duration::from_millis(600);

/// Two small workers with fast checks and restarts.
fn two_workers() -> SimConfig {
    SimConfig {
        gpus: 2,
        tensor_parallel: 1,
        health_check_interval: INTERVAL,
        health_check_failures: FAILURES,
        restart_delay: RESTART,
        ..SimConfig::preset("small").expect("preset")
    }
}

pub(super) async fn sim(config: SimConfig) -> SimHandle {
    start(config, SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("sim starts")
}

/// Waits for the next event of `kind` for `worker`, skipping others.
pub(super) async fn next(
    rx: &mut broadcast::Receiver<SimEvent>,
    kind: &str,
    worker: usize,
) -> SimEvent {
    let wait = async {
        loop {
            let e = rx.recv().await.expect("event stream open");
            if e.kind == kind && e.worker == Some(worker) {
                return e;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .unwrap_or_else(|_| panic!("no {kind} event for worker {worker}"))
}

fn sigkill(pid: u32) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    let rc = unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    assert_eq!(rc, 0, "kill -9 {pid}");
}

fn pid(c: &SimControl, worker: usize) -> u32 {
    c.workers()[worker].pid.expect("worker has a process")
}

fn alive(pid: u32) -> bool {
    // A killed child stays a zombie until reaped; count only running ones.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

/// A short non-streamed completion; its status, or `None` if the client timed out.
async fn ask(h: &SimHandle, timeout: Duration) -> Option<u16> {
    let resp = crate::tls::http_client_builder(&Default::default())
        .unwrap()
        .build()
        .unwrap()
        .post(format!("{}/v1/completions", h.url()))
        .timeout(timeout)
        .json(&json!({"prompt": "hello", "max_tokens": 2}))
        .send()
        .await;
    match resp {
        Ok(r) => Some(r.status().as_u16()),
        Err(e) if e.is_timeout() => None,
        Err(e) => panic!("request failed: {e}"),
    }
}

/// `reqwest::get`, through the project's one client builder (a bare client has no TLS provider).
async fn http_get(url: String) -> reqwest::Result<reqwest::Response> {
    crate::tls::http_client_builder(&Default::default())
        .unwrap()
        .build()
        .unwrap()
        .get(url)
        .send()
        .await
}

async fn metrics(h: &SimHandle) -> String {
    http_get(format!("{}/metrics", h.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn killed_process_fails_worker_router_removes_it_after_checks_and_restart_readds_it() {
    let h = sim(two_workers()).await;
    let c = h.control();
    let mut rx = c.subscribe();
    let old = pid(&c, 0);
    sigkill(old);

    let failed = next(&mut rx, "worker_failed", 0).await;
    assert!(failed.detail.contains("signal 9"), "{failed:?}");
    assert_eq!(c.workers()[0].state, WorkerState::Failed);
    assert!(c.workers()[0].routed, "the router has not noticed yet");
    // Until the checks notice, the router still picks the idle dead worker: those requests fail.
    assert_eq!(ask(&h, Duration::from_secs(2)).await, Some(502));

    let removed = next(&mut rx, "router_removed", 0).await;
    let gap = removed.t_s - failed.t_s;
    let most = (INTERVAL * FAILURES).as_secs_f64();
    let least = (INTERVAL * (FAILURES - 1)).as_secs_f64();
    assert!(
        gap >= least - 0.02 && gap <= most + 0.15,
        "removed {gap:.3}s after failing"
    );
    for _ in 0..5 {
        assert_eq!(ask(&h, Duration::from_secs(2)).await, Some(200));
    }

    let starting = next(&mut rx, "worker_starting", 0).await;
    let started = next(&mut rx, "worker_started", 0).await;
    let added = next(&mut rx, "router_added", 0).await;
    let restart = started.t_s - failed.t_s;
    assert!(
        restart >= RESTART.as_secs_f64() - 0.02 && restart <= RESTART.as_secs_f64() + 0.3,
        "restarted {restart:.3}s after failing"
    );
    assert!(added.t_s - started.t_s <= INTERVAL.as_secs_f64() + 0.15);
    let order: Vec<_> = [&failed, &removed, &starting, &started, &added]
        .iter()
        .map(|e| e.t_s)
        .collect();
    assert!(order.is_sorted(), "{order:?}");
    let all = c.events();
    assert!(all.windows(2).all(|p| p[0].t_s <= p[1].t_s));

    let now = &c.workers()[0];
    assert_eq!(now.state, WorkerState::Running);
    assert!(now.routed);
    assert_eq!(now.generation, 1);
    assert_ne!(now.pid, Some(old));
    assert!(alive(now.pid.unwrap()));
    assert!(!alive(old));
    h.shutdown().await;
}

#[tokio::test]
async fn stream_on_a_worker_that_dies_is_cut_without_done() {
    let h = sim(two_workers()).await;
    let c = h.control();
    let resp = crate::tls::http_client_builder(&Default::default())
        .unwrap()
        .build()
        .unwrap()
        .post(format!("{}/v1/completions", h.url()))
        .json(&json!({"prompt": "hi", "max_tokens": 500, "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // Both were idle: the router's tie goes to worker 0.
    let busy = 0;
    let mut body = resp.bytes_stream();
    let first = body.next().await.expect("a chunk").expect("no error yet");
    assert!(!first.is_empty());
    c.kill_worker(busy, "test").unwrap();
    let mut text = String::new();
    let mut broke = false;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(b) => text.push_str(&String::from_utf8_lossy(&b)),
            Err(_) => {
                broke = true;
                break;
            }
        }
    }
    assert!(broke, "the stream ended cleanly: {text}");
    assert!(!text.contains("[DONE]"));
    let failed = c
        .events()
        .into_iter()
        .find(|e| e.kind == "worker_failed")
        .unwrap();
    assert!(failed.detail.contains("test"), "{failed:?}");
    h.shutdown().await;
}

#[tokio::test]
async fn prohibited_gpu_refuses_restart_until_mode_is_default_again() {
    let h = sim(two_workers()).await;
    let c = h.control();
    let gpus = GpuState::open(h.state_dir()).unwrap();
    gpus.set_mode(0, ComputeMode::Prohibited).unwrap();
    let mut rx = c.subscribe();
    sigkill(pid(&c, 0));
    next(&mut rx, "worker_failed", 0).await;
    let refused = next(&mut rx, "worker_start_failed", 0).await;
    assert!(refused.detail.contains("Prohibited"), "{refused:?}");
    next(&mut rx, "worker_start_failed", 0).await;
    assert_eq!(c.workers()[0].state, WorkerState::Failed);
    assert!(!c.workers()[0].routed);
    let text = metrics(&h).await;
    assert!(
        text.contains("faultline_sim_worker_up{worker=\"0\"} 0"),
        "{text}"
    );
    assert!(text.contains("faultline_sim_worker_up{worker=\"1\"} 1"));
    assert!(!text.contains("vllm:num_requests_running{model_name=\"sim-small\",worker=\"0\"}"));
    assert!(gpus.load().unwrap().gpus[0].processes.is_empty());

    gpus.set_mode(0, ComputeMode::Default).unwrap();
    let started = next(&mut rx, "worker_started", 0).await;
    assert!(started.detail.contains("generation 1"), "{started:?}");
    next(&mut rx, "router_added", 0).await;
    let pid = pid(&c, 0);
    let registered = &gpus.load().unwrap().gpus[0].processes;
    assert_eq!(registered.len(), 1);
    assert_eq!(registered[0].pid, pid);
    h.shutdown().await;
}

#[tokio::test]
async fn exclusive_gpu_held_by_another_process_refuses_restart_until_released() {
    let h = sim(two_workers()).await;
    let c = h.control();
    let gpus = GpuState::open(h.state_dir()).unwrap();
    gpus.set_mode(1, ComputeMode::ExclusiveProcess).unwrap();
    let mut rx = c.subscribe();
    c.kill_worker(1, "pod deleted").unwrap();
    next(&mut rx, "worker_failed", 1).await;
    // Another live process (this test) grabs the GPU while the worker is down.
    let me = std::process::id();
    gpus.register_process(1, me).unwrap();
    let refused = next(&mut rx, "worker_start_failed", 1).await;
    assert!(refused.detail.contains("Exclusive_Process"), "{refused:?}");
    gpus.unregister_process(me).unwrap();
    next(&mut rx, "worker_started", 1).await;
    assert_eq!(c.workers()[1].state, WorkerState::Running);
    h.shutdown().await;
}

#[tokio::test]
async fn mode_change_alone_does_not_stop_a_running_worker() {
    let h = sim(two_workers()).await;
    let c = h.control();
    let before = pid(&c, 0);
    let gpus = GpuState::open(h.state_dir()).unwrap();
    gpus.set_mode(0, ComputeMode::Prohibited).unwrap();
    gpus.set_mode(1, ComputeMode::ExclusiveProcess).unwrap();
    tokio::time::sleep(INTERVAL * (FAILURES + 2)).await;
    assert!(c.events().iter().all(|e| e.kind == "worker_started"));
    let w = &c.workers()[0];
    assert_eq!(
        (w.state, w.pid, w.routed),
        (WorkerState::Running, Some(before), true)
    );
    assert!(alive(before));
    for _ in 0..4 {
        assert_eq!(ask(&h, Duration::from_secs(2)).await, Some(200));
    }
    h.shutdown().await;
}

#[tokio::test]
async fn cut_off_worker_hangs_requests_until_removed_then_rejoins_when_reconnected() {
    let h = sim(two_workers()).await;
    let c = h.control();
    let mut rx = c.subscribe();
    c.set_cut_off(0, true).unwrap();
    let cut = next(&mut rx, "cut_off", 0).await;
    // Both idle: the router's tie goes to worker 0, which never answers.
    let t = Instant::now();
    assert_eq!(ask(&h, Duration::from_millis(300)).await, None);
    assert!(t.elapsed() >= Duration::from_millis(290));
    let removed = next(&mut rx, "router_removed", 0).await;
    assert!(removed.t_s - cut.t_s <= (INTERVAL * FAILURES).as_secs_f64() + 0.15);
    assert!(removed.detail.contains("cut off"), "{removed:?}");
    assert!(!c.workers()[0].routed);
    assert!(c.workers()[0].cut_off);
    for _ in 0..5 {
        assert_eq!(ask(&h, Duration::from_secs(1)).await, Some(200));
    }
    // The process never died.
    assert_eq!(c.workers()[0].state, WorkerState::Running);

    c.set_cut_off(0, false).unwrap();
    next(&mut rx, "reconnected", 0).await;
    next(&mut rx, "router_added", 0).await;
    assert!(c.workers()[0].routed);
    h.shutdown().await;
}

#[tokio::test]
async fn request_hanging_on_a_cut_off_worker_is_served_after_reconnect() {
    let h = sim(two_workers()).await;
    let c = h.control();
    c.set_cut_off(0, true).unwrap();
    let url = h.url();
    let pending = tokio::spawn(async move {
        crate::tls::http_client_builder(&Default::default())
            .unwrap()
            .build()
            .unwrap()
            .post(format!("{url}/v1/completions"))
            .json(&json!({"prompt": "hello", "max_tokens": 2}))
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!pending.is_finished());
    c.set_cut_off(0, false).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(2), pending)
        .await
        .expect("served after reconnect")
        .unwrap()
        .unwrap();
    assert_eq!(status, 200);
    h.shutdown().await;
}

#[tokio::test]
async fn state_dir_has_an_executable_nvidia_smi_wrapper_and_events_are_served() {
    let config = SimConfig {
        faultline_bin: Some("/opt/fl/faultline".into()),
        ..two_workers()
    };
    let h = sim(config).await;
    let dir = h.state_dir().to_path_buf();
    let wrapper = dir.join("bin/nvidia-smi");
    assert_eq!(
        std::fs::read_to_string(&wrapper).unwrap(),
        format!(
            "#!/bin/sh\nexec '/opt/fl/faultline' nvidia-smi --state '{}' \"$@\"\n",
            dir.display()
        )
    );
    let mode = std::fs::metadata(&wrapper).unwrap().permissions().mode();
    assert_eq!(mode & 0o111, 0o111, "{mode:o}");
    let gpus = GpuState::open(&dir).unwrap().load().unwrap();
    assert_eq!(gpus.gpus.len(), 2);
    let c = h.control();
    for (i, w) in c.workers().iter().enumerate() {
        assert_eq!(w.gpus, vec![i as u32]);
        assert_eq!(gpus.gpus[i].processes[0].pid, w.pid.unwrap());
    }

    c.record("pod_deleted", Some(1), "sim-worker-1");
    let served: Vec<SimEvent> = http_get(format!("{}/sim/events", h.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kinds: Vec<_> = served.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["worker_started", "worker_started", "pod_deleted"]);
    let on_disk: Vec<SimEvent> = std::fs::read_to_string(dir.join(super::EVENTS_FILE))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(on_disk.len(), 3);
    let workers: Value = http_get(format!("{}/sim/workers", h.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(workers[1]["state"], "running");
    let pids: Vec<u32> = c.workers().iter().map(|w| w.pid.unwrap()).collect();

    h.shutdown().await;
    assert!(!dir.exists(), "a temporary state dir is removed");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        pids.iter().all(|&p| !alive(p)),
        "worker processes are killed"
    );
}

#[tokio::test]
async fn zero_latency_has_no_processes_and_refuses_lifecycle_controls() {
    let h = sim(two_workers().zero_latency()).await;
    let c = h.control();
    assert!(c.workers().iter().all(|w| w.pid.is_none() && w.routed));
    assert!(c.kill_worker(0, "x").is_err());
    assert!(c.set_cut_off(0, true).is_err());
    assert!(c.kill_worker(9, "x").is_err());
    h.shutdown().await;
}

/// The value of the series `name` (with its `{labels}` or none) on the `/metrics` page.
fn series(page: &str, name: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no series {name} in\n{page}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn metrics_show_the_routers_view_change_when_it_removes_and_readds_a_worker() {
    let h = sim(two_workers()).await;
    let c = h.control();
    let mut rx = c.subscribe();
    let page = metrics(&h).await;
    assert_eq!(series(&page, "faultline_sim_router_workers_healthy"), 2.0);
    assert_eq!(series(&page, "faultline_sim_router_workers_total"), 2.0);
    assert_eq!(
        series(&page, r#"faultline_sim_router_worker_routed{worker="0"}"#),
        1.0
    );
    assert!(page.contains("# TYPE faultline_sim_router_workers_healthy gauge"));

    // Cut off but not yet removed: the process is up and the router still routes to it, with
    // failed checks counting up; once removed, the router's series say so and `up` does not.
    c.set_cut_off(0, true).unwrap();
    next(&mut rx, "router_removed", 0).await;
    let page = metrics(&h).await;
    assert_eq!(series(&page, "faultline_sim_router_workers_healthy"), 1.0);
    assert_eq!(
        series(&page, r#"faultline_sim_router_worker_routed{worker="0"}"#),
        0.0
    );
    assert_eq!(
        series(&page, r#"faultline_sim_router_worker_routed{worker="1"}"#),
        1.0
    );
    assert!(
        series(
            &page,
            r#"faultline_sim_router_worker_health_check_failures{worker="0"}"#
        ) >= f64::from(FAILURES)
    );
    assert_eq!(
        series(&page, r#"faultline_sim_worker_up{worker="0"}"#),
        1.0,
        "a cut-off worker's process is still up: only the router's view shows the partition"
    );

    c.set_cut_off(0, false).unwrap();
    next(&mut rx, "router_added", 0).await;
    let page = metrics(&h).await;
    assert_eq!(series(&page, "faultline_sim_router_workers_healthy"), 2.0);
    assert_eq!(
        series(
            &page,
            r#"faultline_sim_router_worker_health_check_failures{worker="0"}"#
        ),
        0.0
    );
    h.shutdown().await;
}

/// A throttled GPU slows its worker's steps, and a throttled member of a tensor-parallel group
/// slows the whole group (every collective waits for it): GPU 1 of the group {0, 1} locked to
/// half its clock makes worker 0 run at 2x its step time, worker 1 (GPUs 2, 3) is untouched,
/// and unlocking brings it back. The sim's event log is the ground truth a gray failure leaves.
#[tokio::test]
async fn a_throttled_gpu_slows_its_whole_tensor_parallel_group_and_nothing_else() {
    let h = sim(SimConfig {
        gpus: 4,
        tensor_parallel: 2,
        ..two_workers()
    })
    .await;
    let c = h.control();
    let mut rx = c.subscribe();
    let gpus = GpuState::open(h.state_dir()).unwrap();
    let max = gpus.load().unwrap().gpus[1].max_sm_mhz;
    gpus.set_throttle(1, Some([max / 2, max / 2]), 700.0)
        .unwrap();
    let slowed = next(&mut rx, "worker_slowed", 0).await;
    assert!(slowed.detail.starts_with("steps 2.000x"), "{slowed:?}");
    gpus.set_throttle(1, None, 700.0).unwrap();
    let back = next(&mut rx, "worker_slowed", 0).await;
    assert!(back.detail.starts_with("steps 1.000x"), "{back:?}");
    assert!(
        !c.events()
            .iter()
            .any(|e| e.kind == "worker_slowed" && e.worker == Some(1)),
        "worker 1's GPUs were not touched"
    );
}
