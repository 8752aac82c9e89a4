//! The sim's Kubernetes API through real clients (the `kube` crate, `kubectl`), and the
//! `pod-kill` and `network-partition` fault kinds against it. Real sockets on 127.0.0.1.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use faultline::sim::kube::KubeApiHandle;
use faultline::sim::{self, SimConfig, SimHandle};

pub struct Cluster {
    pub sim: SimHandle,
    pub api: KubeApiHandle,
    pub dir: tempfile::TempDir,
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A fast two-worker sim (restart in 0.6 s) with its Kubernetes API.
pub async fn start(workers: u32) -> Cluster {
    let mut config = SimConfig::preset("small").unwrap();
    config.gpus = workers;
    config.faultline_bin = Some(PathBuf::from(env!("CARGO_BIN_EXE_faultline")));
    let sim = sim::start(config, loopback()).await.expect("sim starts");
    let dir = tempfile::tempdir().unwrap();
    let api = sim::kube::serve(sim.control(), loopback(), &dir.path().join("kubeconfig"))
        .await
        .expect("kube api starts");
    Cluster { sim, api, dir }
}

#[tokio::test]
#[ignore = "manual: serves for 10 minutes"]
async fn manual_serve() {
    let c = start(2).await;
    std::fs::copy(&c.api.kubeconfig, "/tmp/kx/kubeconfig").unwrap();
    eprintln!("kubeconfig at /tmp/kx/kubeconfig ({})", c.api.url());
    tokio::time::sleep(Duration::from_secs(600)).await;
}
