//! The crate's module rules, which the compiler does not hold: no module imports one that
//! imports it back (see `peregrine_testkit::module_cycles`, which reads the sources and
//! names any cycle), and the stages depend one way — readers → plan → engine → stats →
//! report → the capacity search and the live view — as separate crates would make them.

use std::path::Path;

use peregrine_testkit::module_cycles::{cycles, edges, sources};

#[test]
fn no_module_of_the_crate_imports_one_that_imports_it_back() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = sources(&src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
    assert!(files.len() > 50, "read only {} files", files.len());
    let edges = edges(&files).unwrap_or_else(|e| panic!("{e}"));
    // The check sees the stages' one-way flow: the engine reaches the plan.
    let engine = edges.get(&vec!["engine".to_owned()]);
    assert!(engine.is_some_and(|e| e.contains_key(&vec!["plan".to_owned()])));
    let cycles = cycles(&edges);
    assert!(cycles.is_empty(), "module cycles:\n{}", cycles.join("\n"));
}

/// Each stage with the stages it must not reach: none reaches a later one, and the readers
/// reach nothing past the plan.
const STAGES: [(&str, &[&str]); 6] = [
    (
        "plan",
        &["taurus", "jmx", "engine", "report", "capacity", "live"],
    ),
    (
        "stats",
        &["taurus", "jmx", "engine", "report", "capacity", "live"],
    ),
    ("engine", &["taurus", "jmx", "report", "capacity", "live"]),
    ("report", &["taurus", "jmx", "capacity", "live"]),
    ("taurus", &["engine", "stats", "report", "capacity", "live"]),
    ("jmx", &["engine", "stats", "report", "capacity", "live"]),
];

#[test]
fn the_stages_depend_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = sources(&src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
    let edges = edges(&files).unwrap_or_else(|e| panic!("{e}"));
    let module = |name: &str| vec![name.to_owned()];
    let mut wrong = Vec::new();
    for (stage, later) in STAGES {
        let reached = edges
            .get(&module(stage))
            .unwrap_or_else(|| panic!("no module {stage}"));
        for target in later {
            if let Some(how) = reached.get(&module(target)) {
                wrong.push(format!("{stage} reaches {target} ({how})"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // The check sees edges that are allowed: the report reads the engine's result.
    assert!(edges[&module("report")].contains_key(&module("engine")));
}
