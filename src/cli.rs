//! The command line: `serve`, `certs init`, `policy check|explain|diff`, `audit verify|export`.
//!
//! Parses arguments, loads configuration and calls the library; no gateway logic lives here.

use crate::config::Config;
use crate::domain::Role;
use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "ketenpoort",
    version,
    about = "Secure per-field data-exchange gateway for the onderwijs–jeugdhulp chain"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the gateway (partner API over mTLS, ops listener over plain HTTP on loopback).
    Serve(ServeArgs),
    /// Example certificates.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// Policy tools for privacy officers.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Disclosure-log tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(clap::Args, Debug, Default)]
pub struct ServeArgs {
    /// Configuration file.
    #[arg(long, default_value = "ketenpoort.toml")]
    pub config: PathBuf,
    /// Partner listener address (overrides the configuration).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Ops listener address (overrides the configuration).
    #[arg(long)]
    pub ops_listen: Option<SocketAddr>,
    /// Database URL: sqlite://FILE or postgres://... (overrides the configuration).
    #[arg(long)]
    pub database_url: Option<String>,
    /// Policy directory (overrides the configuration).
    #[arg(long)]
    pub policies: Option<PathBuf>,
    /// Key directory (overrides the configuration).
    #[arg(long)]
    pub key_dir: Option<PathBuf>,
    /// This instance's log-signing key file (overrides the configuration; default `<key dir>/log-signing.key`).
    #[arg(long)]
    pub signing_key: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum CertsCommand {
    /// Write a throwaway CA, the gateway certificate, example partner certificates and a CRL.
    Init { dir: PathBuf },
}

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Validate the policy files.
    Check { dir: Option<PathBuf> },
    /// Show what a flow discloses, field by field.
    Explain {
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        #[arg(long)]
        purpose: String,
        #[arg(long, default_value = "policies")]
        policies: PathBuf,
    },
    /// Show what changes, flow by flow, when the policies of NEW replace those of OLD (in Dutch).
    ///
    /// Exit code as diff(1): 0 no difference in what the policies do, 1 differences, 2 a directory does not load
    /// or `policy check` finds an error in it.
    Diff {
        /// The policy directory in force (e.g. a copy of the running one).
        old: PathBuf,
        /// The policy directory to be reloaded.
        new: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Recompute every log in the database and check it against the signed checkpoints.
    Verify {
        #[arg(long, default_value = "ketenpoort.toml")]
        config: PathBuf,
        /// Database URL (overrides the configuration).
        #[arg(long)]
        database_url: Option<String>,
        /// Trusted checkpoint public key files (raw base64, as written next to each signing key); repeat for
        /// several instances. Default: every `*.pub` file in the configured key directory and next to the
        /// configured signing key.
        #[arg(long = "public-key")]
        public_keys: Vec<PathBuf>,
    },
    /// Export the disclosure log from the database: `ldv` the Logboek Dataverwerkingen records as JSON lines (the
    /// same lines as `GET /v1/audit/export?format=ldv`), `nen7513` the NEN 7513 view as CSV (the same as `GET
    /// /v1/audit/disclosures?format=nen7513` with `Accept: text/csv`), of every organisation, oldest first. Pupils
    /// only as the log's pseudonyms, never a value.
    Export {
        #[arg(long, value_enum)]
        format: ExportFormat,
        /// Entries on or after this day (YYYY-MM-DD, UTC) or RFC 3339 time.
        #[arg(long)]
        from: Option<String>,
        /// Entries on or before this day (YYYY-MM-DD, inclusive) or before this RFC 3339 time.
        #[arg(long)]
        to: Option<String>,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long, default_value = "ketenpoort.toml")]
        config: PathBuf,
        /// Database URL (overrides the configuration).
        #[arg(long)]
        database_url: Option<String>,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// Logboek Dataverwerkingen (Logius LDV 1.0) records, JSON lines.
    Ldv,
    /// NEN 7513 records, CSV.
    Nen7513,
}

/// Loads the configuration and applies command-line overrides.
pub fn load_config(args: &ServeArgs) -> anyhow::Result<Config> {
    let mut cfg = Config::load(&args.config)?;
    if let Some(a) = args.listen {
        cfg.server.listen = a;
    }
    if let Some(a) = args.ops_listen {
        cfg.server.ops_listen = a;
    }
    if let Some(u) = &args.database_url {
        cfg.storage.database_url = u.clone();
    }
    if let Some(p) = &args.policies {
        cfg.policies.dir = p.clone();
    }
    if let Some(k) = &args.key_dir {
        cfg.storage.key_dir = k.clone();
    }
    if let Some(k) = &args.signing_key {
        cfg.storage.signing_key = Some(k.clone());
    }
    cfg.validate()?;
    Ok(cfg)
}

/// The program's entry point: `policy diff` exits 0, 1 or 2 (see `PolicyCommand::Diff`); every other command
/// exits 0 on success and 1 with the error on stderr.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Command::Policy {
        command: PolicyCommand::Diff { old, new },
    } = &cli.command
    {
        return std::process::ExitCode::from(policy_diff(old, new));
    }
    match main_with(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // As `Result` returned from `main` prints it.
            eprintln!("Error: {e:?}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `main` with the arguments given (the first is the program name); the benchmark tool runs the gateway this way.
pub fn main_from<I, T>(args: I) -> anyhow::Result<()>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    main_with(Cli::parse_from(args))
}

fn main_with(cli: Cli) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "ketenpoort=info,warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let cfg = load_config(&args)?;
            serve(cfg).await
        }
        Command::Certs {
            command: CertsCommand::Init { dir },
        } => {
            crate::certs::init(&dir)
                .with_context(|| format!("writing certificates to {}", dir.display()))?;
            println!("example certificates written to {}", dir.display());
            Ok(())
        }
        Command::Policy {
            command: PolicyCommand::Check { dir },
        } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from("policies"));
            let findings = crate::policy::check(&dir);
            let mut errors = 0;
            for f in &findings {
                println!("{f}");
                if f.is_error() {
                    errors += 1;
                }
            }
            if errors > 0 {
                bail!("{errors} error(s) in {}", dir.display());
            }
            println!("{}: ok ({} finding(s))", dir.display(), findings.len());
            Ok(())
        }
        Command::Policy {
            command:
                PolicyCommand::Explain {
                    from,
                    to,
                    purpose,
                    policies,
                },
        } => {
            let from = Role::parse(&from).with_context(|| format!("unknown role {from}"))?;
            let to = Role::parse(&to).with_context(|| format!("unknown role {to}"))?;
            let set = crate::policy::PolicySet::load_dir(&policies)?;
            match crate::policy::explain(&set, from, to, &purpose) {
                Ok(text) => {
                    print!("{text}");
                    Ok(())
                }
                Err(r) => bail!("{} ({})", r.detail, r.code),
            }
        }
        Command::Policy {
            command: PolicyCommand::Diff { old, new },
        } => match policy_diff(&old, &new) {
            2 => bail!("policy diff: a policy directory does not load or has errors"),
            _ => Ok(()),
        },
        Command::Audit {
            command:
                AuditCommand::Verify {
                    config,
                    database_url,
                    mut public_keys,
                },
        } => {
            let cfg = if database_url.is_none() || public_keys.is_empty() {
                Some(Config::load(&config)?)
            } else {
                None
            };
            let url = match (database_url, &cfg) {
                (Some(u), _) => u,
                (None, Some(c)) => c.storage.database_url.clone(),
                (None, None) => bail!("no database URL"),
            };
            if public_keys.is_empty() {
                if let Some(c) = &cfg {
                    public_keys = default_public_keys(c)?;
                }
            }
            let mut keys = Vec::new();
            for p in &public_keys {
                let key = crate::audit::verify::read_public_key(p)
                    .with_context(|| format!("public key {}", p.display()))?;
                println!(
                    "trusted key {} ({})",
                    crate::audit::checkpoint::key_id(&key),
                    p.display()
                );
                keys.push(key);
            }
            let store = crate::store::open(&url).await?;
            let report = crate::audit::verify::verify_all(&store, &keys).await?;
            print!("{report}");
            if !report.ok() {
                bail!("the disclosure log does not verify");
            }
            Ok(())
        }
        Command::Audit {
            command:
                AuditCommand::Export {
                    format,
                    from,
                    to,
                    out,
                    config,
                    database_url,
                },
        } => audit_export(format, from, to, out, config, database_url).await,
    }
}

/// `ketenpoort audit export`: reads the whole selection from the store and writes it at once (to a temporary file
/// renamed into place with `--out`, so a failed export leaves no half file).
async fn audit_export(
    format: ExportFormat,
    from: Option<String>,
    to: Option<String>,
    out: Option<PathBuf>,
    config: PathBuf,
    database_url: Option<String>,
) -> anyhow::Result<()> {
    let url = match database_url {
        Some(u) => u,
        None => Config::load(&config)?.storage.database_url,
    };
    let mut filter = crate::store::EntryFilter::default();
    let when = |v: &Option<String>, end: bool, name: &str| -> anyhow::Result<Option<i64>> {
        match v.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(s) => crate::oversight::instant(s, end)
                .map(Some)
                .with_context(|| format!("--{name} is a date (YYYY-MM-DD) or an RFC 3339 time")),
        }
    };
    filter.from_ms = when(&from, false, "from")?;
    filter.until_ms = when(&to, true, "to")?;
    let store = crate::store::open(&url).await?;
    let entries =
        crate::oversight::all_entries(&*store, filter, crate::oversight::MAX_LIMIT).await?;
    let text = match format {
        ExportFormat::Ldv => crate::oversight::ldv::to_json_lines(&entries),
        ExportFormat::Nen7513 => crate::oversight::nen7513::to_csv(&entries),
    };
    match out {
        None => {
            use std::io::Write;
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(text.as_bytes())?;
            stdout.flush()?;
        }
        Some(path) => {
            let mut tmp = path.clone().into_os_string();
            tmp.push(".partial");
            let tmp = PathBuf::from(tmp);
            std::fs::write(&tmp, text.as_bytes())
                .with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
        }
    }
    Ok(())
}

/// `ketenpoort policy diff OLD NEW`: prints the differences (Dutch, `policy::PolicyDiff`'s text) and returns the
/// exit code: 0 no difference in what the sets do, 1 differences, 2 a directory that does not load or that
/// `policy check` finds an error in (each finding on stderr, naming the directory and the file).
fn policy_diff(old: &std::path::Path, new: &std::path::Path) -> u8 {
    let load = |dir: &std::path::Path, which: &str| match crate::policy::load_checked(dir) {
        Ok((set, _warnings)) => Some(set),
        Err(findings) => {
            eprintln!(
                "{} ({which}): het beleid laadt niet of bevat fouten (zie ketenpoort policy check {}):",
                dir.display(),
                dir.display()
            );
            for mut f in findings.into_iter().filter(|f| f.is_error()) {
                // A finding names the file inside the directory; say which directory.
                if !f.file.contains('/') {
                    f.file = dir.join(&f.file).display().to_string();
                }
                eprintln!("  {f}");
            }
            None
        }
    };
    // Both directories are checked, so one run names the errors of both.
    let (Some(old_set), Some(new_set)) = (load(old, "oud"), load(new, "nieuw")) else {
        return 2;
    };
    let d = crate::policy::diff(&old_set, &new_set);
    print!("{d}");
    u8::from(!d.is_empty())
}

/// Every `*.pub` file in the key directory and next to the signing key: the public keys of all instances that
/// keep their signing keys (or copies of their `.pub` files) there.
fn default_public_keys(cfg: &Config) -> anyhow::Result<Vec<PathBuf>> {
    let mut dirs = vec![cfg.storage.key_dir.clone()];
    if let Some(dir) = cfg.storage.signing_key_path().parent() {
        if !dirs.iter().any(|d| d == dir) {
            dirs.push(dir.to_owned());
        }
    }
    let mut keys = Vec::new();
    for dir in dirs {
        let listing = match std::fs::read_dir(&dir) {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
        };
        for entry in listing {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "pub") && path.is_file() {
                keys.push(path);
            }
        }
    }
    keys.sort();
    if keys.is_empty() {
        bail!(
            "no public key (*.pub) in {} or next to {}; name the instances' keys with --public-key",
            cfg.storage.key_dir.display(),
            cfg.storage.signing_key_path().display()
        );
    }
    Ok(keys)
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    let running = crate::http::start(cfg).await?;
    println!(
        "ketenpoort listening partner=https://{} ops=http://{} log={}",
        running.partner_addr,
        running.ops_addr,
        running.gateway.writer.log_id()
    );
    let gw = running.gateway.clone();
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = hup.recv() => {
                let _ = gw.reload_policies().await;
                match gw.reload_revocations() {
                    Ok(n) => tracing::info!(revoked = n, "revocation list reloaded"),
                    Err(e) => tracing::error!(error = %e, "revocation list reload refused; the previous list stays"),
                }
            }
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    tracing::info!("shutting down: finishing in-flight requests and flushing the log");
    // The log writer stops once the last handle to the gateway is gone.
    drop(gw);
    running.shutdown().await;
    Ok(())
}
