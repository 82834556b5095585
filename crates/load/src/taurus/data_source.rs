//! `data-sources`: CSV files read at load time (path relative to the current directory or
//! the config file, `delimiter`, `quoted`, `loop`, `variable-names`, `random-order`). All
//! users of an execution share one cursor; each iteration takes the next row.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;

use super::Builder;
use super::values::{ConfigValue, boolean, child, optional};
use crate::ConfigError;
use crate::plan::DataSource;
use crate::variables::{MAX_VARIABLE_BYTES, Random};

/// Most fields a data source may hold in all (each is a string held for the whole run:
/// tens of bytes of bookkeeping even when empty).
pub const MAX_DATA_FIELDS: usize = 4_000_000;

impl Builder {
    /// The scenario's data sources.
    pub(super) fn data_sources(
        &mut self,
        scenario: &ConfigValue<'_>,
    ) -> Result<Vec<Arc<DataSource>>, ConfigError> {
        let Some(list) = child(scenario, "data-sources") else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for item in list.items(" of data sources")? {
            out.push(Arc::new(self.data_source(&item)?));
        }
        Ok(out)
    }

    fn data_source(&mut self, node: &ConfigValue<'_>) -> Result<DataSource, ConfigError> {
        let (path_node, options) = match node.value {
            Value::String(_) => (node.clone(), None),
            Value::Object(_) => (
                child(node, "path").ok_or_else(|| node.error("has no path"))?,
                Some(node),
            ),
            _ => return Err(node.error("must be a file path or a mapping with path")),
        };
        let option = |key: &str| options.and_then(|o| child(o, key));
        let written = path_node
            .value
            .as_str()
            .ok_or_else(|| path_node.error("must be a file path"))?;
        let file = self.find_file(written).ok_or_else(|| {
            path_node.error(format!(
                "data-sources path not found: {written} (looked in the current directory and next to the config)"
            ))
        })?;
        let text = read_limited(&file).map_err(|e| path_node.error(e))?;
        let delimiter = match option("delimiter").and_then(|d| d.value.as_str().map(str::to_owned))
        {
            Some(d) if d == "tab" || d == "\\t" => "\t".to_owned(),
            Some(d) if !d.is_empty() => d,
            _ => guess_delimiter(&text),
        };
        let quoted = optional(option("quoted"), boolean)?.unwrap_or(false);
        let random_order = optional(option("random-order"), boolean)?.unwrap_or(false);
        let mut rows = split_rows(&text, &delimiter, quoted || random_order, &file)
            .map_err(|e| path_node.error(e))?;
        let names = match option("variable-names").and_then(|v| v.value.as_str().map(str::to_owned))
        {
            Some(names) if !names.trim().is_empty() => {
                // A JMeter CSV Data Set may name its columns and skip a header line too.
                if optional(option("ignore-first-line"), boolean)?.unwrap_or(false)
                    && !rows.is_empty()
                {
                    rows.remove(0);
                }
                names.split(',').map(|n| n.trim().to_owned()).collect()
            }
            _ if rows.is_empty() => return Err(path_node.error("is empty: no header line")),
            _ => rows.remove(0),
        };
        if rows.is_empty() {
            return Err(path_node.error("has no data rows"));
        }
        if random_order {
            shuffle(&mut rows);
        }
        Ok(DataSource {
            names,
            rows,
            repeat: optional(option("loop"), boolean)?.unwrap_or(true),
        })
    }

    /// Where a data source's file is, as Taurus finds it: `~/` is the home directory; the
    /// path as written (from the working directory) first, then beside each config file.
    fn find_file(&self, written: &str) -> Option<PathBuf> {
        let home = written
            .strip_prefix("~/")
            .zip(std::env::var_os("HOME"))
            .map(|(rest, home)| PathBuf::from(home).join(rest));
        let path = home.unwrap_or_else(|| PathBuf::from(written));
        if path.is_absolute() || path.is_file() {
            return path.is_file().then_some(path);
        }
        self.context
            .config_dirs
            .iter()
            .map(|dir| dir.join(&path))
            .find(|candidate| candidate.is_file())
    }
}

fn read_limited(file: &std::path::Path) -> Result<String, String> {
    use crate::files::{MAX_DATA_BYTES, Source, read_text_limited};
    read_text_limited(file, MAX_DATA_BYTES, Source::RegularFile)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))
}

/// The rows of `text`; an error names the line when a field is over
/// [`MAX_VARIABLE_BYTES`] or the fields add up to more than [`MAX_DATA_FIELDS`] (counted
/// before a line is split, so a line of a million commas costs nothing).
fn split_rows(
    text: &str,
    delimiter: &str,
    quoted: bool,
    file: &std::path::Path,
) -> Result<Vec<Vec<String>>, String> {
    let mut rows = Vec::new();
    let mut fields = 0usize;
    for (line, text) in text.lines().enumerate() {
        fields += text.matches(delimiter).count() + 1;
        if fields > MAX_DATA_FIELDS {
            return Err(format!(
                "{} line {}: over {MAX_DATA_FIELDS} fields in all; split the data or use fewer rows",
                file.display(),
                line + 1
            ));
        }
        let row = split_row(text, delimiter, quoted);
        if let Some(big) = row.iter().position(|f| f.len() > MAX_VARIABLE_BYTES) {
            return Err(format!(
                "{} line {} field {}: over {MAX_VARIABLE_BYTES} bytes, the most a variable holds",
                file.display(),
                line + 1,
                big + 1
            ));
        }
        rows.push(row);
    }
    Ok(rows)
}

/// Taurus sniffs among `,`, `;` and tab on the first lines; the most frequent wins.
fn guess_delimiter(text: &str) -> String {
    let head: String = text.chars().take(4096).collect();
    [",", ";", "\t"]
        .into_iter()
        .max_by_key(|d| head.matches(d).count())
        .unwrap_or(",")
        .to_owned()
}

/// One CSV line: a plain split, or with `quoted`, fields in `"…"` may hold the delimiter
/// and `""` stands for a quote.
fn split_row(line: &str, delimiter: &str, quoted: bool) -> Vec<String> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    if !quoted {
        return line.split(delimiter).map(str::to_owned).collect();
    }
    let separator = delimiter.chars().next().unwrap_or(',');
    let mut fields = vec![String::new()];
    let mut in_quotes = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        let field = fields.last_mut();
        match c {
            '"' if in_quotes && chars.peek() == Some(&'"') => {
                chars.next();
                field.into_iter().for_each(|f| f.push('"'));
            }
            '"' => in_quotes = !in_quotes,
            c if c == separator && !in_quotes => fields.push(String::new()),
            c => field.into_iter().for_each(|f| f.push(c)),
        }
    }
    fields
}

fn shuffle(rows: &mut [Vec<String>]) {
    let mut random = Random::seeded(rows.len() as u64);
    for i in (1..rows.len()).rev() {
        let j = usize::try_from(random.below(i as u64 + 1)).unwrap_or(0);
        rows.swap(i, j);
    }
}
