//! The sim's directory on disk: `gpus.json` (the GPU state), `bin/nvidia-smi` and
//! `events.jsonl`.
//!
//! Why on disk: faults act on the sim from other processes, often through a real sshd — a
//! `gpu-lockout` runs `nvidia-smi` found on `PATH`, a test reads the ground truth after the run —
//! so the sim's node-level state must be where a separate process can reach it. Putting
//! `DIR/bin` first on `PATH` makes the wrapper the node's `nvidia-smi`.

use std::fs::File;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use super::{SimConfig, SimError};

pub const EVENTS_FILE: &str = "events.jsonl";

/// The state directory to use: the configured one, or a fresh temporary one (`true`: remove it
/// on shutdown).
pub(crate) fn choose(config: &SimConfig, port: u16) -> Result<(PathBuf, bool), SimError> {
    let (dir, temp) = match &config.state_dir {
        Some(dir) => (dir.clone(), false),
        None => (
            std::env::temp_dir().join(format!("faultline-sim-{}-{port}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(dir.join("bin")).map_err(|source| io(&dir, source))?;
    Ok((dir, temp))
}

/// Writes `DIR/bin/nvidia-smi`, an executable that runs `faultline nvidia-smi --state DIR`.
pub(crate) fn write_wrapper(dir: &Path, faultline: &Path) -> Result<PathBuf, SimError> {
    let path = crate::common::sim_names::nvidia_smi(dir);
    std::fs::write(&path, wrapper_script(dir, faultline)).map_err(|e| io(&path, e))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| io(&path, e))?;
    Ok(path)
}

pub(crate) fn wrapper_script(dir: &Path, faultline: &Path) -> String {
    format!(
        "#!/bin/sh\nexec {} nvidia-smi --state {} \"$@\"\n",
        sh_quote(faultline),
        sh_quote(dir)
    )
}

/// Creates (truncates) `DIR/events.jsonl`.
pub(crate) fn events_file(dir: &Path) -> Result<File, SimError> {
    let path = dir.join(EVENTS_FILE);
    File::create(&path).map_err(|e| io(&path, e))
}

fn sh_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

fn io(path: &Path, source: std::io::Error) -> SimError {
    SimError::StateDir {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapper_quotes_paths_for_the_shell() {
        let s = wrapper_script(Path::new("/tmp/it's"), Path::new("/opt/faultline"));
        assert_eq!(
            s,
            "#!/bin/sh\nexec '/opt/faultline' nvidia-smi --state '/tmp/it'\\''s' \"$@\"\n"
        );
    }
}
