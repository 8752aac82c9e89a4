//! Probes: checks run on an interval during an experiment and recorded on its timeline. A
//! detection probe's first failure after a fault took effect is a detection signal.

use crate::fault::exec::Hosts;
use crate::fault::kube_target;
use crate::fault::kube_target::KubeTarget;
use crate::runner::spec::{Probe, ProbeCheck};
use k8s_openapi::api::core::v1::Pod;
use std::sync::Arc;
use std::time::Duration;

/// The HTTP client of one probe, with the TLS options of its `http`/`prometheus` section.
pub fn http_client(probe: &Probe) -> Result<reqwest::Client, String> {
    let tls = match &probe.check {
        ProbeCheck::Http(h) => h.tls.clone(),
        ProbeCheck::Prometheus(p) => p.tls.clone(),
        ProbeCheck::Command(_) | ProbeCheck::KubeReady(_) => Default::default(),
    };
    crate::tls::http_client_builder(&tls)
        .map_err(|e| e.to_string())?
        .build()
        .map_err(|e| e.to_string())
}

/// Why a request failed: the TLS reason with its fix when the handshake failed, else reqwest's
/// innermost cause.
fn why(e: &reqwest::Error) -> String {
    if let Some(tls) = crate::tls::explain(e) {
        return tls;
    }
    let mut root: &dyn std::error::Error = e;
    while let Some(s) = root.source() {
        root = s;
    }
    root.to_string()
}

/// Runs one check; `Ok(detail)` = healthy, `Err(detail)` = failing.
pub async fn check(
    probe: &Probe,
    hosts: &Arc<Hosts>,
    kube: Option<&KubeTarget>,
    http: &reqwest::Client,
) -> Result<String, String> {
    let timeout = probe.every.max(Duration::from_secs(1));
    match &probe.check {
        ProbeCheck::Http(h) => {
            let resp = http
                .get(&h.url)
                .timeout(timeout)
                .send()
                .await
                .map_err(|e| format!("GET {}: {}", h.url, why(&e)))?;
            let code = resp.status().as_u16();
            if code == h.expect_status {
                Ok(format!("{code}"))
            } else {
                Err(format!(
                    "GET {} answered {code}, expected {}",
                    h.url, h.expect_status
                ))
            }
        }
        ProbeCheck::Prometheus(p) => {
            let url = format!("{}/api/v1/query", p.url().trim_end_matches('/'));
            let body: serde_json::Value = http
                .post(&url)
                .form(&[("query", p.query.as_str())])
                .timeout(timeout)
                .send()
                .await
                .map_err(|e| format!("{url}: {}", why(&e)))?
                .json()
                .await
                .map_err(|e| format!("{url}: {e}"))?;
            let value = body["data"]["result"][0]["value"][1]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok());
            match (value, p.threshold) {
                (None, _) => Err(format!("query {:?} returned no data", p.query)),
                (Some(v), Some(t)) if v > t => Err(format!("{:?} = {v} > {t}", p.query)),
                (Some(v), _) => Ok(format!("{v}")),
            }
        }
        ProbeCheck::Command(c) => {
            let host = hosts.get(&c.host).map_err(|e| e.to_string())?;
            let out = host.run(&c.run, timeout).await.map_err(|e| e.to_string())?;
            if out.success() {
                Ok("exit 0".into())
            } else {
                Err(format!(
                    "{:?} exited {:?}: {}",
                    c.run,
                    out.status,
                    out.stderr.trim()
                ))
            }
        }
        ProbeCheck::KubeReady(k) => {
            let target = kube.ok_or("kube_ready needs a kubernetes section")?;
            let ns = target.namespace_for(k.namespace.as_deref());
            let api: kube::Api<Pod> = kube::Api::namespaced(target.client.clone(), ns);
            let pods = api
                .list(&kube::api::ListParams::default().labels(&k.selector))
                .await
                .map_err(|e| {
                    format!(
                        "list pods {:?} in {ns}: {}",
                        k.selector,
                        crate::fault::kube_target::explain(&e)
                    )
                })?;
            let total = pods.items.len();
            let ready = pods
                .items
                .iter()
                .filter(|p| kube_target::is_ready(p))
                .count();
            if total > 0 && ready == total {
                Ok(format!("{ready}/{total} Ready"))
            } else {
                Err(format!("{ready}/{total} pods {:?} Ready", k.selector))
            }
        }
    }
}
