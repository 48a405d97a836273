//! Gateway configuration: `ketenpoort.toml` plus command-line overrides.
//!
//! Unknown keys are refused (`deny_unknown_fields`) so a typo never silently weakens a setting.
//! Relative paths are resolved against the directory of the configuration file.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid setting {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    pub tls: TlsConfig,
    pub storage: StorageConfig,
    #[serde(default)]
    pub policies: PolicyConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub push: PushConfig,
}

/// Push delivery to the partners with `push` in partners.toml (`exchange::push`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushConfig {
    /// The gateway's own client certificate (clientAuth EKU) and key, shown to push endpoints.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// Attempts per message before the push gives up (the message stays in the pull inbox).
    pub max_attempts: u32,
    /// The wait after the first failed attempt; it doubles per attempt up to `backoff_max_ms`, each wait drawn
    /// between half of it and all of it (jitter).
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    pub connect_timeout_ms: u64,
    /// Time for the endpoint's TLS handshake and whole response after connecting.
    pub response_timeout_ms: u64,
    /// How often an idle worker looks for due pushes (a new message wakes it at once on its own instance).
    pub poll_ms: u64,
    /// Pushes in flight at once per instance.
    pub concurrency: usize,
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            client_cert: None,
            client_key: None,
            max_attempts: 12,
            backoff_base_ms: 2_000,
            backoff_max_ms: 3_600_000,
            connect_timeout_ms: 5_000,
            response_timeout_ms: 30_000,
            poll_ms: 1_000,
            concurrency: 8,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub ops_listen: SocketAddr,
    /// Seconds a client may take to send its request headers.
    pub header_timeout_secs: u64,
    /// Seconds a client may take to send its whole request body.
    pub body_timeout_secs: u64,
    /// Seconds in-flight requests get to finish at shutdown.
    pub shutdown_grace_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8443".parse().expect("static address"),
            ops_listen: "127.0.0.1:9090".parse().expect("static address"),
            header_timeout_secs: 10,
            body_timeout_secs: 30,
            shutdown_grace_secs: 10,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub ca: PathBuf,
    pub crl: Option<PathBuf>,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub partners: PathBuf,
    /// Refuse every client while the CRL is past its next update (default true).
    #[serde(default = "yes")]
    pub refuse_on_expired_crl: bool,
    /// Seconds between checks of the CRL file's modification time; it is re-read when it changed (0: only on
    /// SIGHUP and `POST /crl/reload`).
    #[serde(default = "crl_poll_default")]
    pub crl_poll_secs: u64,
}

fn crl_poll_default() -> u64 {
    5
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    pub database_url: String,
    /// Directory holding the payload, pseudonym and log-signing keys (created on first start).
    pub key_dir: PathBuf,
    /// This instance's log-signing key (its public key is written next to it as `<file>.pub`); the log id is
    /// derived from it. Default `<key_dir>/log-signing.key`. Instances sharing one database share `key_dir`
    /// (payload and pseudonym keys) but each needs its own signing key.
    #[serde(default)]
    pub signing_key: Option<PathBuf>,
    /// Allow starting with non-durable database settings. Never in production.
    #[serde(default)]
    pub allow_non_durable: bool,
}

impl StorageConfig {
    pub fn signing_key_path(&self) -> PathBuf {
        self.signing_key
            .clone()
            .unwrap_or_else(|| self.key_dir.join("log-signing.key"))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    pub dir: PathBuf,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            dir: PathBuf::from("policies"),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Identifies this instance's log; defaults to one derived from the signing key.
    pub log_id: Option<String>,
    /// Most entries appended in one group commit.
    pub batch_max: usize,
    /// Seconds between background retention sweeps.
    pub retention_sweep_secs: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            log_id: None,
            batch_max: 512,
            retention_sweep_secs: 60,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub max_body_bytes: usize,
    pub max_json_depth: usize,
    /// Requests per second per partner, sustained.
    pub rate_per_second: u32,
    /// Requests a partner may send in a burst.
    pub burst: u32,
    /// Concurrent connections per partner.
    pub max_connections_per_partner: usize,
    pub inbox_page_max: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_body_bytes: 8 * 1024 * 1024,
            max_json_depth: 32,
            rate_per_second: 2000,
            burst: 4000,
            max_connections_per_partner: 256,
            inbox_page_max: 500,
        }
    }
}

fn yes() -> bool {
    true
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::from_toml(&text, base).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })
    }

    /// Parses TOML text; relative paths are taken relative to `base`.
    pub fn from_toml(text: &str, base: &Path) -> Result<Config, ConfigError> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::new(),
            message: e.to_string(),
        })?;
        cfg.resolve_paths(base);
        cfg.validate()?;
        Ok(cfg)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.tls.ca);
        if let Some(crl) = self.tls.crl.as_mut() {
            fix(crl);
        }
        fix(&mut self.tls.cert);
        fix(&mut self.tls.key);
        fix(&mut self.tls.partners);
        fix(&mut self.storage.key_dir);
        if let Some(k) = self.storage.signing_key.as_mut() {
            fix(k);
        }
        fix(&mut self.policies.dir);
        if let Some(p) = self.push.client_cert.as_mut() {
            fix(p);
        }
        if let Some(p) = self.push.client_key.as_mut() {
            fix(p);
        }
        if let Some(rest) = self.storage.database_url.strip_prefix("sqlite://") {
            let file = rest.split('?').next().unwrap_or(rest);
            if !file.is_empty() && !file.starts_with('/') && file != ":memory:" {
                let query = &rest[file.len()..];
                self.storage.database_url =
                    format!("sqlite://{}{}", base.join(file).display(), query);
            }
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        if l.max_body_bytes == 0 || l.max_json_depth == 0 || l.inbox_page_max == 0 {
            return Err(ConfigError::Invalid(
                "limits must be greater than zero".into(),
            ));
        }
        if l.rate_per_second == 0 || l.burst == 0 || l.max_connections_per_partner == 0 {
            return Err(ConfigError::Invalid(
                "rate limits must be greater than zero".into(),
            ));
        }
        let p = &self.push;
        if p.max_attempts == 0
            || p.backoff_base_ms == 0
            || p.backoff_max_ms < p.backoff_base_ms
            || p.connect_timeout_ms == 0
            || p.response_timeout_ms == 0
            || p.poll_ms == 0
            || p.concurrency == 0
        {
            return Err(ConfigError::Invalid(
                "push: max_attempts, timeouts, poll_ms and concurrency must be > 0, backoff_max_ms >= backoff_base_ms"
                    .into(),
            ));
        }
        if p.client_cert.is_some() != p.client_key.is_some() {
            return Err(ConfigError::Invalid(
                "push: client_cert and client_key go together".into(),
            ));
        }
        if self.log.batch_max == 0 {
            return Err(ConfigError::Invalid("log.batch_max must be > 0".into()));
        }
        if !(self.storage.database_url.starts_with("sqlite:")
            || self.storage.database_url.starts_with("postgres://")
            || self.storage.database_url.starts_with("postgresql://"))
        {
            return Err(ConfigError::Invalid(
                "storage.database_url must start with sqlite:, postgres:// or postgresql://".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[tls]
ca = "certs/ca.crt"
cert = "certs/gateway.crt"
key = "certs/gateway.key"
partners = "certs/partners.toml"
[storage]
database_url = "sqlite://k.db"
key_dir = "keys"
"#;

    #[test]
    fn defaults_and_relative_paths() {
        let cfg = Config::from_toml(MINIMAL, Path::new("/etc/kp")).unwrap();
        assert_eq!(cfg.server.listen.to_string(), "127.0.0.1:8443");
        assert_eq!(cfg.server.ops_listen.to_string(), "127.0.0.1:9090");
        assert_eq!(cfg.limits.max_body_bytes, 8 * 1024 * 1024);
        assert_eq!(cfg.tls.ca, PathBuf::from("/etc/kp/certs/ca.crt"));
        assert_eq!(cfg.storage.database_url, "sqlite:///etc/kp/k.db");
        assert!(cfg.tls.refuse_on_expired_crl);
        assert_eq!(
            cfg.storage.signing_key_path(),
            PathBuf::from("/etc/kp/keys/log-signing.key")
        );
        assert_eq!(cfg.tls.crl_poll_secs, 5);
    }

    #[test]
    fn signing_key_is_resolved_against_the_config_directory() {
        let text = MINIMAL.replace(
            "key_dir = \"keys\"",
            "key_dir = \"keys\"\nsigning_key = \"b/instance-b.key\"",
        );
        let cfg = Config::from_toml(&text, Path::new("/etc/kp")).unwrap();
        assert_eq!(
            cfg.storage.signing_key_path(),
            PathBuf::from("/etc/kp/b/instance-b.key")
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let text = format!("{MINIMAL}\n[limits]\nmax_body_byte = 3\n");
        let err = Config::from_toml(&text, Path::new(".")).unwrap_err();
        assert!(err.to_string().contains("max_body_byte"), "{err}");
    }

    #[test]
    fn bad_database_scheme_is_refused() {
        let text = MINIMAL.replace("sqlite://k.db", "mysql://x");
        assert!(Config::from_toml(&text, Path::new(".")).is_err());
    }
}
