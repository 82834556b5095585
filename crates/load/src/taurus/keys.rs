//! Which keys each section of a config may hold, and what an unexpected one is: a
//! misspelling of a known key ("did you mean `criteria`?"), a real Taurus key Peregrine
//! does not implement, or a key neither knows. One warning names each; a misspelling
//! inside a check (assertions, pass/fail criteria) is an error, since ignoring it would
//! quietly disable the check.

use serde_json::Map;

use super::Builder;
use super::values::ConfigValue;
use crate::ConfigError;

/// What a section accepts beyond the keys its reader lists.
pub(super) struct Section {
    /// Keys read elsewhere, or ignored on purpose without a word (Taurus engine internals).
    pub known: &'static [&'static str],
    /// Real Taurus keys Peregrine does not implement: one warning each, the run goes on.
    pub taurus_only: &'static [&'static str],
    /// A misspelt key here disables a check: an error, not a warning.
    pub strict: bool,
}

pub(super) const TOP: Section = Section {
    known: &[
        "execution",
        "scenarios",
        "reporting",
        "settings",
        "modules",
        "included-configs",
    ],
    taurus_only: &[
        "cli",
        "cli-aliases",
        "install-id",
        "provisioning",
        "services",
        "version",
        "locations",
        "locations-weighted",
    ],
    strict: false,
};

pub(super) const EXECUTION: Section = Section {
    known: &[],
    taurus_only: &[
        "locations",
        "locations-weighted",
        "files",
        "env",
        "delay",
        "start-at",
        "distributed",
        "provisioning",
    ],
    strict: false,
};

pub(super) const SCENARIO: Section = Section {
    // Every key the scenario reader reads is in its own list.
    known: &[],
    taurus_only: &[
        "script",
        "retrieve-resources",
        "retrieve-resources-regex",
        "concurrent-pool-size",
        "store-cache",
        "use-dns-cache-mgr",
        "content-encoding",
        "authorization",
        "keystore-config",
        "modifications",
        "random-source-ip",
        "jsr223",
    ],
    strict: false,
};

pub(super) const REQUEST: Section = Section {
    // Every key the request reader reads is in its own list.
    known: &[],
    taurus_only: &[
        "upload-files",
        "content-encoding",
        "jsr223",
        "random-source-ip",
    ],
    strict: false,
};

pub(super) const ASSERT: Section = Section {
    known: &["contains", "subject", "regexp", "not"],
    taurus_only: &["assume-success"],
    strict: true,
};

pub(super) const ASSERT_XPATH: Section = Section {
    known: &[
        "xpath",
        "invert",
        "use-tolerant-parser",
        "validate-xml",
        "ignore-whitespace",
        "use-namespaces",
    ],
    taurus_only: &[],
    strict: true,
};

pub(super) const ASSERT_JSONPATH: Section = Section {
    known: &[
        "jsonpath",
        "expected-value",
        "validate",
        "expect-null",
        "invert",
        "regexp",
    ],
    taurus_only: &[],
    strict: true,
};

pub(super) const PASSFAIL: Section = Section {
    known: &["module", "criteria"],
    taurus_only: &["run-at"],
    strict: true,
};

pub(super) const CRITERION: Section = Section {
    known: &[
        "subject",
        "condition",
        "threshold",
        "timeframe",
        "logic",
        "label",
        "message",
        "stop",
        "fail",
    ],
    taurus_only: &[],
    strict: true,
};

pub(super) const FINAL_STATS: Section = Section {
    known: &[
        "module",
        "dump-xml",
        "dump-csv",
        "summary",
        "percentiles",
        "summary-labels",
        "failed-labels",
        "test-duration",
    ],
    taurus_only: &[],
    strict: false,
};

pub(super) const JUNIT_XML: Section = Section {
    known: &["module", "filename", "data-source"],
    taurus_only: &[],
    strict: false,
};

pub(super) const CONSOLE: Section = Section {
    known: &["module"],
    taurus_only: &["disable", "screen", "dummy-cols", "dummy-rows"],
    strict: false,
};

pub(super) const SETTINGS: Section = Section {
    // env: read by the variables reader; the rest tune Taurus's own engine and mean
    // nothing here.
    known: &[
        "env",
        "default-executor",
        "check-interval",
        "aggregator",
        "check-updates",
        "proxy",
        "verbose",
    ],
    taurus_only: &["artifacts-dir", "ramp-up-exclude", "tab-replacement-spaces"],
    strict: false,
};

/// `modules.peregrine`: Peregrine's own settings.
pub(super) const PEREGRINE_MODULE: Section = Section {
    known: &["ca-cert", "insecure"],
    taurus_only: &[],
    strict: false,
};

/// What an unexpected key is.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Known,
    TaurusOnly,
    Misspelt(&'static str),
    Unknown,
}

fn verdict(key: &str, read: &[&'static str], section: &Section) -> Verdict {
    let lists = [read, section.known, section.taurus_only];
    if read.contains(&key) || section.known.contains(&key) {
        return Verdict::Known;
    }
    if section.taurus_only.contains(&key) {
        return Verdict::TaurusOnly;
    }
    let nearest = lists
        .iter()
        .flat_map(|list| list.iter())
        .map(|candidate| (edit_distance(key, candidate), *candidate))
        .min();
    match nearest {
        Some((distance, candidate)) if distance <= typo_limit(key) => Verdict::Misspelt(candidate),
        _ => Verdict::Unknown,
    }
}

/// The most edits that still make a near miss: one for short keys (`nto`), up to three
/// for long ones, as Taurus's own linter allows.
fn typo_limit(key: &str) -> usize {
    match key.chars().count() {
        0..=4 => 1,
        5..=8 => 2,
        _ => 3,
    }
}

/// Edits (insert, delete, substitute, swap two neighbours) turning `a` into `b`.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Three rows of the optimal-string-alignment table: two back, one back, current.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut current = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (previous[j] + 1)
                .min(current[j - 1] + 1)
                .min(previous[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(before[j - 2] + 1);
            }
            current[j] = best;
        }
        before = std::mem::replace(&mut previous, current);
    }
    previous[b.len()]
}

impl Builder {
    /// [`Builder::check_keys`] on each mapping in the list `node` (strings are short forms).
    pub(super) fn check_item_keys(
        &mut self,
        node: Option<&ConfigValue<'_>>,
        section: &Section,
    ) -> Result<(), ConfigError> {
        let Some(node) = node.filter(|n| n.value.is_array()) else {
            return Ok(());
        };
        for item in node.items("")? {
            self.check_keys(&item, &[], section)?;
        }
        Ok(())
    }

    /// Checks `node`'s keys against those its reader handles (`read`) and `section`: one
    /// warning per unexpected key, or an error for a misspelling in a strict section.
    pub(super) fn check_keys(
        &mut self,
        node: &ConfigValue<'_>,
        read: &[&'static str],
        section: &Section,
    ) -> Result<(), ConfigError> {
        for key in node.value.as_object().into_iter().flat_map(Map::keys) {
            let path = if node.path.is_empty() {
                key.clone()
            } else {
                format!("{}.{key}", node.path)
            };
            match verdict(key, read, section) {
                Verdict::Known => {}
                Verdict::TaurusOnly => {
                    self.warn(&path, "a Taurus key Peregrine does not implement; ignored");
                }
                Verdict::Misspelt(meant) if section.strict => {
                    return Err(ConfigError::Invalid {
                        path,
                        message: format!(
                            "unknown key: did you mean `{meant}`? (ignoring it would silently disable this check)"
                        ),
                    });
                }
                Verdict::Misspelt(meant) => {
                    self.warn(
                        &path,
                        &format!("unknown key, ignored: did you mean `{meant}`?"),
                    );
                }
                Verdict::Unknown => self.warn(&path, "unknown key (not a Taurus key); ignored"),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_count_swaps_as_one_edit() {
        assert_eq!(edit_distance("nto", "not"), 1);
        assert_eq!(edit_distance("critera", "criteria"), 1);
        assert_eq!(edit_distance("subjct", "subject"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }

    #[test]
    fn keys_are_known_taurus_only_misspelt_or_unknown() {
        assert_eq!(verdict("criteria", &[], &PASSFAIL), Verdict::Known);
        assert_eq!(
            verdict("critera", &[], &PASSFAIL),
            Verdict::Misspelt("criteria")
        );
        assert_eq!(verdict("run-at", &[], &PASSFAIL), Verdict::TaurusOnly);
        assert_eq!(
            verdict("hold-fr", &["hold-for"], &EXECUTION),
            Verdict::Misspelt("hold-for")
        );
        assert_eq!(verdict("services", &[], &TOP), Verdict::TaurusOnly);
        assert_eq!(verdict("servics", &[], &TOP), Verdict::Misspelt("services"));
        assert_eq!(verdict("my-own-thing", &[], &TOP), Verdict::Unknown);
        // Too far from `timeout` to be a slip of the finger.
        assert_eq!(
            verdict("connect-timeout", &["timeout"], &REQUEST),
            Verdict::Unknown
        );
    }
}
