//! The sim's certificate authority and its one way of serving HTTP, plain or TLS.
//!
//! Why: a real Kubernetes API server is always HTTPS with a private CA, and production LLM
//! gateways are HTTPS; tests that only ever meet plain HTTP prove nothing about the TLS paths
//! users depend on. So the sim makes a CA when it starts (`rcgen`), issues a server certificate
//! for `localhost`, `127.0.0.1` and `::1`, can issue client certificates (Kubernetes style: the
//! common name is the user, each organization a group), and serves through rustls with the
//! same provider as the clients. On a TLS connection every request carries axum-server's
//! `Arc<TlsInfo>` extension, whose `peer_certificates` hold the client's verified certificate.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum_server::tls_rustls::RustlsConfig;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum SimTlsError {
    #[error("cannot generate the sim's certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot build the sim's TLS configuration: {0}")]
    Config(String),
    #[error("cannot write {path:?}: {source}")]
    Write {
        path: std::path::PathBuf,
        source: io::Error,
    },
}

/// A certificate authority made when the sim starts; lives as long as the sim.
pub struct SimCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// Whether a TLS server asks for a client certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// Not asked for.
    None,
    /// Asked for and verified when given; clients without one are served too.
    Optional,
    /// Required: no certificate signed by the CA, no connection.
    Required,
}

/// A certificate with its private key, both PEM.
#[derive(Clone)]
pub struct IssuedPem {
    pub cert_pem: String,
    pub key_pem: String,
}

impl IssuedPem {
    /// Writes the certificate to `cert` and the key to `key` (readable by the owner only).
    pub fn write(&self, cert: &Path, key: &Path) -> Result<(), SimTlsError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let write = |path: &Path, text: &str, mode: u32| {
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(mode)
                .open(path)
                .and_then(|mut f| f.write_all(text.as_bytes()))
                .map_err(|source| SimTlsError::Write {
                    path: path.to_path_buf(),
                    source,
                })
        };
        write(cert, &self.cert_pem, 0o644)?;
        write(key, &self.key_pem, 0o600)
    }
}

impl std::fmt::Debug for SimCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SimCa")
    }
}

impl SimCa {
    pub fn generate() -> Result<SimCa, SimTlsError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "faultline-sim-ca");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        Ok(SimCa { issuer })
    }

    /// The CA certificate, PEM: what a client trusts (`--ca-cert`, kubeconfig
    /// `certificate-authority-data`).
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// Writes the CA certificate (PEM) to `path`.
    pub fn write_cert(&self, path: &Path) -> Result<(), SimTlsError> {
        std::fs::write(path, self.cert_pem()).map_err(|source| SimTlsError::Write {
            path: path.to_path_buf(),
            source,
        })
    }

    /// A server certificate for `localhost`, `127.0.0.1` and `::1`.
    pub fn issue_server(&self) -> Result<IssuedPem, SimTlsError> {
        let mut params = CertificateParams::new(vec!["localhost".to_string()])?;
        params
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        params
            .subject_alt_names
            .push(SanType::IpAddress(std::net::Ipv6Addr::LOCALHOST.into()));
        params
            .distinguished_name
            .push(DnType::CommonName, "faultline-sim");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params)
    }

    /// A client certificate: common name `user`, one organization per group (how Kubernetes
    /// reads a client certificate's identity).
    pub fn issue_client(&self, user: &str, groups: &[&str]) -> Result<IssuedPem, SimTlsError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, user);
        for g in groups {
            params.distinguished_name.push(DnType::OrganizationName, *g);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params)
    }

    fn issue(&self, params: CertificateParams) -> Result<IssuedPem, SimTlsError> {
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedPem {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// The server side: a fresh server certificate; ALPN `h2` and `http/1.1`. With
    /// `client_auth`, clients may present a certificate signed by this CA (verified, then
    /// in the requests' `TlsInfo`); clients without one are still served.
    pub fn server_config(
        &self,
        client_auth: bool,
    ) -> Result<Arc<rustls::ServerConfig>, SimTlsError> {
        self.server_config_with(if client_auth {
            ClientAuth::Optional
        } else {
            ClientAuth::None
        })
    }

    /// [`SimCa::server_config`] with the client-certificate policy spelled out: `Required`
    /// refuses the handshake of a client without a certificate signed by this CA (a gateway
    /// with mutual TLS).
    pub fn server_config_with(
        &self,
        client_auth: ClientAuth,
    ) -> Result<Arc<rustls::ServerConfig>, SimTlsError> {
        let provider = crate::tls::provider();
        let server = self.issue_server()?;
        let key_pair = KeyPair::from_pem(&server.key_pem)?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));
        let chain = vec![
            CertificateDer::from(pem_der(&server.cert_pem)?),
            self.cert_der(),
        ];
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| SimTlsError::Config(e.to_string()))?;
        let builder = if client_auth != ClientAuth::None {
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(self.cert_der())
                .map_err(|e| SimTlsError::Config(e.to_string()))?;
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            );
            let verifier = if client_auth == ClientAuth::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            }
            .build()
            .map_err(|e| SimTlsError::Config(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| SimTlsError::Config(e.to_string()))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

fn pem_der(pem: &str) -> Result<Vec<u8>, SimTlsError> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map(|c| c.to_vec())
        .map_err(|e| SimTlsError::Config(e.to_string()))
}

/// Serves `app` on `listener` until `stop` turns true: plain HTTP/1.1 and HTTP/2 without
/// `tls`, HTTPS with it. Open connections get a few seconds to finish after the stop.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    mut stop: watch::Receiver<bool>,
) -> io::Result<()> {
    let Some(tls) = tls else {
        return axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
    };
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        let _ = stop.wait_for(|s| *s).await;
        stopper.graceful_shutdown(Some(Duration::from_secs(3)));
    });
    axum_server::from_tcp_rustls(listener.into_std()?, RustlsConfig::from_config(tls))?
        .handle(handle)
        .serve(app.into_make_service())
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_client_trusting_the_sim_ca_gets_https_and_one_that_does_not_is_told_why() {
        let ca = SimCa::generate().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca_path = dir.path().join("ca.pem");
        ca.write_cert(&ca_path).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route("/", axum::routing::get(|| async { "hello" }));
        let (stop_tx, stop) = watch::channel(false);
        let server = tokio::spawn(serve(
            listener,
            app,
            Some(ca.server_config(false).unwrap()),
            stop,
        ));

        let trusting = crate::tls::http_client_builder(&crate::tls::TlsOptions {
            ca_cert: Some(ca_path),
            ..Default::default()
        })
        .unwrap()
        .build()
        .unwrap();
        let url = format!("https://localhost:{}/", addr.port());
        let body = trusting
            .get(&url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(body, "hello");
        let by_ip = format!("https://127.0.0.1:{}/", addr.port());
        let resp = trusting.get(&by_ip).send().await.unwrap();
        assert_eq!(resp.version(), reqwest::Version::HTTP_2);

        let system_only = crate::tls::http_client_builder(&Default::default())
            .unwrap()
            .build()
            .unwrap();
        let err = system_only.get(&url).send().await.unwrap_err();
        let why = crate::tls::explain(&err).unwrap_or_else(|| panic!("a TLS reason in {err:?}"));
        assert!(why.contains("unknown CA"), "{why}");

        let insecure = crate::tls::http_client_builder(&crate::tls::TlsOptions {
            insecure: true,
            ..Default::default()
        })
        .unwrap()
        .build()
        .unwrap();
        assert_eq!(
            insecure
                .get(&url)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
            "hello"
        );

        stop_tx.send(true).unwrap();
        server.await.unwrap().unwrap();
    }
}
