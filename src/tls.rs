//! TLS for every client faultline opens: OpenAI-compatible endpoints, Prometheus, probes.
//!
//! Why one module: production gateways, managed endpoints and Prometheus behind an ingress are
//! HTTPS, often with a private CA or mutual TLS, and an operator expects the same four switches
//! everywhere (`--ca-cert`, `--client-cert`/`--client-key`, `--insecure`). This is a leaf: it
//! imports nothing of the project, so the load engine, the analysis and the runner all build
//! their HTTP clients through it.
//!
//! The stack is rustls with the `ring` provider (pure Rust, no system OpenSSL). Trust: the
//! system's store (`rustls-native-certs`, which honours `SSL_CERT_FILE` and `SSL_CERT_DIR`) plus
//! every certificate in `ca_cert`. ALPN offers `h2` then `http/1.1`, so a server that speaks
//! HTTP/2 gets it and any other gets HTTP/1.1.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde::{Deserialize, Serialize};

/// How to speak TLS to one server: as written under `tls:` in an experiment (target, probe)
/// and as the `--ca-cert`, `--client-cert`, `--client-key`, `--insecure` flags. Paths only,
/// never key material, so it may be recorded in `run.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsOptions {
    /// PEM bundle of CA certificates to trust, in addition to the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
    /// PEM client certificate (chain) for mutual TLS; needs `client_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<PathBuf>,
    /// Skip verifying the server's certificate (name, issuer, expiry). An explicit opt-out.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path:?}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} {path:?} holds no PEM {expected}: {reason}")]
    Pem {
        what: &'static str,
        path: PathBuf,
        expected: &'static str,
        reason: String,
    },
    #[error("CA certificate in {path:?} is not usable: {source}")]
    BadCa {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("a client certificate needs its key: give both client_cert and client_key, or neither")]
    HalfClientIdentity,
    #[error("client certificate {cert:?} and key {key:?} do not work together: {source}")]
    ClientIdentity {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
    #[error("the system trust store has no usable certificate and no ca_cert was given")]
    NoRoots,
    #[error("cannot build the TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The crypto provider every TLS configuration of faultline uses.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls client configuration for `opts`.
pub fn client_config(opts: &TlsOptions) -> Result<rustls::ClientConfig, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?;
    let builder = if opts.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert(provider())))
    } else {
        builder.with_root_certificates(root_store(opts.ca_cert.as_deref())?)
    };
    let mut config = match (&opts.client_cert, &opts.client_key) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), Some(key)) => {
            let chain = read_certs(cert, "client certificate")?;
            let key_der = read_key(key)?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|source| TlsError::ClientIdentity {
                    cert: cert.clone(),
                    key: key.clone(),
                    source,
                })?
        }
        _ => return Err(TlsError::HalfClientIdentity),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// A `reqwest` client builder speaking TLS as `opts` says (plain `http://` URLs work as well).
pub fn http_client_builder(opts: &TlsOptions) -> Result<reqwest::ClientBuilder, TlsError> {
    Ok(reqwest::Client::builder().tls_backend_preconfigured(client_config(opts)?))
}

/// Why `url` cannot be reached at the TLS layer, found by asking again over HTTP/1.1.
///
/// Under TLS 1.3 a server that requires a client certificate finishes the handshake and only
/// then refuses with an alert. Over HTTP/2 that alert kills the connection task, and the request
/// learns nothing but "channel closed"; over HTTP/1.1 the alert is what the response read
/// returns. So when a request to an `https://` URL fails without a TLS reason, one more
/// request over HTTP/1.1 says what the alert was. `None` when that one does not fail at TLS.
///
/// The server may close the socket before the client has read its alert (the client then sees
/// only "connection closed"; about one time in six on a busy machine), so up to three requests
/// are tried while they fail fast; the first one that names a TLS reason wins. (A server that
/// hangs is asked once: its 5 s timeout is not repeated.)
pub async fn diagnose(url: &reqwest::Url, opts: &TlsOptions) -> Option<String> {
    for _ in 0..3 {
        let started = std::time::Instant::now();
        if let Some(reason) = diagnose_once(url, opts).await {
            return Some(reason);
        }
        if started.elapsed() > std::time::Duration::from_secs(1) {
            break;
        }
    }
    None
}

async fn diagnose_once(url: &reqwest::Url, opts: &TlsOptions) -> Option<String> {
    if url.scheme() != "https" {
        return None;
    }
    let mut config = client_config(opts).ok()?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .http1_only()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(5))
        .build()
        .ok()?;
    let err = client.get(url.clone()).send().await.err()?;
    explain(&err)
}

/// The system's roots plus every certificate in `extra`.
fn root_store(extra: Option<&Path>) -> Result<rustls::RootCertStore, TlsError> {
    let mut store = rustls::RootCertStore::empty();
    // Unreadable entries of the system store are skipped, as every TLS client does.
    let native = rustls_native_certs::load_native_certs();
    store.add_parsable_certificates(native.certs);
    if let Some(path) = extra {
        for cert in read_certs(path, "CA certificate file")? {
            store.add(cert).map_err(|source| TlsError::BadCa {
                path: path.to_path_buf(),
                source,
            })?;
        }
    }
    if store.is_empty() {
        return Err(TlsError::NoRoots);
    }
    Ok(store)
}

/// Every certificate in a PEM file (at least one).
pub fn read_certs(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })?;
    let pem_error = |reason: String| TlsError::Pem {
        what,
        path: path.to_path_buf(),
        expected: "certificate",
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem_error("no BEGIN CERTIFICATE block".to_string()));
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in a PEM file.
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        what: "client key",
        path: path.to_path_buf(),
        source,
    })?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError::Pem {
        what: "client key",
        path: path.to_path_buf(),
        expected: "private key",
        reason: e.to_string(),
    })
}

/// Why a connection failed at the TLS layer, in words an operator can act on, if the error
/// (or anything in its source chain) is a TLS error. `None` when TLS was not the cause.
pub fn explain(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(t) = e.downcast_ref::<rustls::Error>() {
            return Some(explain_rustls(t));
        }
        // hyper-util and tokio-rustls wrap the rustls error in io::Errors, and an io::Error's
        // `source()` skips the error it wraps: step into it with `get_ref()`.
        cur = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

fn explain_rustls(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => "TLS: the server's certificate is signed by an unknown CA \
                 (pass the CA with --ca-cert FILE, or `tls: {ca_cert: FILE}` in a file; \
                 --insecure skips verification)"
                .to_string(),
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                "TLS: the server's certificate is not valid for this host name \
                 (connect by a name the certificate lists, or --insecure)"
                    .to_string()
            }
            C::Expired | C::ExpiredContext { .. } => {
                "TLS: the server's certificate has expired".to_string()
            }
            C::NotValidYet | C::NotValidYetContext { .. } => {
                "TLS: the server's certificate is not valid yet (check the clocks)".to_string()
            }
            C::Revoked => "TLS: the server's certificate is revoked".to_string(),
            other => format!("TLS: the server's certificate was refused: {other:?}"),
        },
        rustls::Error::AlertReceived(alert) => format!(
            "TLS: the server refused the handshake ({alert:?}); if it requires a client \
             certificate, pass --client-cert and --client-key"
        ),
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            "TLS: the server did not answer with TLS (is it plain http://?)".to_string()
        }
        other => format!("TLS: {other}"),
    }
}

/// `--insecure`: accepts any certificate, but still checks the handshake signatures so the
/// connection is at least encrypted to whoever answered.
#[derive(Debug)]
struct AcceptAnyServerCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_a_client_identity_is_refused() {
        let opts = TlsOptions {
            client_cert: Some("c.pem".into()),
            ..Default::default()
        };
        assert!(matches!(
            client_config(&opts),
            Err(TlsError::HalfClientIdentity)
        ));
    }

    #[test]
    fn a_ca_file_without_certificates_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let opts = TlsOptions {
            ca_cert: Some(path.clone()),
            ..Default::default()
        };
        let err = client_config(&opts).unwrap_err().to_string();
        assert!(err.contains("ca.pem"), "{err}");
        assert!(err.contains("no BEGIN CERTIFICATE"), "{err}");
    }

    #[test]
    fn options_read_from_yaml_keys_and_skip_defaults_when_written() {
        let o: TlsOptions =
            serde_json::from_str(r#"{"ca_cert":"/etc/ca.pem","insecure":true}"#).unwrap();
        assert_eq!(o.ca_cert.as_deref(), Some(Path::new("/etc/ca.pem")));
        assert!(o.insecure);
        assert_eq!(serde_json::to_string(&TlsOptions::default()).unwrap(), "{}");
        assert!(serde_json::from_str::<TlsOptions>(r#"{"ca":"x"}"#).is_err());
    }

    #[test]
    fn an_unknown_issuer_is_explained_with_the_fix() {
        let e = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::other(e);
        let text = explain(&io).unwrap();
        assert!(
            text.contains("unknown CA") && text.contains("--ca-cert"),
            "{text}"
        );
    }
}
