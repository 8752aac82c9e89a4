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
//! The user's ssh configuration is honoured: faultline passes `-p`, `-l`, `-i` only when the
//! spec gives a port, user or key, so `Port`, `User`, `IdentityFile`, `ProxyJump` of
//! `~/.ssh/config` (or of the spec's `config_file`, passed as `-F`) apply otherwise.
//!
//! A jump host (`jump: NAME`, another ssh host of the hosts section) becomes `-J HOST`. OpenSSH
//! runs the jump connection as a second `ssh` that sees none of the main command line's `-o`
//! options (only `-F`), so faultline writes a small config file per connection: a `Host` block
//! for the jump host with its port, user, key, known_hosts and strict host-key checking, then
//! `Include`s of the user's config (the spec's `config_file`, else `~/.ssh/config` and
//! `/etc/ssh/ssh_config`) so everything the user set still applies after what the spec says.
//!
//! `sudo: true` marks a node where the login user is not root: the fault kinds prefix the
//! commands that need root with `sudo -n` (see [`Host::privileged`]); `-n` so that a missing
//! NOPASSWD rule fails at once with "a password is required" instead of hanging.
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
/// `{ssh: {user, host, port, identity_file, known_hosts, strict_host_key_checking, config_file,
/// jump, sudo, connect_timeout}}`.
/// Holds paths only, never secrets, so it may be written to the ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum HostSpec {
    Local,
    Ssh(SshSpec),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SshSpec {
    /// Login name; default: ssh's (the current user or the ssh config's).
    #[serde(default)]
    pub user: Option<String>,
    pub host: String,
    /// Port; default: ssh's (the ssh config's `Port`, else 22). Only passed when given.
    #[serde(default)]
    pub port: Option<u16>,
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
    #[serde(default = "default_connect_timeout", with = "crate::duration::serde")]
    #[schemars(with = "crate::duration::Dur")]
    pub connect_timeout: Duration,
    /// An ssh config file to use instead of `~/.ssh/config` (`ssh -F`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_file: Option<PathBuf>,
    /// Reach this host through another ssh host of the hosts section (ProxyJump).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jump: Option<String>,
    /// The login user is not root: commands that need root run under `sudo -n`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sudo: bool,
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
            port: None,
            identity_file: None,
            known_hosts: None,
            strict_host_key_checking: true,
            connect_timeout: default_connect_timeout(),
            config_file: None,
            jump: None,
            sudo: false,
        }
    }
}

impl std::fmt::Display for SshSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ssh://")?;
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        }
        f.write_str(&self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        if let Some(j) = &self.jump {
            write!(f, " via {j}")?;
        }
        Ok(())
    }
}

impl std::fmt::Display for HostSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostSpec::Local => f.write_str("local"),
            HostSpec::Ssh(s) => s.fmt(f),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("unknown host {name:?}: it is not in the hosts section")]
    UnknownHost { name: String },
    #[error(
        "host {host:?}: jump host {jump:?} must be an ssh host of the hosts section without a jump of its own"
    )]
    BadJump { host: String, jump: String },
    #[error("cannot write the ssh config for host {host:?}: {source}")]
    Config {
        host: String,
        source: std::io::Error,
    },
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
    #[error(
        "{cmd:?} on host {host:?} failed ({status}): {}",
        quote_output(stdout, stderr)
    )]
    Failed {
        host: String,
        cmd: String,
        status: String,
        stdout: String,
        stderr: String,
    },
    #[error(
        "host {host:?} refused `sudo -n` for {cmd:?}: {said}; the login user needs a NOPASSWD \
         sudoers rule for it, e.g. /etc/sudoers.d/faultline: \
         `USER ALL=(root) NOPASSWD: /usr/bin/nvidia-smi, /usr/bin/kill` (check with visudo -cf)"
    )]
    SudoRefused {
        host: String,
        cmd: String,
        said: String,
    },
}

/// What a failed command printed, both streams (tools like nvidia-smi print their errors on
/// stdout), trimmed; `(no output)` when both are empty.
pub fn quote_output(stdout: &str, stderr: &str) -> String {
    let parts: Vec<&str> = [stdout.trim(), stderr.trim()]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
    if parts.is_empty() {
        "(no output)".into()
    } else {
        parts.join(" / ")
    }
}

/// Whether `sudo -n` refused to run a command (as opposed to the command failing).
pub fn sudo_refusal(stderr: &str) -> Option<String> {
    stderr
        .lines()
        .map(str::trim)
        .find(|l| {
            l.starts_with("sudo:")
                && (l.contains("a password is required")
                    || l.contains("a terminal is required")
                    || l.contains("is not allowed to execute")
                    || l.contains("is not in the sudoers file")
                    || l.contains("may not run sudo"))
        })
        .or_else(|| {
            stderr
                .lines()
                .map(str::trim)
                .find(|l| l.starts_with("Sorry, user") && l.contains("is not allowed"))
        })
        .map(str::to_string)
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
    /// The jump host's spec, resolved from the hosts section.
    jump: Option<SshSpec>,
    session: tokio::sync::Mutex<Option<Session>>,
}

/// An open master connection and the generated ssh config it was opened with (kept alive as
/// long as the connection, since the jump's `ssh` reads it again on reconnects).
struct Session {
    ssh: Arc<openssh::Session>,
    _config: Option<tempfile::NamedTempFile>,
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
            jump: None,
            session: tokio::sync::Mutex::new(None),
        }
    }

    /// A host reached through `jump` (ProxyJump).
    pub fn with_jump(name: impl Into<String>, spec: HostSpec, jump: Option<SshSpec>) -> Self {
        Host {
            jump,
            ..Host::new(name, spec)
        }
    }

    /// Whether commands that need root run under `sudo -n` on this host.
    pub fn sudo(&self) -> bool {
        matches!(&self.spec, HostSpec::Ssh(s) if s.sudo)
    }

    /// `cmd` as it must be run when it needs root: `sudo -n CMD` on a `sudo: true` host. `cmd`
    /// must be one simple command (sudo runs a program, not a shell line).
    pub fn privileged(&self, cmd: &str) -> String {
        if self.sudo() {
            format!("sudo -n {cmd}")
        } else {
            cmd.to_string()
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

    /// Like [`Host::run`], but a non-zero exit is an error quoting what the command printed
    /// (stdout and stderr); a refused `sudo -n` is [`ExecError::SudoRefused`].
    pub async fn run_ok(&self, cmd: &str, timeout: Duration) -> Result<Output, ExecError> {
        let out = self.run(cmd, timeout).await?;
        if out.success() {
            Ok(out)
        } else {
            Err(self.failure(cmd, &out))
        }
    }

    /// The error for `cmd` having ended with `out` (not successfully).
    pub fn failure(&self, cmd: &str, out: &Output) -> ExecError {
        if cmd.starts_with("sudo ")
            && let Some(said) = sudo_refusal(&out.stderr)
        {
            return ExecError::SudoRefused {
                host: self.name.clone(),
                cmd: cmd.to_string(),
                said,
            };
        }
        ExecError::Failed {
            host: self.name.clone(),
            cmd: cmd.to_string(),
            status: out.status.to_string(),
            stdout: out.stdout.trim().to_string(),
            stderr: out.stderr.trim().to_string(),
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
            return Ok(s.ssh.clone());
        }
        let config = match &self.jump {
            Some(j) => Some(write_jump_config(j, spec.config_file.as_deref()).map_err(
                |source| ExecError::Config {
                    host: self.name.clone(),
                    source,
                },
            )?),
            None => None,
        };
        let ssh = Arc::new(
            connect(spec, self.jump.as_ref(), config.as_ref().map(|c| c.path()))
                .await
                .map_err(|source| ExecError::Connect {
                    host: self.name.clone(),
                    target: self.spec.to_string(),
                    source,
                })?,
        );
        *guard = Some(Session {
            ssh: ssh.clone(),
            _config: config,
        });
        Ok(ssh)
    }
}

/// Quotes a value for an ssh config file (double quotes; ssh has no escape for them, so a
/// value holding one is refused).
fn config_value(v: &str) -> std::io::Result<String> {
    if v.contains('"') || v.contains('\n') {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{v:?} cannot be written to an ssh config file"),
        ));
    }
    Ok(format!("\"{v}\""))
}

/// The ssh config text for a connection through `jump`: the jump host's own settings first
/// (ssh takes the first value it reads), then the user's config.
pub fn jump_config_text(
    jump: &SshSpec,
    user_config: Option<&std::path::Path>,
) -> std::io::Result<String> {
    let mut t = format!("Host {}\n", config_value(&jump.host)?);
    if let Some(p) = jump.port {
        t += &format!("  Port {p}\n");
    }
    if let Some(u) = &jump.user {
        t += &format!("  User {}\n", config_value(u)?);
    }
    if let Some(k) = &jump.identity_file {
        t += &format!(
            "  IdentityFile {}\n  IdentitiesOnly yes\n",
            config_value(&k.to_string_lossy())?
        );
    }
    t += "  BatchMode yes\n";
    if jump.strict_host_key_checking {
        t += "  StrictHostKeyChecking yes\n";
        if let Some(k) = &jump.known_hosts {
            t += &format!(
                "  UserKnownHostsFile {}\n",
                config_value(&k.to_string_lossy())?
            );
        }
    } else {
        t += "  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n";
    }
    t += &format!(
        "  ConnectTimeout {}\n",
        jump.connect_timeout.as_secs().max(1)
    );
    // `Match all` ends the Host block, so the includes apply to every host.
    t += "Match all\n";
    match user_config.or(jump.config_file.as_deref()) {
        Some(c) => t += &format!("  Include {}\n", config_value(&c.to_string_lossy())?),
        None => t += "  Include ~/.ssh/config\n  Include /etc/ssh/ssh_config\n",
    }
    Ok(t)
}

fn write_jump_config(
    jump: &SshSpec,
    user_config: Option<&std::path::Path>,
) -> std::io::Result<tempfile::NamedTempFile> {
    use std::io::Write;
    let mut f = tempfile::Builder::new()
        .prefix("faultline-ssh-config-")
        .tempfile()?;
    f.write_all(jump_config_text(jump, user_config)?.as_bytes())?;
    f.flush()?;
    Ok(f)
}

/// Opens the SSH master connection for `spec`, through `jump` when given (with `config`, the
/// file from [`write_jump_config`]).
async fn connect(
    spec: &SshSpec,
    jump: Option<&SshSpec>,
    config: Option<&std::path::Path>,
) -> Result<openssh::Session, openssh::Error> {
    let mut b = openssh::SessionBuilder::default();
    if let Some(p) = spec.port {
        b.port(p);
    }
    if let Some(j) = jump {
        b.jump_hosts([j.host.as_str()]);
    }
    match (config, &spec.config_file) {
        (Some(c), _) => {
            b.config_file(c);
        }
        (None, Some(c)) => {
            b.config_file(c);
        }
        (None, None) => {}
    }
    b.connect_timeout(spec.connect_timeout)
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
    /// Shared with the views [`Hosts::restricted`] makes, so a fault's scoped view reuses
    /// connections the run already has open.
    connected: Arc<std::sync::Mutex<HashMap<String, Arc<Host>>>>,
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
        let jump = self.jump_of(name)?;
        let mut map = self.connected.lock().expect("hosts lock");
        Ok(map
            .entry(name.to_string())
            .or_insert_with(|| Arc::new(Host::with_jump(name, spec, jump)))
            .clone())
    }

    /// The ssh spec of the jump host of `name`, if it has one: an ssh host of the section
    /// without a jump of its own.
    pub fn jump_of(&self, name: &str) -> Result<Option<SshSpec>, ExecError> {
        let HostSpec::Ssh(s) = self.spec(name)? else {
            return Ok(None);
        };
        let Some(j) = &s.jump else {
            return Ok(None);
        };
        match self.spec(j)? {
            HostSpec::Ssh(js) if js.jump.is_none() && j != name => Ok(Some(js.clone())),
            _ => Err(ExecError::BadJump {
                host: name.to_string(),
                jump: j.clone(),
            }),
        }
    }

    /// Only the specs of `names` and of their jump hosts, for the ledger (a fault records the
    /// hosts it uses, no others).
    pub fn subset<'a>(
        &self,
        names: impl IntoIterator<Item = &'a String>,
    ) -> Result<BTreeMap<String, HostSpec>, ExecError> {
        let mut out = BTreeMap::new();
        for n in names {
            let spec = self.spec(n)?.clone();
            if let HostSpec::Ssh(SshSpec { jump: Some(j), .. }) = &spec {
                self.jump_of(n)?;
                out.insert(j.clone(), self.spec(j)?.clone());
            }
            out.insert(n.clone(), spec);
        }
        Ok(out)
    }

    /// A view holding only `names` (and their jump hosts), sharing this one's connections: what
    /// one fault may reach. A name not in the section is [`ExecError::UnknownHost`].
    pub fn restricted(&self, names: &[String]) -> Result<Hosts, ExecError> {
        Ok(Hosts {
            specs: self.subset(names)?,
            connected: self.connected.clone(),
        })
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
        // No port unless given: the user's ssh config decides.
        assert_eq!(s.port, None);
        assert!(!s.sudo);
        assert_eq!(s.jump, None);
        assert!(s.strict_host_key_checking);
        assert_eq!(s.connect_timeout, Duration::from_secs(10));
    }

    #[test]
    fn the_jump_config_carries_the_jump_hosts_own_settings_then_the_users_config() {
        let mut j = SshSpec::new("bastion.example.com");
        j.user = Some("ops".into());
        j.port = Some(2222);
        j.identity_file = Some("/k/id".into());
        j.known_hosts = Some("/k/known".into());
        let t = jump_config_text(&j, None).unwrap();
        assert_eq!(
            t,
            "Host \"bastion.example.com\"\n  Port 2222\n  User \"ops\"\n  IdentityFile \"/k/id\"\n  \
             IdentitiesOnly yes\n  BatchMode yes\n  StrictHostKeyChecking yes\n  \
             UserKnownHostsFile \"/k/known\"\n  ConnectTimeout 10\nMatch all\n  \
             Include ~/.ssh/config\n  Include /etc/ssh/ssh_config\n"
        );
        // Only what is given: no port, user or key lines otherwise; the user's file if named.
        let t = jump_config_text(
            &SshSpec::new("b"),
            Some(std::path::Path::new("/home/u/.ssh/cfg")),
        )
        .unwrap();
        assert!(!t.contains("Port") && !t.contains("User ") && !t.contains("IdentityFile"));
        assert!(
            t.ends_with("Match all\n  Include \"/home/u/.ssh/cfg\"\n"),
            "{t}"
        );
        assert!(jump_config_text(&SshSpec::new("a\"b"), None).is_err());
    }

    #[test]
    fn the_spec_shows_port_and_jump_only_when_given() {
        let mut s = SshSpec::new("node-7");
        s.user = Some("sre".into());
        assert_eq!(HostSpec::Ssh(s.clone()).to_string(), "ssh://sre@node-7");
        s.port = Some(2200);
        s.jump = Some("bastion".into());
        assert_eq!(s.to_string(), "ssh://sre@node-7:2200 via bastion");
    }

    #[test]
    fn sudo_refusals_are_told_from_command_failures() {
        assert_eq!(
            sudo_refusal("sudo: a password is required\n").as_deref(),
            Some("sudo: a password is required")
        );
        assert!(
            sudo_refusal("Sorry, user sre is not allowed to execute '/bin/sh' as root on n.\n")
                .is_some()
        );
        assert_eq!(sudo_refusal("kill: (123) - No such process\n"), None);
    }

    #[test]
    fn shell_quote_survives_single_quotes() {
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
    }
}
