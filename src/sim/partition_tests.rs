//! A partition must leave nothing behind once it is lifted: requests whose clients gave up while
//! the worker was cut off (streams that stalled, requests that hung before a byte) may not keep
//! a batch slot or count as the router's load on it, or the router would steer traffic away from
//! a worker that is back and the cluster would run on half its capacity after the restore.
//! Real sockets on 127.0.0.1, a real client that times out, the sim's own gauges and truth log.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;

use super::control_tests::{self, next};
use super::{SimConfig, SimHandle};

async fn sim() -> SimHandle {
    let config = SimConfig {
        gpus: 2,
        tensor_parallel: 1,
        health_check_interval: Duration::from_millis(100),
        health_check_failures: 2,
        ..SimConfig::preset("small").expect("preset")
    };
    control_tests::sim(config).await
}

fn client() -> reqwest::Client {
    crate::tls::http_client_builder(&Default::default())
        .unwrap()
        .build()
        .unwrap()
}

/// The value of `family` for `worker` on a `/metrics` page (labels in any order).
fn gauge(page: &str, family: &str, worker: usize) -> f64 {
    let label = format!("worker=\"{worker}\"");
    page.lines()
        .find(|l| l.starts_with(&format!("{family}{{")) && l.contains(&label))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap_or_else(|| panic!("no {family} for worker {worker} in\n{page}"))
        .parse()
        .unwrap()
}

async fn metrics(h: &SimHandle) -> String {
    client()
        .get(format!("{}/metrics", h.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// A streamed completion that the client abandons after `give_up` (its first bytes read).
async fn abandoned_stream(url: String, give_up: Duration) {
    let read = async {
        let resp = client()
            .post(format!("{url}/v1/completions"))
            .json(&json!({"prompt": "hello", "max_tokens": 3000, "stream": true}))
            .send()
            .await;
        if let Ok(resp) = resp {
            let mut body = resp.bytes_stream();
            while body.next().await.is_some() {}
        }
    };
    let _ = tokio::time::timeout(give_up, read).await;
}

/// A short request; its status, or `None` when the client gave up after `timeout`.
async fn ask(url: &str, timeout: Duration) -> Option<u16> {
    client()
        .post(format!("{url}/v1/completions"))
        .timeout(timeout)
        .json(&json!({"prompt": "hello", "max_tokens": 2}))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_abandoned_during_a_partition_leave_no_load_on_the_worker_after_restore() {
    let h = sim().await;
    let c = h.control();
    let mut rx = c.subscribe();
    let url = h.url();

    // Long streams on both workers (the least-loaded router alternates them).
    let streams: Vec<_> = (0..4)
        .map(|_| tokio::spawn(abandoned_stream(url.clone(), Duration::from_millis(1500))))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let page = metrics(&h).await;
    assert!(
        gauge(&page, "vllm:num_requests_running", 0) >= 1.0,
        "{page}"
    );

    // Cut off: its streams stall, and requests routed to it before the router notices hang
    // without a byte. Every client gives up.
    c.set_cut_off(0, true).unwrap();
    let hung: Vec<_> = (0..6)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { ask(&url, Duration::from_millis(500)).await })
        })
        .collect();
    let mut gave_up = 0;
    for t in hung {
        if t.await.unwrap().is_none() {
            gave_up += 1;
        }
    }
    assert!(gave_up >= 1, "no request hung on the cut-off worker");
    next(&mut rx, "router_removed", 0).await;
    for s in streams {
        s.await.unwrap();
    }
    // The abandoned streams are gone from its batch while it is still cut off.
    let drained = async {
        loop {
            let page = metrics(&h).await;
            if gauge(&page, "vllm:num_requests_running", 0) == 0.0
                && gauge(&page, "vllm:num_requests_waiting", 0) == 0.0
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(3), drained)
        .await
        .expect("the cut-off worker still runs requests whose clients left");

    // Restored: the router re-admits it (truth log) and it takes its share at once. One request
    // at a time with both workers idle goes to worker 0 (ties go to the first worker), so
    // any load left counted on it (a hung request never released) would send them all to 1.
    c.set_cut_off(0, false).unwrap();
    let reconnected = next(&mut rx, "reconnected", 0).await;
    let added = next(&mut rx, "router_added", 0).await;
    assert!(added.t_s >= reconnected.t_s);
    assert!(
        added.t_s - reconnected.t_s < 1.0,
        "re-admitted late: {added:?}"
    );
    let before = gauge(&metrics(&h).await, "vllm:request_success_total", 0);
    for _ in 0..6 {
        assert_eq!(ask(&url, Duration::from_secs(2)).await, Some(200));
    }
    let after = gauge(&metrics(&h).await, "vllm:request_success_total", 0);
    assert_eq!(
        after - before,
        6.0,
        "requests after the restore went past the re-admitted worker"
    );
    tokio::time::timeout(Duration::from_secs(10), h.shutdown())
        .await
        .expect("the sim shuts down");
}
