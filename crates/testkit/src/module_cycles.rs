//! A crate's module rule, which the compiler does not hold: no module imports one that
//! imports it back. A crate's test reads every file under its `src/` ([`sources`], with
//! `syn`), draws which module each one reaches through `use` items and `crate::`/`super::`/`self::` paths (re-exports
//! followed to where the item lives; `#[cfg(test)]` items left out), and fails naming any
//! cycle.
//!
//! The rule is checked room by room: among the children of each module (a child stands
//! for its whole subtree), and at the top among the crate root (lib.rs) and its modules. A
//! folder's `mod.rs` is its front door: its children may use what it defines and it may
//! use them, so a child ↔ parent pair is no cycle; two siblings, or a module and the crate
//! root, that reach each other are. Paths inside macro invocations are not seen.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;

use syn::visit::Visit;

/// A module's path below the crate root (`[]`: lib.rs).
pub type ModulePath = Vec<String>;

/// The module a file under `src/` is: `lib.rs` → `[]`, `a/mod.rs` and `a.rs` → `[a]`.
fn module_of(relative: &Path) -> ModulePath {
    let mut parts: ModulePath = relative
        .iter()
        .map(|part| part.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if parts
        .last()
        .is_some_and(|last| last == "mod" || last == "lib")
    {
        parts.pop();
    }
    parts
}

/// What one file reaches: the module paths it names, and the names it re-exports.
#[derive(Default)]
struct Reach {
    /// Each path named (resolved from the crate root) and how it was written.
    paths: Vec<(ModulePath, String)>,
    /// `pub use` names: name → the path it stands for (from the crate root).
    reexports: BTreeMap<String, ModulePath>,
}

/// Collects a file's paths; `here` is the module it is in (inline `mod`s pushed on it).
struct Collector<'a> {
    here: ModulePath,
    modules: &'a BTreeSet<ModulePath>,
    reach: Reach,
}

impl Collector<'_> {
    /// `path` as seen from `self.here`, from the crate root; `None` for another crate's
    /// paths and local names.
    fn resolve(&self, path: &[String]) -> Option<ModulePath> {
        let (first, rest) = path.split_first()?;
        match first.as_str() {
            "crate" => Some(rest.to_vec()),
            "self" => Some([self.here.as_slice(), rest].concat()),
            "super" => {
                let mut base = self.here.clone();
                base.pop();
                let mut rest = rest;
                while let Some(("super", more)) = rest.split_first().map(|(s, m)| (s.as_str(), m)) {
                    base.pop();
                    rest = more;
                }
                Some([base.as_slice(), rest].concat())
            }
            _ => {
                let child = [self.here.as_slice(), &path[..1]].concat();
                self.modules
                    .contains(&child)
                    .then(|| [self.here.as_slice(), path].concat())
            }
        }
    }

    fn note(&mut self, written: &[String], public_as: Option<String>) {
        let Some(resolved) = self.resolve(written) else {
            return;
        };
        if let Some(name) = public_as {
            self.reach.reexports.insert(name, resolved.clone());
        }
        self.reach.paths.push((resolved, written.join("::")));
    }

    /// Every path a `use` tree names, with the name it is known by (`None` for a glob).
    fn use_paths(
        tree: &syn::UseTree,
        prefix: &mut Vec<String>,
        out: &mut Vec<(Vec<String>, Option<String>)>,
    ) {
        match tree {
            syn::UseTree::Path(path) => {
                prefix.push(path.ident.to_string());
                Self::use_paths(&path.tree, prefix, out);
                prefix.pop();
            }
            syn::UseTree::Name(name) if name.ident == "self" => {
                out.push((prefix.clone(), prefix.last().cloned()));
            }
            syn::UseTree::Name(name) => {
                let mut path = prefix.clone();
                path.push(name.ident.to_string());
                out.push((path, Some(name.ident.to_string())));
            }
            syn::UseTree::Rename(rename) => {
                let mut path = prefix.clone();
                path.push(rename.ident.to_string());
                out.push((path, Some(rename.rename.to_string())));
            }
            syn::UseTree::Glob(_) => out.push((prefix.clone(), None)),
            syn::UseTree::Group(group) => {
                for tree in &group.items {
                    Self::use_paths(tree, prefix, out);
                }
            }
        }
    }
}

/// Whether `attrs` hold `#[cfg(test)]`.
fn test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|attr| {
        matches!(&attr.meta, syn::Meta::List(list)
            if list.path.is_ident("cfg") && list.tokens.to_string() == "test")
    })
}

impl<'ast> Visit<'ast> for Collector<'_> {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        let attrs = match item {
            syn::Item::Mod(item) => &item.attrs,
            syn::Item::Fn(item) => &item.attrs,
            syn::Item::Use(item) => &item.attrs,
            syn::Item::Impl(item) => &item.attrs,
            _ => return syn::visit::visit_item(self, item),
        };
        if !test_only(attrs) {
            syn::visit::visit_item(self, item);
        }
    }

    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        if item.content.is_some() {
            self.here.push(item.ident.to_string());
            syn::visit::visit_item_mod(self, item);
            self.here.pop();
        }
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        let public = !matches!(item.vis, syn::Visibility::Inherited);
        let mut paths = Vec::new();
        Self::use_paths(&item.tree, &mut Vec::new(), &mut paths);
        for (path, name) in paths {
            self.note(&path, name.filter(|_| public));
        }
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        if path.segments.len() > 1 {
            let written: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
            self.note(&written, None);
        }
        syn::visit::visit_path(self, path);
    }
}

/// The modules each module reaches, with an example of how (for the message).
pub type Edges = BTreeMap<ModulePath, BTreeMap<ModulePath, String>>;

/// The longest prefix of `path` that is a module.
fn owning_module(path: &[String], modules: &BTreeSet<ModulePath>) -> ModulePath {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|prefix| modules.contains(prefix))
        .unwrap_or_default()
}

/// `path` with re-exports followed to the module where the item lives.
fn canonical(
    mut path: ModulePath,
    modules: &BTreeSet<ModulePath>,
    reach: &BTreeMap<ModulePath, Reach>,
) -> ModulePath {
    // A bound, not a loop count the sources reach: re-export chains are short.
    for _ in 0..16 {
        let owner = owning_module(&path, modules);
        let Some(name) = path.get(owner.len()) else {
            break;
        };
        let Some(target) = reach.get(&owner).and_then(|r| r.reexports.get(name)) else {
            break;
        };
        path = [target.as_slice(), &path[owner.len() + 1..]].concat();
    }
    owning_module(&path, modules)
}

/// Module-to-module edges of `files` (module path, source).
pub fn edges(files: &[(ModulePath, String)]) -> Result<Edges, String> {
    let modules: BTreeSet<ModulePath> = files.iter().map(|(m, _)| m.clone()).collect();
    let mut reach = BTreeMap::new();
    for (module, source) in files {
        let file = syn::parse_file(source).map_err(|e| format!("{}: {e}", module.join("::")))?;
        let mut collector = Collector {
            here: module.clone(),
            modules: &modules,
            reach: Reach::default(),
        };
        collector.visit_file(&file);
        reach.insert(module.clone(), collector.reach);
    }
    let mut edges = Edges::new();
    for (module, found) in &reach {
        for (path, written) in &found.paths {
            let target = canonical(path.clone(), &modules, &reach);
            if target != *module {
                edges
                    .entry(module.clone())
                    .or_default()
                    .entry(target)
                    .or_insert_with(|| written.clone());
            }
        }
    }
    Ok(edges)
}

fn name(module: &[String]) -> String {
    if module.is_empty() {
        "crate".to_owned()
    } else {
        format!("crate::{}", module.join("::"))
    }
}

/// Every cycle among the rooms of each level, described (`a → b (written) → a`).
pub fn cycles(edges: &Edges) -> Vec<String> {
    let modules: BTreeSet<&ModulePath> = edges
        .keys()
        .chain(edges.values().flat_map(|e| e.keys()))
        .collect();
    let parents: BTreeSet<ModulePath> = modules
        .iter()
        .filter_map(|m| m.split_last().map(|(_, parent)| parent.to_vec()))
        .collect();
    let mut found = Vec::new();
    for parent in &parents {
        // The room of `module` at this level: the crate root stands for itself at the top.
        let room = |module: &ModulePath| -> Option<ModulePath> {
            if module.len() > parent.len() && module.starts_with(parent) {
                Some(module[..=parent.len()].to_vec())
            } else {
                (parent.is_empty() && module.is_empty()).then(Vec::new)
            }
        };
        let mut graph: BTreeMap<ModulePath, BTreeMap<ModulePath, String>> = BTreeMap::new();
        for (from, targets) in edges {
            for (to, written) in targets {
                if let (Some(a), Some(b)) = (room(from), room(to))
                    && a != b
                {
                    graph
                        .entry(a)
                        .or_default()
                        .entry(b)
                        .or_insert_with(|| format!("{} uses {written}", name(from)));
                }
            }
        }
        found.extend(level_cycles(&graph));
    }
    found
}

/// One cycle through each edge that closes one, described, without repeats.
fn level_cycles(graph: &BTreeMap<ModulePath, BTreeMap<ModulePath, String>>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (from, targets) in graph {
        for to in targets.keys() {
            let Some(back) = shortest_path(graph, to, from) else {
                continue;
            };
            let mut ring: Vec<&ModulePath> =
                std::iter::once(from).chain(back.iter().copied()).collect();
            ring.pop();
            let key: BTreeSet<&ModulePath> = ring.iter().copied().collect();
            if !seen.insert(key) {
                continue;
            }
            let steps: Vec<String> = std::iter::once(from)
                .chain(back.iter().copied())
                .collect::<Vec<_>>()
                .windows(2)
                .map(|w| format!("{} → {} ({})", name(w[0]), name(w[1]), graph[w[0]][w[1]]))
                .collect();
            out.push(steps.join(", "));
        }
    }
    out
}

/// The modules from `from` to `to` (both included), fewest steps first.
fn shortest_path<'a>(
    graph: &'a BTreeMap<ModulePath, BTreeMap<ModulePath, String>>,
    from: &'a ModulePath,
    to: &ModulePath,
) -> Option<Vec<&'a ModulePath>> {
    let mut came_from: BTreeMap<&ModulePath, &ModulePath> = BTreeMap::new();
    let mut queue = VecDeque::from([from]);
    let mut visited = BTreeSet::from([from]);
    while let Some(at) = queue.pop_front() {
        if at == to {
            let mut path = vec![at];
            while let Some(&before) = came_from.get(path[path.len() - 1]) {
                path.push(before);
            }
            path.reverse();
            return Some(path);
        }
        for next in graph.get(at).into_iter().flat_map(|t| t.keys()) {
            if visited.insert(next) {
                came_from.insert(next, at);
                queue.push_back(next);
            }
        }
    }
    None
}

/// Every `.rs` file under `src` (a crate's source folder), with its module path.
pub fn sources(src: &Path) -> std::io::Result<Vec<(ModulePath, String)>> {
    let mut files = Vec::new();
    sources_under(src, src, &mut files)?;
    Ok(files)
}

fn sources_under(
    dir: &Path,
    root: &Path,
    out: &mut Vec<(ModulePath, String)>,
) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            sources_under(&path, root, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path.strip_prefix(root).unwrap_or(&path);
            out.push((module_of(relative), std::fs::read_to_string(&path)?));
        }
    }
    Ok(())
}

/// A file of module `module` (`a::b`; `""`: the crate root) with `source`, for tests.
pub fn file(module: &str, source: &str) -> (ModulePath, String) {
    let path = module
        .split("::")
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect();
    (path, source.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_check_names_sibling_root_and_reexported_cycles_and_lets_a_parent_be() {
        let files = [
            file(
                "",
                "mod a; mod b; mod p; pub use a::Thing; pub fn run() { a::go(); }",
            ),
            // a → crate root (through nothing: `run` lives there) and crate root → a.
            file("a", "pub struct Thing; pub fn go() { crate::run(); }"),
            // b reaches a only through the root's re-export: the edge is b → a.
            file("b", "use crate::Thing;"),
            // Siblings under p that use each other, and a child that uses its parent.
            file("p", "mod x; mod y; pub struct Front; fn f() { x::X; }"),
            file("p::x", "use super::y::Y; use super::Front; pub struct X;"),
            file(
                "p::y",
                "pub struct Y; #[cfg(test)] mod tests { use super::super::x::X; } fn g() { super::x::X; }",
            ),
        ];
        let edges = edges(&files).unwrap_or_else(|e| panic!("{e}"));
        assert!(edges[&vec!["b".to_owned()]].contains_key(&vec!["a".to_owned()]));
        let cycles = cycles(&edges);
        assert_eq!(cycles.len(), 2, "{cycles:#?}");
        assert!(
            cycles
                .iter()
                .any(|c| c.starts_with("crate → crate::a (crate uses a::Thing)")
                    && c.ends_with("crate::a → crate (crate::a uses crate::run)")),
            "{cycles:#?}"
        );
        assert!(
            cycles.iter().any(|c| c
                .contains("crate::p::x → crate::p::y (crate::p::x uses super::y::Y)")
                && c.contains("crate::p::y → crate::p::x (crate::p::y uses super::x::X)")),
            "{cycles:#?}"
        );
    }
}
