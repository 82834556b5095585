//! `peregrine tune`: gathers PgTune's inputs from flags and, with `--detect`, from this
//! host; the recommendation itself is the `tune` crate's.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};
use peregrine_store::{DatabaseUrl, PostgresAdmin};
use peregrine_tune::{
    DataSize, InputError, Memory, MemoryUnit, Os, Recommendation, TuneInput, recommend,
};
use serde::Serialize;

use clap::Parser;

use crate::cli::{Cli, DataSizeArg, TuneArgs, TuneFormat};

/// PgTune's default version on its form.
const DEFAULT_VERSION: u32 = 18;

/// Runs `peregrine tune`.
pub async fn run(args: TuneArgs) -> anyhow::Result<()> {
    let recommendation = recommend(&input(&args).await?);
    let text = render(&recommendation, args.format)?;
    match &args.write {
        None => println!("{text}"),
        Some(path) => {
            std::fs::write(path, format!("{text}\n"))
                .with_context(|| format!("cannot write {}", path.display()))?;
            println!(
                "{}",
                how_to_load(path, args.format, recommendation.settings.len())
            );
        }
    }
    Ok(())
}

/// PgTune's configuration text for this host, exactly as `peregrine tune --detect` prints it.
pub async fn detected_conf_text(database_url: Option<&str>) -> anyhow::Result<String> {
    let mut command = vec!["peregrine", "tune", "--detect"];
    command.extend(
        database_url
            .map(|url| ["--database-url", url])
            .into_iter()
            .flatten(),
    );
    let crate::cli::Command::Tune(args) = Cli::try_parse_from(command)?.command else {
        bail!("`peregrine tune --detect` did not parse as the tune command");
    };
    Ok(recommend(&input(&args).await?).conf_text())
}

/// PgTune's input from the flags, filled in from this host with `--detect`.
async fn input(args: &TuneArgs) -> anyhow::Result<TuneInput> {
    let detected = if args.detect {
        Detected::from_host(args.database_url.as_deref()).await
    } else {
        Detected::default()
    };
    let input = TuneInput {
        db_version: args
            .db_version
            .or(detected.version)
            .unwrap_or(DEFAULT_VERSION),
        os_type: args.os.or(detected.os).unwrap_or(Os::Linux),
        db_type: args.db_type,
        total_memory: match args.memory.or(detected.memory) {
            Some(memory) => memory,
            None => bail!("--memory is required (e.g. --memory 16GB), or use --detect"),
        },
        cpu_num: args.cpus.or(detected.cpus),
        connection_num: args.connections,
        hd_type: args.storage,
        data_size: match args.data_size {
            DataSizeArg::LessThanRam => DataSize::LessThanRam,
            DataSizeArg::AboutRam => DataSize::AboutRam,
            DataSizeArg::MoreThanRam => DataSize::MoreThanRam,
        },
    };
    input
        .validate()
        .map_err(|err| anyhow::anyhow!("{}: {err}", flag_of(&err)))
}

fn render(recommendation: &Recommendation, format: TuneFormat) -> anyhow::Result<String> {
    Ok(match format {
        TuneFormat::Conf => recommendation.conf_text(),
        TuneFormat::AlterSystem => recommendation.alter_system_text(),
        TuneFormat::Json => serde_json::to_string_pretty(&JsonReport::from(recommendation))?,
    })
}

/// The `--format json` document.
#[derive(Serialize)]
struct JsonReport<'a> {
    input: &'a TuneInput,
    warnings: Vec<&'a str>,
    settings: &'a [peregrine_tune::Setting],
    conf_text: String,
}

impl<'a> From<&'a Recommendation> for JsonReport<'a> {
    fn from(recommendation: &'a Recommendation) -> Self {
        Self {
            input: &recommendation.input,
            warnings: recommendation
                .warnings
                .iter()
                .map(String::as_str)
                .filter(|w| !w.is_empty())
                .collect(),
            settings: &recommendation.settings,
            conf_text: recommendation.conf_text(),
        }
    }
}

fn how_to_load(path: &Path, format: TuneFormat, settings: usize) -> String {
    let shown = path.display();
    match format {
        TuneFormat::AlterSystem => format!(
            "wrote {settings} ALTER SYSTEM statements to {shown}; apply them with \
             `psql -f {shown}` as a superuser, then restart PostgreSQL"
        ),
        _ => format!(
            "wrote {settings} settings to {shown}; load it from postgresql.conf with \
             `include_if_exists = '{shown}'` (or put it in the conf.d directory), then restart \
             PostgreSQL (shared_buffers, huge_pages and max_connections need a restart)"
        ),
    }
}

/// The flag a validation error is about.
fn flag_of(err: &InputError) -> &'static str {
    match err {
        InputError::Version(_) => "--db-version",
        InputError::Memory(_) => "--memory",
        InputError::Cpus(_) => "--cpus",
        InputError::Connections(_) => "--connections",
        InputError::UnknownChoice { .. } => "input",
    }
}

/// What `--detect` found; anything it could not find stays `None`.
#[derive(Debug, Default)]
struct Detected {
    version: Option<u32>,
    os: Option<Os>,
    memory: Option<Memory>,
    cpus: Option<u32>,
}

impl Detected {
    async fn from_host(database_url: Option<&str>) -> Self {
        let detected = Self {
            version: match database_url {
                Some(url) => server_version(url).await,
                None => installed_version(),
            },
            os: match std::env::consts::OS {
                "linux" => Some(Os::Linux),
                "windows" => Some(Os::Windows),
                "macos" => Some(Os::Mac),
                _ => None,
            },
            memory: total_memory(),
            cpus: std::thread::available_parallelism()
                .ok()
                .and_then(|n| u32::try_from(n.get()).ok()),
        };
        tracing::debug!(?detected, "detected host");
        detected
    }
}

/// The major version of the server at `url`, if it answers.
async fn server_version(url: &str) -> Option<u32> {
    let Ok(DatabaseUrl::Postgres(config)) = url.parse::<DatabaseUrl>() else {
        tracing::warn!("--database-url is not a PostgreSQL URL; not asking it for a version");
        return None;
    };
    let store = PostgresAdmin::new(*config);
    match store.server_major_version().await {
        Ok(version) => Some(version),
        Err(err) => {
            tracing::warn!(error = %err, "cannot ask the database for its version");
            None
        }
    }
}

/// The major version of `postgres --version`, found on PATH or through `pg_config --bindir`.
fn installed_version() -> Option<u32> {
    let bindir = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned());
    let candidates = ["postgres".to_owned()]
        .into_iter()
        .chain(bindir.map(|dir| format!("{dir}/postgres")));
    candidates
        .filter_map(|program| Command::new(program).arg("--version").output().ok())
        .find(|out| out.status.success())
        .and_then(|out| parse_postgres_version(&String::from_utf8_lossy(&out.stdout)))
}

/// `postgres (PostgreSQL) 15.18 (Debian …)` -> 15.
fn parse_postgres_version(text: &str) -> Option<u32> {
    let version = text.split(')').nth(1)?.split_whitespace().next()?;
    version.split('.').next()?.parse().ok()
}

/// Total memory from /proc/meminfo, in whole GB (rounded, since MemTotal is a little under
/// the installed amount) or in MB below 1 GB.
fn total_memory() -> Option<Memory> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(memory_from_kb(kb))
}

fn memory_from_kb(kb: u64) -> Memory {
    const GB: u64 = 1 << 20;
    if kb >= GB {
        Memory {
            amount: (kb + GB / 2) / GB,
            unit: MemoryUnit::Gb,
        }
    } else {
        Memory {
            amount: (kb / 1024).max(1),
            unit: MemoryUnit::Mb,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_version_text_is_parsed() {
        let text = "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n";
        assert_eq!(parse_postgres_version(text), Some(15));
        assert_eq!(
            parse_postgres_version("postgres (PostgreSQL) 18beta1"),
            None
        );
        assert_eq!(parse_postgres_version("garbage"), None);
    }

    #[test]
    fn memory_is_rounded_to_whole_gigabytes() {
        let gb = |amount| Memory {
            amount,
            unit: MemoryUnit::Gb,
        };
        assert_eq!(memory_from_kb(24_620_000), gb(23));
        assert_eq!(memory_from_kb(25_000_000), gb(24));
        assert_eq!(memory_from_kb(1 << 20), gb(1));
        assert_eq!(
            memory_from_kb(524_288),
            Memory {
                amount: 512,
                unit: MemoryUnit::Mb
            }
        );
    }
}
