//! The terminal console: a wallet for a person, a console for a hub operator.
//!
//! It talks to a node only through [`NodeLink`]: it draws the newest [`crate::api::NodeView`]
//! and sends [`crate::api::Request`]s, never waiting on them (a pending request shows a
//! spinner). [`Console`] holds the state and is drawn from `&self`; [`run`] owns the terminal
//! and the event loop.

mod app;
mod bar;
mod context;
mod form;
mod format;
mod keys;
mod list;
mod screens;
mod theme;

#[cfg(test)]
mod tests;

pub use app::Console;
pub use context::RequestId;
pub use screens::ScreenId;

use crate::api::{NodeLink, NodeView, Response};
use anyhow::Context as _;
use crossterm::event::{
    DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture,
    EventStream,
};
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use std::io::Stdout;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Draw at most this often.
const FRAME: Duration = Duration::from_millis(16);
/// How often the spinner turns while something waits for the node.
const SPINNER_PERIOD: Duration = Duration::from_millis(100);

/// How the console looks and which keys it takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleOptions {
    /// A built-in theme (`dark`, `light`, `high-contrast`) or one in `<config_dir>/themes/`.
    pub theme: String,
    /// Where the user's `themes/*.toml` and `keys.toml` live, if anywhere.
    pub config_dir: Option<PathBuf>,
    /// Shown on the overview (e.g. what to do first on a fresh node).
    pub first_run_hint: Option<String>,
}

impl Default for ConsoleOptions {
    fn default() -> ConsoleOptions {
        ConsoleOptions {
            theme: "dark".into(),
            config_dir: None,
            first_run_hint: None,
        }
    }
}

/// Runs the console on the terminal until the user quits. The theme and keys are checked
/// before the terminal is touched; the terminal is restored on return and on panic.
pub async fn run(link: NodeLink, options: ConsoleOptions) -> anyhow::Result<()> {
    let mut views = link.views.clone();
    let first_view = Arc::clone(&views.borrow_and_update());
    let mut console = Console::new(&options, first_view)?;
    let mut session = TerminalSession::start()?;
    event_loop(&mut session.terminal, &mut console, &link, &mut views).await
}

async fn event_loop(
    terminal: &mut Terminal<CrosstermBackend<Stdout>>,
    console: &mut Console,
    link: &NodeLink,
    views: &mut tokio::sync::watch::Receiver<Arc<NodeView>>,
) -> anyhow::Result<()> {
    let mut events = EventStream::new();
    let mut answers = FuturesUnordered::new();
    let mut spinner = tokio::time::interval(SPINNER_PERIOD);
    spinner.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut views_open = true;
    // The newest view, taken from the channel but not yet given to the console: a busy node
    // publishes many views a second, the console rebuilds its indexes at most once per
    // event or frame.
    let mut unapplied_view: Option<Arc<NodeView>> = None;
    let mut changed = true;
    let mut last_draw: Option<Instant> = None;
    while !console.should_quit() {
        for (id, request) in console.take_requests() {
            let answer = link.ask(request);
            answers.push(async move { (id, answer.await) });
        }
        let next_draw = last_draw.map_or_else(Instant::now, |at| at + FRAME);
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(event)) => {
                    apply_view(console, &mut unapplied_view);
                    console.handle_event(&event);
                    changed = true;
                }
                Some(Err(error)) => return Err(error).context("reading the terminal's events"),
                None => return Ok(()),
            },
            view_changed = views.changed(), if views_open => {
                match view_changed {
                    Ok(()) => unapplied_view = Some(Arc::clone(&views.borrow_and_update())),
                    Err(_) => {
                        views_open = false;
                        console.node_stopped();
                    }
                }
                changed = true;
            }
            Some((id, answer)) = answers.next(), if !answers.is_empty() => {
                let response = answer.unwrap_or_else(|_| Response::Error {
                    message: "the node went away before answering".into(),
                });
                apply_view(console, &mut unapplied_view);
                console.on_response(id, response);
                changed = true;
            }
            _ = spinner.tick() => changed |= console.tick(),
            _ = tokio::time::sleep_until(next_draw), if changed => {
                apply_view(console, &mut unapplied_view);
                terminal.draw(|frame| console.draw(frame)).context("drawing")?;
                last_draw = Some(Instant::now());
                changed = false;
            }
        }
    }
    Ok(())
}

fn apply_view(console: &mut Console, unapplied_view: &mut Option<Arc<NodeView>>) {
    if let Some(view) = unapplied_view.take() {
        console.set_view(view);
    }
}

type PanicHook = Box<dyn Fn(&std::panic::PanicHookInfo<'_>) + Sync + Send + 'static>;

/// The terminal in raw mode on the alternate screen with mouse capture (and bracketed paste,
/// so that a pasted entity id arrives as text), for as long as it
/// lives. Dropping it, or a panic anywhere meanwhile, gives the terminal back as it was.
struct TerminalSession {
    terminal: Terminal<CrosstermBackend<Stdout>>,
    previous_hook: Arc<PanicHook>,
}

impl TerminalSession {
    fn start() -> anyhow::Result<TerminalSession> {
        let previous_hook: Arc<PanicHook> = Arc::new(std::panic::take_hook());
        let chained = Arc::clone(&previous_hook);
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal();
            chained(info);
        }));
        let session = TerminalSession {
            terminal: Terminal::new(CrosstermBackend::new(std::io::stdout()))
                .context("opening the terminal")?,
            previous_hook,
        };
        enable_raw_mode().context("switching the terminal to raw mode")?;
        crossterm::execute!(
            std::io::stdout(),
            EnterAlternateScreen,
            EnableMouseCapture,
            EnableBracketedPaste
        )
        .context("switching to the alternate screen")?;
        Ok(session)
    }
}

impl Drop for TerminalSession {
    fn drop(&mut self) {
        restore_terminal();
        let previous = Arc::clone(&self.previous_hook);
        let _ours = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| previous(info)));
    }
}

/// Leaves raw mode, the alternate screen, mouse capture and bracketed paste; shows the cursor. Harmless to
/// call twice.
fn restore_terminal() {
    let _ = disable_raw_mode();
    let _ = crossterm::execute!(
        std::io::stdout(),
        DisableBracketedPaste,
        DisableMouseCapture,
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
}
