//! The command line: `xln init`, `xln node`, `xln devnet`, and the commands that talk to a
//! running node over its control socket (each with human output and `--json`).

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use xln::amount::{format_amount, format_signed, parse_amount};
use xln::api::{
    BookOrderView, OrderView, Request, Response, TimeInForce, TokenInfo, time_in_force_label,
};
use xln::chain::client::ChainConfig;
use xln::chain::devnet::{self, DEFAULT_CHAIN_CONFIG, DevnetOptions};
use xln::config::{self, Config, InitOptions, Paths};
use xln::node::{self, NodeSetup, control};
use xln_core::crypto::{Address, Hash, SignerKey};

#[derive(Parser)]
#[command(
    name = "xln",
    version,
    about = "xln: a payment network of bilateral accounts"
)]
pub struct Cli {
    /// Keep everything (config, key file, database, control socket) in this folder.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// The config file (default: config.toml in the data dir or the platform's config dir).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Print the node's answer as JSON.
    #[arg(long, global = true)]
    json: bool,
    /// Log filter for the node (e.g. `info`, `xln=debug`); logs go to stderr.
    #[arg(long, global = true, default_value = "warn")]
    log: String,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Create the config and a signer key file (mode 0600) with a fresh key.
    Init {
        /// The name the entity publishes.
        #[arg(long)]
        name: String,
        /// Where peers reach this node (e.g. 127.0.0.1:9100).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// A peer to keep connected to (ws://host:port); repeat for several.
        #[arg(long)]
        dial: Vec<String>,
        /// Announce the node as a hub that forwards payments.
        #[arg(long)]
        hub: bool,
        /// Use this secret (0x + 64 hex digits) instead of a fresh key: devnet keys only.
        #[arg(long)]
        import_key: Option<String>,
        /// The chain config written by `xln devnet`.
        #[arg(long)]
        chain_file: Option<PathBuf>,
    },
    /// Run the node headless until interrupted (Ctrl-C or SIGTERM).
    Node {
        /// Serve metrics (Prometheus text format) at http://ADDR/metrics; a loopback address,
        /// port 0 picks a free one. Overrides `metrics` in the config.
        #[arg(long, value_name = "ADDR")]
        metrics: Option<SocketAddr>,
    },
    /// The console (also plain `xln`): on an embedded node, or `--attach` to a running one.
    Console {
        /// Attach to the `xln node` of this data dir through its control socket.
        #[arg(long)]
        attach: bool,
        /// Colour theme: dark, light, high-contrast, or one of the config dir's themes/.
        #[arg(long, default_value = "dark")]
        theme: String,
    },
    /// A local network to try xln: a devnet, a hub and three wallets with payments flowing,
    /// and the console as the wallet `alice`.
    Demo {
        #[arg(long, default_value = "dark")]
        theme: String,
        /// Run the demo network without the console until interrupted (for scripts).
        #[arg(long)]
        headless: bool,
    },
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
        /// Also fund these addresses with gas and test tokens.
        #[arg(long)]
        fund: Vec<Address>,
    },
    /// Health, entity, chain and peers.
    Status,
    /// Accounts with their positions and capacities.
    Accounts,
    /// Open an account with a peer (entity id or profile name).
    OpenAccount { peer: String },
    /// Extend credit to a peer: `credit <peer> <token> <amount>`.
    Credit {
        peer: String,
        token: String,
        amount: String,
    },
    /// Pay a destination across hops and wait for the result.
    Pay {
        destination: String,
        token: String,
        amount: String,
        /// Return once the payment is sent, without waiting for its result.
        #[arg(long)]
        no_wait: bool,
    },
    /// Candidate routes to a destination.
    Routes {
        destination: String,
        token: String,
        amount: String,
    },
    /// HTLCs in flight.
    Htlcs,
    /// Reserves on chain.
    Reserves,
    /// Move tokens from the signer's wallet into the entity's reserve.
    Deposit { token: String, amount: String },
    /// Pay reserve out to an address (default: the signer's).
    Withdraw {
        token: String,
        amount: String,
        #[arg(long)]
        to: Option<Address>,
    },
    /// Move reserve into the collateral of an account.
    Collateral {
        peer: String,
        token: String,
        amount: String,
    },
    /// Settle an account cooperatively on chain.
    Settle { peer: String },
    /// Start a dispute of an account on chain with the newest frame the peer signed.
    Dispute { peer: String },
    /// Our netting proposals, one per token: each account's credit debt settled in one
    /// on-chain batch; `netting execute <id>` carries one out, `netting dismiss <id>` hides it
    /// until its positions change.
    Netting {
        #[command(subcommand)]
        action: Option<NettingAction>,
    },
    /// Offer a swap on the account with a peer (a hub matches it in its order book): give
    /// `give-amount` of `give-token` for at least `want-amount` of `want-token`.
    Swap {
        peer: String,
        give_token: String,
        give_amount: String,
        want_token: String,
        want_amount: String,
        /// Time in force: gtc rests until filled or cancelled, ioc takes what matches now
        /// and cancels the rest, fok fills entirely at once or not at all.
        #[arg(long, value_enum, default_value = "gtc")]
        tif: Tif,
        /// Seconds until the order expires (default: never).
        #[arg(long)]
        expires: Option<u64>,
    },
    /// Our swap orders and the orders resting in our book; `orders cancel <peer> <id>`
    /// cancels one.
    Orders {
        #[command(subcommand)]
        action: Option<OrdersAction>,
    },
    /// Refuse (or, with --unblock, accept again) a peer signer's sessions.
    BlockPeer {
        signer: Address,
        #[arg(long)]
        unblock: bool,
    },
}

#[derive(Subcommand)]
enum OrdersAction {
    /// Cancel what is left of our order `id` on the account with `peer`.
    Cancel { peer: String, id: u64 },
}

#[derive(Subcommand)]
enum NettingAction {
    /// Propose the debt settlements of proposal `id`; they go on chain in one batch once the
    /// peers signed.
    Execute { id: u64 },
    /// Hide proposal `id` until its positions change.
    Dismiss { id: u64 },
}

/// Time in force, as typed.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Tif {
    Gtc,
    Ioc,
    Fok,
}

impl From<Tif> for TimeInForce {
    fn from(tif: Tif) -> TimeInForce {
        match tif {
            Tif::Gtc => TimeInForce::GoodTillCancel,
            Tif::Ioc => TimeInForce::ImmediateOrCancel,
            Tif::Fok => TimeInForce::FillOrKill,
        }
    }
}

pub fn init_logging(cli: &Cli) {
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn tokio_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    let paths = Paths::resolve(cli.data_dir.as_deref(), cli.config.as_deref())?;
    let command = cli.command.unwrap_or(Command::Console {
        attach: false,
        theme: "dark".into(),
    });
    let json = cli.json;
    match command {
        Command::Init {
            name,
            listen,
            dial,
            hub,
            import_key,
            chain_file,
        } => {
            let key = import_key
                .map(|hex| {
                    let bytes: [u8; 32] = xln_core::parse_hex(&hex)
                        .map_err(|_| anyhow::anyhow!("--import-key is not 32 hex bytes"))?;
                    SignerKey::from_bytes(&bytes)
                        .map_err(|_| anyhow::anyhow!("--import-key is not a valid key"))
                })
                .transpose()?;
            let key = config::init(
                &paths,
                &InitOptions {
                    name,
                    listen,
                    dial,
                    hub,
                    key,
                    chain_file,
                },
            )?;
            println!("signer {}", key.address());
            println!("config {}", paths.config.display());
            println!("keys   {} (mode 0600)", paths.keys.display());
            Ok(())
        }
        Command::Node { metrics } => tokio_runtime()?.block_on(run_node(paths, metrics)),
        Command::Console { attach, theme } => {
            tokio_runtime()?.block_on(run_console(paths, attach, theme))
        }
        Command::Demo { theme, headless } => {
            tokio_runtime()?.block_on(run_demo(paths, theme, headless))
        }
        Command::Devnet {
            port,
            keys,
            config_out,
            block_time,
            fund,
        } => tokio_runtime()?.block_on(run_devnet(DevnetOptions {
            port,
            keys,
            config_out,
            block_time,
            fund,
        })),
        other => tokio_runtime()?.block_on(client_command(&paths, other, json)),
    }
}

/// Loads what `xln node` and an embedded console start from.
pub fn load_setup(paths: Paths) -> anyhow::Result<NodeSetup> {
    let config = Config::load(&paths.config)?;
    let keys = config::load_key_file(&paths.keys)?;
    let key = config::pick_signer(&keys, config.signer.as_deref())?;
    let chain_file = paths.chain_file(&config);
    let chain = ChainConfig::load(&chain_file).with_context(|| {
        format!(
            "reading the chain config {} (written by `xln devnet`)",
            chain_file.display()
        )
    })?;
    Ok(NodeSetup {
        paths,
        config,
        key,
        chain,
    })
}

async fn run_node(paths: Paths, metrics: Option<SocketAddr>) -> anyhow::Result<()> {
    let mut setup = load_setup(paths)?;
    if metrics.is_some() {
        setup.config.metrics = metrics;
    }
    let socket = setup.paths.control_socket();
    let name = setup.config.name.clone();
    let running = node::start(setup).await?;
    let (stop_control, stop_rx) = tokio::sync::watch::channel(false);
    let control = control::serve(&socket, running.link(), stop_rx).await?;
    println!(
        "node {name}: entity {} listening on {} control {}",
        running.entity,
        running
            .listen_addr
            .map_or("(dial only)".to_string(), |a| a.to_string()),
        socket.display()
    );
    if let Some(addr) = running.metrics_addr {
        println!("metrics at http://{addr}/metrics");
    }
    let result = running.run_until(wait_for_signal()).await;
    let _ = stop_control.send(true);
    let _ = control.await;
    result
}

fn console_options(paths: &Paths, theme: String, hint: Option<String>) -> xln::tui::ConsoleOptions {
    xln::tui::ConsoleOptions {
        theme,
        config_dir: paths.config.parent().map(|d| d.to_path_buf()),
        first_run_hint: hint,
    }
}

async fn run_console(paths: Paths, attach: bool, theme: String) -> anyhow::Result<()> {
    if attach {
        let (link, task) = control::attach(paths.control_socket()).await?;
        let result = xln::tui::run(link, console_options(&paths, theme, None)).await;
        task.abort();
        return result;
    }
    if !paths.config.exists() {
        anyhow::bail!(
            "no config at {}: run `xln init --name <name>` first, or try `xln demo`",
            paths.config.display()
        );
    }
    let options = console_options(&paths, theme, None);
    let setup = load_setup(paths)?;
    let socket = setup.paths.control_socket();
    let running = node::start(setup).await?;
    let (stop_control, stop_rx) = tokio::sync::watch::channel(false);
    let control = control::serve(&socket, running.link(), stop_rx).await?;
    let result = xln::tui::run(running.link(), options).await;
    let _ = stop_control.send(true);
    let _ = control.await;
    running.shutdown().await?;
    result
}

async fn run_demo(paths: Paths, theme: String, headless: bool) -> anyhow::Result<()> {
    let root = xln::demo::demo_root(&paths);
    eprintln!(
        "starting the demo in {}: a devnet, a hub and three wallets…",
        root.display()
    );
    let demo = xln::demo::start(&root).await?;
    let result = if headless {
        println!("demo running; Ctrl-C stops");
        wait_for_signal().await;
        Ok(())
    } else {
        let hint = "You are alice, a wallet with an account at the hub; bob and carol pay \
                    around. Press 3 to pay, 2 for accounts, ? for every key, q to quit."
            .to_string();
        xln::tui::run(demo.alice()?, console_options(&paths, theme, Some(hint))).await
    };
    demo.shutdown().await?;
    result
}

async fn wait_for_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
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
    let mut check = tokio::time::interval(Duration::from_secs(1));
    let result = loop {
        tokio::select! {
            _ = wait_for_signal() => break Ok(()),
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

// ---------------------------------------------------------------------- client commands

/// Finds a token by symbol or id among the node's tokens.
fn find_token<'a>(tokens: &'a [TokenInfo], name: &str) -> anyhow::Result<&'a TokenInfo> {
    tokens
        .iter()
        .find(|t| t.symbol.eq_ignore_ascii_case(name) || t.id.to_string() == name)
        .ok_or_else(|| {
            let known: Vec<&str> = tokens.iter().map(|t| t.symbol.as_str()).collect();
            anyhow::anyhow!("unknown token {name:?} (known: {})", known.join(", "))
        })
}

fn decimals_of(tokens: &[TokenInfo], id: u32) -> u8 {
    tokens.iter().find(|t| t.id == id).map_or(0, |t| t.decimals)
}

fn symbol_of(tokens: &[TokenInfo], id: u32) -> String {
    tokens
        .iter()
        .find(|t| t.id == id)
        .map_or_else(|| format!("token {id}"), |t| t.symbol.clone())
}

async fn client_command(paths: &Paths, command: Command, json: bool) -> anyhow::Result<()> {
    let socket = paths.control_socket();
    let mut client = control::ControlClient::connect(&socket).await?;
    let tokens = match client.call(&Request::Tokens).await? {
        Response::Tokens(tokens) => tokens,
        other => anyhow::bail!("unexpected answer to a token request: {other:?}"),
    };
    let token_amount = |token: &str, amount: &str| -> anyhow::Result<(u32, u128)> {
        let info = find_token(&tokens, token)?;
        let units = parse_amount(amount, info.decimals)?;
        anyhow::ensure!(units > 0, "the amount must be above zero");
        Ok((info.id, units))
    };
    let (request, wait_payment) = match command {
        Command::Status => (Request::Status, false),
        Command::Accounts => (Request::Accounts, false),
        Command::OpenAccount { peer } => (Request::OpenAccount { peer }, false),
        Command::Credit {
            peer,
            token,
            amount,
        } => {
            let info = find_token(&tokens, &token)?;
            let amount = parse_amount(&amount, info.decimals)?;
            (
                Request::Credit {
                    peer,
                    token: info.id,
                    amount,
                },
                false,
            )
        }
        Command::Pay {
            destination,
            token,
            amount,
            no_wait,
        } => {
            let (token, amount) = token_amount(&token, &amount)?;
            (
                Request::Pay {
                    destination,
                    token,
                    amount,
                },
                !no_wait,
            )
        }
        Command::Routes {
            destination,
            token,
            amount,
        } => {
            let (token, amount) = token_amount(&token, &amount)?;
            (
                Request::Routes {
                    destination,
                    token,
                    amount,
                },
                false,
            )
        }
        Command::Htlcs => (Request::Htlcs, false),
        Command::Reserves => (Request::Reserves, false),
        Command::Deposit { token, amount } => {
            let (token, amount) = token_amount(&token, &amount)?;
            (Request::Deposit { token, amount }, false)
        }
        Command::Withdraw { token, amount, to } => {
            let (token, amount) = token_amount(&token, &amount)?;
            (Request::Withdraw { token, amount, to }, false)
        }
        Command::Collateral {
            peer,
            token,
            amount,
        } => {
            let (token, amount) = token_amount(&token, &amount)?;
            (
                Request::Collateral {
                    peer,
                    token,
                    amount,
                },
                false,
            )
        }
        Command::Settle { peer } => (Request::Settle { peer }, false),
        Command::Dispute { peer } => (Request::Dispute { peer }, false),
        Command::Netting { action: None } => (Request::Netting, false),
        Command::Netting {
            action: Some(NettingAction::Execute { id }),
        } => (Request::NettingExecute { id }, false),
        Command::Netting {
            action: Some(NettingAction::Dismiss { id }),
        } => (Request::NettingDismiss { id }, false),
        Command::Swap {
            peer,
            give_token,
            give_amount,
            want_token,
            want_amount,
            tif,
            expires,
        } => {
            let (give_token, give_amount) = token_amount(&give_token, &give_amount)?;
            let (want_token, want_amount) = token_amount(&want_token, &want_amount)?;
            (
                Request::PlaceOrder {
                    peer,
                    give_token,
                    give_amount,
                    want_token,
                    want_amount,
                    time_in_force: tif.into(),
                    expires_in_secs: expires,
                },
                false,
            )
        }
        Command::Orders { action: None } => (Request::Orders, false),
        Command::Orders {
            action: Some(OrdersAction::Cancel { peer, id }),
        } => (Request::CancelOrder { peer, offer_id: id }, false),
        Command::BlockPeer { signer, unblock } => (
            Request::BlockPeer {
                signer,
                blocked: !unblock,
            },
            false,
        ),
        Command::Init { .. }
        | Command::Node { .. }
        | Command::Console { .. }
        | Command::Demo { .. }
        | Command::Devnet { .. } => {
            unreachable!("handled before connecting")
        }
    };
    let mut response = client.call(&request).await?;
    if wait_payment && let Response::PaymentStarted { hashlock, .. } = &response {
        response = wait_for_payment(&mut client, *hashlock).await?;
    }
    if let Response::Error { message } = &response {
        if json {
            println!("{}", serde_json::to_string(&response)?);
        }
        anyhow::bail!("{message}");
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&response)?);
    } else {
        print_human(&response, &tokens);
    }
    if let Response::Payment(payment) = &response
        && payment.status != "succeeded"
    {
        anyhow::bail!("payment {}: {}", payment.hashlock, payment.status);
    }
    Ok(())
}

/// Waits for a payment to end.
async fn wait_for_payment(
    client: &mut control::ControlClient,
    hashlock: Hash,
) -> anyhow::Result<Response> {
    client.call(&Request::AwaitPayment { hashlock }).await
}

fn print_human(response: &Response, tokens: &[TokenInfo]) {
    let amount = |token: u32, units: u128| {
        format!(
            "{} {}",
            format_amount(units, decimals_of(tokens, token)),
            symbol_of(tokens, token)
        )
    };
    match response {
        Response::Status(s) => {
            println!("{} entity {}", s.name, s.entity);
            println!(
                "  signer {}  board {}-of-{}",
                s.signer,
                s.board.threshold,
                s.board.members.len()
            );
            println!(
                "  height {}  inputs {}  database {:.1} MiB",
                s.height,
                s.inputs,
                s.database_bytes as f64 / (1024.0 * 1024.0)
            );
            println!(
                "  chain {} (id {}) head {} followed {} lag {}",
                s.chain.rpc_url,
                s.chain.chain_id,
                s.chain.head,
                s.chain.followed,
                s.chain.lag()
            );
            println!("  peers connected {}", s.peers_connected);
            if let Some(url) = &s.metrics_url {
                println!("  metrics {url}");
            }
            for t in &s.totals {
                println!(
                    "  {}: owed to us {}, we owe {}",
                    symbol_of(tokens, t.token),
                    amount(t.token, t.owed_to_us),
                    amount(t.token, t.we_owe)
                );
            }
            if s.healthy {
                println!("  healthy");
            } else {
                for p in &s.problems {
                    println!("  problem: {p}");
                }
            }
        }
        Response::Accounts(accounts) => {
            if accounts.is_empty() {
                println!("no accounts");
            }
            for a in accounts {
                println!(
                    "{} {} height {} {:?}",
                    a.peer,
                    a.peer_name.as_deref().unwrap_or(""),
                    a.height,
                    a.status
                );
                for t in &a.tokens {
                    let d = decimals_of(tokens, t.token);
                    println!(
                        "  {}: position {} collateral {} credit ours {} theirs {} out {} in {}",
                        symbol_of(tokens, t.token),
                        format_signed(t.position, d),
                        format_amount(t.collateral, d),
                        format_amount(t.own_credit, d),
                        format_amount(t.peer_credit, d),
                        format_amount(t.out_capacity, d),
                        format_amount(t.in_capacity, d)
                    );
                }
            }
        }
        Response::Htlcs(htlcs) => {
            if htlcs.is_empty() {
                println!("no HTLCs in flight");
            }
            for h in htlcs {
                println!(
                    "{:?} {} lock {} {} {} expires {} ms / block {}",
                    h.direction,
                    h.peer.short(),
                    h.lock_id,
                    amount(h.token, h.amount),
                    h.state,
                    h.expires_at_ms,
                    h.reveal_before_block
                );
            }
        }
        Response::Reserves(reserves) => {
            if reserves.is_empty() {
                println!("no reserves");
            }
            for r in reserves {
                println!("{}", amount(r.token, r.reserve));
            }
        }
        Response::Routes(routes) => {
            for (i, r) in routes.iter().enumerate() {
                let names: Vec<String> = r
                    .hops
                    .iter()
                    .zip(&r.names)
                    .map(|(h, n)| n.clone().unwrap_or_else(|| h.short()))
                    .collect();
                println!(
                    "{}. {} fee {} success {:.1}%",
                    i + 1,
                    names.join(" → "),
                    r.fee,
                    f64::from(r.success_per_mille) / 10.0
                );
            }
        }
        Response::PaymentStarted { hashlock, route } => {
            println!("payment {hashlock} sent over {} hop(s)", route.hops.len())
        }
        Response::Payment(p) => println!(
            "payment {} of {} to {}: {}",
            p.hashlock,
            amount(p.token, p.amount),
            p.receiver.short(),
            p.status
        ),
        Response::ChainTx {
            tx,
            block,
            gas_used,
        } => println!("transaction {tx} mined in block {block} ({gas_used} gas)"),
        Response::Netting(n) => {
            if n.proposals.is_empty() {
                println!("no netting proposals");
            }
            for (id, p) in n.ids.iter().zip(&n.proposals) {
                println!("[{id}] {p}");
            }
            if n.dismissed > 0 {
                println!(
                    "({} dismissed; each returns when its positions change)",
                    n.dismissed
                );
            }
        }
        Response::OrderPlaced(order) => println!("placed: {}", order_line(order, tokens)),
        Response::Orders { orders, book } => {
            if orders.is_empty() {
                println!("no orders");
            }
            for order in orders {
                println!("{}", order_line(order, tokens));
            }
            if !book.is_empty() {
                println!("resting in our book:");
                for order in book {
                    println!("  {}", book_line(order, tokens));
                }
            }
        }
        Response::Done { what } => println!("{what}"),
        Response::Tokens(tokens) => {
            for t in tokens {
                println!("{} id {} decimals {}", t.symbol, t.id, t.decimals);
            }
        }
        Response::View(_) => println!("(use --json for the whole view)"),
        Response::Error { message } => println!("error: {message}"),
    }
}

fn token_amount_text(tokens: &[TokenInfo], token: u32, units: u128) -> String {
    format!(
        "{} {}",
        format_amount(units, decimals_of(tokens, token)),
        symbol_of(tokens, token)
    )
}

fn expiry_text(expires_at_ms: Option<u64>) -> String {
    expires_at_ms.map_or("no expiry".into(), |at| format!("expires at {at} ms"))
}

/// `order 4 with hub: 10 TUSD for 20 TEUR GTC, no expiry: partly filled, 5 TUSD given, 10 TEUR received`.
fn order_line(order: &OrderView, tokens: &[TokenInfo]) -> String {
    let received = order.received.map_or(
        "what came in before the node started is not known".into(),
        |r| {
            format!(
                "{} received",
                token_amount_text(tokens, order.want_token, r)
            )
        },
    );
    let mut line = format!(
        "order {} with {}: {} for {} {}, {}: {}, {} given, {received}",
        order.offer_id,
        order
            .peer_name
            .clone()
            .unwrap_or_else(|| order.peer.short()),
        token_amount_text(tokens, order.give_token, order.give_amount),
        token_amount_text(tokens, order.want_token, order.want_amount),
        time_in_force_label(order.time_in_force),
        expiry_text(order.expires_at_ms),
        order.state.label(),
        token_amount_text(tokens, order.give_token, order.filled),
    );
    if let Some(reason) = &order.reason {
        line.push_str(&format!(" ({reason})"));
    }
    line
}

fn book_line(order: &BookOrderView, tokens: &[TokenInfo]) -> String {
    format!(
        "{} order {}: {} left of {} for {} {}, {}",
        order
            .owner_name
            .clone()
            .unwrap_or_else(|| order.owner.short()),
        order.offer_id,
        token_amount_text(tokens, order.give_token, order.remaining),
        token_amount_text(tokens, order.give_token, order.give_amount),
        token_amount_text(tokens, order.want_token, order.want_amount),
        time_in_force_label(order.time_in_force),
        expiry_text(order.expires_at_ms),
    )
}
