//! What screens get from the console: the view to read while drawing ([`Ui`]), and a
//! [`Context`] to ask for things while handling an event (requests, forms, confirmations,
//! notices). Screens never send anything themselves: the console does, in one place.

use super::form::Form;
use super::format::Names;
use super::keys::Keymap;
use super::theme::Theme;
use crate::api::{NodeView, Request};

/// Identifies one request sent to the node, to route its response back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// Everything drawing needs, borrowed from the console.
pub struct Ui<'a> {
    pub view: &'a NodeView,
    pub names: &'a Names,
    pub theme: &'a Theme,
    pub keymap: &'a Keymap,
    /// The spinner's current frame (drawn next to anything waiting for the node).
    pub spinner: &'static str,
}

/// A one-line message about the outcome of something, shown on the screen it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub is_error: bool,
    pub text: String,
}

impl Notice {
    pub fn ok(text: impl Into<String>) -> Notice {
        Notice {
            is_error: false,
            text: text.into(),
        }
    }
    pub fn error(text: impl Into<String>) -> Notice {
        Notice {
            is_error: true,
            text: text.into(),
        }
    }
}

/// A request that waits for the user's yes before it is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirm {
    pub summary: String,
    pub request: Request,
    /// Whether the open form is what asked (its answer then shows in the form).
    pub from_form: bool,
}

/// What a screen asked for while handling an event; the console carries it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Send {
        id: RequestId,
        request: Request,
        summary: String,
    },
    OpenForm(Form),
    Confirm(Confirm),
    Notice(Notice),
}

/// Handed to a screen while it handles an event.
pub struct Context<'a> {
    pub view: &'a NodeView,
    next_id: &'a mut u64,
    effects: Vec<Effect>,
}

impl<'a> Context<'a> {
    pub fn new(view: &'a NodeView, next_id: &'a mut u64) -> Context<'a> {
        Context {
            view,
            next_id,
            effects: Vec::new(),
        }
    }

    /// A fresh id for a request about to be sent.
    pub fn next_request_id(&mut self) -> RequestId {
        *self.next_id += 1;
        RequestId(*self.next_id)
    }

    /// Sends `request`; its response comes back to the screen's `on_response` with this id.
    pub fn send(&mut self, request: Request, summary: impl Into<String>) -> RequestId {
        let id = self.next_request_id();
        self.effects.push(Effect::Send {
            id,
            request,
            summary: summary.into(),
        });
        id
    }

    pub fn open_form(&mut self, form: Form) {
        self.effects.push(Effect::OpenForm(form));
    }

    /// Asks the user before sending `request` (anything that moves money on chain).
    pub fn confirm(&mut self, summary: impl Into<String>, request: Request) {
        self.effects.push(Effect::Confirm(Confirm {
            summary: summary.into(),
            request,
            from_form: false,
        }));
    }

    pub fn notice(&mut self, notice: Notice) {
        self.effects.push(Effect::Notice(notice));
    }

    pub fn into_effects(self) -> Vec<Effect> {
        self.effects
    }
}
