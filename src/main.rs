//! The `xln` binary: parses the command line and calls into the library's modules.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use xln::chain::devnet::{self, DEFAULT_CHAIN_CONFIG, DevnetOptions};

#[derive(Parser)]
#[command(
    name = "xln",
    version,
    about = "xln: a payment network of bilateral accounts"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Start a local devnet: anvil, the contracts, two test tokens, funded dev keys. Runs
    /// until interrupted (Ctrl-C), then stops anvil.
    Devnet {
        /// Port for anvil on 127.0.0.1 (0: any free port).
        #[arg(long, default_value_t = 8545)]
        port: u16,
        /// Key file whose keys are funded (devnet keys only).
        #[arg(long, default_value = "keys.example")]
        keys: PathBuf,
        /// Where the chain config (RPC URL, chain id, contract and token addresses) is written.
        #[arg(long, default_value = DEFAULT_CHAIN_CONFIG)]
        config_out: PathBuf,
        /// Seconds between blocks (default: a block per transaction).
        #[arg(long)]
        block_time: Option<u64>,
    },
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        None => {
            println!(
                "xln {}: the core and the chain adapter are built; the node and the console are \
                 not yet. Try `xln devnet`. See README.md.",
                env!("CARGO_PKG_VERSION")
            );
            Ok(())
        }
        Some(Command::Devnet {
            port,
            keys,
            config_out,
            block_time,
        }) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(run_devnet(DevnetOptions {
                port,
                keys,
                config_out,
                block_time,
            }))
        }
    }
}

async fn run_devnet(options: DevnetOptions) -> anyhow::Result<()> {
    let mut net = devnet::start(&options)
        .await
        .context("starting the devnet")?;
    let c = &net.config;
    println!("devnet running at {} (chain id {})", c.rpc_url, c.chain_id);
    println!("  EntityProvider {}", c.entity_provider);
    println!("  Depository     {}", c.depository);
    for t in &c.tokens {
        println!("  token {} (id {}) {}", t.symbol, t.id, t.address);
    }
    for k in &net.keys {
        println!("  funded {} {}", k.name, k.key.address());
    }
    println!(
        "config written to {}; Ctrl-C stops",
        options.config_out.display()
    );
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("listening for SIGTERM")?;
    let mut check = tokio::time::interval(std::time::Duration::from_secs(1));
    let result = loop {
        tokio::select! {
            signal = tokio::signal::ctrl_c() => break signal.context("waiting for Ctrl-C"),
            _ = terminate.recv() => break Ok(()),
            _ = check.tick() => {
                if net.anvil.has_exited() {
                    break Err(anyhow::anyhow!("anvil exited on its own"));
                }
            }
        }
    };
    net.anvil.stop();
    println!("devnet stopped");
    result
}
