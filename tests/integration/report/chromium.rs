//! Opens a page in a real headless Chromium and reports what the page did: its DOM after load,
//! the console messages it produced, and every network request it made.
//!
//! What Chromium prints on stderr in a container is mostly about itself, not the page: the
//! Debian wrapper script's shell warning, D-Bus not running, no GPU / VA-API device, the
//! sandbox warning for `--no-sandbox`. None of that concerns the page, so instead of filtering
//! that noise line by line (brittle across versions) we keep only what *is* the page's:
//! console messages (Chromium logs them as `INFO:CONSOLE:<line>] "<message>", source: <url>`)
//! and lines that name the page's URL. Requests are read from Chromium's net log: a request
//! whose network isolation key is the `file://` page is the page's; Chromium's own background
//! traffic (update checks, accounts) has no page origin and is ignored. A host-resolver rule
//! makes every lookup fail, so nothing leaves the machine either way.

use std::path::{Path, PathBuf};
use std::process::Command;

pub const CHROMIUM: &str = "/usr/bin/chromium";

pub struct Page {
    pub dom: String,
    pub console: Vec<String>,
    pub requests: Vec<String>,
}

fn chromium() -> &'static str {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: the report tests need Debian's chromium \
         (scripts/test.sh installs it: apt-get install chromium)"
    );
    CHROMIUM
}

fn base_args(profile: &Path) -> Vec<String> {
    [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--enable-logging=stderr",
        "--v=0",
        "--host-resolver-rules=MAP * ~NOTFOUND",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("--user-data-dir={}", profile.display())])
    .collect()
}

fn url(page: &Path) -> String {
    format!("file://{}", page.canonicalize().unwrap().display())
}

/// Loads `page` and returns its DOM, console messages and network requests.
pub fn open(page: &Path) -> Page {
    let tmp = tempfile::tempdir().unwrap();
    let netlog = tmp.path().join("netlog.json");
    let url = url(page);
    let out = Command::new(chromium())
        .args(base_args(&tmp.path().join("profile")))
        .arg(format!("--log-net-log={}", netlog.display()))
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .expect("chromium starts");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chromium failed: {stderr}");
    let console = stderr
        .lines()
        .filter(|l| l.contains(":CONSOLE") || l.contains(&url))
        .map(str::to_string)
        .collect();
    Page {
        dom: String::from_utf8_lossy(&out.stdout).into_owned(),
        console,
        requests: page_requests(&netlog),
    }
}

/// URLs the page itself requested (not `file://`), from Chromium's net log.
fn page_requests(netlog: &Path) -> Vec<String> {
    let log: serde_json::Value =
        serde_json::from_slice(&std::fs::read(netlog).expect("chromium wrote its net log"))
            .expect("the net log is JSON");
    let start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
        .as_u64()
        .expect("the net log names its event types");
    let mut urls: Vec<String> = log["events"]
        .as_array()
        .expect("net log events")
        .iter()
        .filter(|e| e["type"].as_u64() == Some(start_job))
        .filter(|e| {
            e["params"]["network_isolation_key"]
                .as_str()
                .is_some_and(|k| k.starts_with("file://"))
        })
        .filter_map(|e| e["params"]["url"].as_str().map(str::to_string))
        .filter(|u| !u.starts_with("file://"))
        .collect();
    urls.dedup();
    urls
}

/// Renders `page` to a PNG of the given window size and returns its path inside `dir`.
pub fn screenshot(page: &Path, dir: &Path, size: (u32, u32)) -> PathBuf {
    let png = dir.join("report.png");
    let out = Command::new(chromium())
        .args(base_args(&dir.join("shot-profile")))
        .arg("--hide-scrollbars")
        .arg(format!("--window-size={},{}", size.0, size.1))
        .arg(format!("--screenshot={}", png.display()))
        .arg(url(page))
        .output()
        .expect("chromium starts");
    assert!(
        out.status.success(),
        "chromium screenshot failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    png
}
