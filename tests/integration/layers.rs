//! The layering rule, checked: imports run downward only.
//!
//! ```text
//! cli → report → runner → fault → load → (analysis, sim) → leaves
//! leaves: common, tls, limits, duration, version, yaml, record (import no other layer; yaml
//!         reads files through limits)
//! ```
//!
//! A module may name (`crate::X`, in a `use` or inline) only modules of a lower layer, or a
//! leaf. The scan reads every `.rs` file under `src/<module>` and `src/<module>.rs`, skipping
//! comment lines. What is still upward is listed in `ALLOWED`, each with the reason and who
//! removes it; an entry that is no longer needed fails the test too, so the list only shrinks.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules by layer: a module may import from a strictly lower layer.
const LAYERS: [(&str, u32); 14] = [
    ("cli", 6),
    ("report", 5),
    ("runner", 4),
    ("fault", 3),
    ("load", 2),
    ("analysis", 1),
    ("sim", 1),
    ("tls", 0),
    ("limits", 0),
    ("duration", 0),
    ("version", 0),
    ("yaml", 0),
    ("record", 0),
    ("common", 0),
];

/// Upward (or sideways) imports that are known and scheduled to go: (from, to, why).
const ALLOWED: [(&str, &str, &str); 2] = [
    // A leaf reading a file uses the size-capped reader of the other leaf `limits`.
    ("yaml", "limits", "leaf to leaf: size-capped file reading"),
    // runner → report: `runner/conclude.rs` writes summary.md at the end of a run with
    // `report::markdown`, so a library caller of `execute::run` gets it too (tried moving it to
    // the cli: the tests that run experiments through the library lost it). To go when the
    // markdown renderer moves below the runner.
    (
        "runner",
        "report",
        "conclude.rs writes summary.md for library callers",
    ),
];

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Every `crate::X` named in non-comment lines of `module`, with one place it is named.
fn imports(src: &Path, module: &str) -> BTreeMap<String, String> {
    let mut files = Vec::new();
    rs_files(&src.join(module), &mut files);
    let single = src.join(format!("{module}.rs"));
    if single.is_file() {
        files.push(single);
    }
    let mut found = BTreeMap::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for (i, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            for (at, _) in code.match_indices("crate::") {
                let name: String = code[at + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && name != module {
                    found
                        .entry(name)
                        .or_insert_with(|| format!("{}:{}", f.display(), i + 1));
                }
            }
        }
    }
    found
}

/// (imports that run upward and are not allowed, allowed entries no longer needed).
fn check(src: &Path) -> (Vec<String>, Vec<String>) {
    let layer: BTreeMap<&str, u32> = LAYERS.into_iter().collect();
    let mut upward = Vec::new();
    // Every top-level module of lib.rs has a layer.
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    for line in lib.lines() {
        if let Some(m) = line.trim().strip_prefix("pub mod ") {
            let m = m.trim_end_matches(';');
            if !layer.contains_key(m) {
                upward.push(format!("top-level module '{m}' has no layer"));
            }
        }
    }
    let allowed: BTreeSet<(&str, &str)> = ALLOWED.iter().map(|(f, t, _)| (*f, *t)).collect();
    let mut used = BTreeSet::new();
    for (module, rank) in LAYERS {
        for (to, at) in imports(src, module) {
            let Some(&to_rank) = layer.get(to.as_str()) else {
                continue; // not a module (e.g. `crate::` in a string)
            };
            if to_rank < rank || (to_rank == 0 && rank > 0) {
                continue;
            }
            if allowed.contains(&(module, to.as_str())) {
                used.insert((module, to.clone()));
                continue;
            }
            upward.push(format!("{module} → {to} ({at})"));
        }
    }
    let stale = ALLOWED
        .iter()
        .filter(|(f, t, _)| !used.contains(&(*f, t.to_string())))
        .map(|(f, t, why)| format!("{f} → {t}: {why}"))
        .collect();
    (upward, stale)
}

#[test]
fn imports_run_downward_except_the_listed_ones() {
    let (upward, stale) = check(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(
        upward.is_empty(),
        "imports that run upward or sideways (move the shared type down, or list it with a reason):\n{}",
        upward.join("\n")
    );
    assert!(
        stale.is_empty(),
        "allowed imports that no longer happen; remove them from ALLOWED:\n{}",
        stale.join("\n")
    );
}

/// The check itself: on a made-up tree, an upward `use`, an inline upward path and a sideways
/// one are found; a comment is not; the allowed entries not used are reported stale.
#[test]
fn the_layer_check_finds_upward_inline_and_sideways_imports() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    let write = |p: &str, text: &str| {
        let p = src.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    write(
        "lib.rs",
        "pub mod analysis;\npub mod sim;\npub mod runner;\npub mod extra;\n",
    );
    write(
        "analysis/cost.rs",
        "use crate::runner::spec;\n// crate::cli in a comment\n",
    );
    write("analysis/mod.rs", "fn f() { crate::sim::x(); }\n");
    write("runner.rs", "use crate::load::schedule;\nuse crate::tls;\n");
    let (upward, stale) = check(src);
    assert_eq!(upward.len(), 3, "{upward:?}");
    assert!(upward[0].contains("no layer"), "{upward:?}");
    assert!(upward[1].starts_with("analysis → runner ("), "{upward:?}");
    assert!(upward[2].starts_with("analysis → sim ("), "{upward:?}");
    assert_eq!(stale.len(), ALLOWED.len(), "{stale:?}");
}
