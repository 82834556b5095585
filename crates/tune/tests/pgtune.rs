//! PgTune's outputs, byte for byte: the recorded examples from its live site, and a case for
//! each threshold and edge its rules have. Over 600 lines: one case per rule and edge, each
//! with its expected configuration written out.

use peregrine_tune::{
    DataSize, DbType, InputError, Memory, MemoryUnit, Os, Storage, TuneInput, recommend,
};
use serde_json::Value;

fn input(text: &str) -> TuneInput {
    // "VERSION OS TYPE MEMORY CPUS CONNECTIONS STORAGE [DATA-SIZE]", "-" for "not given".
    let parts: Vec<&str> = text.split_whitespace().collect();
    let optional = |s: &str| (s != "-").then(|| s.parse().unwrap_or_else(|e| panic!("{s}: {e}")));
    TuneInput {
        db_version: parts[0].parse().unwrap_or_else(|e| panic!("{e}")),
        os_type: parts[1].parse().unwrap_or_else(|e| panic!("{e}")),
        db_type: parts[2].parse().unwrap_or_else(|e| panic!("{e}")),
        total_memory: parts[3].parse().unwrap_or_else(|e| panic!("{e}")),
        cpu_num: optional(parts[4]),
        connection_num: optional(parts[5]),
        hd_type: parts[6].parse().unwrap_or_else(|e| panic!("{e}")),
        data_size: parts.get(7).map_or(DataSize::AboutRam, |s| {
            s.parse().unwrap_or_else(|e| panic!("{e}"))
        }),
    }
    .validate()
    .unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// The value of `name` in the recommendation for `text`, or `None` when the line is left out.
fn setting(text: &str, name: &str) -> Option<String> {
    let recommendation = recommend(&input(text));
    recommendation
        .settings
        .iter()
        .find(|s| s.name == name)
        .map(|s| s.value.to_string())
}

#[test]
fn every_recorded_example_matches_byte_for_byte() {
    let text = include_str!("data/pgtune-examples.json");
    let examples: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}"));
    let cases = examples["cases"].as_array().cloned().unwrap_or_default();
    assert!(cases.len() >= 12);
    for case in cases {
        let given = &case["input"];
        let key = |k: &str| given[k].as_str().unwrap_or_default().to_owned();
        let count = |k: &str| given[k].as_u64().map(|n| n as u32);
        let input = TuneInput {
            db_version: count("db_version").unwrap_or_default(),
            os_type: key("os_type").parse().unwrap_or_else(|e| panic!("{e}")),
            db_type: key("db_type").parse().unwrap_or_else(|e| panic!("{e}")),
            total_memory: Memory {
                amount: given["total_memory"].as_u64().unwrap_or_default(),
                unit: key("total_memory_unit")
                    .parse()
                    .unwrap_or_else(|e| panic!("{e}")),
            },
            cpu_num: count("cpu_num"),
            connection_num: count("connection_num"),
            hd_type: key("hd_type").parse().unwrap_or_else(|e| panic!("{e}")),
            data_size: DataSize::AboutRam,
        }
        .validate()
        .unwrap_or_else(|e| panic!("{e}"));
        let expected = case["conf_text"].as_str().unwrap_or_default();
        assert_eq!(
            recommend(&input).conf_text(),
            expected,
            "case {}",
            case["id"]
        );
    }
}

#[test]
fn memory_prints_in_the_largest_exact_unit() {
    assert_eq!(
        setting("17 linux web 6GB - - ssd", "shared_buffers").as_deref(),
        Some("1536MB")
    );
    assert_eq!(
        setting("17 linux web 16GB - - ssd", "shared_buffers").as_deref(),
        Some("4GB")
    );
    assert_eq!(
        setting("17 linux web 31GB - - ssd", "shared_buffers").as_deref(),
        Some("7936MB")
    );
    assert_eq!(
        setting("17 linux web 777MB - - ssd", "shared_buffers").as_deref(),
        Some("198912kB")
    );
    assert_eq!(
        setting("17 linux desktop 512MB - - ssd", "wal_buffers").as_deref(),
        Some("983kB")
    );
}

#[test]
fn wal_buffers_thresholds() {
    // 3 % of shared_buffers (M/4 for web): just under 14 MB stays, just above 14 MB rounds up to
    // 16 MB, tiny values become 32 kB, big ones are capped at 16 MB.
    assert_eq!(
        setting("17 linux web 1GB - - ssd", "wal_buffers").as_deref(),
        Some("7864kB")
    );
    assert_eq!(
        setting("17 linux web 1867MB - - ssd", "wal_buffers").as_deref(),
        Some("16MB")
    );
    assert_eq!(
        setting("17 linux web 1866MB - - ssd", "wal_buffers").as_deref(),
        Some("14330kB")
    );
    assert_eq!(
        setting("17 linux desktop 1MB - - ssd", "wal_buffers").as_deref(),
        Some("32kB")
    );
    assert_eq!(
        setting("17 linux web 64GB - - ssd", "wal_buffers").as_deref(),
        Some("16MB")
    );
}

#[test]
fn maintenance_work_mem_caps_and_windows() {
    assert_eq!(
        setting("17 linux web 160GB - - ssd", "maintenance_work_mem").as_deref(),
        Some("8GB")
    );
    assert_eq!(
        setting("17 linux web 128GB - - ssd", "maintenance_work_mem").as_deref(),
        Some("8GB")
    );
    assert_eq!(
        setting("17 linux web 127GB - - ssd", "maintenance_work_mem").as_deref(),
        Some("8128MB")
    );
    // Windows up to 17: 2 GB or more becomes 2047MB, exactly 2 GB included.
    assert_eq!(
        setting("17 windows web 32GB - - ssd", "maintenance_work_mem").as_deref(),
        Some("2047MB")
    );
    assert_eq!(
        setting("17 windows web 31GB - - ssd", "maintenance_work_mem").as_deref(),
        Some("1984MB")
    );
    // Windows 18: the 8 GB cap without the deduction.
    assert_eq!(
        setting("18 windows web 256GB - - ssd", "maintenance_work_mem").as_deref(),
        Some("8GB")
    );
    assert_eq!(
        setting("18 windows web 32GB - - ssd", "maintenance_work_mem").as_deref(),
        Some("2GB")
    );
    // autovacuum_work_mem only when maintenance_work_mem reaches 2 GB (never on Windows <= 17).
    assert_eq!(
        setting("18 windows web 32GB - - ssd", "autovacuum_work_mem").as_deref(),
        Some("2GB")
    );
    assert_eq!(
        setting("17 windows web 64GB - - ssd", "autovacuum_work_mem"),
        None
    );
    assert_eq!(
        setting("17 linux web 31GB - - ssd", "autovacuum_work_mem"),
        None
    );
    assert_eq!(
        setting("17 linux dw 16GB - - ssd", "autovacuum_work_mem").as_deref(),
        Some("2GB")
    );
}

#[test]
fn work_mem_by_type_data_size_floor_and_windows_cap() {
    // (16 GB - 4 GB) / ((200 + 8) * 3) = 20164.9 -> 20164kB for web.
    assert_eq!(
        setting("17 linux web 16GB - - ssd", "work_mem").as_deref(),
        Some("20164kB")
    );
    assert_eq!(
        setting("17 linux mixed 16GB - 200 ssd", "work_mem").as_deref(),
        Some("10082kB")
    );
    assert_eq!(
        setting("17 linux web 16GB - - ssd less_ram", "work_mem").as_deref(),
        Some("26213kB")
    );
    assert_eq!(
        setting("17 linux web 16GB - - ssd greater_ram", "work_mem").as_deref(),
        Some("18147kB")
    );
    // CPUs >= 4 replace the 8 default workers.
    assert_eq!(
        setting("17 linux web 16GB 4 - ssd", "work_mem").as_deref(),
        Some("20560kB")
    );
    assert_eq!(
        setting("17 linux web 16GB 3 - ssd", "work_mem").as_deref(),
        Some("20164kB")
    );
    // The 4 MB floor.
    assert_eq!(
        setting("17 linux web 1GB - - ssd", "work_mem").as_deref(),
        Some("4MB")
    );
    // Windows <= 17 caps it at 2047MB; 18 does not.
    assert_eq!(
        setting("17 windows web 999999GB - 20 ssd", "work_mem").as_deref(),
        Some("2047MB")
    );
    assert_ne!(
        setting("18 windows web 999999GB - 20 ssd", "work_mem").as_deref(),
        Some("2047MB")
    );
}

#[test]
fn random_page_cost_and_io_concurrency() {
    assert_eq!(
        setting("17 linux web 8GB - - hdd", "random_page_cost").as_deref(),
        Some("4")
    );
    assert_eq!(
        setting("17 linux dw 8GB - - ssd", "random_page_cost").as_deref(),
        Some("4")
    );
    assert_eq!(
        setting("17 linux dw 8GB - - hdd less_ram", "random_page_cost").as_deref(),
        Some("1.1")
    );
    assert_eq!(
        setting("17 linux web 8GB - - san", "random_page_cost").as_deref(),
        Some("1.1")
    );
    for (storage, value) in [
        ("hdd", "2"),
        ("ssd", "200"),
        ("san", "300"),
        ("nvme", "1000"),
    ] {
        let text = format!("17 linux web 8GB - - {storage}");
        assert_eq!(
            setting(&text, "effective_io_concurrency").as_deref(),
            Some(value)
        );
    }
    assert_eq!(
        setting("17 windows web 8GB - - ssd", "effective_io_concurrency"),
        None
    );
    assert_eq!(
        setting("17 mac web 8GB - - ssd", "effective_io_concurrency"),
        None
    );
}

#[test]
fn huge_pages_jit_wal_compression_and_autovacuum_workers() {
    assert_eq!(
        setting("17 linux web 8GB - - ssd", "huge_pages").as_deref(),
        Some("try")
    );
    assert_eq!(
        setting("17 linux web 7GB - - ssd", "huge_pages").as_deref(),
        Some("off")
    );
    assert_eq!(
        setting("17 mac web 64GB - - ssd", "huge_pages").as_deref(),
        Some("off")
    );
    assert_eq!(
        setting("17 linux oltp 8GB - - ssd", "jit").as_deref(),
        Some("off")
    );
    assert_eq!(setting("11 linux web 8GB - - ssd", "jit"), None);
    assert_eq!(setting("17 linux dw 8GB - - ssd", "jit"), None);
    assert_eq!(setting("17 linux desktop 8GB - - ssd", "jit"), None);
    assert_eq!(
        setting("15 linux web 8GB - - ssd", "wal_compression").as_deref(),
        Some("lz4")
    );
    assert_eq!(
        setting("14 linux web 8GB - - ssd", "wal_compression").as_deref(),
        Some("on")
    );
    assert_eq!(
        setting("10 linux web 8GB - - ssd", "wal_compression").as_deref(),
        Some("on")
    );
    assert_eq!(
        setting("17 linux web 8GB 32 - ssd", "autovacuum_max_workers").as_deref(),
        Some("5")
    );
    assert_eq!(
        setting("17 linux web 8GB 16 - ssd", "autovacuum_max_workers").as_deref(),
        Some("4")
    );
    assert_eq!(
        setting("17 linux web 8GB 15 - ssd", "autovacuum_max_workers"),
        None
    );
}

#[test]
fn parallel_settings_need_four_cpus_and_respect_versions_and_dw() {
    assert_eq!(
        setting("17 linux web 8GB 3 - ssd", "max_worker_processes"),
        None
    );
    assert_eq!(
        setting(
            "17 linux web 8GB 64 - ssd",
            "max_parallel_workers_per_gather"
        )
        .as_deref(),
        Some("4")
    );
    assert_eq!(
        setting(
            "17 linux dw 8GB 64 - ssd",
            "max_parallel_workers_per_gather"
        )
        .as_deref(),
        Some("32")
    );
    assert_eq!(
        setting("17 linux dw 8GB 5 - ssd", "max_parallel_workers_per_gather").as_deref(),
        Some("3")
    );
    assert_eq!(
        setting(
            "17 linux dw 8GB 64 - ssd",
            "max_parallel_maintenance_workers"
        )
        .as_deref(),
        Some("4")
    );
    assert_eq!(
        setting(
            "10 linux web 8GB 8 - ssd",
            "max_parallel_maintenance_workers"
        ),
        None
    );
    assert_eq!(
        setting("10 linux web 8GB 8 - ssd", "max_parallel_workers").as_deref(),
        Some("8")
    );
}

#[test]
fn version_18_io_method_and_io_workers() {
    assert_eq!(
        setting("18 linux web 8GB 64 - ssd", "io_method").as_deref(),
        Some("io_uring")
    );
    assert_eq!(setting("18 linux web 8GB 64 - ssd", "io_workers"), None);
    assert_eq!(
        setting("18 windows web 8GB 64 - ssd", "io_method").as_deref(),
        Some("worker")
    );
    assert_eq!(
        setting("18 mac web 8GB 64 - ssd", "io_workers").as_deref(),
        Some("16")
    );
    assert_eq!(
        setting("18 mac web 8GB 256 - ssd", "io_workers").as_deref(),
        Some("32")
    );
    assert_eq!(setting("18 mac web 8GB 15 - ssd", "io_workers"), None);
    assert_eq!(
        setting("18 mac web 8GB 16 - ssd", "io_workers").as_deref(),
        Some("4")
    );
    assert_eq!(setting("18 mac web 8GB - - ssd", "io_workers"), None);
    assert_eq!(setting("17 mac web 8GB 64 - ssd", "io_method"), None);
}

#[test]
fn desktop_only_lines_and_the_order_of_settings() {
    let desktop = recommend(&input("18 windows desktop 8GB - - hdd"));
    let names: Vec<_> = desktop.settings.iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        [
            "max_connections",
            "shared_buffers",
            "effective_cache_size",
            "maintenance_work_mem",
            "checkpoint_completion_target",
            "wal_buffers",
            "default_statistics_target",
            "random_page_cost",
            "work_mem",
            "huge_pages",
            "wal_compression",
            "io_method",
            "min_wal_size",
            "max_wal_size",
            "wal_level",
            "max_wal_senders",
        ]
    );
    assert_eq!(
        setting("18 windows desktop 8GB - - hdd", "work_mem").as_deref(),
        Some("15603kB")
    );
    assert_eq!(setting("17 linux web 8GB - - ssd", "wal_level"), None);
}

#[test]
fn warnings_thresholds_and_paragraphs() {
    let warnings = |text: &str| recommend(&input(text)).warnings;
    assert!(warnings("14 linux web 100GB - - ssd").is_empty());
    assert!(warnings("14 linux web 102400MB - - ssd").is_empty());
    assert_eq!(
        warnings("14 linux web 101GB - - ssd"),
        [
            "this tool not being optimal",
            "for very high memory systems"
        ]
    );
    assert_eq!(warnings("14 linux web 102401MB - - ssd").len(), 2);
    assert_eq!(
        warnings("14 linux web 255MB - - ssd"),
        ["this tool not being optimal", "for low memory systems"]
    );
    assert!(warnings("14 linux web 256MB - - ssd").is_empty());
    let all = warnings("18 linux dw 1TB - - nvme");
    assert_eq!(
        all,
        [
            "this tool not being optimal",
            "for very high memory systems",
            "",
            "wal_compression = lz4 requires PostgreSQL",
            "to be compiled with --with-lz4",
            "",
            "io_method = io_uring requires PostgreSQL",
            "to be compiled with --with-liburing",
            "",
            "Cost parameters for Data Warehouses on NVMe drives are left at defaults",
            "to avoid catastrophic index scan selections",
            "Monitor query planner behavior and adjust random_page_cost if necessary",
        ]
    );
    assert!(warnings("14 linux dw 8GB - - ssd less_ram").is_empty());
    assert!(warnings("14 linux dw 8GB - - hdd").is_empty());
    assert!(warnings("14 linux dw 8GB - - san")[0].contains("SAN storage"));
}

#[test]
fn alter_system_text_uses_sql_comments_and_quoted_values() {
    let recommendation = recommend(&input("15 linux web 4GB 4 300 ssd"));
    let text = recommendation.alter_system_text();
    assert!(
        text.starts_with("-- WARNING\n-- wal_compression = lz4 requires PostgreSQL\n"),
        "{text}"
    );
    assert!(
        text.contains("\n\n-- DB Version: 15\n-- OS Type: linux\n"),
        "{text}"
    );
    assert!(text.contains(
        "\nALTER SYSTEM SET max_connections = '300';\nALTER SYSTEM SET shared_buffers = '1GB';\n"
    ));
    assert!(text.ends_with("ALTER SYSTEM SET max_parallel_maintenance_workers = '2';"));
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("ALTER SYSTEM SET"))
            .count(),
        recommendation.settings.len()
    );
}

#[test]
fn header_repeats_the_input_as_typed() {
    let text = recommend(&input("16 mac oltp 3TB 8 - nvme greater_ram")).conf_text();
    assert!(text.contains("# DB Version: 16\n# OS Type: mac\n# DB Type: oltp\n# Total Memory (RAM): 3 TB\n# CPUs num: 8\n# Data Storage: nvme\n\nmax_connections = 300\n"), "{text}");
    assert!(!text.ends_with('\n'));
}

#[test]
fn invalid_input_is_rejected_with_the_allowed_values() {
    let base = input("17 linux web 8GB - - ssd");
    let err = |i: TuneInput| {
        i.validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    assert_eq!(
        err(TuneInput {
            db_version: 9,
            ..base
        }),
        "unsupported PostgreSQL version 9; allowed: 10 to 18"
    );
    assert_eq!(
        err(TuneInput {
            db_version: 19,
            ..base
        }),
        "unsupported PostgreSQL version 19; allowed: 10 to 18"
    );
    assert!(
        err(TuneInput {
            connection_num: Some(19),
            ..base
        })
        .contains("allowed 20 to 999999")
    );
    assert!(
        err(TuneInput {
            cpu_num: Some(0),
            ..base
        })
        .contains("allowed 1 to 999999")
    );
    let memory = TuneInput {
        total_memory: Memory {
            amount: 0,
            unit: MemoryUnit::Gb,
        },
        ..base
    };
    assert!(err(memory).starts_with("invalid memory"));
    assert!(matches!(
        "1000000GB".parse::<Memory>(),
        Err(InputError::Memory(_))
    ));
    assert!(matches!(
        "12PB".parse::<Memory>(),
        Err(InputError::Memory(_))
    ));
    assert!(matches!("GB".parse::<Memory>(), Err(InputError::Memory(_))));
    assert_eq!(
        "16".parse::<Memory>().ok(),
        Some(Memory {
            amount: 16,
            unit: MemoryUnit::Gb
        })
    );
    assert_eq!(
        "512 mb".parse::<Memory>().ok(),
        Some(Memory {
            amount: 512,
            unit: MemoryUnit::Mb
        })
    );
    let unknown = "warehouse"
        .parse::<DbType>()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert_eq!(
        unknown,
        "unknown DB type \"warehouse\"; allowed: web, oltp, dw, desktop, mixed"
    );
    assert!("bsd".parse::<Os>().is_err());
    assert!("tape".parse::<Storage>().is_err());
}

#[test]
fn memory_takes_short_units_and_fractions_that_are_whole_in_the_next_unit() {
    let memory = |amount, unit| Some(Memory { amount, unit });
    let parse = |text: &str| text.parse::<Memory>().ok();
    assert_eq!(parse("16G"), memory(16, MemoryUnit::Gb));
    assert_eq!(parse("16 gb"), memory(16, MemoryUnit::Gb));
    assert_eq!(parse("512m"), memory(512, MemoryUnit::Mb));
    assert_eq!(parse("2T"), memory(2, MemoryUnit::Tb));
    assert_eq!(parse("1.5GB"), memory(1536, MemoryUnit::Mb));
    assert_eq!(parse("0.25G"), memory(256, MemoryUnit::Mb));
    assert_eq!(parse("1.5TB"), memory(1536, MemoryUnit::Gb));
    assert_eq!(parse("2.0GB"), memory(2048, MemoryUnit::Mb));
    // Not a whole number of MB, no unit below MB, malformed, or over the form's limit.
    for bad in [
        "1.3GB",
        "1.5MB",
        ".5GB",
        "1.GB",
        "1.5.0GB",
        "16GiB",
        "999999.5TB",
        "0.0001GB",
    ] {
        assert!(
            matches!(bad.parse::<Memory>(), Err(InputError::Memory(_))),
            "{bad}"
        );
    }
    // Computed as PgTune computes the same amount typed in MB.
    let typed = |memory: &str| recommend(&input(&format!("16 linux web {memory} - - ssd")));
    assert_eq!(typed("1.5GB").settings, typed("1536MB").settings);
}

#[test]
fn warning_messages_join_each_paragraph_into_one_sentence() {
    let recommendation = recommend(&input("18 linux dw 1TB - - nvme"));
    assert_eq!(
        recommendation.warning_messages(),
        [
            "this tool not being optimal for very high memory systems",
            "wal_compression = lz4 requires PostgreSQL to be compiled with --with-lz4",
            "io_method = io_uring requires PostgreSQL to be compiled with --with-liburing",
            "Cost parameters for Data Warehouses on NVMe drives are left at defaults to avoid \
             catastrophic index scan selections Monitor query planner behavior and adjust \
             random_page_cost if necessary",
        ]
    );
    assert!(
        recommend(&input("14 linux web 8GB - - ssd"))
            .warning_messages()
            .is_empty()
    );
}
