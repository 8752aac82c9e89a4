//! Single faults by hand: `faultline inject`, `status`, `restore`, `recover`. Every inject goes
//! through the same ledger as experiment runs, so `recover` undoes whatever a crashed or killed
//! faultline left behind.

use super::experiment::ledger_at;
use crate::fault::exec::{HostSpec, Hosts, SshSpec};
use crate::fault::kube_access;
use crate::fault::kube_target::{KubeSpec, KubeTarget};
use crate::fault::ledger::{self, Entry, RecoverOptions};
use crate::fault::owner::{self, Ownership};
use crate::fault::{FaultContext, FaultSpec, Restoration};
use crate::runner::spec;
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct InjectArgs {
    /// A fault kind (gpu-lockout, ssh-command, ...), a definition file, or a definition name in
    /// ./faults.
    pub fault: String,
    /// Set a parameter: key=value, the value in YAML (repeatable), e.g.
    /// --set 'targets=[{host: node-7, gpus: [2]}]'.
    #[arg(long = "set")]
    pub sets: Vec<String>,
    /// Restore after this long (also on Ctrl-C). Without it the fault stays until
    /// `faultline restore`, and is listed by `faultline status`.
    #[arg(long, value_parser = crate::duration::parse_positive)]
    pub r#for: Option<Duration>,
    /// Without --for: the dead-man deadline on the target (restored by itself after it).
    #[arg(long, default_value = "1h", value_parser = crate::duration::parse_positive)]
    pub max: Duration,
    /// A host the fault refers to: NAME=local or NAME=ssh:[USER@]HOST[:PORT] (repeatable).
    /// A host named `local` is this machine unless given.
    #[arg(long = "host")]
    pub hosts: Vec<String>,
    /// SSH private key for ssh hosts.
    #[arg(long)]
    pub identity: Option<PathBuf>,
    /// known_hosts file for ssh hosts (strict host-key checking is on).
    #[arg(long)]
    pub known_hosts: Option<PathBuf>,
    /// Accept any host key (explicit opt-out of strict host-key checking).
    #[arg(long)]
    pub insecure_accept_any_host_key: bool,
    /// An ssh config file for ssh hosts instead of ~/.ssh/config (ssh -F).
    #[arg(long, value_name = "FILE")]
    pub ssh_config: Option<PathBuf>,
    /// Reach host NAME through host JUMP (another --host): NAME=JUMP (repeatable).
    #[arg(long = "jump", value_name = "NAME=JUMP")]
    pub jumps: Vec<String>,
    /// The ssh login users are not root: run the commands that need root under `sudo -n`.
    #[arg(long)]
    pub sudo: bool,
    /// The ledger file (default $FAULTLINE_LEDGER or ./.faultline/ledger.jsonl).
    #[arg(long)]
    pub ledger: Option<PathBuf>,
    #[command(flatten)]
    pub kube: KubeArgs,
}

/// The cluster, as an experiment's `kubernetes` section names it.
#[derive(Args, Debug, Default)]
pub struct KubeArgs {
    /// Kubeconfig file. Without it: $KUBECONFIG, ~/.kube/config, then in-cluster (the pod's
    /// service account), the first that exists.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context (default: its current context).
    #[arg(long)]
    pub context: Option<String>,
    /// Namespace (default: the context's, in-cluster the service account's, else `default`).
    #[arg(long)]
    pub namespace: Option<String>,
}

impl KubeArgs {
    fn given(&self) -> bool {
        self.kubeconfig.is_some() || self.context.is_some() || self.namespace.is_some()
    }

    fn spec(&self) -> anyhow::Result<KubeSpec> {
        Ok(KubeSpec::resolve(
            self.kubeconfig.as_deref(),
            self.context.as_deref(),
            self.namespace.as_deref(),
        )?)
    }

    /// Connects, and says on stderr which cluster and why.
    async fn connect(&self) -> anyhow::Result<KubeTarget> {
        let target = KubeTarget::connect(&self.spec()?).await?;
        eprintln!("kubernetes: {}", target.describe());
        Ok(target)
    }
}

#[derive(Args, Debug)]
pub struct LedgerArgs {
    #[arg(long)]
    pub ledger: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[arg(long)]
    pub ledger: Option<PathBuf>,
    /// With a cluster flag: also list what faultline marked there and is still in effect
    /// (NetworkPolicies in --namespace, else in all namespaces; drained nodes).
    #[command(flatten)]
    pub kube: KubeArgs,
}

#[derive(Args, Debug)]
pub struct RecoverArgs {
    #[arg(long)]
    pub ledger: Option<PathBuf>,
    /// With a cluster flag: reach Kubernetes entries' cluster this way instead of as recorded,
    /// and also sweep it for faultline marks whose deadline has passed (for when the ledger
    /// itself was lost) and undo them: NetworkPolicies (in --namespace, else all namespaces)
    /// are deleted, drained nodes uncordoned.
    #[command(flatten)]
    pub kube: KubeArgs,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// The fault id (or run_id/fault_id) to restore.
    #[arg(required_unless_present = "all")]
    pub id: Option<String>,
    /// Restore every outstanding fault.
    #[arg(long, conflicts_with = "id")]
    pub all: bool,
    #[arg(long)]
    pub ledger: Option<PathBuf>,
    /// With a cluster flag: reach Kubernetes entries' cluster this way instead of as recorded.
    #[command(flatten)]
    pub kube: KubeArgs,
}

#[derive(Subcommand, Debug)]
pub enum LedgerCommand {
    /// Close an outstanding entry whose fault you undid by hand (after a restore that failed
    /// permanently, e.g. 403 on delete). Records the reason, who (user@host) and when.
    Resolve(ResolveArgs),
}

#[derive(Args, Debug)]
pub struct ResolveArgs {
    /// The fault id (or run_id/fault_id).
    pub id: String,
    /// Why it is safe to close (what was done by hand).
    #[arg(long)]
    pub reason: String,
    #[arg(long)]
    pub ledger: Option<PathBuf>,
}

/// KIND, a definition file, or a definition name in ./faults → the spec, with `--set`s applied.
fn resolve(fault: &str, sets: &[String]) -> anyhow::Result<FaultSpec> {
    let path = Path::new(fault);
    let named = Path::new("faults").join(format!("{fault}.yaml"));
    let definition = if path.is_file() {
        Some(spec::RawDefinition::read(path)?)
    } else if named.is_file() {
        Some(spec::RawDefinition::read(&named)?)
    } else if FaultSpec::KINDS.contains(&fault) {
        None
    } else {
        bail!(
            "unknown fault '{fault}': not a file, not a definition in ./faults, and not a kind ({})",
            FaultSpec::KINDS.join(", ")
        );
    };
    let mut overrides = Vec::new();
    for s in sets {
        let (k, v) = s
            .split_once('=')
            .with_context(|| format!("invalid value '{s}' for --set: expected key=value"))?;
        if k.trim() == "kind" {
            bail!("invalid value '{s}' for --set: the kind cannot be changed");
        }
        overrides.push((k.trim().to_string(), v.to_string()));
    }
    Ok(spec::with_overrides(
        definition.as_ref(),
        fault,
        &overrides,
    )?)
}

fn hosts_for(args: &InjectArgs, spec: &FaultSpec) -> anyhow::Result<Hosts> {
    let mut given = BTreeMap::new();
    for h in &args.hosts {
        let (name, how) = h.split_once('=').with_context(|| {
            format!(
                "invalid value '{h}' for --host: expected NAME=local or NAME=ssh:[USER@]HOST[:PORT]"
            )
        })?;
        let hs = if how == "local" {
            HostSpec::Local
        } else if let Some(rest) = how.strip_prefix("ssh:") {
            let (user, hostport) = match rest.split_once('@') {
                Some((u, hp)) => (Some(u.to_string()), hp),
                None => (None, rest),
            };
            let (host, port) = match hostport.rsplit_once(':') {
                Some((h, p)) => (
                    h,
                    Some(
                        p.parse::<u16>()
                            .with_context(|| format!("invalid port '{p}' in --host {h}"))?,
                    ),
                ),
                None => (hostport, None),
            };
            let mut s = SshSpec::new(host);
            s.user = user;
            s.port = port;
            s.config_file = args.ssh_config.clone();
            s.sudo = args.sudo;
            s.identity_file = args.identity.clone();
            s.known_hosts = args.known_hosts.clone();
            s.strict_host_key_checking = !args.insecure_accept_any_host_key;
            HostSpec::Ssh(s)
        } else {
            bail!(
                "invalid value '{h}' for --host: expected NAME=local or NAME=ssh:[USER@]HOST[:PORT]"
            );
        };
        given.insert(name.to_string(), hs);
    }
    for j in &args.jumps {
        let bad = || {
            format!(
                "invalid value '{j}' for --jump: expected NAME=JUMP, both given with --host NAME=ssh:..."
            )
        };
        let (name, jump) = j.split_once('=').with_context(bad)?;
        if !matches!(given.get(jump), Some(HostSpec::Ssh(_))) {
            bail!(bad());
        }
        match given.get_mut(name) {
            Some(HostSpec::Ssh(s)) => s.jump = Some(jump.to_string()),
            _ => bail!(bad()),
        }
    }
    for name in spec.host_names() {
        if let std::collections::btree_map::Entry::Vacant(slot) = given.entry(name.clone()) {
            if name != "local" {
                bail!(
                    "the fault acts on host '{name}'; say how to reach it with --host {name}=ssh:USER@HOST"
                );
            }
            slot.insert(HostSpec::Local);
        }
    }
    Ok(Hosts::new(given))
}

pub fn inject(args: InjectArgs) -> anyhow::Result<ExitCode> {
    let spec = resolve(&args.fault, &args.sets)?;
    let hosts = Arc::new(hosts_for(&args, &spec)?);
    let ledger = ledger_at(&args.ledger);
    // Unique (time plus a random suffix): two injects within a second would otherwise share a
    // ledger key and a dead-man marker, and restoring one would cancel the other's timer.
    let run_id = crate::fault::ledger::new_run_id("manual");
    let fault_id = format!(
        "{}-{}",
        spec.kind(),
        run_id.strip_prefix("manual-").unwrap_or(&run_id)
    );
    let window = args.r#for.unwrap_or(args.max);
    let deadline = chrono::Utc::now() + chrono::Duration::from_std(window)?;
    let mut ctx = FaultContext::new(&run_id, &fault_id, hosts, deadline);
    let rt = super::runtime()?;
    rt.block_on(async {
        if spec.uses_kubernetes() {
            let kube = args.kube.connect().await?;
            kube_access::check(&kube, &kube_access::needs(&spec, &kube)).await?;
            ctx.kube = Some(kube);
        } else if args.kube.given() {
            bail!("{} does not act on Kubernetes: drop --kubeconfig/--context/--namespace", spec.kind());
        }
        // Held until this process ends: a second inject (or a run) on the same target is
        // refused up front, naming this one.
        let _owner = Ownership::claim(&ledger, &run_id, &owner::target_keys(&spec, &ctx))?;
        spec.preflight(&ctx).await.context("preflight failed")?;
        let undo = spec.prepare(&ctx).await?;
        ledger.record_inject(&Entry::new(&ctx, &spec, &undo)?)?;
        let restore = || async {
            spec.restore(&ctx, &undo).await?;
            ledger.record_done(&run_id, &fault_id, Restoration::Normal)?;
            anyhow::Ok(())
        };
        if let Err(e) = spec.inject(&ctx, &undo).await {
            // Show the inject's own error whatever happens next; put back what may have partly
            // happened (which cancels the dead-man timer) and close the ledger entry with it.
            let err = e.to_string();
            return match spec.restore(&ctx, &undo).await {
                Ok(()) => {
                    ledger.record_failed_inject(&run_id, &fault_id, &err)?;
                    Err(anyhow::Error::from(e)
                        .context(format!("inject of {fault_id} failed (nothing left behind)")))
                }
                Err(re) => Err(anyhow::Error::from(e).context(format!(
                    "inject of {fault_id} failed, and so did the restore after it ({re}); \
                     `faultline recover` retries it"
                ))),
            };
        }
        match spec.verify(&ctx, &undo).await {
            Ok(v) => eprintln!("injected {fault_id}: {v:?}"),
            Err(e) => {
                restore().await?;
                return Err(anyhow::Error::from(e).context("the fault did not take effect (restored)"));
            }
        }
        match args.r#for {
            Some(d) => {
                eprintln!("holding for {}; Ctrl-C restores now", humantime::format_duration(d));
                tokio::select! {
                    _ = tokio::time::sleep(d) => {}
                    _ = tokio::signal::ctrl_c() => eprintln!("interrupted"),
                }
                restore().await?;
                eprintln!("restored {fault_id}");
            }
            None => {
                println!("{fault_id}");
                eprintln!(
                    "the fault stays in effect; `faultline restore {fault_id}` undoes it (the target restores it by itself after {})",
                    humantime::format_duration(window)
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

pub fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let ledger = ledger_at(&args.ledger);
    let fold = ledger.read()?;
    for (e, r) in &fold.resolved {
        println!(
            "{}  run {}  {}  RESOLVED by hand by {} at {}: {}",
            e.fault_id,
            e.run_id,
            e.kind,
            r.by,
            r.at.to_rfc3339(),
            r.reason
        );
    }
    for w in &fold.warnings {
        eprintln!("warning: {w}");
    }
    if fold.outstanding.is_empty() {
        println!("no faults in effect (ledger {})", ledger.path().display());
    }
    for e in &fold.outstanding {
        println!(
            "{}  run {}  {}  injected {}  deadline {}  by pid {}",
            e.fault_id,
            e.run_id,
            e.kind,
            e.injected_at.to_rfc3339(),
            e.deadline.to_rfc3339(),
            e.pid
        );
    }
    if args.kube.given() {
        let rt = super::runtime()?;
        rt.block_on(async {
            let kube = args.kube.connect().await?;
            let marks = FaultSpec::marks(&kube, args.kube.namespace.as_deref()).await?;
            if marks.is_empty() {
                println!("no faultline changes marked on {}", kube.server);
            }
            for m in marks {
                println!(
                    "{}  run {}  fault {}  deadline {}",
                    m.what,
                    m.run_id.as_deref().unwrap_or("?"),
                    m.fault_id.as_deref().unwrap_or("?"),
                    m.deadline.map_or("none".into(), |d| d.to_rfc3339())
                );
            }
            anyhow::Ok(())
        })?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `faultline ledger resolve`.
pub fn ledger(cmd: LedgerCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        LedgerCommand::Resolve(args) => {
            if args.reason.trim().is_empty() {
                bail!("--reason must say what was done by hand");
            }
            let ledger = ledger_at(&args.ledger);
            let r = ledger.resolve(&args.id, args.reason.trim(), &who())?;
            println!(
                "resolved {}/{} by {} ({}): {}",
                r.run_id,
                r.fault_id,
                r.by,
                r.at.to_rfc3339(),
                r.reason
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `user@host` of this process.
fn who() -> String {
    let user = std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        // SAFETY: getuid has no preconditions.
        .unwrap_or_else(|| format!("uid{}", unsafe { libc::getuid() }));
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it or
    // truncates, and the last byte stays 0.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) } == 0;
    let host = if ok {
        let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "unknown-host".into()
    };
    format!("{user}@{host}")
}

fn report(r: &ledger::RecoverReport) -> ExitCode {
    for w in &r.warnings {
        eprintln!("warning: {w}");
    }
    for x in &r.restored {
        println!(
            "restored {}/{} ({}, {:?}, {} attempt(s))",
            x.run_id, x.fault_id, x.kind, x.how, x.attempts
        );
    }
    for x in &r.skipped {
        println!(
            "skipped {}/{} ({}): {}",
            x.run_id, x.fault_id, x.kind, x.reason
        );
    }
    for x in &r.failed {
        println!(
            "NOT restored {}/{} ({}): {}",
            x.run_id, x.fault_id, x.kind, x.reason
        );
    }
    if r.restored.is_empty() && r.failed.is_empty() && r.skipped.is_empty() {
        println!("nothing to restore");
    }
    // Anything left unrestored — failed, or skipped because its injector still runs — is a
    // non-zero exit: a script must not take "skipped" for "clean".
    if r.failed.is_empty() && r.skipped.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}

pub fn recover(args: RecoverArgs) -> anyhow::Result<ExitCode> {
    let ledger = ledger_at(&args.ledger);
    let rt = super::runtime()?;
    let opts = RecoverOptions {
        kube: if args.kube.given() {
            Some(args.kube.spec()?)
        } else {
            None
        },
        ..RecoverOptions::default()
    };
    let r = rt.block_on(ledger::recover(&ledger, &opts))?;
    let mut code = report(&r);
    if args.kube.given() {
        let swept = rt.block_on(async {
            let kube = args.kube.connect().await?;
            let ns = args.kube.namespace.as_deref();
            kube_access::check(&kube, &kube_access::sweep_needs(ns)).await?;
            let expired = FaultSpec::expired_marks(&kube, ns, chrono::Utc::now()).await?;
            let mut failed = 0;
            for m in &expired {
                let deadline = m.deadline.map_or("none".into(), |d| d.to_rfc3339());
                match FaultSpec::clear_mark(&kube, m).await {
                    Ok(()) => println!("undid expired {} (deadline {deadline})", m.what),
                    Err(e) => {
                        failed += 1;
                        println!("NOT undone {}: {e}", m.what);
                    }
                }
            }
            anyhow::Ok(failed)
        })?;
        if swept > 0 {
            code = ExitCode::from(2);
        }
    }
    Ok(code)
}

pub fn restore(args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let ledger = ledger_at(&args.ledger);
    let opts = RecoverOptions {
        force: true,
        only: args.id.clone(),
        kube: if args.kube.given() {
            Some(args.kube.spec()?)
        } else {
            None
        },
        ..RecoverOptions::default()
    };
    let rt = super::runtime()?;
    let r = rt.block_on(ledger::recover(&ledger, &opts))?;
    if let Some(id) = &args.id
        && r.restored.is_empty()
        && r.failed.is_empty()
    {
        bail!(
            "no outstanding fault '{id}' in {} (see `faultline status`)",
            ledger.path().display()
        );
    }
    Ok(report(&r))
}
