//! PgTune's two texts: the `postgresql.conf` snippet and the `ALTER SYSTEM` statements,
//! with a comment line above any value clamped into PostgreSQL's range.

use crate::recommend::Recommendation;

impl Recommendation {
    /// The configuration text exactly as PgTune's "copy configuration" gives it
    /// (lines joined by `\n`, no trailing newline).
    pub fn conf_text(&self) -> String {
        let mut lines = self.comments("#");
        for setting in &self.settings {
            lines.extend(self.clamp_note(setting.name, "#"));
            lines.push(format!("{} = {}", setting.name, setting.value));
        }
        lines.join("\n")
    }

    /// The same recommendation as `ALTER SYSTEM` statements, with `--` comments.
    pub fn alter_system_text(&self) -> String {
        let mut lines = self.comments("--");
        for setting in &self.settings {
            lines.extend(self.clamp_note(setting.name, "--"));
            lines.push(format!(
                "ALTER SYSTEM SET {} = '{}';",
                setting.name, setting.value
            ));
        }
        lines.join("\n")
    }

    /// The comment line saying `name` was clamped, when it was.
    fn clamp_note(&self, name: &str, marker: &str) -> Option<String> {
        self.clamps
            .iter()
            .find(|c| c.name == name)
            .map(|c| format!("{marker} {}", c.sentence()))
    }

    /// Each warning as one sentence: PgTune's lines of a paragraph joined by spaces.
    pub fn warning_messages(&self) -> Vec<String> {
        self.warnings
            .split(String::is_empty)
            .filter(|paragraph| !paragraph.is_empty())
            .map(|paragraph| paragraph.join(" "))
            .collect()
    }

    /// The warning block (if any) and the header, each line starting with `marker`,
    /// each block followed by an empty line.
    fn comments(&self, marker: &str) -> Vec<String> {
        let mut lines = Vec::new();
        if !self.warnings.is_empty() {
            lines.push(format!("{marker} WARNING"));
            lines.extend(self.warnings.iter().map(|w| format!("{marker} {w}")));
            lines.push(String::new());
        }
        let input = &self.input;
        lines.push(format!("{marker} DB Version: {}", input.db_version));
        lines.push(format!("{marker} OS Type: {}", input.os_type));
        lines.push(format!("{marker} DB Type: {}", input.db_type));
        lines.push(format!(
            "{marker} Total Memory (RAM): {}",
            input.total_memory
        ));
        if let Some(cpus) = input.cpu_num {
            lines.push(format!("{marker} CPUs num: {cpus}"));
        }
        if let Some(connections) = input.connection_num {
            lines.push(format!("{marker} Connections num: {connections}"));
        }
        lines.push(format!("{marker} Data Storage: {}", input.hd_type));
        lines.push(String::new());
        lines
    }
}
