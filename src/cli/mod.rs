//! The command line: argument parsing (clap) and the commands' output. Each command calls the
//! library; nothing here decides an authorization question.
//!
//! Architecture invariant: clap and anyhow are used only here.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::conditions::Conditions;
use crate::schema;
use crate::validation;

#[derive(Parser)]
#[command(name = "pemba", version, about = "An authorization database: relationships plus rhai conditions")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check and format schema files.
    Schema {
        #[command(subcommand)]
        command: SchemaCommand,
    },
    /// Run benchmarks on generated data and print their figures.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Tools for tests (not a stable interface).
    #[command(hide = true)]
    Debug {
        #[command(subcommand)]
        command: DebugCommand,
    },
    /// Serve the gRPC API (SpiceDB's `authzed.api.v1`, and `pemba.v1`) on an embedded store.
    #[cfg(feature = "server")]
    Serve(ServeArgs),
    /// Check a permission on a server: `check document:1 view user:ann` (or
    /// `document:1#view@user:ann`). Exit code 0 allowed, 1 denied, 3 conditional, 2 error.
    #[cfg(feature = "server")]
    Check {
        #[arg(required = true, num_args = 1..=3)]
        request: Vec<String>,
        /// Request context for caveats, a JSON object.
        #[arg(long)]
        context: Option<String>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        at: remote::At,
        #[command(flatten)]
        remote: remote::Remote,
    },
    /// Write, read and delete relationships on a server.
    #[cfg(feature = "server")]
    Relationship {
        #[command(subcommand)]
        command: remote::RelationshipCommand,
    },
    /// LookupResources and LookupSubjects on a server.
    #[cfg(feature = "server")]
    Lookup {
        #[command(subcommand)]
        command: remote::LookupCommand,
    },
    /// Load relationships (SpiceDB's text form, one per line) into a server, or into a data
    /// directory with `--data-dir`. A progress line shows on a terminal.
    #[cfg(feature = "server")]
    Import {
        /// The file (`-` for standard input).
        file: PathBuf,
        /// Relationships per message (server; default 1000) or per import chunk (data
        /// directory; default and most 10,000; each stored as revisions of at most 1,000).
        #[arg(long)]
        chunk: Option<usize>,
        #[command(flatten)]
        local: remote::Local,
        #[command(flatten)]
        remote: remote::Remote,
    },
    /// Print every relationship of a server's tenant, one per line (SpiceDB's text form).
    #[cfg(feature = "server")]
    Export {
        #[command(flatten)]
        remote: remote::Remote,
    },
    /// Print a tenant's writes as they happen (from now, or from `--from TOKEN`).
    #[cfg(feature = "server")]
    Watch {
        /// Only these resource types.
        types: Vec<String>,
        /// Start after this ZedToken.
        #[arg(long)]
        from: Option<String>,
        /// Stop after this many writes.
        #[arg(long)]
        count: Option<u64>,
        #[command(flatten)]
        remote: remote::Remote,
    },
    /// Manage a server's tenants and keys (with the admin key).
    #[cfg(feature = "server")]
    Tenant {
        #[command(subcommand)]
        command: remote::TenantCommand,
    },
    /// Write a backup of every tenant of a data directory (schema, relationships, attributes;
    /// each tenant read at one revision) to FILE, written beside and renamed when complete.
    Backup {
        file: PathBuf,
        /// Back up this data directory (it must not be open in a server).
        #[arg(long, conflicts_with = "endpoint")]
        data_dir: Option<PathBuf>,
        /// Back up a running server instead, with the admin key (`--token` or
        /// `PEMBA_ADMIN_KEY`): each tenant is read at one revision while it goes on serving.
        #[cfg(feature = "server")]
        #[arg(long)]
        endpoint: Option<String>,
        #[cfg(feature = "server")]
        #[arg(long, env = "PEMBA_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// PEM CA certificate to trust, with `--endpoint`.
        #[cfg(feature = "server")]
        #[arg(long)]
        ca_cert: Option<PathBuf>,
        /// No TLS, with `--endpoint`.
        #[cfg(feature = "server")]
        #[arg(long)]
        insecure: bool,
    },
    /// Make a new data directory from a backup.
    Restore {
        file: PathBuf,
        /// The directory to create (it must not exist, or be empty).
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Run validation files in SpiceDB's `zed validate` format.
    Validate {
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Skip the agreement checks between Check, CheckBulk, LookupResources, LookupSubjects
        /// and Expand (run only assertions and expected relations, as `zed validate` does).
        #[arg(long)]
        skip_agreement: bool,
        /// How long the agreement checks of one file may run, in seconds; past it the file
        /// fails, saying so.
        #[arg(long, default_value_t = crate::validation::agreement::DEFAULT_BUDGET.as_secs_f64())]
        agreement_budget_secs: f64,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[cfg(feature = "server")]
#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:50051")]
    listen: String,
    /// The data directory (created if missing).
    #[arg(long, default_value = "./pemba-data")]
    data_dir: PathBuf,
    /// A key of tenant `default` (SpiceDB's preshared key).
    #[arg(long, env = "PEMBA_PRESHARED_KEY", hide_env_values = true)]
    preshared_key: Option<String>,
    /// A tenant and one of its keys, `NAME=KEY` (repeatable; the tenant is created if missing).
    #[arg(long = "tenant", value_name = "NAME=KEY")]
    tenants: Vec<String>,
    /// A file of `NAME=KEY` lines, as `--tenant` (`#` starts a comment).
    #[arg(long)]
    tenants_file: Option<PathBuf>,
    /// The key of the tenant service (`pemba.v1.TenantService`); without it that service refuses.
    #[arg(long, env = "PEMBA_ADMIN_KEY", hide_env_values = true)]
    admin_key: Option<String>,
    /// PEM certificate chain for TLS (with `--tls-key`).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for TLS (with `--tls-cert`).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// What an acknowledged write survives: `power-loss` (fsync of sled's files and the
    /// directories before each acknowledgement) or `process-crash` (sled's flush alone: faster,
    /// survives kill -9 but not a power loss).
    #[arg(long, default_value = "power-loss")]
    durability: String,
    /// Megabytes of sled's page cache (the store's rows besides the index, which serves reads).
    #[arg(long, default_value_t = crate::db::DEFAULT_STORE_CACHE_BYTES >> 20)]
    store_cache_mb: u64,
    /// Deadline of a request whose client sets none, in seconds.
    #[arg(long, default_value_t = 30)]
    default_deadline_secs: u64,
    /// Calls taking this many milliseconds or more are logged as slow (at warn).
    #[arg(long, default_value_t = 1000)]
    slow_request_ms: u64,
    /// Mutations one write may hold (SpiceDB's default is 1000).
    #[arg(long, default_value_t = 1000)]
    max_relationships_per_write: usize,
    /// Per-tenant quota: relationships a tenant may hold; writes past it are RESOURCE_EXHAUSTED
    /// (`QUOTA_EXCEEDED`). Unlimited if not given.
    #[arg(long)]
    max_relationships_per_tenant: Option<usize>,
    /// Per-tenant quota: bytes of heap a tenant's index may hold; past it only deletes are
    /// accepted. Unlimited if not given.
    #[arg(long)]
    max_index_bytes_per_tenant: Option<usize>,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// The embedded Database with its index, next to the reference evaluator, on Drive data.
    Embedded {
        /// Data set size: `s` (about 50k relationships) or `m` (about 1M).
        #[arg(long, default_value = "s")]
        size: String,
        /// Samples per Check probe.
        #[arg(long, default_value_t = 200)]
        iterations: usize,
        /// Scratch directory (removed afterwards).
        #[arg(long, default_value = "./pemba-bench-embedded")]
        dir: PathBuf,
        /// Print the figures as one JSON object (the only output format).
        #[arg(long)]
        json: bool,
    },
    /// Building the index graph: time, heap bytes by part, bytes per relationship, closures.
    Index {
        /// Data set size: `s` (about 50k relationships) or `m` (about 1M).
        #[arg(long, default_value = "m")]
        size: String,
        /// Print the figures as one JSON object (the only output format).
        #[arg(long)]
        json: bool,
    },
    /// The durable store: single writes, batches of 1000, bulk import against raw sled, reopen.
    Store {
        /// Scratch directory (removed afterwards).
        #[arg(long, default_value = "./pemba-bench-store")]
        dir: PathBuf,
        /// Data set for the reopen measurement: `s` (about 50k) or `m` (about 1M).
        #[arg(long, default_value = "m")]
        size: String,
        /// Single durable writes to time.
        #[arg(long, default_value_t = 200)]
        iterations: usize,
        /// Print the figures as one JSON object (the only output format).
        #[arg(long)]
        json: bool,
    },
    /// Load on `pemba serve` (a child process on loopback): closed and open loop Check against
    /// the health check, LookupResources against a streaming floor, writes and import against
    /// the embedded figures of the same run.
    #[cfg(feature = "server")]
    Grpc {
        /// Data set size: `s` (about 50k relationships) or `m` (about 1M).
        #[arg(long, default_value = "s")]
        size: String,
        /// Closed-loop concurrencies, comma-separated.
        #[arg(long, default_value = "1,8,64", value_delimiter = ',')]
        concurrency: Vec<usize>,
        /// Open-loop rate per second (default: 10,000 if the floor sustains it, else 70% of the
        /// floor's best closed-loop throughput).
        #[arg(long)]
        rate: Option<f64>,
        /// Seconds per measurement.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// HTTP/2 connections the callers share.
        #[arg(long, default_value_t = 4)]
        connections: usize,
        /// Scratch directory (removed afterwards).
        #[arg(long, default_value = "./pemba-bench-grpc")]
        dir: PathBuf,
        /// Print the figures as one JSON object (the only output format).
        #[arg(long)]
        json: bool,
    },
    /// The reference evaluator on the Drive data set.
    Reference {
        /// Data set size: `s` (about 50k relationships) or `m` (about 1M).
        #[arg(long, default_value = "s")]
        size: String,
        /// Samples per Check probe.
        #[arg(long, default_value_t = 200)]
        iterations: usize,
        /// Print the figures as one JSON object (the only output format).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum DebugCommand {
    /// Writes batches of 5 relationships forever, printing `ack REVISION` after each durable
    /// write (the crash test kills it and checks what survived).
    CrashWriter {
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Opens a database (loading every tenant and building its index), prints how long that
    /// took as JSON, and exits: start-up to ready, measured in a fresh process. Also prints the
    /// index's memory and the process's resident memory at open and 1.5 s later (settled; the
    /// command waits that long before it closes the database).
    Open {
        #[arg(long)]
        data_dir: PathBuf,
        /// Megabytes of sled's page cache.
        #[arg(long, default_value_t = crate::db::DEFAULT_STORE_CACHE_BYTES >> 20)]
        store_cache_mb: u64,
    },
    /// Prints the benchmarks' Drive data set as relationships in SpiceDB's text form, one per
    /// line (its schema is `schema/drive.zed`): input for `pemba import` and other tools.
    Drive {
        /// `s` (about 50k relationships) or `m` (about 1M).
        #[arg(long, default_value = "s")]
        size: String,
    },
}

#[derive(Subcommand)]
enum SchemaCommand {
    /// Parse and compile schema files; print every problem and exit 1 if there is one.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the canonical text of schema files.
    Fmt {
        /// Print nothing; exit 1 and name the files whose text is not canonical.
        #[arg(long, conflicts_with = "write")]
        check: bool,
        /// Rewrite the files in place.
        #[arg(long)]
        write: bool,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Write a schema to a server; prints its ZedToken.
    #[cfg(feature = "server")]
    Write {
        file: PathBuf,
        #[command(flatten)]
        remote: remote::Remote,
    },
    /// Print a server's schema for the tenant.
    #[cfg(feature = "server")]
    Read {
        #[command(flatten)]
        remote: remote::Remote,
    },
}

/// Writes to standard output, ignoring a closed pipe (`pemba … | head` must not panic).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout().lock(), $($arg)*);
    }};
}

#[cfg(feature = "server")]
mod remote;

/// Runs the command line; the process exit code follows.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Schema { command: SchemaCommand::Check { files } } => schema_check(&files),
        Command::Schema { command: SchemaCommand::Fmt { check, write, files } } => schema_fmt(&files, check, write),
        Command::Bench { command: BenchCommand::Reference { size, iterations, json: _ } } => {
            let drive = crate::bench::workload::DriveSize::by_name(&size)
                .ok_or_else(|| anyhow::anyhow!("unknown size `{size}`: use `s` or `m`"))?;
            let figures = crate::bench::reference(&size, drive, iterations.max(1))?;
            out!("{}\n", serde_json::to_string_pretty(&figures)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench { command: BenchCommand::Store { dir, size, iterations, json: _ } } => {
            let drive = crate::bench::workload::DriveSize::by_name(&size)
                .ok_or_else(|| anyhow::anyhow!("unknown size `{size}`: use `s` or `m`"))?;
            let figures = crate::bench::store(&dir, drive, iterations.max(1))?;
            out!("{}\n", serde_json::to_string_pretty(&figures)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench { command: BenchCommand::Index { size, json: _ } } => {
            let drive = crate::bench::workload::DriveSize::by_name(&size)
                .ok_or_else(|| anyhow::anyhow!("unknown size `{size}`: use `s` or `m`"))?;
            out!("{}\n", serde_json::to_string_pretty(&crate::bench::index(&size, drive))?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench { command: BenchCommand::Embedded { size, iterations, dir, json: _ } } => {
            let drive = crate::bench::workload::DriveSize::by_name(&size)
                .ok_or_else(|| anyhow::anyhow!("unknown size `{size}`: use `s` or `m`"))?;
            out!(
                "{}\n",
                serde_json::to_string_pretty(&crate::bench::embedded(&size, drive, iterations.max(1), &dir)?)?
            );
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(feature = "server")]
        Command::Bench {
            command: BenchCommand::Grpc { size, concurrency, rate, seconds, connections, dir, json: _ },
        } => {
            let drive = crate::bench::workload::DriveSize::by_name(&size)
                .ok_or_else(|| anyhow::anyhow!("unknown size `{size}`: use `s` or `m`"))?;
            anyhow::ensure!(seconds > 0.0 && seconds.is_finite(), "`--seconds` must be positive");
            anyhow::ensure!(rate.is_none_or(|r| r > 0.0 && r.is_finite()), "`--rate` must be positive");
            let opts = crate::bench::grpc::GrpcOptions {
                size_name: size.clone(),
                size: drive,
                dir,
                concurrency: concurrency.into_iter().map(|n| n.max(1)).collect(),
                rate,
                seconds,
                connections,
            };
            out!("{}\n", serde_json::to_string_pretty(&crate::bench::grpc::grpc(&opts)?)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Debug { command: DebugCommand::CrashWriter { data_dir } } => crash_writer(&data_dir),
        Command::Debug { command: DebugCommand::Drive { size } } => {
            let drive = crate::bench::workload::DriveSize::by_name(&size)
                .ok_or_else(|| anyhow::anyhow!("unknown size `{size}`: use `s` or `m`"))?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for r in crate::bench::workload::generate(drive).relationships {
                writeln!(out, "{r}")?;
            }
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Debug { command: DebugCommand::Open { data_dir, store_cache_mb } } => {
            let limits = crate::db::Limits {
                store_cache_bytes: store_cache_mb.max(1).saturating_mul(1 << 20),
                ..Default::default()
            };
            let t = std::time::Instant::now();
            let db = crate::db::Database::open_with(&data_dir, limits)?;
            let open_ms = t.elapsed().as_secs_f64() * 1e3;
            let tenants = db.tenants()?;
            let index_bytes: usize = tenants.iter().map(|t| db.index_bytes(t)).sum::<Result<usize, _>>()?;
            // The process's resident memory once open (Linux; absent elsewhere), and settled:
            // mimalloc gives memory freed by the load (sled's pages, the build's buffers) back
            // to the system once its purge delay (1 s) has passed, when a later page of its own
            // is freed (as a serving process's requests do; see BENCHMARKS.md). Here one buffer,
            // allocated and freed 1.5 s after the open, stands in for them.
            let rss_kb = || {
                std::fs::read_to_string("/proc/self/status").ok().and_then(|s| {
                    s.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse::<u64>().ok()
                })
            };
            let rss_at_open = rss_kb();
            std::thread::sleep(std::time::Duration::from_millis(1500));
            drop(std::hint::black_box(Vec::<u8>::with_capacity(8 << 20)));
            let rss_settled = rss_kb();
            let t = std::time::Instant::now();
            db.close()?;
            let close_ms = t.elapsed().as_secs_f64() * 1e3;
            out!(
                "{}\n",
                serde_json::json!({
                    "open_ms": open_ms,
                    "close_ms": close_ms,
                    "tenants": tenants.len(),
                    "index_mb": index_bytes as f64 / 1048576.0,
                    "rss_mb": rss_at_open.map(|k| k as f64 / 1024.0),
                    "rss_mb_settled": rss_settled.map(|k| k as f64 / 1024.0),
                    "store_cache_mb": store_cache_mb,
                })
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate { json, skip_agreement, agreement_budget_secs, files } => {
            let budget = std::time::Duration::try_from_secs_f64(agreement_budget_secs)
                .ok()
                .filter(|b| !b.is_zero())
                .ok_or_else(|| anyhow::anyhow!("--agreement-budget-secs must be a positive number of seconds"))?;
            validate(&files, json, (!skip_agreement).then_some(budget))
        }
        #[cfg(feature = "server")]
        Command::Backup { file, data_dir, endpoint, token, ca_cert, insecure } => match (data_dir, endpoint) {
            (Some(dir), None) => backup(&file, &dir),
            (None, Some(endpoint)) => {
                let remote = remote::Remote { endpoint, token, tls: false, ca_cert, insecure };
                remote::backup(&file, &remote)
            }
            _ => anyhow::bail!("give `--data-dir DIR` or `--endpoint ADDRESS`"),
        },
        #[cfg(not(feature = "server"))]
        Command::Backup { file, data_dir } => match data_dir {
            Some(dir) => backup(&file, &dir),
            None => anyhow::bail!("give `--data-dir DIR`"),
        },
        Command::Restore { file, data_dir } => restore(&file, &data_dir),
        #[cfg(feature = "server")]
        Command::Serve(args) => serve(args),
        #[cfg(feature = "server")]
        Command::Schema { command: SchemaCommand::Write { file, remote } } => remote::schema_write(&file, &remote),
        #[cfg(feature = "server")]
        Command::Schema { command: SchemaCommand::Read { remote } } => remote::schema_read(&remote),
        #[cfg(feature = "server")]
        Command::Check { request, context, json, at, remote } => {
            remote::check(&request, context.as_deref(), json, &at, &remote)
        }
        #[cfg(feature = "server")]
        Command::Relationship { command } => remote::relationship(command),
        #[cfg(feature = "server")]
        Command::Lookup { command } => remote::lookup(command),
        #[cfg(feature = "server")]
        Command::Import { file, chunk, local, remote } => remote::import(&file, Some(&local), chunk, &remote),
        #[cfg(feature = "server")]
        Command::Export { remote } => remote::export(&remote),
        #[cfg(feature = "server")]
        Command::Watch { types, from, count, remote } => remote::watch(&types, from.as_deref(), count, &remote),
        #[cfg(feature = "server")]
        Command::Tenant { command } => remote::tenant(command),
    }
}

#[cfg(feature = "server")]
fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    use crate::server;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: a log file or a collector gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none())
        .init();
    let mut keys = Vec::new();
    if let Some(k) = &args.preshared_key {
        keys.push(("default".to_string(), k.clone()));
    }
    let mut lines: Vec<String> = args.tenants.clone();
    if let Some(f) = &args.tenants_file {
        lines
            .extend(read(f)?.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from));
    }
    for l in lines {
        let (name, key) = l.split_once('=').ok_or_else(|| anyhow::anyhow!("`--tenant {l}`: expected NAME=KEY"))?;
        anyhow::ensure!(!key.is_empty(), "`--tenant {name}=`: the key is empty");
        keys.push((name.to_string(), key.to_string()));
    }
    let config = server::Config {
        listen: args.listen.clone(),
        data_dir: args.data_dir.clone(),
        keys,
        admin_key: args.admin_key.clone(),
        tls: args.tls_cert.clone().zip(args.tls_key.clone()),
        default_deadline: std::time::Duration::from_secs(args.default_deadline_secs.max(1)),
        slow_request: std::time::Duration::from_millis(args.slow_request_ms),
        limits: crate::db::Limits {
            max_relationships_per_write: args.max_relationships_per_write.max(1),
            max_relationships_per_tenant: args.max_relationships_per_tenant.unwrap_or(usize::MAX),
            max_index_bytes_per_tenant: args.max_index_bytes_per_tenant.unwrap_or(usize::MAX),
            durability: match args.durability.as_str() {
                "power-loss" => crate::store::Durability::PowerLoss,
                "process-crash" => crate::store::Durability::ProcessCrash,
                other => anyhow::bail!("`--durability {other}`: use power-loss or process-crash"),
            },
            store_cache_bytes: args.store_cache_mb.max(1).saturating_mul(1 << 20),
            ..crate::db::Limits::default()
        },
    };
    let tls = match &config.tls {
        Some((cert, key)) => Some(server::tls_config(cert, key)?),
        None => None,
    };
    let tls_on = tls.is_some();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&config.listen)
            .await
            .with_context(|| format!("cannot listen on `{}`", config.listen))?;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, "listening; health is NOT_SERVING until the database is open");
        let open_config = config.clone();
        let open = async move {
            tracing::info!(data_dir = %open_config.data_dir.display(), "opening the database");
            let t = std::time::Instant::now();
            let prepared = tokio::task::spawn_blocking(move || server::prepare(&open_config))
                .await
                .map_err(|e| server::ServerError::Transport(format!("opening the database: {e}")))??;
            let tenants = prepared.db.tenants()?.len();
            tracing::info!(tenants, open_ms = t.elapsed().as_millis() as u64, "database open");
            if let Some(key) = &prepared.generated {
                // Shown once: only the key's hash is stored.
                eprintln!(
                    "No key was configured: tenant `default` was given this key (shown once, stored only as a hash):\n\n    {key}\n"
                );
            }
            tracing::info!(%addr, tls = tls_on, "serving");
            Ok(prepared)
        };
        let shutdown = async {
            let ctrl_c = tokio::signal::ctrl_c();
            #[cfg(unix)]
            {
                let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(t) => t,
                    Err(_) => {
                        let _ = ctrl_c.await;
                        return;
                    }
                };
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            #[cfg(not(unix))]
            let _ = ctrl_c.await;
            tracing::info!("shutting down: finishing the calls in flight");
        };
        server::serve_opening(open, listener, tls, config.default_deadline, config.slow_request, shutdown)
            .await?;
        tracing::info!("stopped");
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// A schema file, read within the schema size limit.
fn read(path: &std::path::Path) -> anyhow::Result<String> {
    Ok(crate::text::read_limited(path, crate::schema::parser::MAX_SCHEMA_BYTES)?)
}

fn schema_check(files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let conditions = Conditions::new();
    let mut failed = 0;
    for path in files {
        let source = read(path)?;
        match schema::compile_text(&source, &conditions) {
            Ok(compiled) => {
                eprint!(
                    "{}",
                    schema::diagnostic::render_all(compiled.warnings(), &path.display().to_string(), &source)
                );
                let warned = match compiled.warnings().len() {
                    0 => String::new(),
                    1 => ", 1 warning".into(),
                    n => format!(", {n} warnings"),
                };
                out!(
                    "{}: ok ({} definitions, {} caveats{warned})\n",
                    path.display(),
                    compiled.definitions().count(),
                    compiled.caveats().count()
                );
            }
            Err(diags) => {
                failed += 1;
                eprint!("{}", schema::diagnostic::render_all(&diags, &path.display().to_string(), &source));
            }
        }
    }
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn schema_fmt(files: &[PathBuf], check: bool, write: bool) -> anyhow::Result<ExitCode> {
    let mut failed = false;
    for path in files {
        let source = read(path)?;
        let formatted = match schema::format_text(&source) {
            Ok(f) => f,
            Err(diags) => {
                failed = true;
                eprint!("{}", schema::diagnostic::render_all(&diags, &path.display().to_string(), &source));
                continue;
            }
        };
        if check {
            if formatted != source {
                failed = true;
                eprintln!("{}: not formatted", path.display());
            }
        } else if write {
            if formatted != source {
                std::fs::write(path, &formatted).with_context(|| format!("cannot write `{}`", path.display()))?;
            }
        } else {
            out!("{formatted}");
        }
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn validate(files: &[PathBuf], json: bool, agreement: Option<std::time::Duration>) -> anyhow::Result<ExitCode> {
    let conditions = Conditions::new();
    let now = crate::model::Timestamp::now();
    let mut reports = Vec::new();
    for path in files {
        let report = match validation::load(path, &conditions) {
            Ok(file) => validation::run_with(&file, &conditions, now, agreement),
            Err(errors) => validation::FileReport { errors, ..Default::default() },
        };
        if !json {
            out!("{}", report.render(&path.display().to_string()));
        }
        reports.push((path.display().to_string(), report));
    }
    let failed = reports.iter().filter(|(_, r)| !r.passed()).count();
    let passed = reports.len() - failed;
    let assertions: usize = reports.iter().map(|(_, r)| r.assertions).sum();
    let assertions_passed: usize = reports.iter().map(|(_, r)| r.assertions_passed).sum();
    if json {
        let files: Vec<serde_json::Value> =
            reports.iter().map(|(f, r)| serde_json::json!({"file": f, "passed": r.passed(), "report": r})).collect();
        let doc = serde_json::json!({
            "files": files,
            "passed": passed,
            "failed": failed,
            "assertions": assertions,
            "assertions_passed": assertions_passed,
        });
        out!("{}\n", serde_json::to_string_pretty(&doc)?);
    } else {
        out!("assertions: {} passed, {} failed\n", assertions_passed, assertions - assertions_passed);
        out!("{passed} passed, {failed} failed\n");
    }
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn backup(file: &std::path::Path, dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    let db = crate::db::Database::open(dir)?;
    let revisions = write_beside(file, &mut |out| Ok(db.backup(out)?))?;
    for (tenant, rev) in revisions {
        eprintln!("tenant `{tenant}` at revision {rev}");
    }
    eprintln!("backup written to `{}`", file.display());
    Ok(ExitCode::SUCCESS)
}

/// Writes `file` through a hidden file beside it, synced and renamed when `write` succeeded: a
/// backup that failed half-way never looks complete.
fn write_beside<T>(
    file: &std::path::Path,
    write: &mut dyn FnMut(&mut dyn std::io::Write) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let name = file.file_name().ok_or_else(|| anyhow::anyhow!("`{}` names no file", file.display()))?;
    let tmp = file.with_file_name(format!(".{}.partial", name.to_string_lossy()));
    let f = std::fs::File::create(&tmp).with_context(|| format!("cannot create `{}`", tmp.display()))?;
    let mut out = std::io::BufWriter::new(f);
    let result = write(&mut out);
    let result = result.and_then(|v| {
        let f = out.into_inner().map_err(|e| anyhow::anyhow!("cannot write `{}`: {e}", tmp.display()))?;
        f.sync_all().with_context(|| format!("cannot sync `{}`", tmp.display()))?;
        std::fs::rename(&tmp, file).with_context(|| format!("cannot rename to `{}`", file.display()))?;
        Ok(v)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Restores into a staging directory beside `dir` and renames it into place once every tenant
/// is in and the store is closed: a restore that fails or is killed leaves no `dir` (never a
/// store holding part of the backup), only the staging directory, which the next restore
/// replaces.
fn restore(file: &std::path::Path, dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    if let Ok(mut entries) = std::fs::read_dir(dir) {
        anyhow::ensure!(
            entries.next().is_none(),
            "`{}` is not empty: restore makes a new data directory",
            dir.display()
        );
    }
    let f = std::fs::File::open(file).with_context(|| format!("cannot open `{}`", file.display()))?;
    let absolute = std::path::absolute(dir).with_context(|| format!("`{}`", dir.display()))?;
    let name = absolute.file_name().with_context(|| format!("`{}` does not name a directory", dir.display()))?;
    // Unique to this process: a concurrent restore into the same place has its own (and only
    // one of them can rename into place).
    let staging = absolute.with_file_name(format!(".{}.restoring-{}", name.to_string_lossy(), std::process::id()));
    if staging.exists() {
        std::fs::remove_dir_all(&staging)
            .with_context(|| format!("cannot remove an earlier restore's `{}`", staging.display()))?;
    }
    let db = crate::db::Database::open(&staging)?;
    let restored = db.restore(&mut std::io::BufReader::new(f));
    let tenants = match restored {
        Ok(t) => t,
        Err(e) => {
            drop(db);
            let _ = std::fs::remove_dir_all(&staging);
            return Err(anyhow::Error::new(e).context(format!(
                "restoring `{}`; nothing was made at `{}`",
                file.display(),
                dir.display()
            )));
        }
    };
    let revisions = tenants.iter().map(|t| db.revision(t)).collect::<Result<Vec<_>, _>>()?;
    drop(db);
    // An empty `dir` (allowed above) makes way for the rename.
    if dir.exists() {
        std::fs::remove_dir(dir).with_context(|| format!("cannot replace the empty `{}`", dir.display()))?;
    }
    std::fs::rename(&staging, dir)
        .with_context(|| format!("cannot move `{}` to `{}`", staging.display(), dir.display()))?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("cannot sync `{}`", parent.display()))?;
    }
    for (t, r) in tenants.iter().zip(&revisions) {
        eprintln!("tenant `{t}` restored at revision {r}");
    }
    eprintln!(
        "restored {} tenant{} into `{}`",
        tenants.len(),
        if tenants.len() == 1 { "" } else { "s" },
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The schema the crash writer uses.
pub const CRASH_SCHEMA: &str = "definition user {}\ndefinition doc {\n  relation viewer: user\n}";

fn crash_writer(dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    use crate::db::{Database, WriteRequest};
    use crate::model::Relationship;
    use crate::store::Mutation;
    let db = Database::open(dir)?;
    if !db.tenants()?.contains(&"t".to_string()) {
        db.create_tenant("t")?;
        db.write_schema("t", CRASH_SCHEMA)?;
    }
    loop {
        // One writer: the batch written now gets the next revision, and its ids name it.
        let next = db.revision("t")?.next();
        let batch = (0..5)
            .map(|j| Relationship::parse(&format!("doc:b{next}_{j}#viewer@user:u{j}")).map(Mutation::Touch))
            .collect::<Result<Vec<_>, _>>()?;
        let rev = db.write("t", WriteRequest::new(batch))?;
        anyhow::ensure!(rev == next, "revision {rev} is not the expected {next}");
        out!("ack {rev}\n");
    }
}
