//! Limits on what faultline accepts, and the one way it reads a user's file.
//!
//! Why: every input is also an attack on memory. Before these limits `repeat: {times: 4e9}`
//! asked for 64 GB, `--corpus /dev/zero` read forever, a 20 MB YAML file took 961 MB, and a
//! 20 MB `name` was printed whole. Each limit is far above any real use and is reported with the
//! offending value (and `file:line:column` where there is a file) so nobody hits it by surprise.
//!
//! A leaf module: it imports nothing of the project, so every layer can use it.

use std::borrow::Cow;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

/// Experiment and fault-definition files (YAML).
pub const MAX_SPEC_BYTES: u64 = 1 << 20;
/// `--sim-config` files.
pub const MAX_SIM_CONFIG_BYTES: u64 = 1 << 20;
/// `--corpus` files (read whole).
pub const MAX_CORPUS_BYTES: u64 = 64 << 20;
/// `--trace` files (streamed, but a trace is a plan held in memory).
pub const MAX_TRACE_BYTES: u64 = 256 << 20;
/// `cost --file` and other small JSON/YAML inputs.
pub const MAX_SMALL_FILE_BYTES: u64 = 16 << 20;

/// Fault occurrences in one experiment's timeline, after `repeat` is expanded.
pub const MAX_TIMELINE_EVENTS: u64 = 1_000;
/// Any duration in an experiment (load, fault, offsets, windows) and of `load --duration`.
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Requests per second (`rate`, `--rate`, `--ramp-to`, ramp steps).
pub const MAX_RATE: f64 = 100_000.0;
/// The lowest useful rate: one request every 1000 s.
pub const MIN_RATE: f64 = 0.001;
/// Concurrent requests (`--concurrency`, `max_in_flight`).
pub const MAX_CONCURRENCY: u64 = 100_000;
/// Steps of a `ramp` (counted before any is built).
pub const MAX_RAMP_STEPS: u64 = 10_000;
/// `load-spike` multiplier.
pub const MAX_MULTIPLIER: f64 = 1_000.0;
/// Characters of a user-given string quoted in a message.
pub const MAX_QUOTED_CHARS: usize = 200;
/// An experiment's `name` (it becomes part of a directory name).
pub const MAX_NAME_CHARS: usize = 100;

/// Why a file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{}: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a regular file (a device, FIFO, socket or directory); give a file", path.display())]
    NotRegular { path: std::path::PathBuf },
    #[error("{}: {size} bytes is over the limit of {max} bytes", path.display())]
    TooBig {
        path: std::path::PathBuf,
        size: u64,
        max: u64,
    },
    #[error("{}: not UTF-8 text (line {line}, column {column})", path.display())]
    NotUtf8 {
        path: std::path::PathBuf,
        line: usize,
        column: usize,
    },
}

impl ReadError {
    /// As an `io::Error` for readers whose error types hold one: the original error for an I/O
    /// failure, else the reason without the path (their message names the path already).
    pub fn into_io(self) -> std::io::Error {
        match self {
            ReadError::Io { source, .. } => source,
            e => {
                let text = e.to_string();
                let reason = match text.split_once(": ") {
                    Some((_, r)) => r.to_string(),
                    None => text,
                };
                std::io::Error::other(reason)
            }
        }
    }
}

/// Opens `path` for reading if it is a regular file of at most `max` bytes (`/dev/zero`, a FIFO
/// or a directory is refused before a byte is read).
pub fn open_regular(path: &Path, max: u64) -> Result<File, ReadError> {
    let io = |source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    };
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer, forever. The
    // type is checked on the opened file, so a path swapped in between cannot slip through.
    let file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(io)?
    };
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(ReadError::NotRegular {
            path: path.to_path_buf(),
        });
    }
    if meta.len() > max {
        return Err(ReadError::TooBig {
            path: path.to_path_buf(),
            size: meta.len(),
            max,
        });
    }
    Ok(file)
}

/// The bytes of a regular file of at most `max` bytes (also if it grows while read).
pub fn read_capped(path: &Path, max: u64) -> Result<Vec<u8>, ReadError> {
    let file = open_regular(path, max)?;
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| ReadError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    if bytes.len() as u64 > max {
        return Err(ReadError::TooBig {
            path: path.to_path_buf(),
            size: bytes.len() as u64,
            max,
        });
    }
    Ok(bytes)
}

/// [`read_capped`] as UTF-8 text; invalid UTF-8 is reported at its line and column.
pub fn read_text_capped(path: &Path, max: u64) -> Result<String, ReadError> {
    let bytes = read_capped(path, max)?;
    String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = good.iter().filter(|b| **b == b'\n').count() + 1;
        let line_start = good.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let column = String::from_utf8_lossy(&good[line_start..]).chars().count() + 1;
        ReadError::NotUtf8 {
            path: path.to_path_buf(),
            line,
            column,
        }
    })
}

/// `s` safe to print: control characters (terminal escape sequences among them) shown as
/// `\u{1b}`-style escapes, and cut after `max` characters with a note of how much was left out.
pub fn printable(s: &str, max: usize) -> Cow<'_, str> {
    let clean = s
        .chars()
        .take(max)
        .all(|c| !c.is_control() || c == '\n' || c == '\t');
    let long = s.chars().nth(max).is_some();
    if clean && !long {
        return Cow::Borrowed(s);
    }
    let mut out = String::new();
    for c in s.chars().take(max) {
        if c.is_control() && c != '\n' && c != '\t' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if long {
        let rest = s.chars().skip(max).count();
        out.push_str(&format!("…({rest} more characters)"));
    }
    Cow::Owned(out)
}

/// `s` as one line safe to print: [`printable`], with newlines and tabs escaped too.
pub fn quoted(s: &str) -> String {
    printable(s, MAX_QUOTED_CHARS)
        .replace('\n', "\\n")
        .replace('\t', "\\t")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_files_and_big_files_are_refused_before_reading() {
        for special in ["/dev/zero", "/dev/urandom", "/proc/self", "/"] {
            let e = read_capped(Path::new(special), 10).unwrap_err().to_string();
            assert!(e.contains("not a regular file"), "{special}: {e}");
        }
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = read_capped(&fifo, 10).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'a'; 11]).unwrap();
        let e = read_capped(&big, 10).unwrap_err().to_string();
        assert!(e.contains("11 bytes is over the limit of 10 bytes"), "{e}");
        assert_eq!(read_capped(&big, 11).unwrap().len(), 11);
    }

    #[test]
    fn invalid_utf8_is_located_by_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.yaml");
        std::fs::write(&f, b"name: a\nload: h\xe9llo\n").unwrap();
        let e = read_text_capped(&f, 100).unwrap_err().to_string();
        assert!(e.ends_with("not UTF-8 text (line 2, column 8)"), "{e}");
    }

    #[test]
    fn printable_neutralises_escapes_and_truncates() {
        assert_eq!(printable("plain", 10), "plain");
        assert_eq!(printable("a\u{1b}[31mred", 50), "a\\u{1b}[31mred");
        let long = "x".repeat(1000);
        let p = printable(&long, 5);
        assert_eq!(p, "xxxxx…(995 more characters)");
        assert_eq!(quoted("a\nb"), "a\\nb");
    }
}
