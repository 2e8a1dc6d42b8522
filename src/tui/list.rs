//! Lists and tables that draw only the rows that fit: the selection lives in the screen's
//! state, the scroll position follows it when drawn.

use super::keys::Action;
use super::theme::Theme;
use ratatui::Frame;
use ratatui::layout::{Constraint, Position, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Row, Table};
use std::cell::Cell;
use std::ops::Range;

/// The selected row of a list and the first row shown.
///
/// `draw` takes `&self`, yet the first row shown depends on the height it is drawn at; like
/// gitui's scroll state it is kept in a `Cell`, written only while drawing.
#[derive(Debug, Default)]
pub struct ScrollList {
    selected: usize,
    offset: Cell<usize>,
    /// Where the rows were drawn last: mouse clicks land in it, a page is its height.
    rows_area: Cell<Rect>,
}

impl ScrollList {
    /// The selected row of a list of `len` rows (the last one if the list got shorter).
    pub fn selected(&self, len: usize) -> Option<usize> {
        len.checked_sub(1).map(|last| self.selected.min(last))
    }

    pub fn select(&mut self, index: usize) {
        self.selected = index;
    }

    /// Moves the selection for a list action; `false` for actions that are not list moves.
    pub fn apply(&mut self, action: Action, len: usize) -> bool {
        let page = usize::from(self.rows_area.get().height.max(1));
        let current = self.selected(len).unwrap_or(0);
        let last = len.saturating_sub(1);
        self.selected = match action {
            Action::Up => current.saturating_sub(1),
            Action::Down => (current + 1).min(last),
            Action::PageUp => current.saturating_sub(page),
            Action::PageDown => current.saturating_add(page).min(last),
            Action::First => 0,
            Action::Last => last,
            _ => return false,
        };
        true
    }

    /// Mouse wheel: `lines` down (negative: up).
    pub fn scroll(&mut self, lines: isize, len: usize) {
        let current = self.selected(len).unwrap_or(0);
        let last = len.saturating_sub(1);
        self.selected = current.saturating_add_signed(lines).min(last);
    }

    /// Selects the row under a click; `false` if the click was not on a row.
    pub fn click(&mut self, position: Position, len: usize) -> bool {
        let area = self.rows_area.get();
        if !area.contains(position) {
            return false;
        }
        let index = self.offset.get() + usize::from(position.y - area.y);
        if index >= len {
            return false;
        }
        self.selected = index;
        true
    }

    /// The rows that fit in `rows_area`, scrolled so that the selection is among them.
    pub fn visible(&self, len: usize, rows_area: Rect) -> Range<usize> {
        self.rows_area.set(rows_area);
        let height = usize::from(rows_area.height);
        let Some(selected) = self.selected(len) else {
            self.offset.set(0);
            return 0..0;
        };
        let mut offset = self.offset.get().min(len.saturating_sub(height));
        if selected < offset {
            offset = selected;
        } else if height > 0 && selected >= offset + height {
            offset = selected + 1 - height;
        }
        self.offset.set(offset);
        offset..(offset + height).min(len)
    }
}

/// A bordered table of which only the visible rows are built: `row(i)` is called for those.
pub struct TableSpec<'a> {
    pub title: Line<'a>,
    pub header: Vec<&'a str>,
    pub widths: Vec<Constraint>,
    pub len: usize,
    /// Whether the selection is shown (the focused pane of a screen).
    pub focused: bool,
}

pub fn draw_table<'a>(
    frame: &mut Frame,
    area: Rect,
    theme: &Theme,
    list: &ScrollList,
    spec: TableSpec<'a>,
    row: impl Fn(usize) -> Row<'a>,
) {
    let block = Block::new()
        .borders(Borders::ALL)
        .border_style(if spec.focused {
            theme.accent()
        } else {
            theme.border()
        })
        .title(spec.title);
    let inner = block.inner(area);
    let rows_area = Rect {
        y: inner.y.saturating_add(1),
        height: inner.height.saturating_sub(1),
        ..inner
    };
    let range = list.visible(spec.len, rows_area);
    let selected = list.selected(spec.len);
    let rows: Vec<Row> = range
        .map(|index| {
            let drawn = row(index);
            if spec.focused && Some(index) == selected {
                drawn.style(theme.selected())
            } else {
                drawn
            }
        })
        .collect();
    let empty = spec.len == 0;
    let table = Table::new(rows, spec.widths)
        .header(Row::new(spec.header).style(theme.title()))
        .block(block)
        .style(theme.text());
    frame.render_widget(table, area);
    if empty && rows_area.height > 0 {
        frame.render_widget(Line::styled("  (none)", theme.dim()), rows_area);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_selection_stays_in_view() {
        let mut list = ScrollList::default();
        let area = Rect::new(0, 0, 10, 5);
        assert_eq!(list.visible(100, area), 0..5);
        list.select(7);
        assert_eq!(list.visible(100, area), 3..8);
        list.apply(Action::Up, 100);
        assert_eq!(list.visible(100, area), 3..8, "no scroll while in view");
        list.apply(Action::Last, 100);
        assert_eq!(list.visible(100, area), 95..100);
        assert_eq!(list.visible(3, area), 0..3, "the list got shorter");
        assert_eq!(list.selected(3), Some(2));
        assert_eq!(list.selected(0), None);
        assert_eq!(list.visible(0, area), 0..0);
    }

    #[test]
    fn clicks_and_pages_use_the_drawn_area() {
        let mut list = ScrollList::default();
        list.visible(100, Rect::new(2, 10, 20, 8));
        assert!(list.click(Position::new(5, 13), 100));
        assert_eq!(list.selected(100), Some(3));
        assert!(!list.click(Position::new(5, 9), 100));
        assert!(!list.click(Position::new(5, 13), 2), "below the last row");
        list.apply(Action::PageDown, 100);
        assert_eq!(list.selected(100), Some(11));
        list.scroll(-20, 100);
        assert_eq!(list.selected(100), Some(0));
    }
}
