//! PostgreSQL's valid range for each setting PgTune recommends. PgTune's arithmetic can
//! leave it (`maintenance_work_mem = 64kB` for 1 MB of RAM; `max_connections = 999999`),
//! and PostgreSQL then refuses to start. Such a value is clamped to the range, and the
//! clamp is said in the output; every other value stays exactly PgTune's.
//!
//! The ranges are PostgreSQL's own (`postgres --describe-config`, pg_settings' min_val and
//! max_val, converted to kB for memory): the same in every version PgTune targets.

use serde::Serialize;

use crate::recommend::{Setting, Value};

/// One page (block) of PostgreSQL's, kB.
const PAGE_KB: u64 = 8;
/// INT_MAX, the largest value of an integer setting.
const INT_MAX: u64 = 2_147_483_647;
/// PostgreSQL's MAX_BACKENDS (2^18 - 1): connections and background processes together.
const MAX_BACKENDS: u64 = 262_143;
/// Twice the default 16 MB WAL segment, in kB: the least min_wal_size and max_wal_size.
const TWO_WAL_SEGMENTS_KB: u64 = 32 * 1024;

/// The range of `name`, in the unit of its [`Value`] (kB for memory), when PostgreSQL
/// limits it more than PgTune's rules can reach.
fn range(name: &str) -> Option<(u64, u64)> {
    Some(match name {
        "max_connections" | "autovacuum_max_workers" => (1, MAX_BACKENDS),
        "max_worker_processes" | "max_wal_senders" => (0, MAX_BACKENDS),
        "max_parallel_workers_per_gather"
        | "max_parallel_workers"
        | "max_parallel_maintenance_workers" => (0, 1024),
        "io_workers" => (1, 32),
        "effective_io_concurrency" => (0, 1000),
        "default_statistics_target" => (1, 10_000),
        // 16 buffers.
        "shared_buffers" => (16 * PAGE_KB, INT_MAX / 2 * PAGE_KB),
        "effective_cache_size" => (PAGE_KB, INT_MAX * PAGE_KB),
        "wal_buffers" => (PAGE_KB, 262_143 * PAGE_KB),
        "work_mem" => (64, INT_MAX),
        "maintenance_work_mem" | "autovacuum_work_mem" => (1024, INT_MAX),
        // Set in MB: INT_MAX MB.
        "min_wal_size" | "max_wal_size" => (TWO_WAL_SEGMENTS_KB, INT_MAX * 1024),
        _ => return None,
    })
}

/// A value PgTune computed that PostgreSQL would refuse, and what was written instead.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Clamp {
    /// The setting.
    pub name: &'static str,
    /// PgTune's value.
    pub pgtune: Value,
    /// The value written: the nearest PostgreSQL accepts.
    pub value: Value,
    /// Whether PgTune's value was under PostgreSQL's minimum (else over its maximum).
    pub below_minimum: bool,
}

impl Clamp {
    /// `maintenance_work_mem: PgTune's 64kB is below PostgreSQL's minimum; clamped to 1MB`.
    pub fn sentence(&self) -> String {
        let bound = if self.below_minimum {
            "below PostgreSQL's minimum"
        } else {
            "above PostgreSQL's maximum"
        };
        format!(
            "{}: PgTune's {} is {bound}; clamped to {}",
            self.name, self.pgtune, self.value
        )
    }
}

/// Brings every setting into PostgreSQL's range, and max_connections under what the
/// process limit leaves beside the background processes; returns what was changed.
pub fn clamp(settings: &mut [Setting]) -> Vec<Clamp> {
    let mut clamps = Vec::new();
    for setting in settings.iter_mut() {
        let Some((low, high)) = range(setting.name) else {
            continue;
        };
        if let Some(clamp) = clamp_one(setting, low, high) {
            clamps.push(clamp);
        }
    }
    if let Some(mut clamp) = fit_backends(settings) {
        // Say PgTune's own value, not the one the range already lowered it to.
        if let Some(first) = clamps.iter().position(|c| c.name == clamp.name) {
            clamp.pgtune = clamps.remove(first).pgtune;
        }
        clamps.push(clamp);
    }
    clamps
}

fn clamp_one(setting: &mut Setting, low: u64, high: u64) -> Option<Clamp> {
    let (amount, rebuild): (u64, fn(u64) -> Value) = match setting.value {
        Value::Kb(kb) => (kb, Value::Kb),
        Value::Number(n) => (n, Value::Number),
        Value::Text(_) => return None,
    };
    let clamped = amount.clamp(low, high);
    if clamped == amount {
        return None;
    }
    let pgtune = setting.value;
    setting.value = rebuild(clamped);
    Some(Clamp {
        name: setting.name,
        pgtune,
        value: setting.value,
        below_minimum: amount < low,
    })
}

/// PostgreSQL refuses to start when max_connections + autovacuum_max_workers + 1 +
/// max_worker_processes + max_wal_senders exceeds MAX_BACKENDS: max_connections gives way.
fn fit_backends(settings: &mut [Setting]) -> Option<Clamp> {
    let number = |name: &str, default: u64| {
        settings
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| match s.value {
                Value::Number(n) => Some(n),
                _ => None,
            })
            .unwrap_or(default)
    };
    let others = number("autovacuum_max_workers", 3)
        + 1
        + number("max_worker_processes", 8)
        + number("max_wal_senders", 10);
    let room = MAX_BACKENDS.saturating_sub(others).max(1);
    let connections = settings.iter_mut().find(|s| s.name == "max_connections")?;
    let Value::Number(wanted) = connections.value else {
        return None;
    };
    if wanted <= room {
        return None;
    }
    connections.value = Value::Number(room);
    Some(Clamp {
        name: "max_connections",
        pgtune: Value::Number(wanted),
        value: connections.value,
        below_minimum: false,
    })
}
