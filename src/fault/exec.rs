//! Running shell commands on the hosts a fault acts on: this machine (`local`) or a node over
//! SSH. Every fault kind that touches a machine goes through [`Hosts`], so tests hand in a
//! loopback sshd and the kinds never know the difference.
//!
//! SSH goes through the system `ssh` client (the `openssh` crate's native multiplexing): one
//! master connection per host, opened lazily on first use and cached, reopened once if it went
//! away. Host keys are checked strictly by default (`StrictHostKeyChecking=yes`, against the
//! `known_hosts` file given, or ssh's own default); turning that off has to be written down
//! (`strict_host_key_checking: false`). `BatchMode=yes` means a missing key fails at once instead
//! of waiting for a password prompt nobody will answer.
//!
//! Local commands run as `sh -c CMD` with `PATH` prefixed by the directory of the current
//! executable, so that `faultline nvidia-smi` (the sim's stand-in) resolves to this very binary
//! without installing it anywhere.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

/// How to reach a host, as written in an experiment's `hosts` section: `local` or
/// `{ssh: {user, host, port, identity_file, known_hosts, strict_host_key_checking}}`.
/// Holds paths only, never secrets, so it may be written to the ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum HostSpec {
    Local,
    Ssh(SshSpec),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshSpec {
    /// Login name; default: ssh's (the current user or the ssh config's).
    #[serde(default)]
    pub user: Option<String>,
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    /// Private key file; when given, only this key is offered (`IdentitiesOnly=yes`).
    #[serde(default)]
    pub identity_file: Option<PathBuf>,
    /// known_hosts file to check the host key against; default: ssh's own.
    #[serde(default)]
    pub known_hosts: Option<PathBuf>,
    /// `false` accepts any host key (`StrictHostKeyChecking=no`): an explicit opt-out.
    #[serde(default = "yes")]
    pub strict_host_key_checking: bool,
    /// How long to wait for the TCP connection and the SSH handshake.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
}

fn default_port() -> u16 {
    22
}
fn yes() -> bool {
    true
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}

impl SshSpec {
    pub fn new(host: impl Into<String>) -> Self {
        SshSpec {
            user: None,
            host: host.into(),
            port: 22,
            identity_file: None,
            known_hosts: None,
            strict_host_key_checking: true,
            connect_timeout: default_connect_timeout(),
        }
    }
}

impl std::fmt::Display for HostSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostSpec::Local => f.write_str("local"),
            HostSpec::Ssh(s) => match &s.user {
                Some(u) => write!(f, "ssh://{u}@{}:{}", s.host, s.port),
                None => write!(f, "ssh://{}:{}", s.host, s.port),
            },
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("unknown host {name:?}: it is not in the hosts section")]
    UnknownHost { name: String },
    #[error("cannot connect to host {host:?} ({target}): {source}")]
    Connect {
        host: String,
        target: String,
        source: openssh::Error,
    },
    #[error("cannot run {cmd:?} on host {host:?}: {reason}")]
    Run {
        host: String,
        cmd: String,
        reason: String,
    },
    #[error("{cmd:?} on host {host:?} did not finish within {after:?}")]
    Timeout {
        host: String,
        cmd: String,
        after: Duration,
    },
    #[error("{cmd:?} on host {host:?} failed ({status}): {stderr}")]
    Failed {
        host: String,
        cmd: String,
        status: String,
        stderr: String,
    },
}

/// What a command printed and how it ended.
#[derive(Clone, Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.success()
    }
    fn from_std(o: std::process::Output) -> Self {
        Output {
            status: o.status,
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// A host ready to run commands. SSH sessions are opened on first use and cached.
pub struct Host {
    name: String,
    spec: HostSpec,
    session: tokio::sync::Mutex<Option<Arc<openssh::Session>>>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("name", &self.name)
            .field("spec", &self.spec)
            .finish()
    }
}

impl Host {
    pub fn new(name: impl Into<String>, spec: HostSpec) -> Self {
        Host {
            name: name.into(),
            spec,
            session: tokio::sync::Mutex::new(None),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn spec(&self) -> &HostSpec {
        &self.spec
    }

    /// Runs `cmd` with `sh -c` on the host; a non-zero exit is an `Ok` with that status.
    pub async fn run(&self, cmd: &str, timeout: Duration) -> Result<Output, ExecError> {
        let fut = async {
            match &self.spec {
                HostSpec::Local => self.run_local(cmd).await,
                HostSpec::Ssh(s) => self.run_ssh(s, cmd).await,
            }
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(ExecError::Timeout {
                host: self.name.clone(),
                cmd: cmd.to_string(),
                after: timeout,
            }),
        }
    }

    /// Like [`Host::run`], but a non-zero exit is an error quoting stderr.
    pub async fn run_ok(&self, cmd: &str, timeout: Duration) -> Result<Output, ExecError> {
        let out = self.run(cmd, timeout).await?;
        if out.success() {
            Ok(out)
        } else {
            Err(ExecError::Failed {
                host: self.name.clone(),
                cmd: cmd.to_string(),
                status: out.status.to_string(),
                stderr: out.stderr.trim().to_string(),
            })
        }
    }

    async fn run_local(&self, cmd: &str) -> Result<Output, ExecError> {
        let mut c = tokio::process::Command::new("sh");
        c.arg("-c")
            .arg(cmd)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        if let Some(path) = local_path() {
            c.env("PATH", path);
        }
        let out = c.output().await.map_err(|e| ExecError::Run {
            host: self.name.clone(),
            cmd: cmd.to_string(),
            reason: e.to_string(),
        })?;
        Ok(Output::from_std(out))
    }

    async fn run_ssh(&self, spec: &SshSpec, cmd: &str) -> Result<Output, ExecError> {
        // One retry with a fresh session: a cached master may have died (idle timeout, network).
        for attempt in 0..2 {
            let session = self.session(spec).await?;
            match session
                .shell(cmd)
                .stdin(openssh::Stdio::null())
                .output()
                .await
            {
                Ok(out) => return Ok(Output::from_std(out)),
                Err(e) if attempt == 0 && session.check().await.is_err() => {
                    tracing::warn!(host = %self.name, error = %e, "ssh session lost; reconnecting");
                    *self.session.lock().await = None;
                }
                Err(e) => {
                    return Err(ExecError::Run {
                        host: self.name.clone(),
                        cmd: cmd.to_string(),
                        reason: e.to_string(),
                    });
                }
            }
        }
        unreachable!("the loop returns on its second pass")
    }

    async fn session(&self, spec: &SshSpec) -> Result<Arc<openssh::Session>, ExecError> {
        let mut guard = self.session.lock().await;
        if let Some(s) = guard.as_ref() {
            return Ok(s.clone());
        }
        let s = Arc::new(connect(spec).await.map_err(|source| ExecError::Connect {
            host: self.name.clone(),
            target: self.spec.to_string(),
            source,
        })?);
        *guard = Some(s.clone());
        Ok(s)
    }
}

/// Opens the SSH master connection for `spec`.
async fn connect(spec: &SshSpec) -> Result<openssh::Session, openssh::Error> {
    let mut b = openssh::SessionBuilder::default();
    b.port(spec.port)
        .connect_timeout(spec.connect_timeout)
        .server_alive_interval(Duration::from_secs(15))
        // The master exits by itself when idle, so a killed runner leaves no ssh behind for long.
        .control_persist(openssh::ControlPersist::IdleFor(
            std::num::NonZeroUsize::new(300).expect("non-zero"),
        ))
        .known_hosts_check(if spec.strict_host_key_checking {
            openssh::KnownHosts::Strict
        } else {
            openssh::KnownHosts::Accept
        });
    if let Some(u) = &spec.user {
        b.user(u.clone());
    }
    if let Some(k) = &spec.identity_file {
        b.keyfile(k);
    }
    if let Some(k) = &spec.known_hosts {
        b.user_known_hosts_file(k);
    } else if !spec.strict_host_key_checking {
        // Opted out: do not record unknown keys in the user's file either.
        b.user_known_hosts_file("/dev/null");
    }
    b.connect_mux(&spec.host).await
}

/// `PATH` with the current executable's directory in front.
fn local_path() -> Option<std::ffi::OsString> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?.to_path_buf();
    let mut parts = vec![dir];
    if let Some(p) = std::env::var_os("PATH") {
        parts.extend(std::env::split_paths(&p));
    }
    std::env::join_paths(parts).ok()
}

/// The hosts of an experiment by name; each connects on first use.
#[derive(Debug, Default)]
pub struct Hosts {
    specs: BTreeMap<String, HostSpec>,
    connected: std::sync::Mutex<HashMap<String, Arc<Host>>>,
}

impl Hosts {
    pub fn new(specs: BTreeMap<String, HostSpec>) -> Self {
        Hosts {
            specs,
            connected: Default::default(),
        }
    }

    pub fn spec(&self, name: &str) -> Result<&HostSpec, ExecError> {
        self.specs.get(name).ok_or_else(|| ExecError::UnknownHost {
            name: name.to_string(),
        })
    }

    pub fn specs(&self) -> &BTreeMap<String, HostSpec> {
        &self.specs
    }

    /// The host called `name` (not yet connected; that happens on its first command).
    pub fn get(&self, name: &str) -> Result<Arc<Host>, ExecError> {
        let spec = self.spec(name)?.clone();
        let mut map = self.connected.lock().expect("hosts lock");
        Ok(map
            .entry(name.to_string())
            .or_insert_with(|| Arc::new(Host::new(name, spec)))
            .clone())
    }

    /// Only the specs of `names`, for the ledger (a fault records the hosts it uses, no others).
    pub fn subset<'a>(
        &self,
        names: impl IntoIterator<Item = &'a String>,
    ) -> Result<BTreeMap<String, HostSpec>, ExecError> {
        names
            .into_iter()
            .map(|n| Ok((n.clone(), self.spec(n)?.clone())))
            .collect()
    }
}

/// Quotes `s` for a POSIX shell: `'...'` with embedded quotes as `'\''`.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_spec_reads_local_and_ssh_with_defaults() {
        let h: HostSpec = serde_json::from_str(r#""local""#).unwrap();
        assert_eq!(h, HostSpec::Local);
        let h: HostSpec =
            serde_json::from_str(r#"{"ssh":{"host":"node-7","user":"ops"}}"#).unwrap();
        let HostSpec::Ssh(s) = h else { panic!() };
        assert_eq!(s.port, 22);
        assert!(s.strict_host_key_checking);
        assert_eq!(s.connect_timeout, Duration::from_secs(10));
    }

    #[test]
    fn shell_quote_survives_single_quotes() {
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
    }
}
