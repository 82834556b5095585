//! PgTune's rules: from a [`TuneInput`] to the settings and warnings it recommends.
//! Memory is computed in whole kB (1 kB = 1024 bytes) throughout.

use std::fmt;

use serde::Serialize;

use crate::input::{DataSize, DbType, Os, Storage, TuneInput};
use crate::limits::{Clamp, clamp};

const MB: u64 = 1024;
const GB: u64 = 1024 * MB;
/// Windows PostgreSQL up to 17 fails on 2 GB exactly for these settings; PgTune uses 1 MB less.
const WINDOWS_MEMORY_CAP: u64 = 2 * GB - MB;
/// PostgreSQL's default `max_worker_processes`, used when no parallel settings are emitted.
const DEFAULT_WORKER_PROCESSES: u64 = 8;

/// A setting's value, printed as PgTune prints it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    /// An amount of memory in kB, printed in the largest unit that divides it (`4GB`, `983kB`).
    Kb(u64),
    /// A whole number.
    Number(u64),
    /// A decimal or a word, printed as is (`0.9`, `try`).
    Text(&'static str),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Kb(kb) if kb % GB == 0 => write!(f, "{}GB", kb / GB),
            Self::Kb(kb) if kb % MB == 0 => write!(f, "{}MB", kb / MB),
            Self::Kb(kb) => write!(f, "{kb}kB"),
            Self::Number(n) => write!(f, "{n}"),
            Self::Text(text) => f.write_str(text),
        }
    }
}

impl Serialize for Value {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// One `name = value` line.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Setting {
    /// The PostgreSQL parameter.
    pub name: &'static str,
    /// Its recommended value.
    pub value: Value,
}

/// Everything PgTune shows for an input.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recommendation {
    /// The input it was computed for.
    pub input: TuneInput,
    /// Warning lines after the `WARNING` heading; empty strings separate paragraphs.
    pub warnings: Vec<String>,
    /// The settings, in PgTune's order, each within PostgreSQL's valid range.
    pub settings: Vec<Setting>,
    /// PgTune's values that PostgreSQL would refuse, clamped into its range.
    pub clamps: Vec<Clamp>,
}

/// Computes PgTune's recommendation for `input`.
pub fn recommend(input: &TuneInput) -> Recommendation {
    let ram = input.total_memory.kb();
    let version = input.db_version;
    let windows_cap = input.os_type == Os::Windows && version <= 17;
    let cpus = input.cpu_num.map(u64::from);
    let connections = input
        .connection_num
        .map_or_else(|| default_connections(input.db_type), u64::from);
    let shared_buffers = match input.db_type {
        DbType::Desktop => ram / 16,
        _ => ram / 4,
    };
    let maintenance_work_mem = maintenance_work_mem(input, ram, windows_cap);
    let parallel = cpus.filter(|&n| n >= 4);

    let mut settings = Vec::with_capacity(32);
    let mut set = |name, value| settings.push(Setting { name, value });
    set("max_connections", Value::Number(connections));
    set("shared_buffers", Value::Kb(shared_buffers));
    set(
        "effective_cache_size",
        Value::Kb(match input.db_type {
            DbType::Desktop => ram / 4,
            _ => ram * 3 / 4,
        }),
    );
    set("maintenance_work_mem", Value::Kb(maintenance_work_mem));
    set("checkpoint_completion_target", Value::Text("0.9"));
    set("wal_buffers", Value::Kb(wal_buffers(shared_buffers)));
    set(
        "default_statistics_target",
        Value::Number(if input.db_type == DbType::Dw {
            500
        } else {
            100
        }),
    );
    set("random_page_cost", Value::Text(random_page_cost(input)));
    if input.os_type == Os::Linux {
        let concurrency = match input.hd_type {
            Storage::Hdd => 2,
            Storage::Ssd => 200,
            Storage::San => 300,
            Storage::Nvme => 1000,
        };
        set("effective_io_concurrency", Value::Number(concurrency));
    }
    let workers = parallel.unwrap_or(DEFAULT_WORKER_PROCESSES);
    let work_mem = work_mem(
        input,
        ram - shared_buffers,
        connections + workers,
        windows_cap,
    );
    set("work_mem", Value::Kb(work_mem));
    let huge_pages = input.os_type != Os::Mac && shared_buffers >= 2 * GB;
    set(
        "huge_pages",
        Value::Text(if huge_pages { "try" } else { "off" }),
    );
    if version >= 12 && matches!(input.db_type, DbType::Web | DbType::Oltp | DbType::Mixed) {
        set("jit", Value::Text("off"));
    }
    set(
        "wal_compression",
        Value::Text(if version >= 15 { "lz4" } else { "on" }),
    );
    match cpus {
        Some(n) if n >= 32 => set("autovacuum_max_workers", Value::Number(5)),
        Some(n) if n >= 16 => set("autovacuum_max_workers", Value::Number(4)),
        _ => {}
    }
    if maintenance_work_mem >= 2 * GB {
        let cap = if windows_cap {
            WINDOWS_MEMORY_CAP
        } else {
            2 * GB
        };
        set("autovacuum_work_mem", Value::Kb(cap));
    }
    let io_uring = version >= 18 && input.os_type == Os::Linux;
    if version >= 18 {
        set(
            "io_method",
            Value::Text(if io_uring { "io_uring" } else { "worker" }),
        );
        if let Some(n) = cpus.filter(|_| !io_uring) {
            let io_workers = (n / 4).clamp(3, 32);
            if io_workers > 3 {
                set("io_workers", Value::Number(io_workers));
            }
        }
    }
    let (min_wal, max_wal) = match input.db_type {
        DbType::Web | DbType::Mixed => (GB, 4 * GB),
        DbType::Oltp => (2 * GB, 8 * GB),
        DbType::Dw => (4 * GB, 16 * GB),
        DbType::Desktop => (100 * MB, 2 * GB),
    };
    set("min_wal_size", Value::Kb(min_wal));
    set("max_wal_size", Value::Kb(max_wal));
    if let Some(n) = parallel {
        let half = n.div_ceil(2);
        let per_gather = if input.db_type == DbType::Dw {
            half
        } else {
            half.min(4)
        };
        set("max_worker_processes", Value::Number(n));
        set("max_parallel_workers_per_gather", Value::Number(per_gather));
        set("max_parallel_workers", Value::Number(n));
        if version >= 11 {
            set(
                "max_parallel_maintenance_workers",
                Value::Number(half.min(4)),
            );
        }
    }
    if input.db_type == DbType::Desktop {
        set("wal_level", Value::Text("minimal"));
        set("max_wal_senders", Value::Number(0));
    }

    let clamps = clamp(&mut settings);
    Recommendation {
        input: *input,
        warnings: warnings(input, ram, io_uring),
        settings,
        clamps,
    }
}

fn default_connections(db_type: DbType) -> u64 {
    match db_type {
        DbType::Web => 200,
        DbType::Oltp => 300,
        DbType::Dw => 40,
        DbType::Desktop => 20,
        DbType::Mixed => 100,
    }
}

fn maintenance_work_mem(input: &TuneInput, ram: u64, windows_cap: bool) -> u64 {
    let value = match input.db_type {
        DbType::Dw => ram / 8,
        _ => ram / 16,
    };
    let limit = if windows_cap { 2 * GB } else { 8 * GB };
    match value >= limit {
        true if windows_cap => WINDOWS_MEMORY_CAP,
        true => limit,
        false => value,
    }
}

/// 3 % of shared_buffers, capped at 16 MB, rounded up to 16 MB from just above 14 MB, at least 32 kB.
fn wal_buffers(shared_buffers: u64) -> u64 {
    let value = (3 * shared_buffers / 100).min(16 * MB);
    if value > 14 * MB {
        16 * MB
    } else {
        value.max(32)
    }
}

fn random_page_cost(input: &TuneInput) -> &'static str {
    if input.data_size == DataSize::LessThanRam {
        "1.1"
    } else if input.hd_type == Storage::Hdd || input.db_type == DbType::Dw {
        "4"
    } else {
        "1.1"
    }
}

/// `(RAM - shared_buffers) / ((connections + workers) * 3)` shared out by workload, then
/// adjusted for the data size. Floating point on purpose: PgTune computes it that way.
fn work_mem(input: &TuneInput, free: u64, sessions: u64, windows_cap: bool) -> u64 {
    let per_session = free as f64 / (sessions * 3) as f64;
    let share = match input.db_type {
        DbType::Web | DbType::Oltp => per_session,
        DbType::Dw | DbType::Mixed => per_session / 2.0,
        DbType::Desktop => per_session / 6.0,
    };
    let mut value = share.floor();
    match input.data_size {
        DataSize::LessThanRam => value = (value * 1.3).floor(),
        DataSize::MoreThanRam => value = (value * 0.9).floor(),
        DataSize::AboutRam => {}
    }
    // The float is a whole, non-negative number of kB here, far below 2^53.
    let value = (value as u64).max(4 * MB);
    if windows_cap {
        value.min(WINDOWS_MEMORY_CAP)
    } else {
        value
    }
}

fn warnings(input: &TuneInput, ram: u64, io_uring: bool) -> Vec<String> {
    let mut paragraphs: Vec<Vec<String>> = Vec::new();
    if ram < 256 * MB {
        paragraphs.push(lines(&[
            "this tool not being optimal",
            "for low memory systems",
        ]));
    } else if ram > 100 * GB {
        paragraphs.push(lines(&[
            "this tool not being optimal",
            "for very high memory systems",
        ]));
    }
    if input.db_version >= 15 {
        paragraphs.push(lines(&[
            "wal_compression = lz4 requires PostgreSQL",
            "to be compiled with --with-lz4",
        ]));
    }
    if io_uring {
        paragraphs.push(lines(&[
            "io_method = io_uring requires PostgreSQL",
            "to be compiled with --with-liburing",
        ]));
    }
    if input.db_type == DbType::Dw
        && input.hd_type != Storage::Hdd
        && input.data_size != DataSize::LessThanRam
    {
        let drives = match input.hd_type {
            Storage::Nvme => "NVMe drives",
            Storage::San => "SAN storage",
            _ => "SSDs",
        };
        paragraphs.push(vec![
            format!("Cost parameters for Data Warehouses on {drives} are left at defaults"),
            "to avoid catastrophic index scan selections".to_owned(),
            "Monitor query planner behavior and adjust random_page_cost if necessary".to_owned(),
        ]);
    }
    paragraphs.join(&String::new())
}

fn lines(texts: &[&str]) -> Vec<String> {
    texts.iter().map(|&t| t.to_owned()).collect()
}
