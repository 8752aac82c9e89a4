//! What the embedded sim's node-level stand-ins are called on disk and in the process table, in
//! one place: the sim creates them and a fault kind bound to the sim (`bind_to_sim`) aims at
//! them, and neither may import the other.

use std::path::{Path, PathBuf};

/// The sim's `nvidia-smi` wrapper in its state directory.
pub fn nvidia_smi(state_dir: &Path) -> PathBuf {
    state_dir.join("bin").join("nvidia-smi")
}

/// The `argv[0]` of worker `id`'s process (a `sleep` renamed so that `pgrep -f` can tell the
/// workers of one sim apart from each other and from another sim's). Nothing exists at that path.
pub fn worker_process(state_dir: &Path, id: usize) -> PathBuf {
    state_dir.join("bin").join(format!("sim-worker-{id}"))
}

/// An extended regular expression (`pgrep -x -f`) matching exactly worker `id`'s process of the
/// sim with `state_dir`, whatever its arguments.
pub fn worker_process_pattern(state_dir: &Path, id: usize) -> String {
    format!(
        "{}( .*)?",
        ere_escape(&worker_process(state_dir, id).to_string_lossy())
    )
}

/// `text` as a POSIX extended regular expression matching it literally.
pub fn ere_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if r"\.[]()*+?{}|^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_patterns_escape_the_state_directory() {
        let p = worker_process_pattern(Path::new("/tmp/.tmpA+b(1)"), 3);
        assert_eq!(p, r"/tmp/\.tmpA\+b\(1\)/bin/sim-worker-3( .*)?");
    }
}
