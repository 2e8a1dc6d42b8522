//! The node's configuration (`config.toml`) and its signer key file, where they live and how
//! `xln init` creates them.
//!
//! Defaults come from the platform's directories (`directories`); `--data-dir` puts everything
//! in one folder instead (the config and the key file included, unless `--config` says
//! otherwise).

use crate::chain::devnet::{NamedKey, parse_keys};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use xln_core::crypto::{Address, SignerKey};

pub const CONFIG_FILE: &str = "config.toml";
pub const KEY_FILE: &str = "keys";
pub const DATABASE_FILE: &str = "xln.redb";
pub const CONTROL_SOCKET: &str = "control.sock";
pub const CHAIN_FILE: &str = "chain.json";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error(
        "{path} can be read by other users (mode {mode:o}); a signer key file must be \
         owner-only: run `chmod 600 {path}`"
    )]
    KeyFileOpen { path: PathBuf, mode: u32 },
    #[error("no platform data directory could be found; pass --data-dir")]
    NoHomeDirectory,
    #[error("{0} exists already; `xln init` never overwrites")]
    Exists(PathBuf),
    #[error("config: {0}")]
    Invalid(String),
}

fn file_error(path: &Path, error: impl std::fmt::Display) -> ConfigError {
    ConfigError::File {
        path: path.to_path_buf(),
        message: error.to_string(),
    }
}

/// `config.toml`. Every key is optional except `name`; an unknown key is an error naming it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The name this node's entity publishes in its profile.
    pub name: String,
    /// Which key of the key file signs (default: its first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// Where peers reach this node's websocket (omit for a wallet that only dials out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// The public URL peers are told to dial (default: `ws://<listen>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Websocket URLs of peers to keep connected to (e.g. a hub's `ws://host:port`).
    #[serde(default)]
    pub dial: Vec<String>,
    /// Announce ourselves as a hub that forwards payments.
    #[serde(default)]
    pub hub: bool,
    #[serde(default)]
    pub fees: Fees,
    /// The entity's board; absent: a single-signer entity of our signer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub board: Option<BoardConfig>,
    #[serde(default)]
    pub chain: ChainSection,
    #[serde(default)]
    pub node: NodeSection,
    /// Serve metrics in Prometheus text format at `http://<metrics>/metrics` (opt-in; a
    /// loopback address only, since the figures tell how busy the node is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<SocketAddr>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fees {
    #[serde(default)]
    pub base: u64,
    #[serde(default)]
    pub ppm: u32,
}

/// A board of several signers; the weights default to one each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardConfig {
    pub threshold: u64,
    pub members: Vec<Address>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<Vec<u64>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainSection {
    /// The chain config written by `xln devnet` (RPC URL, chain id, contracts, tokens).
    /// Relative paths are relative to the data directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// Blocks on top of one before the follower reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmations: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// A snapshot every this many inputs...
    #[serde(default = "default_snapshot_every")]
    pub snapshot_every: u64,
    /// ...or every this many bytes of logged inputs, whichever comes first: what bounds the
    /// replay at start-up.
    #[serde(default = "default_snapshot_every_bytes")]
    pub snapshot_every_bytes: u64,
    /// Milliseconds between clock ticks (expiries, re-sends).
    #[serde(default = "default_tick_ms")]
    pub tick_ms: u64,
}

fn default_snapshot_every() -> u64 {
    10_000
}

fn default_snapshot_every_bytes() -> u64 {
    16 * 1024 * 1024
}

fn default_tick_ms() -> u64 {
    200
}

impl Default for NodeSection {
    fn default() -> Self {
        Self {
            snapshot_every: default_snapshot_every(),
            snapshot_every_bytes: default_snapshot_every_bytes(),
            tick_ms: default_tick_ms(),
        }
    }
}

impl Config {
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: Config =
            toml::from_str(text).map_err(|e| ConfigError::Invalid(e.message().to_string()))?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.name.trim().is_empty() {
            return Err(ConfigError::Invalid("`name` is empty".into()));
        }
        if self.node.snapshot_every == 0 {
            return Err(ConfigError::Invalid("`node.snapshot_every` is 0".into()));
        }
        if self.node.tick_ms == 0 {
            return Err(ConfigError::Invalid("`node.tick_ms` is 0".into()));
        }
        if let Some(addr) = self.metrics
            && !addr.ip().is_loopback()
        {
            return Err(ConfigError::Invalid(format!(
                "`metrics` {addr} is not a loopback address: the endpoint has no authentication, \
                 so it only listens on 127.0.0.1 or ::1 (put a proxy in front to expose it)"
            )));
        }
        for url in &self.dial {
            if !(url.starts_with("ws://") || url.starts_with("wss://")) {
                return Err(ConfigError::Invalid(format!(
                    "`dial` entry {url:?} is not a ws:// URL"
                )));
            }
        }
        Ok(())
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| file_error(path, e))?;
        Self::parse(&text).map_err(|e| match e {
            ConfigError::Invalid(message) => file_error(path, message),
            other => other,
        })
    }

    pub fn to_toml(&self) -> Result<String, ConfigError> {
        toml::to_string_pretty(self).map_err(|e| ConfigError::Invalid(e.to_string()))
    }
}

/// Where a node keeps its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    pub data_dir: PathBuf,
    pub config: PathBuf,
    pub keys: PathBuf,
}

impl Paths {
    /// `--data-dir` and `--config` as given, else the platform's directories.
    pub fn resolve(data_dir: Option<&Path>, config: Option<&Path>) -> Result<Self, ConfigError> {
        let (data_dir, config_dir) = match data_dir {
            Some(dir) => (dir.to_path_buf(), dir.to_path_buf()),
            None => {
                let dirs = directories::ProjectDirs::from("", "", "xln")
                    .ok_or(ConfigError::NoHomeDirectory)?;
                (
                    dirs.data_dir().to_path_buf(),
                    dirs.config_dir().to_path_buf(),
                )
            }
        };
        let config = config.map_or_else(|| config_dir.join(CONFIG_FILE), Path::to_path_buf);
        let keys = config
            .parent()
            .map_or_else(|| PathBuf::from(KEY_FILE), |dir| dir.join(KEY_FILE));
        Ok(Self {
            data_dir,
            config,
            keys,
        })
    }

    pub fn database(&self) -> PathBuf {
        self.data_dir.join(DATABASE_FILE)
    }

    pub fn control_socket(&self) -> PathBuf {
        self.data_dir.join(CONTROL_SOCKET)
    }

    /// The chain config file: the config's, relative to the data dir, or the default one.
    pub fn chain_file(&self, config: &Config) -> PathBuf {
        match &config.chain.file {
            Some(file) if file.is_absolute() => file.clone(),
            Some(file) => self.data_dir.join(file),
            None => self.data_dir.join(CHAIN_FILE),
        }
    }
}

/// Reads the key file, refusing one that others can read.
pub fn load_key_file(path: &Path) -> Result<Vec<NamedKey>, ConfigError> {
    check_owner_only(path)?;
    let text = std::fs::read_to_string(path).map_err(|e| file_error(path, e))?;
    parse_keys(&text).map_err(|e| file_error(path, e))
}

#[cfg(unix)]
fn check_owner_only(path: &Path) -> Result<(), ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| file_error(path, e))?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(ConfigError::KeyFileOpen {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_owner_only(_path: &Path) -> Result<(), ConfigError> {
    Ok(())
}

/// The key named `name` (or the first).
pub fn pick_signer(keys: &[NamedKey], name: Option<&str>) -> Result<SignerKey, ConfigError> {
    let found = match name {
        Some(name) => keys.iter().find(|k| k.name == name),
        None => keys.first(),
    };
    found.map(|k| k.key.clone()).ok_or_else(|| {
        ConfigError::Invalid(format!(
            "no key named {:?} in the key file",
            name.unwrap_or("")
        ))
    })
}

/// Writes `text` to a new file readable by its owner only (created so from the start).
pub fn write_private(path: &Path, text: &str) -> Result<(), ConfigError> {
    use std::io::Write;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| file_error(dir, e))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            ConfigError::Exists(path.to_path_buf())
        } else {
            file_error(path, e)
        }
    })?;
    file.write_all(text.as_bytes())
        .map_err(|e| file_error(path, e))
}

/// What `xln init` was asked for.
#[derive(Debug, Clone, Default)]
pub struct InitOptions {
    pub name: String,
    pub listen: Option<SocketAddr>,
    pub dial: Vec<String>,
    pub hub: bool,
    /// Use this key instead of generating one (tests and devnets).
    pub key: Option<SignerKey>,
    pub chain_file: Option<PathBuf>,
}

/// Creates the config and the key file (mode 0600) with a fresh key; never overwrites.
pub fn init(paths: &Paths, options: &InitOptions) -> Result<SignerKey, ConfigError> {
    for path in [&paths.config, &paths.keys] {
        if path.exists() {
            return Err(ConfigError::Exists(path.clone()));
        }
    }
    let key = match &options.key {
        Some(key) => key.clone(),
        None => generate_key()?,
    };
    let config = Config {
        name: options.name.clone(),
        signer: None,
        listen: options.listen,
        endpoint: None,
        dial: options.dial.clone(),
        hub: options.hub,
        fees: Fees::default(),
        board: None,
        chain: ChainSection {
            file: options.chain_file.clone(),
            confirmations: None,
        },
        metrics: None,
        node: NodeSection::default(),
    };
    config.check()?;
    let keys = format!(
        "# xln signer key of {}: `name 0x<secret>`. Keep this file private (mode 0600).\n{} 0x{}\n",
        options.name,
        options.name.split_whitespace().next().unwrap_or("signer"),
        hex::encode(key.secret_bytes())
    );
    write_private(&paths.keys, &keys)?;
    std::fs::create_dir_all(&paths.data_dir).map_err(|e| file_error(&paths.data_dir, e))?;
    if let Some(dir) = paths.config.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| file_error(dir, e))?;
    }
    std::fs::write(&paths.config, config.to_toml()?).map_err(|e| file_error(&paths.config, e))?;
    Ok(key)
}

/// A new signer key from the operating system's random source.
fn generate_key() -> Result<SignerKey, ConfigError> {
    loop {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)
            .map_err(|e| ConfigError::Invalid(format!("no randomness: {e}")))?;
        if let Ok(key) = SignerKey::from_bytes(&bytes) {
            return Ok(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "name = \"alice\"\n";

    #[test]
    fn a_minimal_config_takes_the_defaults() {
        let config = Config::parse(MINIMAL).unwrap();
        assert_eq!(config.name, "alice");
        assert_eq!(config.node, NodeSection::default());
        assert!(config.dial.is_empty() && config.board.is_none());
        assert_eq!(config.metrics, None);
        let with_metrics = Config::parse("name = \"a\"\nmetrics = \"127.0.0.1:9464\"\n").unwrap();
        assert_eq!(
            with_metrics.metrics,
            Some("127.0.0.1:9464".parse().unwrap())
        );
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        for (text, key) in [
            (
                "name = \"a\"\nlisten_addr = \"127.0.0.1:1\"\n",
                "listen_addr",
            ),
            ("name = \"a\"\n[node]\nsnapshots = 3\n", "snapshots"),
            ("name = \"a\"\n[chain]\nrpc = \"x\"\n", "rpc"),
        ] {
            let error = Config::parse(text).unwrap_err().to_string();
            assert!(error.contains(key), "{error}");
        }
    }

    #[test]
    fn bad_values_are_refused_with_a_reason() {
        for (text, needle) in [
            ("", "name"),
            ("name = \"\"\n", "empty"),
            ("name = \"a\"\ndial = [\"http://x\"]\n", "ws://"),
            (
                "name = \"a\"\n[node]\nsnapshot_every = 0\n",
                "snapshot_every",
            ),
            ("name = \"a\"\nlisten = \"nowhere\"\n", "socket address"),
            ("name = \"a\"\nmetrics = \"0.0.0.0:9464\"\n", "loopback"),
        ] {
            let error = Config::parse(text).unwrap_err().to_string();
            assert!(error.contains(needle), "{text:?}: {error}");
        }
    }

    #[test]
    fn init_writes_an_owner_only_key_file_and_a_config_that_loads() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::resolve(Some(dir.path()), None).unwrap();
        let key = init(
            &paths,
            &InitOptions {
                name: "alice".into(),
                ..InitOptions::default()
            },
        )
        .unwrap();
        let keys = load_key_file(&paths.keys).unwrap();
        assert_eq!(keys[0].key.address(), key.address());
        assert_eq!(Config::load(&paths.config).unwrap().name, "alice");
        // Never overwrites.
        assert!(matches!(
            init(&paths, &InitOptions::default()),
            Err(ConfigError::Exists(_))
        ));
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        std::fs::write(&path, include_str!("../keys.example")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = load_key_file(&path).unwrap_err().to_string();
        assert!(error.contains("chmod 600"), "{error}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(load_key_file(&path).unwrap().len(), 4);
    }
}
