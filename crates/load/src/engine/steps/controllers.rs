//! The controllers of a program (Taurus logic blocks, JMeter's logic controllers): if/else,
//! loop, while, foreach, once only, transaction, the picking ones (interleave, random,
//! switch, random order) and the throughput controller, each ending its flow as `mod.rs`'s
//! steps do.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use super::{Flow, LAST_SAMPLE_OK, OpenTransaction, ProgramUser};
use crate::condition;
use crate::plan::{Block, LoopCount, PickMode, Step, ThrottleLimit};
use crate::stats::{ErrorKind, Sample};
use crate::variables::{MAX_VARIABLE_BYTES, Template};

impl<'a> ProgramUser<'a> {
    /// An If Controller: `then` when the condition holds; JMeter's else is a second If
    /// Controller on `!(condition)`, evaluated after it.
    pub(super) async fn if_else(
        &mut self,
        condition: &Template,
        then: &'a [Step],
        otherwise: &'a [Step],
    ) -> Flow {
        let text = condition.render(&mut self.variables);
        if self.condition(&text) == Some(true) {
            let flow = self.run_steps(then).await;
            if flow != Flow::Next {
                return flow;
            }
        }
        let text = condition.render(&mut self.variables);
        if !otherwise.is_empty() && self.condition(&text) == Some(false) {
            return self.run_steps(otherwise).await;
        }
        Flow::Next
    }

    /// A loop's passes: `None` for ever (a negative count in a variable too, as JMeter);
    /// a variable that is not a number makes none.
    pub(super) fn loop_passes(&mut self, count: &LoopCount) -> Option<u64> {
        match count {
            LoopCount::Times(n) => Some(*n),
            LoopCount::Forever => None,
            LoopCount::Variable(t) => {
                let text = t.render(&mut self.variables);
                match text.trim().parse::<i64>() {
                    Ok(n) if n < 0 => None,
                    Ok(n) => Some(n.unsigned_abs()),
                    Err(_) => Some(0),
                }
            }
        }
    }

    /// A While Controller: blank or `LAST` goes on while the last sample passed, else
    /// until the condition renders `false`.
    pub(super) async fn while_loop(&mut self, condition: &Template, body: &'a Block) -> Flow {
        self.repeat(body, None, |user| {
            let text = condition.render(&mut user.variables);
            let text = text.trim();
            if text.is_empty() || text == "LAST" {
                user.variables
                    .values
                    .get(LAST_SAMPLE_OK)
                    .map(String::as_str)
                    != Some("false")
            } else {
                !text.eq_ignore_ascii_case("false")
            }
        })
        .await
    }

    /// A ForEach Controller: `variable` takes `input_1`, `input_2`, … until one is unset.
    pub(super) async fn foreach(&mut self, variable: &str, input: &str, body: &'a Block) -> Flow {
        let mut pass = 0u64;
        self.repeat(body, None, |user| {
            pass += 1;
            let next = user
                .variables
                .values
                .get(&format!("{input}_{pass}"))
                .cloned();
            next.map(|value| user.variables.values.insert(variable.to_owned(), value))
                .is_some()
        })
        .await
    }

    /// A Once Only Controller: its steps on the first pass of this user (or of the loop
    /// around it, which resets it).
    pub(super) async fn once(&mut self, id: usize, body: &'a [Step]) -> Flow {
        match self.once_done.get_mut(id) {
            Some(done) if !*done => {
                *done = true;
                self.run_steps(body).await
            }
            _ => Flow::Next,
        }
    }

    /// One of `choices`, as `mode` picks it (or all of them shuffled).
    pub(super) async fn pick(
        &mut self,
        id: usize,
        mode: &PickMode,
        choices: &'a [Vec<Step>],
    ) -> Flow {
        let count = choices.len().max(1);
        let index = match mode {
            PickMode::Interleave => self.pick_next.get_mut(id).map_or(0, |next| {
                let index = *next % count;
                *next = index + 1;
                index
            }),
            PickMode::Random => {
                usize::try_from(self.variables.random_below(count as u64)).unwrap_or(0)
            }
            PickMode::Switch { value, names } => {
                let value = value.render(&mut self.variables);
                match switch_choice(value.trim(), names) {
                    Some(index) => index,
                    None => return Flow::Next,
                }
            }
            PickMode::Shuffled => return self.run_shuffled(choices).await,
        };
        match choices.get(index) {
            Some(steps) => self.run_steps(steps).await,
            None => Flow::Next,
        }
    }

    /// A Throughput Controller: its steps on the passes its limit allows.
    pub(super) async fn throttle(
        &mut self,
        id: usize,
        limit: ThrottleLimit,
        per_user: bool,
        body: &'a [Step],
    ) -> Flow {
        if self.throttle_allows(id, limit, per_user) {
            self.run_steps(body).await
        } else {
            Flow::Next
        }
    }

    /// `set-variables`: each value rendered, within the size a variable may grow to.
    pub(super) fn set_variables(&mut self, pairs: &[(String, Template)]) -> Flow {
        for (name, value) in pairs {
            match value.try_render(&mut self.variables, MAX_VARIABLE_BYTES) {
                Ok(rendered) => {
                    self.variables.values.insert(name.clone(), rendered);
                }
                Err(too) => return self.give_up_on_growth(name, too.limit),
            }
        }
        Flow::Next
    }

    /// Whether this pass through Throughput Controller `id` runs its steps, counting it.
    pub(super) fn throttle_allows(
        &mut self,
        id: usize,
        limit: ThrottleLimit,
        per_user: bool,
    ) -> bool {
        if per_user {
            let Some((reached, runs)) = self.throttled.get_mut(id) else {
                return false;
            };
            *reached += 1;
            let allowed = limit.allows(*reached, *runs);
            *runs += u64::from(allowed);
            return allowed;
        }
        let Some((reached, runs)) = self.state.throttles.get(id) else {
            return false;
        };
        let reached = reached.fetch_add(1, Ordering::Relaxed) + 1;
        // Taken only when allowed: concurrent users cannot both take the last run.
        runs.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |done| {
            limit.allows(reached, done).then_some(done + 1)
        })
        .is_ok()
    }

    /// Every choice once, in a random order (Fisher-Yates with the user's random source).
    pub(super) async fn run_shuffled(&mut self, choices: &'a [Vec<Step>]) -> Flow {
        let mut order: Vec<usize> = (0..choices.len()).collect();
        for i in (1..order.len()).rev() {
            let j = usize::try_from(self.variables.random_below(i as u64 + 1)).unwrap_or(0);
            order.swap(i, j);
        }
        for index in order {
            if self.should_end() {
                return Flow::End;
            }
            let flow = self.run_steps(&choices[index]).await;
            if flow != Flow::Next {
                return flow;
            }
        }
        Flow::Next
    }

    /// A condition's verdict; `None` for one the evaluator cannot read (JMeter: false
    /// for both the then and the else branch), logged once per user.
    pub(super) fn condition(&mut self, text: &str) -> Option<bool> {
        match condition::evaluate(text) {
            Ok(verdict) => Some(verdict),
            Err(why) => {
                tracing::debug!(condition = text, why, "if condition not evaluated; false");
                None
            }
        }
    }

    /// Runs `body` while `go_on` says so (checked before each pass), at most `passes`
    /// times; its `once` blocks run again on this entry.
    pub(super) async fn repeat(
        &mut self,
        body: &'a Block,
        passes: Option<u64>,
        mut go_on: impl FnMut(&mut Self) -> bool + Send,
    ) -> Flow {
        for id in &body.onces {
            if let Some(done) = self.once_done.get_mut(*id) {
                *done = false;
            }
        }
        let mut pass = 0u64;
        while passes.is_none_or(|n| pass < n) && go_on(self) {
            let flow = self.run_steps(&body.steps).await;
            if flow != Flow::Next {
                return flow;
            }
            if self.should_end() {
                return Flow::End;
            }
            pass += 1;
            tokio::task::yield_now().await;
        }
        Flow::Next
    }

    pub(super) async fn transaction(
        &mut self,
        label: usize,
        force_parent: bool,
        include_timers: bool,
        body: &'a [Step],
    ) -> Flow {
        self.transactions.push(OpenTransaction {
            started: Instant::now(),
            timers: Duration::ZERO,
            samples: 0,
            failed: 0,
            bytes: 0,
            force_parent,
        });
        let flow = self.run_steps(body).await;
        let Some(open) = self.transactions.pop() else {
            return flow;
        };
        let ended = Instant::now();
        let mut elapsed = ended - open.started;
        if !include_timers {
            elapsed = elapsed.saturating_sub(open.timers);
        }
        let error = (open.failed > 0).then(|| {
            let message = format!(
                "Number of samples in transaction : {}, number of failing samples : {}",
                open.samples, open.failed
            );
            (ErrorKind::Assertion, Arc::from(message))
        });
        let sample = Sample {
            label,
            due: open
                .started
                .saturating_duration_since(self.shared.run_start),
            response_time: elapsed,
            service_time: elapsed,
            latency: elapsed,
            connect_time: Duration::ZERO,
            tls_time: Duration::ZERO,
            status: if error.is_none() { 200 } else { 0 },
            bytes: open.bytes,
            error,
            check_time: Duration::ZERO,
        };
        self.record(sample, ended);
        flow
    }
}

/// The child a Switch Controller runs for `value`, as JMeter chooses it: an index (out of
/// range or blank: the first), else the child of that name, else one named `default` in
/// any case; `None`: no child runs.
fn switch_choice(value: &str, names: &[String]) -> Option<usize> {
    if value.is_empty() {
        return (!names.is_empty()).then_some(0);
    }
    if let Ok(index) = value.parse::<i64>() {
        let index = usize::try_from(index).ok().filter(|i| *i < names.len());
        return index.or((!names.is_empty()).then_some(0));
    }
    names
        .iter()
        .position(|name| name == value)
        .or_else(|| names.iter().position(|n| n.eq_ignore_ascii_case("default")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_switch_value_chooses_as_jmeters_switch_controller() {
        let names: Vec<String> = ["A", "Named", "DEFAULT"].map(str::to_owned).to_vec();
        let choose = |value: &str| switch_choice(value, &names);
        assert_eq!(
            [
                choose("1"),
                choose(""),
                choose("9"),
                choose("-1"),
                choose("Named")
            ],
            [Some(1), Some(0), Some(0), Some(0), Some(1)]
        );
        // No such name: the child named default (any case); without one, none.
        assert_eq!(choose("other"), Some(2));
        assert_eq!(switch_choice("other", &names[..2]), None);
        assert_eq!(switch_choice("", &[]), None);
    }
}
