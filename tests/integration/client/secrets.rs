//! Nothing secret reaches disk or screen: a server whose 401 echoes the request's headers (as
//! debugging endpoints and some proxies do) must not get the API key or a `--header` value into
//! a record, `requests.jsonl`, `run.json` or the terminal.

use super::*;

const KEY: &str = "sk-faultline-echo-5d1e7a93b2";
const TENANT: &str = "tenant-secret-81f2";
const HDR_TOKEN: &str = "sk-by-header-0c44e9f1";

/// 401 with the whole request (head and body) as its body; `/v1/models` answers `models`.
async fn echo_server(models: &'static str) -> Server {
    serve(move |req: &str| {
        if req.contains("/v1/models") {
            match models {
                "echo" => vec![response("401 Unauthorized", "text/plain", req)],
                _ => vec![response("404 Not Found", "text/plain", "no such route")],
            }
        } else {
            vec![response("401 Unauthorized", "text/plain", req)]
        }
    })
    .await
}

fn assert_clean(what: &str, text: &str) {
    for secret in [KEY, TENANT, HDR_TOKEN, "5d1e7a93", "81f2"] {
        assert!(!text.contains(secret), "{what} holds {secret:?}: {text}");
    }
}

#[tokio::test]
async fn echoed_headers_in_a_401_are_masked_in_the_record_and_the_check_error() {
    let srv = echo_server("echo").await;
    let c = client(&srv.base, |c| {
        c.api_key = Some(ApiKey::new(KEY).unwrap());
        c.headers = vec![("x-tenant".into(), TENANT.into())];
    });
    let (rec, _) = send(&c).await;
    assert_eq!(rec.outcome, Outcome::HttpStatus { code: 401 }, "{rec:?}");
    let err = rec.error.clone().unwrap();
    assert!(
        err.starts_with("http 401: POST /v1/completions HTTP/1.1"),
        "{err}"
    );
    // The echo did reach the client: the masks stand where the secrets were.
    let sent = srv.requests.lock().unwrap()[0].clone();
    assert!(sent.contains(KEY) && sent.contains(TENANT), "{sent}");
    assert_clean("record", &serde_json::to_string(&rec).unwrap());

    let check = c.check().await.unwrap_err().to_string();
    assert!(check.contains("answered http 401"), "{check}");
    assert_clean("check error", &check);
}

#[tokio::test]
async fn masks_cover_the_secrets_in_the_snippet_kept() {
    // The secrets sit right where the 200-byte snippet is cut: no beginning of one survives.
    let filler = "x".repeat(185);
    let body = format!("{filler} Bearer {KEY} {TENANT}");
    let srv = serve(move |_| vec![response("403 Forbidden", "text/plain", &body)]).await;
    let c = client(&srv.base, |c| {
        c.api_key = Some(ApiKey::new(KEY).unwrap());
        c.headers = vec![("x-tenant".into(), TENANT.into())];
    });
    let (rec, _) = send(&c).await;
    let err = rec.error.unwrap();
    assert!(err.contains("Bearer ***"), "{err}");
    assert_clean("record", &err);
}

async fn faultline(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_faultline"));
    cmd.args(args).env_remove("OPENAI_API_KEY");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().await.unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn read(dir: &std::path::Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap()
}

#[tokio::test]
async fn load_against_an_echoing_server_writes_and_prints_no_secret() {
    let srv = echo_server("404").await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let header = format!("x-tenant: {TENANT}");
    let (code, stdout, stderr) = faultline(
        &[
            "load",
            "--endpoint",
            &srv.base,
            "--model",
            "m",
            "--rate",
            "10",
            "--arrival",
            "constant",
            "--duration",
            "1s",
            "--api-key-env",
            "FAULTLINE_TEST_ECHO_KEY",
            "--header",
            &header,
            "--out",
            out.to_str().unwrap(),
        ],
        &[("FAULTLINE_TEST_ECHO_KEY", KEY)],
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    // Every request reached the server with the secrets, and was answered with them.
    let sent = srv.requests.lock().unwrap().clone();
    let posts: Vec<&String> = sent.iter().filter(|r| r.starts_with("POST")).collect();
    assert_eq!(posts.len(), 10);
    assert!(posts.iter().all(|r| r.contains(KEY) && r.contains(TENANT)));

    let requests = read(&out, "requests.jsonl");
    let records: Vec<RequestRecord> = requests
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 10);
    for r in &records {
        assert_eq!(r.outcome, Outcome::HttpStatus { code: 401 });
        assert!(r.error.as_deref().unwrap().contains("***"), "{r:?}");
    }
    assert_clean("requests.jsonl", &requests);
    assert!(
        stderr.contains("first error (http_401): http 401: POST"),
        "{stderr}"
    );
    assert_clean("stderr", &stderr);
    assert_clean("stdout", &stdout);
    for name in ["run.json", "summary.json", "windows.jsonl"] {
        assert_clean(name, &read(&out, name));
    }
    let run: serde_json::Value = serde_json::from_str(&read(&out, "run.json")).unwrap();
    assert_eq!(run["api_key_sent"], true);
    assert_eq!(
        run["api_key_source"],
        "environment variable FAULTLINE_TEST_ECHO_KEY"
    );
    assert_eq!(run["headers"], serde_json::json!(["x-tenant"]));
}

#[tokio::test]
async fn authorization_sent_by_header_counts_as_a_key_sent_and_stays_secret() {
    let srv = echo_server("404").await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let header = format!("Authorization: Bearer {HDR_TOKEN}");
    let (code, _, stderr) = faultline(
        &[
            "load",
            "--endpoint",
            &srv.base,
            "--model",
            "m",
            "--rate",
            "5",
            "--arrival",
            "constant",
            "--duration",
            "1s",
            "--header",
            &header,
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    let run: serde_json::Value = serde_json::from_str(&read(&out, "run.json")).unwrap();
    assert_eq!(run["api_key_sent"], true, "{run}");
    assert_eq!(run["api_key_source"], "--header authorization");
    assert_clean("requests.jsonl", &read(&out, "requests.jsonl"));
    assert_clean("stderr", &stderr);
}

#[tokio::test]
async fn refused_models_check_prints_the_echo_masked() {
    let srv = echo_server("echo").await;
    let (code, _, stderr) = faultline(
        &[
            "load",
            "--endpoint",
            &srv.base,
            "--model",
            "m",
            "--duration",
            "1s",
            "--api-key-env",
            "FAULTLINE_TEST_ECHO_KEY",
            "--header",
            &format!("x-tenant: {TENANT}"),
            "--out",
            tempfile::tempdir().unwrap().path().to_str().unwrap(),
        ],
        &[("FAULTLINE_TEST_ECHO_KEY", KEY)],
    )
    .await;
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("answered http 401: GET /v1/models"),
        "{stderr}"
    );
    assert_clean("stderr", &stderr);
}

#[tokio::test]
async fn api_key_env_naming_an_unset_variable_is_warned_about() {
    let base = refused_base().await;
    let (code, _, stderr) = faultline(
        &[
            "load",
            "--endpoint",
            &base,
            "--duration",
            "1s",
            "--api-key-env",
            "FAULTLINE_TEST_SURELY_UNSET_KEY",
        ],
        &[],
    )
    .await;
    assert_eq!(code, 2, "nothing listens: {stderr}");
    assert!(
        stderr.contains(
            "warning: --api-key-env FAULTLINE_TEST_SURELY_UNSET_KEY: the variable is not set; \
             requests are sent without an api key"
        ),
        "{stderr}"
    );
    // The default variable unset is normal (a server without keys): no warning.
    let (_, _, stderr) = faultline(&["load", "--endpoint", &base, "--duration", "1s"], &[]).await;
    assert!(!stderr.contains("warning"), "{stderr}");
}

#[tokio::test]
async fn empty_model_and_empty_api_key_env_are_refused_naming_the_flag() {
    for (flag, msg) in [
        ("--model", "invalid value '' for --model: must not be empty"),
        (
            "--api-key-env",
            "invalid value '' for --api-key-env: must name an environment variable",
        ),
    ] {
        let (code, _, stderr) =
            faultline(&["load", "--endpoint", "http://127.0.0.1:9", flag, ""], &[]).await;
        assert_eq!(code, 2, "{stderr}");
        assert!(stderr.contains(msg), "{flag}: {stderr}");
    }
}
