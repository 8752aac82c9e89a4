//! A real OpenSSH server on 127.0.0.1 for the fault tests: its own host key, client key,
//! `authorized_keys` and `known_hosts` in a temp dir, on a free port. Missing `sshd` is a test
//! failure with the fix in the message, never a skip.

use faultline::fault::exec::{HostSpec, SshSpec};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SSHD: &str = "/usr/sbin/sshd";

pub struct Sshd {
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// The address it listens on.
    pub addr: String,
    pub user: String,
    pub client_key: PathBuf,
    pub known_hosts: PathBuf,
    child: Child,
}

fn keygen(path: &Path) {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen runs (install openssh-client: scripts/test.sh does)");
    assert!(st.success(), "ssh-keygen failed for {}", path.display());
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Sshd {
    pub fn start() -> Sshd {
        Sshd::start_at(None, "127.0.0.1")
    }

    /// An sshd listening on `addr`, inside the network namespace `netns` when given (on port
    /// 22 there: the namespace has its own ports). Its directory is world-readable, so that
    /// other local users can log in with its `authorized_keys` and use files placed in it.
    pub fn start_at(netns: Option<&str>, addr: &str) -> Sshd {
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} is missing: install Debian's openssh-server (scripts/test.sh does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        keygen(&d.join("host_key"));
        keygen(&d.join("client_key"));
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).unwrap();
        let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_string();
        if is_root() {
            // sshd insists on its privilege-separation directory.
            std::fs::create_dir_all("/run/sshd").unwrap();
        }
        let mut last_err = String::new();
        for _ in 0..5 {
            let port = if netns.is_some() { 22 } else { free_port() };
            let config = d.join("sshd_config");
            let pidfile = d.join("sshd.pid");
            let _ = std::fs::remove_file(&pidfile);
            std::fs::write(
                &config,
                format!(
                    "Port {port}\nListenAddress {addr}\nHostKey {hk}\nPidFile {pid}\n\
                     AuthorizedKeysFile {ak}\nStrictModes no\nPermitRootLogin prohibit-password\n\
                     PubkeyAuthentication yes\nPasswordAuthentication no\n\
                     KbdInteractiveAuthentication no\nUsePAM no\nLogLevel ERROR\n",
                    hk = d.join("host_key").display(),
                    pid = pidfile.display(),
                    ak = d.join("authorized_keys").display(),
                ),
            )
            .unwrap();
            let log = std::fs::File::create(d.join("sshd.log")).unwrap();
            let mut cmd = match netns {
                Some(ns) => {
                    let mut c = Command::new("ip");
                    c.args(["netns", "exec", ns, SSHD]);
                    c
                }
                None => Command::new(SSHD),
            };
            let mut child = cmd
                .args(["-D", "-e", "-f"])
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("sshd starts");
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(10) {
                if let Some(st) = child.try_wait().unwrap() {
                    last_err = format!(
                        "sshd exited with {st}: {}",
                        std::fs::read_to_string(d.join("sshd.log")).unwrap_or_default()
                    );
                    break;
                }
                // In a namespace the address may be unreachable from here (that is the point of
                // some tests): sshd writes its pid file once it listens.
                let ready = match netns {
                    Some(_) => pidfile.exists(),
                    None => TcpStream::connect((addr, port)).is_ok(),
                };
                if ready {
                    let host_pub = std::fs::read_to_string(d.join("host_key.pub")).unwrap();
                    let mut parts = host_pub.split_whitespace();
                    let (kind, key) = (parts.next().unwrap(), parts.next().unwrap());
                    let known_hosts = d.join("known_hosts");
                    let name = if port == 22 {
                        addr.to_string()
                    } else {
                        format!("[{addr}]:{port}")
                    };
                    std::fs::write(&known_hosts, format!("{name} {kind} {key}\n")).unwrap();
                    return Sshd {
                        port,
                        addr: addr.to_string(),
                        user,
                        client_key: d.join("client_key"),
                        known_hosts,
                        child,
                        dir,
                    };
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("sshd did not start on {addr}: {last_err}");
    }

    pub fn ssh_spec(&self) -> SshSpec {
        SshSpec {
            user: Some(self.user.clone()),
            port: Some(self.port),
            identity_file: Some(self.client_key.clone()),
            known_hosts: Some(self.known_hosts.clone()),
            ..SshSpec::new(self.addr.clone())
        }
    }

    pub fn spec(&self) -> HostSpec {
        HostSpec::Ssh(self.ssh_spec())
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.trim_ascii() == b"0")
        .unwrap_or(false)
}
