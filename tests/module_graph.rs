//! The crate's modules depend on each other without cycles: each can be read, and tested,
//! after the ones below it. A cycle crept in twice unnoticed (a device that built the graphs
//! it captured, which used the device; storage noting products for the tuner, which ran
//! products through storage), so this test reads `src/` and fails on any.
//!
//! What counts as a dependency: every `crate::…` and `super::…` path in a file's code (not
//! its comments, nor its `#[cfg(test)]` module), resolved to the deepest module file it names,
//! with the names `lib.rs` re-exports resolved to their modules. A module's `mod` and `pub use`
//! of its own children are declarations, not dependencies, and are not counted.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// A module, as its path from the crate root (`["backend", "cuda", "device"]`).
type Module = Vec<String>;

/// Every `.rs` file under `dir`, by module.
fn module_files(dir: &Path, prefix: &Module, files: &mut BTreeMap<Module, String>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_str().unwrap().to_string();
        if path.is_dir() {
            module_files(&path, &[prefix.clone(), vec![name]].concat(), files);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            let module = match name.as_str() {
                "lib" | "mod" => prefix.clone(),
                _ => [prefix.clone(), vec![name]].concat(),
            };
            files.insert(module, fs::read_to_string(&path).unwrap());
        }
    }
}

/// The code of a file, without comments and without its test module.
fn code(source: &str) -> String {
    let before_tests = source.split("#[cfg(test)]").next().unwrap();
    before_tests
        .lines()
        .map(|line| line.split("//").next().unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths of a use tree starting at `text` (after `crate::` or `super::`):
/// `a::b::{c, d::{e, f}}` gives `a::b::c`, `a::b::d::e`, `a::b::d::f`.
fn use_paths(text: &str) -> Vec<Vec<String>> {
    fn tree(chars: &[char], at: &mut usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
        let mut path = prefix;
        loop {
            while chars.get(*at).is_some_and(|c| c.is_whitespace()) {
                *at += 1;
            }
            if chars.get(*at) == Some(&'{') {
                *at += 1;
                loop {
                    tree(chars, at, path.clone(), out);
                    match chars.get(*at) {
                        Some(',') => *at += 1,
                        _ => break,
                    }
                    while chars.get(*at).is_some_and(|c| c.is_whitespace()) {
                        *at += 1;
                    }
                    if chars.get(*at) == Some(&'}') {
                        break;
                    }
                }
                *at += 1; // the closing brace
                return;
            }
            let start = *at;
            while chars
                .get(*at)
                .is_some_and(|c| c.is_alphanumeric() || *c == '_')
            {
                *at += 1;
            }
            path.push(chars[start..*at].iter().collect());
            if chars[*at..].starts_with(&[':', ':']) {
                *at += 2;
            } else {
                out.push(path);
                return;
            }
        }
    }
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    tree(&chars, &mut 0, Vec::new(), &mut out);
    out
}

/// The module files `module`'s code refers to, each with the path that named it.
fn dependencies(
    module: &Module,
    code: &str,
    files: &BTreeMap<Module, String>,
    reexports: &BTreeMap<String, Module>,
) -> Vec<(Module, String)> {
    let mut found = Vec::new();
    for (keyword, after) in code
        .match_indices("crate::")
        .chain(code.match_indices("super::"))
    {
        let preceded_by_ident = code[..keyword]
            .chars()
            .last()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':');
        if preceded_by_ident {
            continue; // `super::super::x` is read from its first `super`
        }
        let mut base: Module = if after == "crate::" {
            Vec::new()
        } else {
            module[..module.len().saturating_sub(1)].to_vec() // a file's `super`: its parent
        };
        let mut rest = &code[keyword + after.len()..];
        if after == "super::" {
            while let Some(more) = rest.strip_prefix("super::") {
                base.pop();
                rest = more;
            }
        }
        for path in use_paths(rest) {
            let full: Module = [base.clone(), path.clone()].concat();
            let target = match reexports.get(&full.join("::")) {
                Some(module) => module.clone(),
                None => (0..=full.len())
                    .rev()
                    .map(|len| full[..len].to_vec())
                    .find(|prefix| files.contains_key(prefix))
                    .unwrap(),
            };
            if &target != module && !target.is_empty() {
                found.push((target, format!("{after}{}", path.join("::"))));
            }
        }
    }
    found
}

#[test]
fn modules_depend_on_each_other_without_cycles() {
    let mut files = BTreeMap::new();
    module_files(Path::new("src"), &Vec::new(), &mut files);
    // `pub use tensor::Tensor;` in lib.rs: `crate::Tensor` is module `tensor`.
    let mut reexports = BTreeMap::new();
    for line in files[&Vec::new()].lines() {
        if let Some(tree) = line.strip_prefix("pub use ") {
            for path in use_paths(tree) {
                reexports.insert(path.last().unwrap().clone(), vec![path[0].clone()]);
            }
        }
    }
    assert!(
        reexports.contains_key("Tensor"),
        "lib.rs re-exports: {reexports:?}"
    );

    let mut edges: BTreeMap<Module, BTreeMap<Module, String>> = BTreeMap::new();
    for (module, source) in &files {
        for (target, named_by) in dependencies(module, &code(source), &files, &reexports) {
            edges
                .entry(module.clone())
                .or_default()
                .entry(target)
                .or_insert(named_by);
        }
    }
    assert!(
        edges[&vec!["tensor".to_string()]].contains_key(&vec!["storage".to_string()]),
        "the reader must see tensor.rs use storage.rs: {:?}",
        edges[&vec!["tensor".to_string()]]
    );

    // A cycle: some module reaches itself again along the edges (each cycle reported once,
    // from its first module).
    let mut cycles = BTreeSet::new();
    for start in edges.keys() {
        let mut stack = vec![vec![start.clone()]];
        let mut seen = BTreeSet::new();
        while let Some(path) = stack.pop() {
            let last = path.last().unwrap();
            for next in edges.get(last).into_iter().flat_map(BTreeMap::keys) {
                if next == start {
                    if path.iter().all(|module| module >= start) {
                        let steps: Vec<String> = path
                            .iter()
                            .zip(path.iter().skip(1).chain([start]))
                            .map(|(from, to)| format!("{} ({})", from.join("::"), edges[from][to]))
                            .collect();
                        cycles.insert(steps.join(" → "));
                    }
                } else if seen.insert(next.clone()) {
                    stack.push([path.clone(), vec![next.clone()]].concat());
                }
            }
        }
    }
    assert!(
        cycles.is_empty(),
        "module dependency cycles (each step names the path that makes it):\n{}",
        cycles.into_iter().collect::<Vec<_>>().join("\n")
    );
}
