//! A local anvil for tests and `xln devnet`: started on a port chosen at run time on
//! 127.0.0.1, waited for until it listens, and killed when dropped, so that whoever started
//! it stops it even when a test fails.

use super::error::{ChainError, Result};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long anvil may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// anvil's default chain id.
pub const ANVIL_CHAIN_ID: u64 = 31337;

/// The first dev accounts of anvil's (and hardhat's) well-known test mnemonic. Public test
/// keys: devnet only, never for anything of value.
pub const DEV_KEYS: [&str; 4] = [
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
];

/// How to start anvil.
#[derive(Debug, Clone, Default)]
pub struct AnvilOptions {
    /// 0: any free port, chosen by the OS when anvil binds.
    pub port: u16,
    pub chain_id: Option<u64>,
    /// Seconds between blocks; `None` mines one block per transaction.
    pub block_time: Option<u64>,
    /// A state file (written by an earlier anvil's `dump_state`) to start from.
    pub load_state: Option<PathBuf>,
    /// Where anvil writes its state when it is terminated gracefully ([`Anvil::terminate`]).
    pub dump_state: Option<PathBuf>,
}

/// A running anvil, killed on drop.
#[derive(Debug)]
pub struct Anvil {
    child: Option<Child>,
    binary: PathBuf,
    options: AnvilOptions,
    port: u16,
}

impl Anvil {
    /// The anvil binary: `$XLN_ANVIL`, else `anvil` on `PATH`, else `.tools/bin/anvil` of the
    /// repository (installed by `scripts/install-tools.sh`) or of the current directory.
    pub fn find_binary() -> Result<PathBuf> {
        if let Some(path) = std::env::var_os("XLN_ANVIL") {
            return Ok(PathBuf::from(path));
        }
        if let Some(paths) = std::env::var_os("PATH") {
            for dir in std::env::split_paths(&paths) {
                let candidate = dir.join("anvil");
                if candidate.is_file() {
                    return Ok(candidate);
                }
            }
        }
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/bin/anvil");
        for candidate in [repo, PathBuf::from(".tools/bin/anvil")] {
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
        Err(ChainError::Anvil(
            "anvil not found on PATH nor in .tools/bin: run `bash scripts/install-tools.sh`".into(),
        ))
    }

    /// Starts anvil and waits until it listens.
    pub fn spawn(options: AnvilOptions) -> Result<Self> {
        Self::spawn_binary(Self::find_binary()?, options)
    }

    /// Starts the given anvil binary and waits until it listens.
    pub fn spawn_binary(binary: PathBuf, options: AnvilOptions) -> Result<Self> {
        let mut anvil = Anvil {
            child: None,
            binary,
            options,
            port: 0,
        };
        anvil.start()?;
        Ok(anvil)
    }

    /// Starts anvil with default options on a free port.
    pub fn spawn_default() -> Result<Self> {
        Self::spawn(AnvilOptions::default())
    }

    fn start(&mut self) -> Result<()> {
        let mut command = Command::new(&self.binary);
        command
            .arg("--host")
            .arg("127.0.0.1")
            .arg("--port")
            .arg(self.options.port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(chain_id) = self.options.chain_id {
            command.arg("--chain-id").arg(chain_id.to_string());
        }
        if let Some(seconds) = self.options.block_time {
            command.arg("--block-time").arg(seconds.to_string());
        }
        if let Some(path) = &self.options.load_state {
            command.arg("--load-state").arg(path);
        }
        if let Some(path) = &self.options.dump_state {
            command.arg("--dump-state").arg(path);
        }
        let mut child = command.spawn().map_err(|e| {
            ChainError::Anvil(format!("cannot start {}: {e}", self.binary.display()))
        })?;
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(ChainError::Anvil("no stdout".into()));
        };
        // One thread reads anvil's output for its whole life (a full pipe would block anvil)
        // and reports the port from its "Listening on 127.0.0.1:PORT" line.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if !sent && let Some(address) = line.trim().strip_prefix("Listening on ") {
                    let port = address
                        .rsplit(':')
                        .next()
                        .and_then(|p| p.parse::<u16>().ok());
                    let _ = tx.send(port);
                    sent = true;
                }
            }
        });
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(Some(port)) => {
                self.port = port;
                self.child = Some(child);
                Ok(())
            }
            other => {
                let _ = child.kill();
                let status = child.wait().ok();
                Err(ChainError::Anvil(match other {
                    Ok(_) => "could not read the port anvil listens on".into(),
                    Err(_) => format!(
                        "did not start listening (exit status: {status:?}; port {} taken?)",
                        self.options.port
                    ),
                }))
            }
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn chain_id(&self) -> u64 {
        self.options.chain_id.unwrap_or(ANVIL_CHAIN_ID)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills anvil (its state is lost unless dumped first) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops anvil with SIGTERM, so that it writes its state to `dump_state` if set, and
    /// waits for it to exit (killing it if it does not within ten seconds).
    pub fn terminate(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let signalled = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if signalled {
            for _ in 0..200 {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts anvil again on the same port, as after an outage. With `dump_state` set, it was
    /// terminated with [`Anvil::terminate`] and comes back with the same chain (blocks, hashes,
    /// logs); otherwise it starts from `load_state` or from genesis.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.options.port = self.port;
        if let Some(path) = self.options.dump_state.clone().filter(|p| p.is_file()) {
            self.options.load_state = Some(path);
        }
        self.start()
    }

    /// Whether anvil has exited by itself (or was stopped).
    pub fn has_exited(&mut self) -> bool {
        match self.child.as_mut().map(|c| c.try_wait()) {
            None | Some(Ok(Some(_))) | Some(Err(_)) => true,
            Some(Ok(None)) => false,
        }
    }

    /// Waits until anvil exits by itself (or was stopped).
    pub fn wait(&mut self) -> Result<()> {
        if let Some(child) = self.child.as_mut() {
            child.wait()?;
        }
        self.child = None;
        Ok(())
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        self.stop();
    }
}
