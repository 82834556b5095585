//! A JMX file read into a tree of test elements: JMeter saves each element followed by a
//! `<hashTree>` holding its children, and each element's settings as typed properties
//! (`stringProp`, `boolProp`, `intProp`, `elementProp`, `collectionProp`, …). The XML is
//! hostile input: its size, node count and depth are bounded, and a DTD (the only way to
//! declare entities) is refused.

use std::path::Path;

use crate::ConfigError;

/// Largest JMX file read.
pub(super) const MAX_JMX_BYTES: u64 = 32 * 1024 * 1024;
/// Most XML nodes in one plan.
const MAX_NODES: u32 = 2_000_000;
/// Deepest nesting of test elements (and of properties).
const MAX_DEPTH: usize = 64;

/// One test element of the plan, with its children (what its `<hashTree>` holds).
#[derive(Debug, Clone)]
pub(super) struct Element {
    /// The class, without its package: `HTTPSamplerProxy`, `UltimateThreadGroup`.
    pub(super) class: String,
    /// The GUI class, for config elements that share a class (`ConfigTestElement`).
    pub(super) gui: String,
    /// Its `testname`.
    pub(super) name: String,
    /// `enabled="false"` elements are skipped, children included.
    pub(super) enabled: bool,
    /// Its settings.
    pub(super) props: Vec<Prop>,
    /// The elements in its scope.
    pub(super) children: Vec<Element>,
    /// Where it is in the plan: `Test Plan > Thread Group > Login`.
    pub(super) path: String,
}

/// One property of an element.
#[derive(Debug, Clone, Default)]
pub(super) struct Prop {
    /// Its `name` attribute.
    pub(super) name: String,
    /// Its text (for the scalar kinds).
    pub(super) text: String,
    /// The properties inside an `elementProp` or `collectionProp`.
    pub(super) children: Vec<Prop>,
}

impl Prop {
    /// The child property named `name`.
    pub(super) fn get(&self, name: &str) -> Option<&Prop> {
        self.children.iter().find(|p| p.name == name)
    }

    /// The text of child `name`, or "".
    pub(super) fn string(&self, name: &str) -> &str {
        self.get(name).map_or("", |p| p.text.as_str())
    }
}

impl Element {
    /// The property named `name`.
    pub(super) fn prop(&self, name: &str) -> Option<&Prop> {
        self.props.iter().find(|p| p.name == name)
    }

    /// The text of property `name`, trimmed of nothing (values may hold spaces), or "".
    pub(super) fn string(&self, name: &str) -> &str {
        self.prop(name).map_or("", |p| p.text.as_str())
    }

    /// Property `name` as a boolean: `true` (any case) is true; missing gives `default`.
    pub(super) fn flag(&self, name: &str, default: bool) -> bool {
        match self.prop(name) {
            Some(p) if !p.text.trim().is_empty() => p.text.trim().eq_ignore_ascii_case("true"),
            _ => default,
        }
    }

    /// The items of collection `name` inside this element (or inside its element property
    /// `outer`, when given).
    pub(super) fn collection(&self, outer: Option<&str>, name: &str) -> &[Prop] {
        let holder = match outer {
            Some(outer) => self.prop(outer).and_then(|p| p.get(name)),
            None => self.prop(name),
        };
        holder.map_or(&[], |p| p.children.as_slice())
    }

    /// The enabled children.
    pub(super) fn enabled_children(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter(|c| c.enabled)
    }
}

/// Reads the JMX file `file` into its test plan element.
pub(super) fn read(file: &Path) -> Result<Element, ConfigError> {
    let read_error = |message: String| ConfigError::Read {
        file: file.to_path_buf(),
        message,
    };
    let size = std::fs::metadata(file)
        .map_err(|e| read_error(e.to_string()))?
        .len();
    if size > MAX_JMX_BYTES {
        return Err(read_error(format!(
            "{size} bytes; JMX plans up to {MAX_JMX_BYTES} bytes are read"
        )));
    }
    let text = std::fs::read_to_string(file).map_err(|e| read_error(e.to_string()))?;
    parse(file, &text)
}

/// Parses JMX text (`file` names it in errors).
pub(super) fn parse(file: &Path, text: &str) -> Result<Element, ConfigError> {
    let syntax = |message: String| ConfigError::Syntax {
        file: file.to_path_buf(),
        message,
    };
    let options = roxmltree::ParsingOptions {
        allow_dtd: false,
        nodes_limit: MAX_NODES,
        ..roxmltree::ParsingOptions::default()
    };
    let document = roxmltree::Document::parse_with_options(text, options)
        .map_err(|e| syntax(format!("not a readable JMX (XML) file: {e}")))?;
    let root = document.root_element();
    if root.tag_name().name() != "jmeterTestPlan" {
        return Err(syntax(format!(
            "the root element is <{}>, not <jmeterTestPlan>: not a JMeter test plan",
            root.tag_name().name()
        )));
    }
    let tree = elements(root).find(|n| n.tag_name().name() == "hashTree");
    let mut plan = tree
        .map(|t| children(t, "", 0))
        .transpose()?
        .unwrap_or_default();
    match plan.len() {
        1 => Ok(plan.remove(0)),
        0 => Err(syntax("the plan has no TestPlan element".into())),
        _ => Err(syntax(
            "the plan has more than one top-level element (expected one TestPlan)".into(),
        )),
    }
}

fn elements<'a, 'i>(
    node: roxmltree::Node<'a, 'i>,
) -> impl Iterator<Item = roxmltree::Node<'a, 'i>> {
    node.children().filter(roxmltree::Node::is_element)
}

/// The elements of one `<hashTree>`: each test element, then (usually) its own hashTree.
fn children(
    tree: roxmltree::Node<'_, '_>,
    parent: &str,
    depth: usize,
) -> Result<Vec<Element>, ConfigError> {
    if depth > MAX_DEPTH {
        return Err(ConfigError::Invalid {
            path: parent.to_owned(),
            message: format!("test elements nest deeper than {MAX_DEPTH} levels"),
        });
    }
    let mut out: Vec<Element> = Vec::new();
    for node in elements(tree) {
        if node.tag_name().name() == "hashTree" {
            if let Some(last) = out.last_mut()
                && last.children.is_empty()
            {
                let path = last.path.clone();
                last.children = children(node, &path, depth + 1)?;
            }
            continue;
        }
        out.push(element(node, parent)?);
    }
    Ok(out)
}

fn element(node: roxmltree::Node<'_, '_>, parent: &str) -> Result<Element, ConfigError> {
    let tag = node.tag_name().name();
    let class = node.attribute("testclass").unwrap_or(tag);
    let name = node.attribute("testname").unwrap_or(tag).to_owned();
    let path = if parent.is_empty() {
        name.clone()
    } else {
        format!("{parent} > {name}")
    };
    let props = elements(node)
        .map(|p| prop(p, &path, 0))
        .collect::<Result<_, _>>()?;
    Ok(Element {
        class: short_class(tag, class),
        gui: short_class("", node.attribute("guiclass").unwrap_or("")),
        name,
        enabled: node.attribute("enabled") != Some("false"),
        props,
        children: Vec::new(),
        path,
    })
}

/// The class without its package; the tag when it is already short (JMeter saves aliases).
fn short_class(tag: &str, class: &str) -> String {
    let chosen = if tag.contains('.') || tag.is_empty() {
        class
    } else {
        tag
    };
    chosen.rsplit('.').next().unwrap_or(chosen).to_owned()
}

fn prop(node: roxmltree::Node<'_, '_>, path: &str, depth: usize) -> Result<Prop, ConfigError> {
    if depth > MAX_DEPTH {
        return Err(ConfigError::Invalid {
            path: path.to_owned(),
            message: format!("properties nest deeper than {MAX_DEPTH} levels"),
        });
    }
    let text: String = node
        .children()
        .filter(roxmltree::Node::is_text)
        .filter_map(|t| t.text())
        .collect();
    // `<doubleProp><name>throughput</name><value>60.0</value></doubleProp>`: the name and
    // value as child elements (JMeter writes number properties of some elements so).
    let part = |tag: &str| {
        elements(node)
            .find(|c| c.tag_name().name() == tag)
            .map(|c| c.text().unwrap_or("").to_owned())
    };
    if node.attribute("name").is_none()
        && let Some(name) = part("name")
    {
        return Ok(Prop {
            name,
            text: part("value").unwrap_or_default(),
            children: Vec::new(),
        });
    }
    let children = elements(node)
        .map(|c| prop(c, path, depth + 1))
        .collect::<Result<_, _>>()?;
    Ok(Prop {
        name: node.attribute("name").unwrap_or("").to_owned(),
        text,
        children,
    })
}
