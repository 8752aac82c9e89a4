//! GPU nodes as they really are, with real parts: the user's ssh config (a port only in a
//! config file), a jump host in front of a node that only it can reach (two network namespaces
//! this test creates, an sshd in each), a non-root login user with `sudo -n` and a sudoers
//! drop-in, the sim's nvidia-smi with its sharp edges (MIG, `[N/A]`, "Insufficient
//! Permissions"), and an inject that fails half-way (nothing may stay behind: no mode, no
//! dead-man timer, no open ledger entry).
//!
//! Needs root (namespaces, useradd, sudoers.d), iproute2, openssh-server and sudo; scripts/test.sh
//! installs them. Everything created here has a unique name and is removed on every path (Drop).

use crate::sshd::Sshd;
use chrono::Utc;
use faultline::fault::exec::{Host, HostSpec, Hosts, SshSpec};
use faultline::fault::gpu_lockout::{self, ComputeMode, GpuId, GpuTarget, LockMode};
use faultline::fault::ledger::{Ledger, Record};
use faultline::fault::{FaultContext, FaultSpec, Verification};
use faultline::sim::nvsmi::GpuState;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);
const BIN: &str = env!("CARGO_BIN_EXE_faultline");

fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd} (scripts/test.sh installs it): {e}"))
}

fn must(what: &str, cmd: &str, args: &[&str]) -> Output {
    let out = run(cmd, args);
    assert!(
        out.status.success(),
        "{what}: `{cmd} {}` exited with {}: {}{}\n(these tests need root, iproute2, sudo)",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    out
}

fn nvsmi(state: &Path) -> String {
    format!("{BIN} nvidia-smi --state {}", state.display())
}

fn lockout(nvidia_smi: String, host: &str, gpus: Vec<GpuId>, kill: bool) -> FaultSpec {
    FaultSpec::GpuLockout(gpu_lockout::Params {
        targets: vec![GpuTarget {
            host: host.into(),
            gpus,
        }],
        mode: LockMode::Prohibited,
        kill_process: kill,
        nvidia_smi,
        deadman_margin: Duration::from_secs(60),
    })
}

fn ctx(test: &str, hosts: BTreeMap<String, HostSpec>) -> FaultContext {
    let mut c = FaultContext::new(
        &format!("{test}-{}", std::process::id()),
        "f1",
        Arc::new(Hosts::new(hosts)),
        Utc::now() + chrono::Duration::seconds(30),
    );
    c.command_timeout = T;
    c
}

/// Pids of the processes whose last argument (a dead-man marker) ends with `suffix`.
fn timers_ending_with(suffix: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let last = cmdline
            .split(|b| *b == 0)
            .rfind(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .unwrap_or_default();
        if last.starts_with("faultline-deadman:") && last.ends_with(suffix) {
            pids.push(pid);
        }
    }
    pids
}

// ---------------------------------------------------------------------------------------------
// The user's ssh config.

#[tokio::test]
async fn a_port_set_only_in_the_ssh_config_file_is_used() {
    let sshd = Sshd::start();
    let alias = format!("fl-cfg-node-{}", std::process::id());
    let config = sshd.dir.path().join("ssh_config");
    std::fs::write(
        &config,
        format!(
            "Host {alias}\n  HostName 127.0.0.1\n  Port {}\n  User {}\n",
            sshd.port, sshd.user
        ),
    )
    .unwrap();
    // No port and no user in the spec: both come from the config file.
    let spec = SshSpec {
        port: None,
        user: None,
        config_file: Some(config),
        ..SshSpec {
            host: alias.clone(),
            ..sshd.ssh_spec()
        }
    };
    let host = Host::new("node", HostSpec::Ssh(spec.clone()));
    let out = host.run_ok("echo $PPID; id -un", T).await.unwrap();
    assert_eq!(out.stdout.lines().nth(1), Some(sshd.user.as_str()));
    assert_eq!(spec.to_string(), format!("ssh://{alias}"), "no port shown");

    // A port in the spec wins over the config's (here: one where nothing listens).
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut explicit = spec.clone();
    explicit.port = Some(closed);
    let e = Host::new("node", HostSpec::Ssh(explicit))
        .run("true", T)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot connect"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// A jump host: root ns <-veth-> jump ns <-veth-> node ns, no route from here to the node.

struct JumpNet {
    jump_ns: String,
    node_ns: String,
    host_if: String,
    jump_ip: String,
    node_ip: String,
    node_net: String,
}

impl JumpNet {
    fn create() -> JumpNet {
        let pid = std::process::id();
        let x = pid % 250;
        let net = JumpNet {
            jump_ns: format!("flj-{pid}"),
            node_ns: format!("fln-{pid}"),
            host_if: format!("flj{pid}"),
            jump_ip: format!("10.232.{x}.2"),
            node_ip: format!("10.232.{x}.6"),
            node_net: format!("10.232.{x}.4/30"),
        };
        let x_host = format!("10.232.{x}.1/30");
        let x_jump_in = format!("10.232.{x}.2/30");
        let x_jump_out = format!("10.232.{x}.5/30");
        let x_node = format!("10.232.{x}.6/30");
        must("netns add", "ip", &["netns", "add", &net.jump_ns]);
        must("netns add", "ip", &["netns", "add", &net.node_ns]);
        // From here on Drop removes what exists.
        must(
            "veth to jump",
            "ip",
            &[
                "link",
                "add",
                &net.host_if,
                "type",
                "veth",
                "peer",
                "name",
                "veth0",
                "netns",
                &net.jump_ns,
            ],
        );
        must("addr", "ip", &["addr", "add", &x_host, "dev", &net.host_if]);
        must("up", "ip", &["link", "set", &net.host_if, "up"]);
        // Nothing for the node's subnet leaves this namespace (no default route leak either).
        must(
            "unreachable route",
            "ip",
            &["route", "add", "unreachable", &net.node_net],
        );
        let jump = |what: &str, args: &[&str]| {
            let mut all = vec!["netns", "exec", net.jump_ns.as_str()];
            all.extend_from_slice(args);
            must(what, "ip", &all);
        };
        let node = |what: &str, args: &[&str]| {
            let mut all = vec!["netns", "exec", net.node_ns.as_str()];
            all.extend_from_slice(args);
            must(what, "ip", &all);
        };
        jump("addr", &["ip", "addr", "add", &x_jump_in, "dev", "veth0"]);
        jump("up", &["ip", "link", "set", "veth0", "up"]);
        jump("lo", &["ip", "link", "set", "lo", "up"]);
        jump(
            "veth to node",
            &[
                "ip",
                "link",
                "add",
                "veth1",
                "type",
                "veth",
                "peer",
                "name",
                "veth0",
                "netns",
                &net.node_ns,
            ],
        );
        jump("addr", &["ip", "addr", "add", &x_jump_out, "dev", "veth1"]);
        jump("up", &["ip", "link", "set", "veth1", "up"]);
        node("addr", &["ip", "addr", "add", &x_node, "dev", "veth0"]);
        node("up", &["ip", "link", "set", "veth0", "up"]);
        node("lo", &["ip", "link", "set", "lo", "up"]);
        net
    }
}

impl Drop for JumpNet {
    fn drop(&mut self) {
        let _ = run("ip", &["route", "del", "unreachable", &self.node_net]);
        let _ = run("ip", &["link", "del", &self.host_if]);
        let _ = run("ip", &["netns", "del", &self.node_ns]);
        let _ = run("ip", &["netns", "del", &self.jump_ns]);
    }
}

#[tokio::test]
async fn gpu_lockout_through_a_jump_host_reaches_a_node_only_it_can_reach() {
    let net = JumpNet::create();
    let jump_sshd = Sshd::start_at(Some(&net.jump_ns), &net.jump_ip);
    let node_sshd = Sshd::start_at(Some(&net.node_ns), &net.node_ip);
    let gpus = GpuState::create(node_sshd.dir.path().join("gpus"), 4).unwrap();
    gpus.set_mode(2, ComputeMode::ExclusiveProcess).unwrap();
    let quick = |mut s: SshSpec| {
        s.connect_timeout = Duration::from_secs(3);
        s
    };

    // Directly, the node cannot be reached from here.
    let direct = Host::new("node", HostSpec::Ssh(quick(node_sshd.ssh_spec())));
    let e = direct.run("true", T).await.unwrap_err().to_string();
    assert!(e.contains("cannot connect"), "{e}");

    // Through the jump host it can: the jump's own key and known_hosts (strict) are used.
    let mut node = quick(node_sshd.ssh_spec());
    node.jump = Some("bastion".into());
    let hosts = BTreeMap::from([
        (
            "bastion".to_string(),
            HostSpec::Ssh(quick(jump_sshd.ssh_spec())),
        ),
        ("node".to_string(), HostSpec::Ssh(node.clone())),
    ]);
    let c = ctx("jump", hosts.clone());
    let h = c.hosts.get("node").unwrap();
    let out = h.run_ok("ip -4 -o addr show dev veth0", T).await.unwrap();
    assert!(
        out.stdout.contains(&net.node_ip),
        "not on the node: {}",
        out.stdout
    );

    let spec = lockout(
        nvsmi(gpus.dir()),
        "node",
        vec![
            GpuId::Index(2),
            GpuId::Name(format!("00000000:{:02X}:00.0", 3)),
        ],
        false,
    );
    spec.preflight(&c).await.unwrap();
    let undo = spec.prepare(&c).await.unwrap();
    // The ledger gets the jump host's spec too, so `recover` can get back in.
    let entry = faultline::fault::ledger::Entry::new(&c, &spec, &undo).unwrap();
    assert!(entry.hosts.contains_key("bastion"), "{:?}", entry.hosts);
    spec.inject(&c, &undo).await.unwrap();
    assert_eq!(gpus.mode(2).unwrap(), ComputeMode::Prohibited);
    assert_eq!(gpus.mode(3).unwrap(), ComputeMode::Prohibited);
    assert_eq!(gpus.mode(1).unwrap(), ComputeMode::Default);
    assert_eq!(
        spec.verify(&c, &undo).await.unwrap(),
        Verification::Verified
    );
    let marker = undo["hosts"][0]["deadman"].as_str().unwrap().to_string();
    assert_eq!(timers_ending_with(&marker).len(), 1, "one dead-man timer");
    spec.restore(&c, &undo).await.unwrap();
    assert_eq!(gpus.mode(2).unwrap(), ComputeMode::ExclusiveProcess);
    assert_eq!(gpus.mode(3).unwrap(), ComputeMode::Default);
    assert!(
        timers_ending_with(&marker).is_empty(),
        "the dead-man timer survived restore"
    );

    // `faultline recover` in a fresh process gets back in through the jump host from the
    // ledger alone.
    let ledger = Ledger::at(node_sshd.dir.path().join("ledger.jsonl"));
    {
        let c = ctx("jump-recover", hosts.clone());
        let undo = spec.prepare(&c).await.unwrap();
        ledger
            .record_inject(&faultline::fault::ledger::Entry::new(&c, &spec, &undo).unwrap())
            .unwrap();
        spec.inject(&c, &undo).await.unwrap();
        // Dies here: nothing restored.
    }
    assert_eq!(gpus.mode(2).unwrap(), ComputeMode::Prohibited);
    let report = faultline::fault::ledger::recover(
        &ledger,
        &faultline::fault::ledger::RecoverOptions::default(),
    )
    .await
    .unwrap();
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(report.restored.len(), 1, "{report:?}");
    assert_eq!(gpus.mode(2).unwrap(), ComputeMode::ExclusiveProcess);
    assert_eq!(gpus.mode(3).unwrap(), ComputeMode::Default);
    assert!(ledger.outstanding().unwrap().is_empty());
    assert!(timers_ending_with(&format!("jump-recover-{}:f1:node", std::process::id())).is_empty());

    // Strict host-key checking applies to the jump host too: a wrong known_hosts for it fails.
    let mut bad_jump = quick(jump_sshd.ssh_spec());
    bad_jump.known_hosts = Some(node_sshd.known_hosts.clone());
    let hosts = BTreeMap::from([
        ("bastion".to_string(), HostSpec::Ssh(bad_jump)),
        ("node".to_string(), HostSpec::Ssh(node)),
    ]);
    let e = Hosts::new(hosts)
        .get("node")
        .unwrap()
        .run("true", T)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot connect"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// A non-root login user and `sudo -n`.

/// A local user with a unique name, allowed to log in by key (no password), and a sudoers
/// drop-in; both removed on drop.
struct TestUser {
    name: String,
    sudoers: Option<std::path::PathBuf>,
}

impl TestUser {
    fn create() -> TestUser {
        let name = format!("flsudo{}", std::process::id());
        must(
            "useradd",
            "useradd",
            &["-M", "-d", "/nonexistent", "-s", "/bin/sh", &name],
        );
        let u = TestUser {
            name,
            sudoers: None,
        };
        // `*`: no password, but not a locked account (sshd refuses locked ones without PAM).
        must("usermod", "usermod", &["-p", "*", &u.name]);
        u
    }

    /// Installs `line` as /etc/sudoers.d/faultline-test-PID after `visudo -cf` accepted it.
    fn allow(&mut self, line: &str) {
        let path = std::path::PathBuf::from(format!(
            "/etc/sudoers.d/faultline-test-{}",
            std::process::id()
        ));
        let tmp = std::env::temp_dir().join(format!("faultline-sudoers-{}", std::process::id()));
        std::fs::write(&tmp, format!("{line}\n")).unwrap();
        let tmp_s = tmp.to_string_lossy().to_string();
        must("visudo rejects the drop-in", "visudo", &["-cf", &tmp_s]);
        std::fs::copy(&tmp, &path).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o440))
            .unwrap();
        let _ = std::fs::remove_file(&tmp);
        self.sudoers = Some(path);
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        if let Some(p) = &self.sudoers {
            let _ = std::fs::remove_file(p);
        }
        // Its processes (a dead-man timer that a failed test left) go first.
        let _ = run("pkill", &["-KILL", "-u", &self.name]);
        let _ = run("userdel", &[&self.name]);
    }
}

#[tokio::test]
async fn gpu_lockout_as_a_non_root_user_needs_and_works_with_sudo() {
    let sshd = Sshd::start();
    let mut user = TestUser::create();
    let gpus = GpuState::create(sshd.dir.path().join("gpus"), 2).unwrap();
    std::fs::set_permissions(
        gpus.dir(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    gpus.set_requires_root(true).unwrap();
    // The documented rule, with the sim's nvidia-smi in place of /usr/bin/nvidia-smi.
    user.allow(&format!(
        "{} ALL=(root) NOPASSWD: {BIN} nvidia-smi *, /usr/bin/kill",
        user.name
    ));
    let mut spec = sshd.ssh_spec();
    spec.user = Some(user.name.clone());
    let hosts = |sudo: bool| {
        let mut s = spec.clone();
        s.sudo = sudo;
        BTreeMap::from([("node".to_string(), HostSpec::Ssh(s))])
    };
    let c = ctx("sudo", hosts(false));
    let who = c
        .hosts
        .get("node")
        .unwrap()
        .run_ok("id -un", T)
        .await
        .unwrap();
    assert_eq!(who.stdout.trim(), user.name);

    // Without `sudo: true`: nvidia-smi says "Insufficient Permissions"; preflight says what to do.
    let fault = lockout(nvsmi(gpus.dir()), "node", vec![GpuId::Index(1)], true);
    let e = fault.preflight(&c).await.unwrap_err().to_string();
    assert!(e.contains("Insufficient Permissions"), "{e}");
    assert!(e.contains("set `sudo: true` on the host"), "{e}");
    assert_eq!(gpus.mode(1).unwrap(), ComputeMode::Default);

    // With it: the whole life cycle, including killing a root-owned process on the GPU.
    let c = ctx("sudo", hosts(true));
    let mut victim = Command::new("sleep").arg("60").spawn().unwrap();
    gpus.register_process(1, victim.id()).unwrap();
    fault.preflight(&c).await.unwrap();
    let undo = fault.prepare(&c).await.unwrap();
    fault.inject(&c, &undo).await.unwrap();
    assert_eq!(gpus.mode(1).unwrap(), ComputeMode::Prohibited);
    let status = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(st) = victim.try_wait().unwrap() {
                return st;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the process on the GPU was not killed through sudo");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    assert_eq!(
        fault.verify(&c, &undo).await.unwrap(),
        Verification::Verified
    );
    let marker = undo["hosts"][0]["deadman"].as_str().unwrap().to_string();
    assert_eq!(timers_ending_with(&marker).len(), 1);
    fault.restore(&c, &undo).await.unwrap();
    assert_eq!(gpus.mode(1).unwrap(), ComputeMode::Default);
    assert!(timers_ending_with(&marker).is_empty());

    // The dead-man timer runs as the login user and puts the mode back through `sudo -n` by
    // itself when no restore comes (deadline 1 s away, margin 1 s).
    let mut short = ctx("sudo-deadman", hosts(true));
    short.deadline = Utc::now() + chrono::Duration::seconds(1);
    let FaultSpec::GpuLockout(mut p) = fault.clone() else {
        unreachable!()
    };
    p.deadman_margin = Duration::from_secs(1);
    p.kill_process = false;
    let quick = FaultSpec::GpuLockout(p);
    let undo = quick.prepare(&short).await.unwrap();
    quick.inject(&short, &undo).await.unwrap();
    assert_eq!(gpus.mode(1).unwrap(), ComputeMode::Prohibited);
    let mut back = false;
    for _ in 0..100 {
        if gpus.mode(1).unwrap() == ComputeMode::Default {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        back,
        "the dead-man timer did not restore the mode through sudo"
    );

    // A command sudoers does not allow: `sudo -n` refuses, and preflight names host and fix.
    let other = lockout(
        format!("env {}", nvsmi(gpus.dir())),
        "node",
        vec![GpuId::Index(1)],
        false,
    );
    let e = other.preflight(&c).await.unwrap_err().to_string();
    assert!(e.contains("host \"node\" refused `sudo -n`"), "{e}");
    assert!(e.contains("a password is required"), "{e}");
    assert!(
        e.contains("NOPASSWD: /usr/bin/nvidia-smi, /usr/bin/kill"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------------
// nvidia-smi's sharp edges through the real sshd.

#[tokio::test]
async fn mig_and_na_gpus_are_refused_by_name_and_gpus_are_found_by_uuid() {
    let sshd = Sshd::start();
    let gpus = GpuState::create(sshd.dir.path().join("gpus"), 3).unwrap();
    gpus.set_quirks(1, true, None).unwrap();
    gpus.set_quirks(2, false, Some("[N/A]")).unwrap();
    let c = ctx(
        "quirks",
        BTreeMap::from([("node".to_string(), sshd.spec())]),
    );
    let e = lockout(nvsmi(gpus.dir()), "node", vec![GpuId::Index(1)], false)
        .preflight(&c)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("GPU 1") && e.contains("MIG is enabled"), "{e}");
    let e = lockout(nvsmi(gpus.dir()), "node", vec![GpuId::Index(2)], false)
        .preflight(&c)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("GPU 2") && e.contains("[N/A]"), "{e}");
    // The other GPU is fine, addressed by its UUID; the N/A and MIG ones do not spoil the query.
    let uuid = gpus.load().unwrap().gpus[0].uuid.clone();
    let f = lockout(
        nvsmi(gpus.dir()),
        "node",
        vec![GpuId::Name(uuid.clone())],
        false,
    );
    f.preflight(&c).await.unwrap();
    let undo = f.prepare(&c).await.unwrap();
    assert_eq!(undo["hosts"][0]["gpus"][0]["uuid"], uuid.as_str());
    f.inject(&c, &undo).await.unwrap();
    assert_eq!(gpus.mode(0).unwrap(), ComputeMode::Prohibited);
    // Restoring twice: the second finds nothing to set (no "already set" failure either).
    f.restore(&c, &undo).await.unwrap();
    f.restore(&c, &undo).await.unwrap();
    assert_eq!(gpus.mode(0).unwrap(), ComputeMode::Default);
    let e = lockout(
        nvsmi(gpus.dir()),
        "node",
        vec![GpuId::Name("GPU-nope".into())],
        false,
    )
    .preflight(&c)
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("has no GPU GPU-nope") && e.contains(&uuid),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------------
// An inject that fails half-way leaves nothing behind.

#[test]
fn a_failed_inject_shows_the_error_and_leaves_no_mode_timer_or_ledger_entry() {
    let sshd = Sshd::start();
    let gpus = GpuState::create(sshd.dir.path().join("gpus"), 2).unwrap();
    gpus.set_mode(0, ComputeMode::ExclusiveProcess).unwrap();
    let uuid1 = gpus.load().unwrap().gpus[1].uuid.clone();
    // A driver that fails to lock GPU 1 (as nvidia-smi does: the error on stdout) but does
    // everything else.
    let wrapper = sshd.dir.path().join("nvidia-smi-failing");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\ncase \"$*\" in\n\
             *'{uuid1} -c PROHIBITED'*) \
             echo 'Unable to set the compute mode for GPU 00000000:01:00.0: Unknown Error'; \
             echo 'Terminating early due to previous errors.'; exit 255;;\n\
             esac\nexec {} \"$@\"\n",
            nvsmi(gpus.dir())
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let ledger = sshd.dir.path().join("ledger.jsonl");
    let host_name = format!("injfail{}", std::process::id());
    let out = Command::new(BIN)
        .args(["inject", "gpu-lockout", "--for", "30s"])
        .arg("--set")
        .arg(format!(
            "targets=[{{host: {host_name}, gpus: [0, {uuid1}]}}]"
        ))
        .arg("--set")
        .arg(format!("nvidia_smi={}", wrapper.display()))
        .arg("--set")
        .arg("kill_process=false")
        .arg("--host")
        .arg(format!(
            "{host_name}=ssh:{}@127.0.0.1:{}",
            sshd.user, sshd.port
        ))
        .arg("--identity")
        .arg(&sshd.client_key)
        .arg("--known-hosts")
        .arg(&sshd.known_hosts)
        .arg("--ledger")
        .arg(&ledger)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "inject succeeded: {stderr}");
    // The error as nvidia-smi printed it, and what became of the fault.
    assert!(
        stderr.contains("Unable to set the compute mode for GPU 00000000:01:00.0: Unknown Error"),
        "{stderr}"
    );
    assert!(stderr.contains("nothing left behind"), "{stderr}");
    // GPU 0 was locked before GPU 1 failed: it is back in the mode it had.
    assert_eq!(gpus.mode(0).unwrap(), ComputeMode::ExclusiveProcess);
    assert_eq!(gpus.mode(1).unwrap(), ComputeMode::Default);
    // No dead-man timer on the node for this fault.
    assert!(
        timers_ending_with(&format!(":{host_name}")).is_empty(),
        "a dead-man timer is still armed"
    );
    // The ledger entry is closed, with the failure recorded; `status` is empty.
    let l = Ledger::at(&ledger);
    assert!(l.outstanding().unwrap().is_empty());
    let records = l.records().unwrap();
    assert_eq!(records.len(), 2, "{records:?}");
    match &records[1] {
        Record::Done(d) => assert!(
            d.inject_error
                .as_deref()
                .is_some_and(|e| e.contains("Unknown Error")),
            "{d:?}"
        ),
        r => panic!("not a done record: {r:?}"),
    }
    let status = Command::new(BIN)
        .args(["status", "--ledger"])
        .arg(&ledger)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("no faults in effect"),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );
}

/// A driver that fails to lock the GPU with `uuid` (its error on stdout, as nvidia-smi prints
/// it) and does everything else through the sim's nvidia-smi over `state`.
fn failing_nvidia_smi(dir: &Path, state: &Path, uuid: &str) -> std::path::PathBuf {
    let wrapper = dir.join("nvidia-smi-failing-runner");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\ncase \"$*\" in\n\
             *'{uuid} -c PROHIBITED'*) \
             echo 'Unable to set the compute mode for GPU 00000000:01:00.0: Unknown Error'; \
             echo 'Terminating early due to previous errors.'; exit 255;;\n\
             esac\nexec {} \"$@\"\n",
            nvsmi(state)
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    wrapper
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_inject_in_a_run_reports_the_error_and_closes_the_ledger_entry() {
    use faultline::runner::execute::{self, RunOptions};
    use faultline::runner::result::FaultStatus;
    // Until every client is built through `faultline::tls` (on main), the load's client needs a
    // process-wide provider; installing it twice is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let gpus = GpuState::create(dir.path().join("gpus"), 2).unwrap();
    gpus.set_mode(0, ComputeMode::ExclusiveProcess).unwrap();
    let uuid1 = gpus.load().unwrap().gpus[1].uuid.clone();
    let wrapper = failing_nvidia_smi(dir.path(), gpus.dir(), &uuid1);
    let path = dir.path().join("injfail.yaml");
    std::fs::write(
        &path,
        format!(
            r#"name: injfail
target:
  sim: {{preset: small}}
  api: completions
hosts:
  local: local
load:
  rate: 4
  arrival: constant
  workload: fixed:32:4
  duration: 4s
warmup: 1s
faults:
  - id: gpu01
    fault:
      kind: gpu-lockout
      targets: [{{host: local, gpus: [0, {uuid1}]}}]
      kill_process: false
      nvidia_smi: "{}"
    at: 2s
    duration: 2s
"#,
            wrapper.display()
        ),
    )
    .unwrap();
    let exp = faultline::runner::spec::load_experiment(&path).unwrap();
    let run_id = format!("t-injfail-{}", std::process::id());
    let opts = RunOptions {
        out_dir: dir.path().join("out"),
        ledger: Ledger::at(dir.path().join("ledger.jsonl")),
        run_id: run_id.clone(),
        faultline_bin: None,
    };
    let r = execute::run(&exp, &opts).await.unwrap();
    let f = &r.faults[0];
    assert_eq!(f.status, FaultStatus::Invalid, "{:?}", f.reason);
    let reason = f.reason.as_deref().unwrap();
    assert!(
        reason.contains("Unable to set the compute mode for GPU 00000000:01:00.0: Unknown Error"),
        "{reason}"
    );
    assert!(reason.contains("nothing left behind"), "{reason}");
    assert!(
        r.events
            .iter()
            .any(|e| e.kind == "inject_failed" && e.detail.contains("Unknown Error")),
        "{:?}",
        r.events
    );
    assert_eq!(gpus.mode(0).unwrap(), ComputeMode::ExclusiveProcess);
    assert_eq!(gpus.mode(1).unwrap(), ComputeMode::Default);
    assert!(timers_ending_with(&format!("{run_id}:gpu01:local")).is_empty());
    assert!(opts.ledger.outstanding().unwrap().is_empty());
    let closed = opts.ledger.records().unwrap().into_iter().any(|r| {
        matches!(r, Record::Done(d) if d.inject_error.as_deref().is_some_and(|e| e.contains("Unknown Error")))
    });
    assert!(closed, "the ledger entry is not closed with the error");
}

#[test]
fn faultline_inject_takes_the_port_from_ssh_config_and_checks_jump_names() {
    let sshd = Sshd::start();
    let gpus = GpuState::create(sshd.dir.path().join("gpus"), 1).unwrap();
    let alias = format!("fl-cli-node-{}", std::process::id());
    let config = sshd.dir.path().join("ssh_config");
    std::fs::write(
        &config,
        format!("Host {alias}\n  HostName 127.0.0.1\n  Port {}\n", sshd.port),
    )
    .unwrap();
    let ledger = sshd.dir.path().join("ledger.jsonl");
    let inject = |extra: &[&str]| {
        Command::new(BIN)
            .args(["inject", "gpu-lockout", "--for", "1s"])
            .arg("--set")
            .arg("targets=[{host: node, gpus: [0]}]")
            .arg("--set")
            .arg(format!("nvidia_smi={}", nvsmi(gpus.dir())))
            .arg("--host")
            .arg(format!("node=ssh:{}@{alias}", sshd.user))
            .arg("--identity")
            .arg(&sshd.client_key)
            .arg("--known-hosts")
            .arg(&sshd.known_hosts)
            .arg("--ledger")
            .arg(&ledger)
            .args(extra)
            .output()
            .unwrap()
    };
    let out = inject(&["--ssh-config", config.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("restored"), "{stderr}");
    assert_eq!(gpus.mode(0).unwrap(), ComputeMode::Default);
    assert!(Ledger::at(&ledger).outstanding().unwrap().is_empty());

    let out = inject(&["--jump", "node=bastion"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("invalid value 'node=bastion' for --jump"),
        "{stderr}"
    );
}
