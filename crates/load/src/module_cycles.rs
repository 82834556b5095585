//! The crate's module rule, which the compiler does not hold: no module imports one that
//! imports it back (see `peregrine_testkit::module_cycles`, which reads the sources and
//! names any cycle).

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
