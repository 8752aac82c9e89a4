//! The TLS flags, one set for every command that talks to an HTTPS server: `--ca-cert`,
//! `--client-cert`/`--client-key`, `--insecure`. Flattened into the target flags (`load`,
//! `ramp`, `sla`, `bench`) and into `bottleneck`; they become a [`TlsOptions`], the same type an
//! experiment's `tls:` keys are read into, so flags and files cannot drift apart.

use crate::tls::TlsOptions;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// PEM file of CA certificates to trust for https:// URLs, in addition to the system's
    /// (SSL_CERT_FILE and SSL_CERT_DIR are honoured as well).
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// Client certificate (PEM) for servers that require mutual TLS; needs --client-key.
    #[arg(long, value_name = "FILE", requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// Private key (PEM) of --client-cert.
    #[arg(long, value_name = "FILE", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// Do not verify the server's certificate (name, issuer, expiry). Prints a warning and is
    /// recorded in run.json.
    #[arg(long)]
    pub insecure: bool,
}

impl TlsArgs {
    pub fn options(&self) -> TlsOptions {
        TlsOptions {
            ca_cert: self.ca_cert.clone(),
            client_cert: self.client_cert.clone(),
            client_key: self.client_key.clone(),
            insecure: self.insecure,
        }
    }

    /// The options, checked now (files readable, certificates and key parse) so that a wrong
    /// path costs nothing; prints the `--insecure` warning once.
    pub fn checked(&self) -> anyhow::Result<TlsOptions> {
        let opts = self.options();
        crate::tls::client_config(&opts)?;
        warn_if_insecure(&opts, "--insecure");
        Ok(opts)
    }
}

/// The loud line on stderr for a run that does not verify certificates.
pub fn warn_if_insecure(opts: &TlsOptions, source: &str) {
    if opts.insecure {
        eprintln!(
            "warning: {source}: TLS certificates are NOT verified; anyone between here and the \
             server can read and change the traffic. Use --ca-cert FILE to trust a private CA."
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cmd {
        #[command(flatten)]
        tls: TlsArgs,
    }

    fn parse(args: &[&str]) -> Result<TlsOptions, clap::Error> {
        Cmd::try_parse_from(std::iter::once("t").chain(args.iter().copied()))
            .map(|c| c.tls.options())
    }

    #[test]
    fn flags_become_the_same_options_as_a_files_tls_keys() {
        let o = parse(&[
            "--ca-cert",
            "ca.pem",
            "--client-cert",
            "c.pem",
            "--client-key",
            "k.pem",
            "--insecure",
        ])
        .unwrap();
        let from_file: TlsOptions = serde_json::from_str(
            r#"{"ca_cert":"ca.pem","client_cert":"c.pem","client_key":"k.pem","insecure":true}"#,
        )
        .unwrap();
        assert_eq!(o, from_file);
        assert_eq!(parse(&[]).unwrap(), TlsOptions::default());
    }

    #[test]
    fn a_client_certificate_without_its_key_is_refused_by_the_flags() {
        let e = parse(&["--client-cert", "c.pem"]).unwrap_err().to_string();
        assert!(e.contains("--client-key"), "{e}");
        let e = parse(&["--client-key", "k.pem"]).unwrap_err().to_string();
        assert!(e.contains("--client-cert"), "{e}");
    }

    #[test]
    fn a_missing_ca_file_is_named_before_anything_runs() {
        let args = TlsArgs {
            ca_cert: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        let e = format!("{:#}", args.checked().unwrap_err());
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
    }
}
