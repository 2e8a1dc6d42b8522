//! Text for ids, names and times. Times are relative to the node's clock in the view
//! (`status.timestamp`), never the console's, so the same view always draws the same.

use crate::api::NodeView;
use std::collections::HashMap;
use xln_core::board::EntityId;

/// Names of the entities the view knows: profiles, then accounts' peer names.
#[derive(Debug, Default, Clone)]
pub struct Names {
    by_entity: HashMap<EntityId, String>,
}

impl Names {
    pub fn of(view: &NodeView) -> Names {
        let mut by_entity = HashMap::with_capacity(view.profiles.len() + view.accounts.len());
        for account in &view.accounts {
            if let Some(name) = &account.peer_name {
                by_entity.insert(account.peer, name.clone());
            }
        }
        for profile in &view.profiles {
            by_entity.insert(profile.entity, profile.name.clone());
        }
        by_entity.insert(view.status.entity, view.status.name.clone());
        Names { by_entity }
    }

    /// The name if known, else the short id.
    pub fn label(&self, entity: &EntityId) -> String {
        self.by_entity
            .get(entity)
            .filter(|name| !name.is_empty())
            .cloned()
            .unwrap_or_else(|| entity.short())
    }
}

/// The name of one entity (a profile's, else an account's peer name), else its short id.
/// A linear search, for one label; screens with many use [`Names`].
/// A count of characters or rows as terminal cells, saturating (a long name from a file or a
/// peer must not overflow a `u16` sum).
pub fn cells(count: usize) -> u16 {
    u16::try_from(count).unwrap_or(u16::MAX)
}

pub fn entity_label(view: &NodeView, entity: &EntityId) -> String {
    let profile = view.profiles.iter().find(|p| p.entity == *entity);
    let account = || view.accounts.iter().find(|a| a.peer == *entity);
    profile
        .map(|p| p.name.clone())
        .or_else(|| account().and_then(|a| a.peer_name.clone()))
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| entity.short())
}

/// `4m 05s`, `2h 10m`, `3d 4h`: a span of milliseconds, to the two largest units.
pub fn duration(ms: u64) -> String {
    let seconds = ms / 1000;
    let (days, hours, minutes) = (seconds / 86_400, seconds / 3600 % 24, seconds / 60 % 60);
    if days > 0 {
        format!("{days}d {hours}h")
    } else if hours > 0 {
        format!("{hours}h {minutes:02}m")
    } else if minutes > 0 {
        format!("{minutes}m {:02}s", seconds % 60)
    } else {
        format!("{seconds}s")
    }
}

/// How long before the node's `now` a moment was: `12s ago`.
pub fn ago(now_ms: u64, then_ms: u64) -> String {
    format!("{} ago", duration(now_ms.saturating_sub(then_ms)))
}

/// How long from the node's `now` until a deadline: `4m 05s`, or `expired`.
pub fn time_left(now_ms: u64, deadline_ms: u64) -> String {
    if deadline_ms <= now_ms {
        "expired".to_string()
    } else {
        duration(deadline_ms - now_ms)
    }
}

/// `HH:MM:SS` of a Unix-epoch millisecond timestamp, in UTC.
pub fn clock(timestamp_ms: u64) -> String {
    let seconds = timestamp_ms / 1000;
    format!(
        "{:02}:{:02}:{:02}",
        seconds / 3600 % 24,
        seconds / 60 % 60,
        seconds % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(duration(999), "0s");
        assert_eq!(duration(245_000), "4m 05s");
        assert_eq!(duration(7_800_000), "2h 10m");
        assert_eq!(duration(273_600_000), "3d 4h");
        assert_eq!(time_left(10_000, 5_000), "expired");
        assert_eq!(time_left(0, 61_000), "1m 01s");
        assert_eq!(ago(12_000, 0), "12s ago");
        assert_eq!(clock(3_723_000), "01:02:03");
    }
}
