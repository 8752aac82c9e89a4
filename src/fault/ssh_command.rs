//! `ssh-command`: generic inject / restore / verify shell commands on hosts (tc netem delay,
//! an iptables partition of a node, killing a process), with the same ledger and dead-man
//! discipline as every other kind.
//!
//! A host's `sudo: true` does not wrap these commands: they are shell lines, and running a shell
//! line under sudo would need a sudoers rule for a shell (root for anything). Write `sudo -n`
//! into the command where it is needed (`sudo -n tc qdisc add …`), so the sudoers rule names
//! exactly those programs. The dead-man timer runs the restore command as the login user, as
//! written.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Hosts (names from the experiment's `hosts` section) to run the commands on.
    pub hosts: Vec<String>,
    /// Makes the change. Must exit 0.
    pub inject: String,
    /// Undoes it. Must be idempotent (it may run more than once) and exit 0.
    pub restore: String,
    /// Exits 0 when the change is in effect. Without it the fault is "not verified".
    #[serde(default)]
    pub verify: Option<String>,
    /// Arm a detached timer on each host that runs `restore` after the deadline plus this
    /// margin, unless cancelled by a normal restore. `0s` disables it.
    #[serde(default = "default_margin", with = "crate::duration::serde")]
    #[schemars(with = "String")]
    pub deadman_margin: Duration,
}

fn default_margin() -> Duration {
    Duration::from_secs(60)
}

// ---------------------------------------------------------------------------------------------
// Implementation.

use crate::fault::deadman;
use crate::fault::exec::ExecError;
use crate::fault::{
    DescribeCx, FaultContext, HostRef, Lifetime, Problem, Reach, SimBinding, Target, Verification,
};

/// Undo data: the hosts and their dead-man markers (the restore command itself is in the spec,
/// which the ledger keeps beside the undo data).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Undo {
    pub hosts: Vec<HostUndo>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostUndo {
    pub host: String,
    pub deadman: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error(
        "ssh-command did not take effect on host {host:?}: verify command {cmd:?} exited with {status}"
    )]
    NotInEffect {
        host: String,
        cmd: String,
        status: String,
    },
    #[error("ssh-command has no hosts")]
    NoHosts,
}

pub async fn preflight(p: &Params, ctx: &FaultContext) -> Result<(), Error> {
    if p.hosts.is_empty() {
        return Err(Error::NoHosts);
    }
    for name in &p.hosts {
        let host = ctx.hosts.get(name)?;
        // Reachable, and a shell answers.
        host.run_ok("true", ctx.command_timeout).await?;
    }
    Ok(())
}

pub async fn prepare(p: &Params, ctx: &FaultContext) -> Result<Undo, Error> {
    if p.hosts.is_empty() {
        return Err(Error::NoHosts);
    }
    let mut hosts = Vec::new();
    for name in &p.hosts {
        ctx.hosts.spec(name)?;
        hosts.push(HostUndo {
            host: name.clone(),
            deadman: (!p.deadman_margin.is_zero())
                .then(|| deadman::marker(&ctx.run_id, &ctx.fault_id, name)),
        });
    }
    Ok(Undo { hosts })
}

pub async fn inject(p: &Params, ctx: &FaultContext, undo: &Undo) -> Result<(), Error> {
    futures_util::future::try_join_all(undo.hosts.iter().map(|h| async move {
        let host = ctx.hosts.get(&h.host)?;
        if let Some(marker) = &h.deadman {
            let delay = deadman::delay_secs(ctx.deadline, p.deadman_margin, chrono::Utc::now());
            let cmd = deadman::arm_command(marker, delay, &p.restore);
            let out = host.run_ok(&cmd, ctx.command_timeout).await?;
            tracing::info!(host = %h.host, pid = %out.stdout.trim(), delay_s = delay, "dead-man timer armed");
        }
        host.run_ok(&p.inject, ctx.command_timeout).await?;
        Ok::<_, Error>(())
    }))
    .await?;
    Ok(())
}

pub async fn verify(p: &Params, ctx: &FaultContext, undo: &Undo) -> Result<Verification, Error> {
    let Some(cmd) = &p.verify else {
        return Ok(Verification::NotVerifiable {
            reason: "ssh-command has no verify command".into(),
        });
    };
    for h in &undo.hosts {
        let host = ctx.hosts.get(&h.host)?;
        let out = host.run(cmd, ctx.command_timeout).await?;
        if !out.success() {
            return Err(Error::NotInEffect {
                host: h.host.clone(),
                cmd: cmd.clone(),
                status: out.status.to_string(),
            });
        }
    }
    Ok(Verification::Verified)
}

pub async fn restore(p: &Params, ctx: &FaultContext, undo: &Undo) -> Result<(), Error> {
    futures_util::future::try_join_all(undo.hosts.iter().map(|h| async move {
        let host = ctx.hosts.get(&h.host)?;
        host.run_ok(&p.restore, ctx.command_timeout).await?;
        if let Some(marker) = &h.deadman {
            host.run_ok(&deadman::cancel_command(marker), ctx.command_timeout)
                .await?;
        }
        Ok::<_, Error>(())
    }))
    .await?;
    Ok(())
}

impl crate::fault::FaultKind for Params {
    type Undo = Undo;
    type Error = Error;

    fn problems(&self) -> Vec<Problem> {
        if self.hosts.is_empty() {
            return vec![Problem::new(&["hosts"], "[]", "needs at least one host")];
        }
        Vec::new()
    }

    fn reach(&self) -> Reach {
        Reach {
            targets: self.hosts.iter().cloned().map(Target::Host).collect(),
            hosts: self
                .hosts
                .iter()
                .enumerate()
                .map(|(k, h)| HostRef::new(h, &["hosts", &k.to_string()]))
                .collect(),
            kube: Vec::new(),
            load: false,
        }
    }

    fn describe(&self, _cx: &DescribeCx) -> String {
        format!("on hosts {}: run `{}`", self.hosts.join(", "), self.inject)
    }

    fn describe_end(&self, end: Option<&str>) -> String {
        format!(
            ", restore at {} with `{}`",
            end.unwrap_or("the end"),
            self.restore
        )
    }

    fn lifetime(&self) -> Lifetime {
        Lifetime::Held
    }

    fn deadman_margin(&self) -> Option<Duration> {
        (!self.deadman_margin.is_zero()).then_some(self.deadman_margin)
    }

    fn bind_to_sim(&mut self, _sim: &SimBinding) {}

    fn is_permanent(_: &Error) -> bool {
        false
    }

    fn example() -> Self {
        Params {
            hosts: vec!["gpu-node-1".into()],
            inject: "sudo -n tc qdisc add dev eth0 root netem delay 200ms".into(),
            restore: "sudo -n tc qdisc del dev eth0 root netem || true".into(),
            verify: Some("tc qdisc show dev eth0 | grep -q netem".into()),
            deadman_margin: default_margin(),
        }
    }

    async fn preflight(&self, ctx: &FaultContext) -> Result<(), Error> {
        preflight(self, ctx).await
    }
    async fn prepare(&self, ctx: &FaultContext) -> Result<Undo, Error> {
        prepare(self, ctx).await
    }
    async fn inject(&self, ctx: &FaultContext, undo: &Undo) -> Result<(), Error> {
        inject(self, ctx, undo).await
    }
    async fn verify(&self, ctx: &FaultContext, undo: &Undo) -> Result<Verification, Error> {
        verify(self, ctx, undo).await
    }
    async fn restore(&self, ctx: &FaultContext, undo: &Undo) -> Result<(), Error> {
        restore(self, ctx, undo).await
    }
}
