//! `ketenpoort-bench`: the side-by-side benchmark of BENCHMARKS.md.
//!
//! One run starts baseline A (bare hyper + tokio-rustls echo with the gateway's client-certificate verification)
//! and the gateway (SQLite, and PostgreSQL when `KETENPOORT_TEST_POSTGRES` is set) as child processes, drives them
//! with the load generator of `load.rs`, measures the storage floor with the gateway's own rows, and writes the
//! report into BENCHMARKS.md between its markers. It asserts nothing about speed: it measures and reports.

// The same allocator as the `ketenpoort` binary, for the servers this binary runs (baseline and gateway alike).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod baseline;
mod floor;
mod load;
mod report;
mod servers;

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::{Parser, Subcommand};
use load::{Identity, Outcome, Spec, Window};
use report::{Report, Row};
use servers::{GatewaySetup, RssSampler, Server, ThreadRole, ThreadUse};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "ketenpoort-bench",
    about = "Side-by-side benchmark of ketenpoort (see BENCHMARKS.md)"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Every scenario; writes the report into BENCHMARKS.md (or --out).
    All(RunArgs),
    /// A short run of every scenario (seconds each, a small log) to check the tool works; writes no report
    /// unless --out is given.
    Smoke(RunArgs),
    /// Only the P1 keep-alive load on a fresh SQLite gateway, announced with its pid after a pause, to attach a
    /// profiler (`perf record -p PID`). `KETENPOORT_BENCH_RATE=N`: open loop at N/s instead;
    /// `KETENPOORT_BENCH_IDLE=1`: hold the 1,000 idle connections instead, to inspect memory;
    /// `KETENPOORT_BENCH_NEWCONN=1`: the new-connection load instead (`KETENPOORT_BENCH_BASELINE=1` against
    /// baseline A, `KETENPOORT_BENCH_PATH=/v1/...` a GET of that path instead of P1, expected status
    /// `KETENPOORT_BENCH_STATUS`, default 200), with the server's CPU per connection.
    Profile(RunArgs),
    /// Only the "Large log" part of `all`: a real P1 entry from a short gateway run, the log of `--entries` copies
    /// written through the LogWriter, `audit verify` (median of 3) and start-up; prints the figures.
    LargeLog(LargeLogArgs),
    /// Baseline A on its own (used by `all`; prints its address on stdout).
    Baseline {
        #[arg(long)]
        certs: PathBuf,
    },
    /// The gateway's own command line (`ketenpoort ...`), as the `ketenpoort` binary runs it.
    #[command(disable_help_flag = true)]
    Ketenpoort {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(clap::Args, Clone)]
struct RunArgs {
    /// Seconds measured per scenario (after a 1 s warm-up).
    #[arg(long)]
    duration: Option<f64>,
    /// Report file (its text between the bench markers is replaced).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Concurrent keep-alive connections for the max-rate scenarios.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Entries in the log for `audit verify` and start-up.
    #[arg(long)]
    log_entries: Option<u64>,
    /// PostgreSQL server URL (default: $KETENPOORT_TEST_POSTGRES; PostgreSQL rows are skipped without it).
    #[arg(long)]
    postgres: Option<String>,
    /// Repository root (certs-example/, policies/, examples/).
    #[arg(long)]
    root: Option<PathBuf>,
}

#[derive(clap::Args, Clone)]
struct LargeLogArgs {
    /// Repository root (certs-example/, policies/, examples/).
    #[arg(long)]
    root: Option<PathBuf>,
    #[arg(long, default_value_t = 1_000_000)]
    entries: u64,
    /// Keep the log in this directory; a log already there is verified as it is (not written again).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Write the log to a fresh database on this PostgreSQL server (e.g. postgres://postgres@127.0.0.1:5432),
    /// dropped afterwards, instead of the SQLite file.
    #[arg(long)]
    postgres: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Baseline { certs } => baseline::run(&certs),
        Cmd::Ketenpoort { args } => {
            ketenpoort::cli::main_from(std::iter::once("ketenpoort".to_owned()).chain(args))
        }
        Cmd::All(args) => run(args, false),
        Cmd::Smoke(args) => run(args, true),
        Cmd::Profile(args) => profile(args),
        Cmd::LargeLog(args) => large_log_only(args),
    }
}

struct Plan {
    duration: Duration,
    warmup: Duration,
    conns: usize,
    log_entries: u64,
    smoke: bool,
}

fn run(args: RunArgs, smoke: bool) -> anyhow::Result<()> {
    raise_fd_limit();
    let root = args.root.clone().unwrap_or_else(repo_root);
    let plan = Plan {
        duration: Duration::from_secs_f64(args.duration.unwrap_or(if smoke { 1.0 } else { 10.0 })),
        warmup: Duration::from_secs_f64(if smoke { 0.3 } else { 1.0 }),
        conns: args.connections,
        log_entries: args
            .log_entries
            .unwrap_or(if smoke { 20_000 } else { 1_000_000 }),
        smoke,
    };
    let postgres = args
        .postgres
        .clone()
        .or_else(|| std::env::var("KETENPOORT_TEST_POSTGRES").ok())
        .filter(|s| !s.is_empty());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = rt.block_on(run_all(&root, &plan, postgres.as_deref()))?;
    let text = report.render();
    println!("{text}");
    let out = args
        .out
        .clone()
        .or_else(|| (!smoke).then(|| root.join("BENCHMARKS.md")));
    if let Some(out) = out {
        report::write_between_markers(&out, &text)?;
        eprintln!("report written to {}", out.display());
    }
    Ok(())
}

fn profile(args: RunArgs) -> anyhow::Result<()> {
    raise_fd_limit();
    let root = args.root.clone().unwrap_or_else(repo_root);
    let work = std::env::temp_dir().join(format!("ketenpoort-profile-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(async {
        let certs = root.join("certs-example");
        let setup = GatewaySetup {
            dir: work.clone(),
            database_url: format!("sqlite://{}", work.join("ketenpoort.db").display()),
            key_dir: work.join("keys"),
            certs: certs.clone(),
            policies: root.join("policies"),
            batch_max: 512,
        };
        let p1 = example(&root, "P1-overstap-po-vo.json")?;
        let window = Window::starting_in(
            Duration::from_secs(2),
            Duration::from_secs(1),
            Duration::from_secs_f64(args.duration.unwrap_or(10.0)),
        );
        let senders = ids(&certs, P1_SENDERS)?;
        if std::env::var_os("KETENPOORT_BENCH_NEWCONN").is_some() {
            return new_connection_profile(&setup, &senders, p1, window).await;
        }
        let gw = servers::spawn_gateway(&setup, "ketenpoort (SQLite)")?;
        println!("gateway pid {}", gw.pid());
        if std::env::var_os("KETENPOORT_BENCH_IDLE").is_some() {
            // Memory instead of load: the idle scenario on the fresh gateway, held 30 s to inspect /proc/PID/smaps.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let before = servers::rss_kib(gw.pid())?;
            let checkpoint = Spec::get("/v1/audit/checkpoint", &[200]);
            let held = load::hold_idle(gw.addr, &senders, &checkpoint, 1000).await?;
            tokio::time::sleep(Duration::from_secs(2)).await;
            let with = servers::rss_kib(gw.pid())?;
            println!(
                "idle: {} connections, RSS {before} KiB before, {with} KiB with them; holding 30 s",
                held.len()
            );
            tokio::time::sleep(Duration::from_secs(30)).await;
            return anyhow::Ok(());
        }
        let spec = Spec::post("/v1/messages", p1, &[201]);
        // As in the full run, where the fixed-rate rows follow the maximum-rate one: that load first, unmeasured.
        let window = match std::env::var("KETENPOORT_BENCH_PRELOAD")
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
        {
            Some(secs) => {
                let preload = Window::starting_in(
                    Duration::from_secs(1),
                    Duration::ZERO,
                    Duration::from_secs_f64(secs),
                );
                load::closed_loop(gw.addr, &senders, spec.clone(), args.connections, preload).await?;
                Window::starting_in(Duration::ZERO, Duration::from_secs(1), window.duration())
            }
            None => window,
        };
        let commits_before = commit_latencies(&gw)?;
        let sampling = Sampling::start(gw.pid(), window);
        let out = match std::env::var("KETENPOORT_BENCH_RATE")
            .ok()
            .and_then(|r| r.parse().ok())
        {
            Some(rate) => load::open_loop(gw.addr, &senders, spec, rate, 64, window).await?,
            None => load::closed_loop(gw.addr, &senders, spec, args.connections, window).await?,
        };
        let sampled = sampling.finish(out.ok).await?;
        println!(
            "P1 keep-alive: {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, server CPU {:.0} µs/request, errors {} {:?}",
            out.rate(),
            out.quantile_ms(0.5),
            out.quantile_ms(0.99),
            sampled.server_cpu.unwrap_or(f64::NAN),
            out.errors,
            out.first_error
        );
        println!("{}", commit_latencies(&gw)?.since(&commits_before));
        if let Some(by_thread) = sampled.threads.and_then(|t| t.note(out.ok)) {
            println!("{by_thread}");
        }
        anyhow::Ok(())
    });
    if std::env::var_os("KETENPOORT_BENCH_KEEP").is_some() {
        eprintln!("kept {}", work.display());
    } else {
        let _ = std::fs::remove_dir_all(&work);
    }
    result
}

/// `profile` with `KETENPOORT_BENCH_NEWCONN=1`: the new-connection scenario of `all` (16 workers, a full handshake
/// and one request per connection) against the gateway, or against baseline A with `KETENPOORT_BENCH_BASELINE=1`.
/// `KETENPOORT_BENCH_PATH=/v1/audit/checkpoint` sends that cheap GET instead of P1, so the connection's own cost
/// is not hidden by the request's (`/v1/audit/proof/inclusion/x` with `KETENPOORT_BENCH_STATUS=400` is answered after
/// the identity and quota phases without touching the store). Prints the server's CPU per connection over the measured window.
async fn new_connection_profile(
    setup: &GatewaySetup,
    senders: &[Identity],
    p1: Bytes,
    window: Window,
) -> anyhow::Result<()> {
    let baseline =
        std::env::var("KETENPOORT_BENCH_BASELINE").is_ok_and(|v| !v.is_empty() && v != "0");
    let server = if baseline {
        servers::spawn_baseline(&setup.certs, &setup.dir)?
    } else {
        servers::spawn_gateway(setup, "ketenpoort (SQLite)")?
    };
    println!("{} pid {}", server.name, server.pid());
    let spec = match std::env::var("KETENPOORT_BENCH_PATH") {
        Ok(path) => {
            // The expected status of that GET (default 200; baseline A answers 200 to everything).
            let status: u16 = match std::env::var("KETENPOORT_BENCH_STATUS") {
                Ok(s) if !baseline => s.parse().context("KETENPOORT_BENCH_STATUS")?,
                _ => 200,
            };
            Spec::get(&path, Box::leak(Box::new([status])))
        }
        Err(_) if baseline => Spec::post("/v1/messages", p1, &[200]),
        Err(_) => Spec::post("/v1/messages", p1, &[201]),
    };
    let commits_before = if baseline {
        None
    } else {
        Some(commit_latencies(&server)?)
    };
    let sampling = Sampling::start(server.pid(), window);
    let out = load::new_connections(server.addr, senders, spec, 16, window).await?;
    let sampled = sampling.finish(out.ok).await?;
    println!(
        "new connection per request on {}: {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, server CPU {:.0} µs/conn, \
         load generator {:.0} µs/conn, errors {} {:?}",
        server.name,
        out.rate(),
        out.quantile_ms(0.5),
        out.quantile_ms(0.99),
        sampled.server_cpu.unwrap_or(f64::NAN),
        sampled.client_cpu.unwrap_or(f64::NAN),
        out.errors,
        out.first_error
    );
    if let Some(before) = commits_before {
        println!("{}", commit_latencies(&server)?.since(&before));
    }
    if let Some(by_thread) = sampled.threads.and_then(|t| t.note(out.ok)) {
        println!("{by_thread}");
    }
    server.stop();
    Ok(())
}

fn large_log_only(args: LargeLogArgs) -> anyhow::Result<()> {
    let root = args.root.unwrap_or_else(repo_root);
    let plan = Plan {
        duration: Duration::from_secs(1),
        warmup: Duration::from_millis(300),
        conns: 8,
        log_entries: args.entries,
        smoke: false,
    };
    let temp = std::env::temp_dir().join(format!("ketenpoort-large-log-{}", std::process::id()));
    let work = args.dir.clone().unwrap_or_else(|| temp.clone());
    std::fs::create_dir_all(&work)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(async {
        let mut ctx = Ctx {
            plan: &plan,
            root: &root,
            certs: root.join("certs-example"),
            report: Report::new(false),
        };
        // A short P1 run on a fresh gateway, for real disclosure entries to copy.
        let dir = work.join("templates");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let setup = GatewaySetup {
            dir: dir.clone(),
            database_url: format!("sqlite://{}", dir.join("ketenpoort.db").display()),
            key_dir: dir.join("keys"),
            certs: ctx.certs.clone(),
            policies: root.join("policies"),
            batch_max: 512,
        };
        let gw = servers::spawn_gateway(&setup, "ketenpoort (SQLite)")?;
        let spec = Spec::post(
            "/v1/messages",
            example(&root, "P1-overstap-po-vo.json")?,
            &[201],
        );
        let senders = ids(&ctx.certs, P1_SENDERS)?;
        let out = load::closed_loop(gw.addr, &senders, spec, plan.conns, ctx.window()).await?;
        gw.stop();
        if out.ok == 0 {
            bail!("no P1 message succeeded ({:?})", out.first_error);
        }
        let templates = floor::Templates::capture(&setup.database_url, "lyceum-zuid", 20).await?;
        println!(
            "P1 disclosure entry: {} bytes",
            templates.mean_entry_bytes()
        );
        let pg = args
            .postgres
            .as_deref()
            .map(|server| PgDb::create(server, "large_log"))
            .transpose()?;
        if pg.is_some() {
            println!("backend: PostgreSQL");
        }
        large_log(
            &mut ctx,
            &work,
            &templates,
            pg.as_ref().map(|db| db.url.as_str()),
        )
        .await?;
        print!("{}", ctx.report.large_log_text());
        for n in &ctx.report.notes {
            println!("- {n}");
        }
        anyhow::Ok(())
    });
    if args.dir.is_none() {
        let _ = std::fs::remove_dir_all(&temp);
    }
    result
}

/// The repository root: the gateway's crate, of which this crate (`bench/`) is a workspace member.
fn repo_root() -> PathBuf {
    let bench = Path::new(env!("CARGO_MANIFEST_DIR"));
    bench.parent().unwrap_or(bench).to_path_buf()
}

fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max.min(65536);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

struct Ctx<'a> {
    plan: &'a Plan,
    root: &'a Path,
    certs: PathBuf,
    report: Report,
}

/// The senders of the P1 load: both primary schools of certs-example, alternating over the connections.
const P1_SENDERS: &[&str] = &["obs-de-linde", "cbs-het-anker"];

async fn run_all(root: &Path, plan: &Plan, postgres: Option<&str>) -> anyhow::Result<Report> {
    let work = std::env::temp_dir().join(format!("ketenpoort-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let mut ctx = Ctx {
        plan,
        root,
        certs: root.join("certs-example"),
        report: Report::new(plan.smoke),
    };
    if !plan.smoke {
        let m = tokio::task::spawn_blocking(servers::prefault_memory).await??;
        eprintln!("{m}");
        ctx.report.memory = Some(m);
    }
    let result = scenarios(&mut ctx, &work, postgres).await;
    if std::env::var_os("KETENPOORT_BENCH_KEEP").is_some() {
        eprintln!("kept {}", work.display());
    } else {
        let _ = std::fs::remove_dir_all(&work);
    }
    result?;
    Ok(ctx.report)
}

fn example(root: &Path, name: &str) -> anyhow::Result<Bytes> {
    let path = root.join("examples").join(name);
    Ok(Bytes::from(
        std::fs::read(&path).with_context(|| path.display().to_string())?,
    ))
}

fn ids(certs: &Path, partners: &[&str]) -> anyhow::Result<Vec<Identity>> {
    partners.iter().map(|p| Identity::load(certs, p)).collect()
}

impl Ctx<'_> {
    /// The next measured window: set-up, warm-up, then the measured duration.
    fn window(&self) -> Window {
        Window::starting_in(
            Duration::from_millis(300),
            self.plan.warmup,
            self.plan.duration,
        )
    }
}

/// CPU time of a server and of this load generator over a window, the server's threads' use, and its peak RSS.
struct Sampling {
    cpu: tokio::task::JoinHandle<[Snapshot; 2]>,
    rss: RssSampler,
}

/// One reading at the start or the end of a window (`None` where it could not be read).
struct Snapshot {
    server_us: Option<u64>,
    client_us: Option<u64>,
    threads: Option<Vec<(u32, ThreadRole, ThreadUse)>>,
}

/// What `Sampling` found over its window.
struct Sampled {
    /// Server CPU µs per request.
    server_cpu: Option<f64>,
    /// Load-generator CPU µs per request.
    client_cpu: Option<f64>,
    peak_rss_kib: u64,
    threads: Option<ThreadSplit>,
}

impl Sampling {
    fn start(pid: u32, window: Window) -> Sampling {
        let me = std::process::id();
        let cpu = tokio::spawn(async move {
            let read = || Snapshot {
                server_us: servers::cpu_micros(pid).ok(),
                client_us: servers::cpu_micros(me).ok(),
                threads: servers::threads(pid).ok(),
            };
            tokio::time::sleep_until(window.measure_from.into()).await;
            let a = read();
            tokio::time::sleep_until(window.until.into()).await;
            [a, read()]
        });
        Sampling {
            cpu,
            rss: RssSampler::start(pid),
        }
    }

    /// What the window showed, per request for `requests` in it.
    async fn finish(self, requests: u64) -> anyhow::Result<Sampled> {
        let [a, b] = self.cpu.await?;
        let peak_rss_kib = self.rss.finish();
        let per = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) if requests > 0 => Some((b - a) as f64 / requests as f64),
            _ => None,
        };
        Ok(Sampled {
            server_cpu: per(a.server_us, b.server_us),
            client_cpu: per(a.client_us, b.client_us),
            peak_rss_kib,
            threads: match (&a.threads, &b.threads) {
                (Some(a), Some(b)) => Some(ThreadSplit::between(a, b)),
                _ => None,
            },
        })
    }
}

/// The server's threads' CPU time and bytes written over a window, by role (`servers::ThreadRole`).
#[derive(Clone, Copy, Debug, Default)]
struct ThreadSplit {
    log_writer: ThreadUse,
    checkpointer: ThreadUse,
    other: ThreadUse,
}

impl ThreadSplit {
    fn between(
        a: &[(u32, ThreadRole, ThreadUse)],
        b: &[(u32, ThreadRole, ThreadUse)],
    ) -> ThreadSplit {
        ThreadSplit {
            log_writer: servers::thread_use_between(a, b, ThreadRole::LogWriter),
            checkpointer: servers::thread_use_between(a, b, ThreadRole::Checkpointer),
            other: servers::thread_use_between(a, b, ThreadRole::Other),
        }
    }

    fn add(self, o: ThreadSplit) -> ThreadSplit {
        let sum = |a: ThreadUse, b: ThreadUse| ThreadUse {
            cpu_us: a.cpu_us + b.cpu_us,
            written: a.written + b.written,
        };
        ThreadSplit {
            log_writer: sum(self.log_writer, o.log_writer),
            checkpointer: sum(self.checkpointer, o.checkpointer),
            other: sum(self.other, o.other),
        }
    }

    /// Per request, for a server with a log writer thread of its own (the gateway on a SQLite file); `None` else.
    fn note(&self, requests: u64) -> Option<String> {
        if requests == 0 || self.log_writer == ThreadUse::default() {
            return None;
        }
        let n = requests as f64;
        let us = |u: ThreadUse| u.cpu_us as f64 / n;
        let kb = |u: ThreadUse| u.written as f64 / n / 1000.0;
        Some(format!(
            "by thread, a request: log writer {:.0} µs CPU, {:.1} KB written (the WAL); WAL checkpointer {:.0} µs, \
             {:.1} KB (the database file); the other threads (tokio's workers: TLS, HTTP, the request's phases; its \
             blocking pool) {:.0} µs, {:.1} KB (sockets)",
            us(self.log_writer),
            kb(self.log_writer),
            us(self.checkpointer),
            kb(self.checkpointer),
            us(self.other),
            kb(self.other),
        ))
    }
}

/// Runs one measured load against one server: CPU of server and load generator over the window, peak RSS.
async fn measure<F, Fut>(
    ctx: &mut Ctx<'_>,
    server: &Server,
    scenario: &str,
    run: F,
) -> anyhow::Result<Outcome>
where
    F: FnOnce(Window) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Outcome>>,
{
    let m = sample(server, scenario, ctx.window(), run).await?;
    let row = m.row(scenario, &server.name);
    eprintln!("{}", row.one_line());
    ctx.report.rows.push(row);
    Ok(m.outcome)
}

/// One measured window of one server: what the load generator saw, and the CPU time (µs) both processes spent
/// in it (`None` where it could not be read).
struct Measured {
    outcome: Outcome,
    server_cpu_us: Option<f64>,
    client_cpu_us: Option<f64>,
    peak_rss_kib: u64,
    threads: Option<ThreadSplit>,
}

impl Measured {
    /// Adds a later window of the same scenario and server.
    fn add(mut self, other: Measured) -> Measured {
        let window = self.outcome.window + other.outcome.window;
        self.outcome.merge(other.outcome);
        self.outcome.window = window;
        let sum = |a: Option<f64>, b: Option<f64>| Some(a? + b?);
        Measured {
            server_cpu_us: sum(self.server_cpu_us, other.server_cpu_us),
            client_cpu_us: sum(self.client_cpu_us, other.client_cpu_us),
            peak_rss_kib: self.peak_rss_kib.max(other.peak_rss_kib),
            threads: match (self.threads, other.threads) {
                (Some(a), Some(b)) => Some(a.add(b)),
                _ => None,
            },
            outcome: self.outcome,
        }
    }

    fn row(&self, scenario: &str, server: &str) -> Row {
        let per_request = |us: Option<f64>| us.map(|us| us / self.outcome.ok as f64);
        let mut row = Row::from_outcome(
            scenario,
            server,
            &self.outcome,
            per_request(self.server_cpu_us),
            per_request(self.client_cpu_us),
            self.peak_rss_kib,
        );
        if let Some(by_thread) = self.threads.and_then(|t| t.note(self.outcome.ok)) {
            row.note = Some(match row.note.take() {
                Some(n) => format!("{n}; {by_thread}"),
                None => by_thread,
            });
        }
        row
    }
}

/// Runs `run` against `server` in `window`; fails when no request succeeded.
async fn sample<F, Fut>(
    server: &Server,
    scenario: &str,
    window: Window,
    run: F,
) -> anyhow::Result<Measured>
where
    F: FnOnce(Window) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Outcome>>,
{
    let sampling = Sampling::start(server.pid(), window);
    let outcome = run(window).await?;
    let sampled = sampling.finish(outcome.ok).await?;
    if outcome.ok == 0 {
        bail!(
            "{scenario} on {}: no request succeeded ({:?})",
            server.name,
            outcome.first_error
        );
    }
    let ok = outcome.ok as f64;
    Ok(Measured {
        server_cpu_us: sampled.server_cpu.map(|us| us * ok),
        client_cpu_us: sampled.client_cpu.map(|us| us * ok),
        peak_rss_kib: sampled.peak_rss_kib,
        threads: sampled.threads,
        outcome,
    })
}

/// Rounds of `measure_alternating`.
const ALTERNATING_ROUNDS: u32 = 5;

/// Measures one scenario on two servers in `ALTERNATING_ROUNDS` alternating rounds (first, second, first, ...),
/// each with its warm-up and a fifth of the window, and reports each server's rounds as one row: requests and
/// latencies added up, CPU per request over all rounds, the highest RSS. A machine whose speed drifts during a
/// run (seen here: a quarter within minutes) then moves both servers alike and barely their ratio; the ratio of
/// each round is written beside the second server's row. `run(i, window)` loads server `i`.
async fn measure_alternating<F, Fut>(
    ctx: &mut Ctx<'_>,
    scenario: &str,
    servers: [&Server; 2],
    mut run: F,
) -> anyhow::Result<(Outcome, Outcome)>
where
    F: FnMut(usize, Window) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Outcome>>,
{
    let duration = ctx.plan.duration / ALTERNATING_ROUNDS;
    let mut totals: [Option<Measured>; 2] = [None, None];
    let mut ratios = Vec::new();
    for _ in 0..ALTERNATING_ROUNDS {
        let mut rates = [0.0; 2];
        for (i, server) in servers.iter().enumerate() {
            let window = Window::starting_in(Duration::from_millis(300), ctx.plan.warmup, duration);
            let m = sample(server, scenario, window, |w| run(i, w)).await?;
            rates[i] = m.outcome.rate();
            totals[i] = Some(match totals[i].take() {
                None => m,
                Some(sum) => sum.add(m),
            });
        }
        ratios.push(rates[1] / rates[0]);
    }
    let [first, second] = totals.map(|t| t.expect("every round measured both servers"));
    let mut rows = [
        first.row(scenario, &servers[0].name),
        second.row(scenario, &servers[1].name),
    ];
    let each: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
    let rounds = format!(
        "{ALTERNATING_ROUNDS} rounds alternating with {}; ratio per round {}",
        servers[0].name,
        each.join(", ")
    );
    rows[1].note = Some(match rows[1].note.take() {
        Some(n) => format!("{n}; {rounds}"),
        None => rounds,
    });
    for row in rows {
        eprintln!("{}", row.one_line());
        ctx.report.rows.push(row);
    }
    Ok((first.outcome, second.outcome))
}

async fn scenarios(ctx: &mut Ctx<'_>, work: &Path, postgres: Option<&str>) -> anyhow::Result<()> {
    let p1 = example(ctx.root, "P1-overstap-po-vo.json")?;
    let p7 = example(ctx.root, "P7-telling-thuiszitters.json")?;
    let senders = ids(&ctx.certs, P1_SENDERS)?;
    let lyceum = Identity::load(&ctx.certs, "lyceum-zuid")?;
    let leerplicht = ids(&ctx.certs, &["leerplicht-gemeente"])?;
    let conns = ctx.plan.conns;
    ctx.report.p1_bytes = p1.len();
    ctx.report.p7_bytes = p7.len();

    // Baseline A.
    let base = servers::spawn_baseline(&ctx.certs, work)?;
    let echo_p1 = Spec::post("/v1/messages", p1.clone(), &[200]);
    let echo_p7 = Spec::post("/v1/messages", p7.clone(), &[200]);
    let base_ka = measure(ctx, &base, "P1 keep-alive, max rate", |w| {
        load::closed_loop(base.addr, &senders, echo_p1.clone(), conns, w)
    })
    .await?;
    measure(ctx, &base, "P7 aggregate keep-alive, max rate", |w| {
        load::closed_loop(base.addr, &leerplicht, echo_p7.clone(), conns, w)
    })
    .await?;

    // The gateway on SQLite.
    let sqlite_dir = work.join("sqlite");
    std::fs::create_dir_all(&sqlite_dir)?;
    let setup = GatewaySetup {
        dir: sqlite_dir.clone(),
        database_url: format!("sqlite://{}", sqlite_dir.join("ketenpoort.db").display()),
        key_dir: sqlite_dir.join("keys"),
        certs: ctx.certs.clone(),
        policies: ctx.root.join("policies"),
        batch_max: 512,
    };
    let gw = servers::spawn_gateway(&setup, "ketenpoort (SQLite)")?;
    // 1,000 idle connections on each server while it is fresh (the gateway again after the load below).
    idle(ctx, &base, &senders, &echo_p1, "fresh").await?;
    let checkpoint = Spec::get("/v1/audit/checkpoint", &[200]);
    idle(ctx, &gw, &senders, &checkpoint, "fresh").await?;
    let send_p1 = Spec::post("/v1/messages", p1.clone(), &[201]);
    let send_p7 = Spec::post("/v1/messages", p7.clone(), &[201]);
    let before = gateway_log_counters(&gw)?;
    let gw_ka = measure(ctx, &gw, "P1 keep-alive, max rate", |w| {
        load::closed_loop(gw.addr, &senders, send_p1.clone(), conns, w)
    })
    .await?;
    let after = gateway_log_counters(&gw)?;
    // The per-thread split finds the gateway's threads by name: a renamed thread must not drop it unnoticed.
    let split = ctx
        .report
        .rows
        .iter()
        .rfind(|r| r.scenario == "P1 keep-alive, max rate" && r.server == gw.name)
        .and_then(|r| r.note.as_deref())
        .is_some_and(|n| n.contains("by thread"));
    if !split {
        bail!("no per-thread split for the SQLite gateway: is its log writer thread still named `ketenpoort-log-writer`?");
    }
    let mean_batch = (after.entries - before.entries) / (after.batches - before.batches).max(1.0);
    ctx.report.sqlite_mean_batch = Some(mean_batch);
    ctx.report.durable_check = Some(format!(
        "{} answers 201 counted in the window; the log grew by {} entries in {} batches over the whole run (warm-up included)",
        gw_ka.ok,
        after.entries - before.entries,
        after.batches - before.batches
    ));
    if ((after.entries - before.entries) as u64) < gw_ka.ok {
        bail!("fewer log entries than 201 answers: the log is not keeping up with deliveries");
    }

    let max = gw_ka.rate();
    for pct in [25u32, 50, 75] {
        let rate = max * pct as f64 / 100.0;
        let name = format!("P1 fixed rate {pct}% of gateway max ({rate:.0}/s)");
        let commits_before = commit_latencies(&gw)?;
        measure(ctx, &gw, &name, |w| {
            load::open_loop(gw.addr, &senders, send_p1.clone(), rate, 64, w)
        })
        .await?;
        let commits = commit_latencies(&gw)?.since(&commits_before);
        if let Some(row) = ctx
            .report
            .rows
            .iter_mut()
            .rfind(|r| r.scenario == name && r.server == gw.name)
        {
            row.note = Some(match row.note.take() {
                Some(n) => format!("{n}; {commits}"),
                None => commits.to_string(),
            });
        }
        measure(ctx, &base, &name, |w| {
            load::open_loop(base.addr, &senders, echo_p1.clone(), rate, 64, w)
        })
        .await?;
    }
    // The new-connection pair in alternating rounds: its ratio is the one most moved by the machine's drift.
    let (base_nc, gw_nc) = measure_alternating(
        ctx,
        "P1, new mTLS connection per request",
        [&base, &gw],
        |server, w| {
            let spec = if server == 0 { &echo_p1 } else { &send_p1 };
            let addr = if server == 0 { base.addr } else { gw.addr };
            load::new_connections(addr, &senders, spec.clone(), 16, w)
        },
    )
    .await?;
    measure(ctx, &gw, "P7 aggregate keep-alive, max rate", |w| {
        load::closed_loop(gw.addr, &leerplicht, send_p7.clone(), conns, w)
    })
    .await?;
    inbox_drain(ctx, &gw, &lyceum).await?;
    ctx.report.ratios.push((
        "P1 keep-alive: ketenpoort (SQLite) ÷ baseline A".into(),
        gw_ka.rate() / base_ka.rate(),
        Some(0.35),
    ));
    ctx.report.ratios.push((
        "new mTLS connection per request: ketenpoort (SQLite) ÷ baseline A".into(),
        gw_nc.rate() / base_nc.rate(),
        Some(0.8),
    ));

    idle(ctx, &gw, &senders, &checkpoint, "after the load above").await?;
    base.stop();
    gw.stop();

    // Storage floor with the gateway's own rows.
    let templates = floor::Templates::capture(&setup.database_url, "lyceum-zuid", 200).await?;
    ctx.report.entry_bytes = templates.mean_entry_bytes();
    ctx.report.message_bytes = templates.mean_message_bytes();
    let mut batches = vec![1usize, 512];
    let observed = mean_batch.round().max(1.0) as usize;
    if !batches.contains(&observed) {
        batches.insert(1, observed);
    }
    let floor_512 = storage_floors(ctx, work, "SQLite", None, &templates, &batches).await?;
    ctx.report.ratios.push((
        "P1 keep-alive: ketenpoort (SQLite) ÷ storage floor (SQLite, batch 512)".into(),
        gw_ka.rate() / floor_512,
        Some(0.8),
    ));

    // PostgreSQL.
    match postgres {
        Some(server) => {
            postgres_rows(ctx, work, server, &senders, &send_p1, &templates, &batches).await?
        }
        None => ctx.report.notes.push(
            "PostgreSQL rows not run: KETENPOORT_TEST_POSTGRES (or --postgres) was not set.".into(),
        ),
    }

    // A large log: audit verify and start-up.
    large_log(ctx, work, &templates, None).await?;
    Ok(())
}

/// The gateway's `ketenpoort_log_commit_seconds` histogram: cumulative commits per upper bound (seconds).
struct CommitLatencies(Vec<(f64, f64)>);

fn commit_latencies(gw: &Server) -> anyhow::Result<CommitLatencies> {
    let (_, text) = gw.ops_get("/metrics")?;
    let buckets: Vec<(f64, f64)> = text
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("ketenpoort_log_commit_seconds_bucket{le=\"")?;
            let (le, n) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, n.parse().ok()?))
        })
        .collect();
    if buckets.last().map(|b| b.0) != Some(f64::INFINITY) {
        bail!("the gateway's /metrics has no ketenpoort_log_commit_seconds histogram");
    }
    Ok(CommitLatencies(buckets))
}

impl CommitLatencies {
    fn since(&self, before: &CommitLatencies) -> CommitLatencies {
        CommitLatencies(
            self.0
                .iter()
                .zip(&before.0)
                .map(|((le, n), (_, m))| (*le, n - m))
                .collect(),
        )
    }

    fn over(&self, seconds: f64) -> f64 {
        let total = self.0.last().map_or(0.0, |b| b.1);
        let within = self
            .0
            .iter()
            .find(|b| b.0 == seconds)
            .map_or(total, |b| b.1);
        total - within
    }
}

impl std::fmt::Display for CommitLatencies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.0} log commits (warm-up included), {:.0} longer than 5 ms, {:.0} than 10 ms, {:.0} than 50 ms (`ketenpoort_log_commit_seconds`; each holds every request that arrives meanwhile)",
            self.0.last().map_or(0.0, |b| b.1),
            self.over(0.005),
            self.over(0.01),
            self.over(0.05)
        )
    }
}

struct LogCounters {
    batches: f64,
    entries: f64,
}

fn gateway_log_counters(gw: &Server) -> anyhow::Result<LogCounters> {
    let (_, text) = gw.ops_get("/metrics")?;
    Ok(LogCounters {
        batches: servers::metric(&text, "ketenpoort_log_batches_total").unwrap_or(0.0),
        entries: servers::metric(&text, "ketenpoort_log_entries_total").unwrap_or(0.0),
    })
}

async fn inbox_drain(ctx: &mut Ctx<'_>, gw: &Server, receiver: &Identity) -> anyhow::Result<()> {
    let window = ctx.window();
    let sampling = Sampling::start(gw.pid(), window);
    let (fetches, acks) = load::drain_inbox(gw.addr, receiver, 100, 16, window).await?;
    let sampled = sampling.finish(acks.ok).await?;
    let mut row = Row::from_outcome(
        "inbox: fetch (pages of 100) + ack, per message",
        &gw.name,
        &acks,
        sampled.server_cpu,
        None,
        sampled.peak_rss_kib,
    );
    row.note = Some(format!(
        "{} fetches of 100 ({:.0}/s, p50 {:.1} ms, p99 {:.1} ms); latencies are the acks'; CPU per message fetched and acknowledged",
        fetches.ok,
        fetches.rate(),
        fetches.quantile_ms(0.5),
        fetches.quantile_ms(0.99)
    ));
    row.errors += fetches.errors;
    eprintln!("{}", row.one_line());
    ctx.report.rows.push(row);
    if acks.ok == 0 {
        bail!("inbox drain acknowledged nothing: {:?}", acks.first_error);
    }
    Ok(())
}

async fn idle(
    ctx: &mut Ctx<'_>,
    server: &Server,
    ids: &[Identity],
    spec: &Spec,
    when: &str,
) -> anyhow::Result<()> {
    let n = if ctx.plan.smoke { 100 } else { 1000 };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = servers::rss_kib(server.pid())?;
    let held = load::hold_idle(server.addr, ids, spec, n).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let with = servers::rss_kib(server.pid())?;
    ctx.report.idle.push(report::Idle {
        server: server.name.clone(),
        when: when.to_owned(),
        connections: held.len(),
        rss_before_kib: before,
        rss_with_kib: with,
    });
    eprintln!(
        "idle ({when}): {} with {} connections: RSS {} KiB (before {} KiB)",
        server.name,
        held.len(),
        with,
        before
    );
    drop(held);
    Ok(())
}

async fn storage_floors(
    ctx: &mut Ctx<'_>,
    work: &Path,
    backend: &str,
    pg_server: Option<&str>,
    templates: &floor::Templates,
    batches: &[usize],
) -> anyhow::Result<f64> {
    let mut at_512 = 0.0;
    for &batch in batches {
        let dir = work.join(format!("floor-{backend}-{batch}"));
        std::fs::create_dir_all(&dir)?;
        let pg = match pg_server {
            Some(server) => Some(PgDb::create(server, &format!("floor_{batch}"))?),
            None => None,
        };
        let url = match &pg {
            Some(db) => db.url.clone(),
            None => format!("sqlite://{}", dir.join("floor.db").display()),
        };
        let store = ketenpoort::store::open(&url).await?;
        store
            .check_durability()
            .await
            .context("the storage floor runs on durable settings only")?;
        let key =
            ketenpoort::audit::checkpoint::SigningKey::load_or_create(&dir.join("floor.key"))?;
        let secs = if ctx.plan.smoke {
            0.5
        } else if batch == 1 {
            3.0
        } else {
            5.0
        };
        // The floor runs in this process: its CPU (all of it on SQLite, the client side on PostgreSQL) and, on
        // SQLite, the split between the writer's and the checkpointer's threads.
        let me = std::process::id();
        let (cpu_before, threads_before) = (servers::cpu_micros(me)?, servers::threads(me)?);
        let r = floor::storage_floor_on_writer(
            store.clone(),
            key,
            templates.clone(),
            batch,
            Duration::from_secs_f64(secs),
        )
        .await?;
        let (cpu_after, threads_after) = (servers::cpu_micros(me)?, servers::threads(me)?);
        drop(store);
        let per_message = |us: u64| us as f64 / r.messages.max(1) as f64;
        let cpu_us = per_message(cpu_after.saturating_sub(cpu_before));
        let role = |role| {
            per_message(servers::thread_use_between(&threads_before, &threads_after, role).cpu_us)
        };
        // The writer's thread has ended by now (its CPU is in the process's); the loop read it on that thread.
        let (writer_us, checkpointer_us) = (
            per_message(r.loop_thread_cpu_us),
            role(ThreadRole::Checkpointer),
        );
        eprintln!(
            "floor {backend} batch {batch}: {:.0} messages/s, {cpu_us:.1} µs CPU a message (writer {writer_us:.1}, checkpointer {checkpointer_us:.1})",
            r.rate()
        );
        if batch == 512 {
            at_512 = r.rate();
        }
        ctx.report.floors.push(report::Floor {
            backend: backend.to_owned(),
            batch,
            rate: r.rate(),
            messages: r.messages,
            cpu_us,
            writer_us,
            checkpointer_us,
        });
        drop(pg);
    }
    Ok(at_512)
}

/// A database on the PostgreSQL server for one part of the run, dropped afterwards.
struct PgDb {
    server: String,
    name: String,
    url: String,
}

impl PgDb {
    fn create(server: &str, what: &str) -> anyhow::Result<PgDb> {
        let name = format!("ketenpoort_bench_{}_{what}", std::process::id());
        psql(server, &format!("DROP DATABASE IF EXISTS {name}"))?;
        psql(server, &format!("CREATE DATABASE {name}"))?;
        Ok(PgDb {
            server: server.to_owned(),
            url: format!("{}/{name}", server.trim_end_matches('/')),
            name,
        })
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let _ = psql(
            &self.server,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

fn psql(server: &str, sql: &str) -> anyhow::Result<()> {
    let out = std::process::Command::new("psql")
        .arg(format!("{}/postgres", server.trim_end_matches('/')))
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .output()
        .context("psql (Debian package postgresql-client) is needed for the PostgreSQL rows")?;
    if !out.status.success() {
        bail!("psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

async fn postgres_rows(
    ctx: &mut Ctx<'_>,
    work: &Path,
    server: &str,
    senders: &[Identity],
    send_p1: &Spec,
    templates: &floor::Templates,
    batches: &[usize],
) -> anyhow::Result<()> {
    let dir = work.join("postgres");
    std::fs::create_dir_all(&dir)?;
    let db = PgDb::create(server, "gateway")?;
    let setup = GatewaySetup {
        dir: dir.clone(),
        database_url: db.url.clone(),
        key_dir: dir.join("keys"),
        certs: ctx.certs.clone(),
        policies: ctx.root.join("policies"),
        batch_max: 512,
    };
    let gw = servers::spawn_gateway(&setup, "ketenpoort (PostgreSQL)")?;
    let conns = ctx.plan.conns;
    let before = gateway_log_counters(&gw)?;
    let ka = measure(ctx, &gw, "P1 keep-alive, max rate", |w| {
        load::closed_loop(gw.addr, senders, send_p1.clone(), conns, w)
    })
    .await?;
    let after = gateway_log_counters(&gw)?;
    ctx.report.postgres_mean_batch =
        Some((after.entries - before.entries) / (after.batches - before.batches).max(1.0));
    let rate = ka.rate() * 0.5;
    measure(
        ctx,
        &gw,
        &format!("P1 fixed rate 50% of gateway max ({rate:.0}/s)"),
        |w| load::open_loop(gw.addr, senders, send_p1.clone(), rate, 64, w),
    )
    .await?;
    gw.stop();
    drop(db);
    let floor_512 =
        storage_floors(ctx, work, "PostgreSQL", Some(server), templates, batches).await?;
    ctx.report.ratios.push((
        "P1 keep-alive: ketenpoort (PostgreSQL) ÷ storage floor (PostgreSQL, batch 512)".into(),
        ka.rate() / floor_512,
        None,
    ));
    Ok(())
}

/// One GET that must answer 200: the time from send to the whole body, and the body as JSON.
async fn timed_get(
    conn: &mut load::Conn,
    path: &str,
) -> anyhow::Result<(Duration, serde_json::Value)> {
    let started = Instant::now();
    let (status, body) = conn.send(&load::Spec::get(path, &[200]), false).await?;
    let took = started.elapsed();
    anyhow::ensure!(status == 200, "{path}: {status}");
    Ok((took, serde_json::from_slice(&body)?))
}

/// Inclusion and consistency proofs from the API on the large log, one at a time over one keep-alive connection,
/// each checked against the latest signed checkpoint before it counts.
async fn time_proofs(
    addr: std::net::SocketAddr,
    certs: &Path,
    runs: usize,
) -> anyhow::Result<report::Proofs> {
    use ketenpoort::audit::checkpoint::SignedCheckpoint;
    use ketenpoort::audit::merkle;
    let id = load::Identity::load(certs, "lyceum-zuid")?;
    let mut conn = load::Conn::open(addr, &id, true).await?;
    let (_, v) = timed_get(&mut conn, "/v1/audit/checkpoint").await?;
    let own = v["log_id"].clone();
    let note = v["logs"]
        .as_array()
        .and_then(|logs| logs.iter().find(|l| l["log_id"] == own))
        .and_then(|l| l["note"].as_str())
        .context("no checkpoint of the gateway's own log")?;
    let cp = SignedCheckpoint::from_note(note)?.checkpoint;
    let (size, root) = (cp.tree_size, cp.root);
    let hash_of = |v: &serde_json::Value| -> anyhow::Result<merkle::Hash> {
        let bytes = hex::decode(v.as_str().context("hash")?)?;
        bytes.try_into().map_err(|_| anyhow::anyhow!("hash length"))
    };
    let hashes_of = |v: &serde_json::Value| -> anyhow::Result<Vec<merkle::Hash>> {
        v.as_array().context("proof")?.iter().map(hash_of).collect()
    };
    let mut inclusion = Vec::with_capacity(runs);
    let mut consistency = Vec::with_capacity(runs);
    for i in 0..runs as u64 {
        // Spread over the whole log, the last entries included.
        let index = (size - 1) - (size - 1) * i / runs as u64;
        let (took, p) = timed_get(
            &mut conn,
            &format!("/v1/audit/proof/inclusion/{index}?tree_size={size}"),
        )
        .await?;
        merkle::verify_inclusion(
            &hash_of(&p["leaf_hash"])?,
            index,
            size,
            &hashes_of(&p["proof"])?,
            &root,
        )
        .map_err(|e| anyhow::anyhow!("inclusion proof {index}: {e}"))?;
        inclusion.push(took);

        let from = 1 + (size - 1) * i / runs as u64;
        let (took, c) = timed_get(
            &mut conn,
            &format!("/v1/audit/proof/consistency?from={from}&to={size}"),
        )
        .await?;
        anyhow::ensure!(
            hash_of(&c["to_root"])? == root,
            "consistency proof names another root"
        );
        merkle::verify_consistency(
            from,
            size,
            &hash_of(&c["from_root"])?,
            &root,
            &hashes_of(&c["proof"])?,
        )
        .map_err(|e| anyhow::anyhow!("consistency proof {from}: {e}"))?;
        consistency.push(took);
    }
    inclusion.sort();
    consistency.sort();
    let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
    Ok(report::Proofs {
        entries: size,
        runs,
        inclusion_median_ms: ms(&inclusion[runs / 2]),
        inclusion_max_ms: ms(inclusion.last().context("one proof")?),
        consistency_median_ms: ms(&consistency[runs / 2]),
        consistency_max_ms: ms(consistency.last().context("one proof")?),
    })
}

/// Writes (or, in SQLite, reuses) a log of `ctx.plan.log_entries` entries in `postgres` (a fresh database) or in a
/// SQLite file under `work`, then times `audit verify`, start-up and proofs on it.
async fn large_log(
    ctx: &mut Ctx<'_>,
    work: &Path,
    templates: &floor::Templates,
    postgres: Option<&str>,
) -> anyhow::Result<()> {
    let dir = work.join("large-log");
    std::fs::create_dir_all(&dir)?;
    let url = match postgres {
        Some(url) => url.to_owned(),
        None => format!("sqlite://{}", dir.join("ketenpoort.db").display()),
    };
    let key_dir = dir.join("keys");
    let n = ctx.plan.log_entries;
    let template = ketenpoort::audit::entry::LogEntry::decode(&templates.entries[0].bytes)?;
    if postgres.is_none() && dir.join("ketenpoort.db").exists() {
        // `large-log --dir`: a log written by an earlier run is verified as it is.
        eprintln!("verifying the log already in {}", dir.display());
    } else {
        eprintln!("writing a log of {n} entries ...");
        let wrote = floor::generate_log(&url, &key_dir, &template, n).await?;
        ctx.report.notes.push(format!(
            "The {n}-entry log was written through the gateway's LogWriter in {:.1} s ({:.0} entries/s, jobs of 512, batch_max 4096).",
            wrote.as_secs_f64(),
            n as f64 / wrote.as_secs_f64()
        ));
    }

    // audit verify, as the CLI runs it.
    let mut verify_times = Vec::new();
    for _ in 0..if ctx.plan.smoke { 1 } else { 3 } {
        let started = Instant::now();
        let out = std::process::Command::new(std::env::current_exe()?)
            .args([
                "ketenpoort",
                "audit",
                "verify",
                "--database-url",
                &url,
                "--public-key",
            ])
            .arg(ketenpoort::audit::checkpoint::public_key_path(
                &key_dir.join("log-signing.key"),
            ))
            .output()?;
        let took = started.elapsed();
        if !out.status.success() {
            bail!(
                "audit verify failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        verify_times.push(took);
    }
    verify_times.sort();
    let median = verify_times[verify_times.len() / 2];
    ctx.report.verify = Some(report::Verify {
        entries: n,
        seconds: median.as_secs_f64(),
        runs: verify_times.len(),
    });

    // Start-up to ready on that log.
    let setup = GatewaySetup {
        dir: dir.clone(),
        database_url: url.clone(),
        key_dir: key_dir.clone(),
        certs: ctx.certs.clone(),
        policies: ctx.root.join("policies"),
        batch_max: 512,
    };
    let mut starts = Vec::new();
    for i in 0..if ctx.plan.smoke { 1 } else { 5 } {
        let gw = servers::spawn_gateway(&setup, &format!("startup-{i}"))?;
        starts.push(gw.started_to_ready);
        gw.stop();
    }
    let gw = servers::spawn_gateway(&setup, "proofs")?;
    let proofs = time_proofs(gw.addr, &ctx.certs, if ctx.plan.smoke { 5 } else { 25 }).await;
    gw.stop();
    ctx.report.proofs = Some(proofs?);
    starts.sort();
    ctx.report.startup = Some(report::Startup {
        entries: n,
        median_ms: starts[starts.len() / 2].as_secs_f64() * 1000.0,
        max_ms: starts.last().expect("one start").as_secs_f64() * 1000.0,
        runs: starts.len(),
    });
    Ok(())
}
