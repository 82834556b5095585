//! Thread groups read into Taurus load settings: the group's own (as `jmeter -n -t plan.jmx`
//! runs it), or a Taurus execution's spread over the plan's groups as Taurus's JMeter
//! executor rewrites them (concurrency divided in proportion to each group's threads, at
//! least one each; the other keys given replace the group's).

use serde_json::{Map, Value, json};

use super::Reader;
use super::tree::Element;

/// The planned time of a group that JMeter runs until its loops end or forever: the run
/// then ends when every user is done (or at Ctrl-C).
pub(super) const UNBOUNDED: &str = "365d";

/// A group's own load, as Taurus execution keys.
#[derive(Debug, Clone, Default)]
pub(super) struct Load {
    /// Threads (a number, or text for Taurus to evaluate).
    pub(super) concurrency: Value,
    /// Seconds to start them all.
    pub(super) ramp_up: f64,
    /// Seconds at full load after the ramp-up (`None`: no time bound).
    pub(super) hold_for: Option<f64>,
    /// Passes per thread (`None`: until the time is up).
    pub(super) iterations: Option<Value>,
    /// Stairs of the ramp-up.
    pub(super) steps: Option<u64>,
}

impl Load {
    /// This load as execution keys.
    pub(super) fn keys(&self) -> Map<String, Value> {
        let mut keys = Map::new();
        keys.insert("concurrency".into(), self.concurrency.clone());
        keys.insert("ramp-up".into(), json!(seconds(self.ramp_up)));
        if let Some(iterations) = &self.iterations {
            keys.insert("iterations".into(), iterations.clone());
        }
        match (self.hold_for, &self.iterations) {
            (Some(hold), _) => {
                keys.insert("hold-for".into(), json!(seconds(hold)));
            }
            // Loops alone bound the run; a ramp-up would otherwise end it early.
            (None, Some(_)) if self.ramp_up == 0.0 => {}
            (None, _) => {
                keys.insert("hold-for".into(), json!(UNBOUNDED));
            }
        }
        if let Some(steps) = self.steps {
            keys.insert("steps".into(), json!(steps));
        }
        keys
    }

    /// The group's threads, when a plain number.
    pub(super) fn threads(&self) -> Option<u64> {
        match &self.concurrency {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
}

fn seconds(value: f64) -> String {
    format!("{}ms", (value * 1000.0).round().max(0.0))
}

impl Reader<'_> {
    /// The load of thread group `group`.
    pub(super) fn group_load(&mut self, group: &Element) -> Load {
        match group.class.as_str() {
            "ConcurrencyThreadGroup" => self.concurrency_group(group),
            "SteppingThreadGroup" => self.stepping_group(group),
            "UltimateThreadGroup" => self.ultimate_group(group),
            _ => self.plain_group(group),
        }
    }

    fn number(&self, text: &str) -> Option<f64> {
        self.evaluate(text).trim().parse::<f64>().ok()
    }

    fn threads_value(&self, text: &str) -> Value {
        let evaluated = self.evaluate(text);
        match evaluated.trim().parse::<u64>() {
            Ok(n) => json!(n),
            Err(_) => json!(evaluated.trim()),
        }
    }

    fn plain_group(&mut self, group: &Element) -> Load {
        let loops_prop = group.prop("ThreadGroup.main_controller");
        let loops_text = loops_prop.map_or("1", |p| p.string("LoopController.loops"));
        let forever = loops_prop.is_some_and(|p| {
            p.string("LoopController.continue_forever") == "true" && loops_text.trim() == "-1"
        }) || self.number(loops_text).is_some_and(|n| n < 0.0);
        let ramp_up = self
            .number(group.string("ThreadGroup.ramp_time"))
            .unwrap_or(0.0);
        let scheduler = group.flag("ThreadGroup.scheduler", false);
        let duration = self
            .number(group.string("ThreadGroup.duration"))
            .filter(|_| scheduler);
        let delay = self
            .number(group.string("ThreadGroup.delay"))
            .unwrap_or(0.0);
        if scheduler && delay > 0.0 {
            self.warn(
                group,
                "the startup delay is not supported: the group starts with the run",
            );
        }
        let iterations = if forever {
            None
        } else {
            Some(self.threads_value(loops_text))
        };
        Load {
            concurrency: self.threads_value(group.string("ThreadGroup.num_threads")),
            ramp_up,
            // JMeter's duration counts the ramp-up.
            hold_for: duration.map(|d| (d - ramp_up).max(0.0)),
            iterations,
            steps: None,
        }
    }

    /// The Concurrency Thread Group Taurus writes: target, ramp-up, steps, hold, in
    /// seconds or minutes.
    fn concurrency_group(&mut self, group: &Element) -> Load {
        let unit = if group.string("Unit").trim() == "M" {
            60.0
        } else {
            1.0
        };
        let time =
            |reader: &Self, name: &str| reader.number(group.string(name)).unwrap_or(0.0) * unit;
        let iterations = self
            .number(group.string("Iterations"))
            .filter(|n| *n > 0.0)
            .map(|n| json!(n as u64));
        let steps = self
            .number(group.string("Steps"))
            .filter(|n| *n > 0.0)
            .map(|n| n as u64);
        Load {
            concurrency: self.threads_value(group.string("TargetLevel")),
            ramp_up: time(self, "RampUp"),
            hold_for: Some(time(self, "Hold")),
            iterations,
            steps,
        }
    }

    /// The Stepping Thread Group: `Start users count` users every `Start users period`
    /// seconds up to the total, then `flighttime` seconds at full load.
    fn stepping_group(&mut self, group: &Element) -> Load {
        let total = self
            .number(group.string("ThreadGroup.num_threads"))
            .unwrap_or(1.0)
            .max(1.0);
        let per_step = self
            .number(group.string("Start users count"))
            .unwrap_or(total)
            .max(1.0);
        let period = self
            .number(group.string("Start users period"))
            .unwrap_or(0.0);
        let steps = (total / per_step).ceil();
        if self
            .number(group.string("Threads initial delay"))
            .unwrap_or(0.0)
            > 0.0
        {
            self.warn(
                group,
                "the initial delay is not supported: the group starts with the run",
            );
        }
        Load {
            concurrency: json!(total as u64),
            ramp_up: steps * period,
            // The last stair starts one period before the ramp-up ends: full load lasts
            // the flight time from there, as in JMeter.
            hold_for: Some(
                (self.number(group.string("flighttime")).unwrap_or(0.0) - period).max(0.0),
            ),
            iterations: None,
            steps: Some(steps as u64),
        }
    }

    /// The Ultimate Thread Group's schedule rows (threads, initial delay, startup time,
    /// hold, shutdown) as one ramp-up and hold: all rows' threads, the longest startup,
    /// the latest end.
    fn ultimate_group(&mut self, group: &Element) -> Load {
        let rows: Vec<Vec<f64>> = group
            .collection(None, "ultimatethreadgroupdata")
            .iter()
            .map(|row| {
                row.children
                    .iter()
                    .map(|c| self.number(&c.text).unwrap_or(0.0))
                    .collect()
            })
            .collect();
        let get = |row: &Vec<f64>, i: usize| row.get(i).copied().unwrap_or(0.0);
        let threads: f64 = rows.iter().map(|r| get(r, 0)).sum();
        let ramp_up = rows
            .iter()
            .map(|r| get(r, 1) + get(r, 2))
            .fold(0.0, f64::max);
        let end = rows
            .iter()
            .map(|r| get(r, 1) + get(r, 2) + get(r, 3))
            .fold(0.0, f64::max);
        if rows.len() > 1 || rows.iter().any(|r| get(r, 1) > 0.0) {
            self.warn(
                group,
                "its schedule is run as one ramp-up to all rows' threads and a hold until the last row ends",
            );
        }
        Load {
            concurrency: json!(threads.max(1.0) as u64),
            ramp_up,
            hold_for: Some((end - ramp_up).max(0.0)),
            iterations: None,
            steps: None,
        }
    }
}

/// Taurus's division of `concurrency` over groups of `threads` each: in proportion,
/// rounded half to even, at least one for a group that had any.
pub(super) fn divide(concurrency: u64, threads: &[u64]) -> Vec<u64> {
    let total: u64 = threads.iter().sum();
    threads
        .iter()
        .map(|&t| {
            if total == 0 || t == 0 {
                return 0;
            }
            // Python's round, as Taurus: halves go to the even number.
            let share = (concurrency as f64 * t as f64 / total as f64).round_ties_even() as u64;
            share.max(1)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::divide;

    #[test]
    fn concurrency_is_divided_in_proportion_with_one_thread_at_least() {
        assert_eq!(divide(10, &[1, 1]), [5, 5]);
        assert_eq!(divide(10, &[3, 1]), [8, 2]);
        assert_eq!(divide(2, &[100, 1, 1]), [2, 1, 1]);
        assert_eq!(divide(7, &[0, 5]), [0, 7]);
    }
}
