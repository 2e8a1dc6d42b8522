//! Colour themes: `themes/*.toml` at the repository root, embedded at compile time; themes in
//! the user's `<config dir>/themes/*.toml` add new names or replace built-ins of the same name.

use ratatui::style::{Color, Modifier, Style};
use serde::Deserialize;
use std::path::Path;
use std::str::FromStr;

const BUILT_IN: [(&str, &str); 3] = [
    ("dark", include_str!("../../themes/dark.toml")),
    ("light", include_str!("../../themes/light.toml")),
    (
        "high-contrast",
        include_str!("../../themes/high-contrast.toml"),
    ),
];

/// The colours every part of the console is drawn with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Theme {
    pub name: String,
    pub background: Color,
    pub text: Color,
    pub dim: Color,
    pub accent: Color,
    pub border: Color,
    pub selected_fg: Color,
    pub selected_bg: Color,
    pub key: Color,
    pub ok: Color,
    pub warn: Color,
    pub error: Color,
    pub credit: Color,
    pub collateral: Color,
    pub delta: Color,
}

/// A theme file: every colour optional, the missing ones taken from `extends`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ThemeFile {
    extends: Option<String>,
    background: Option<String>,
    text: Option<String>,
    dim: Option<String>,
    accent: Option<String>,
    border: Option<String>,
    selected_fg: Option<String>,
    selected_bg: Option<String>,
    key: Option<String>,
    ok: Option<String>,
    warn: Option<String>,
    error: Option<String>,
    credit: Option<String>,
    collateral: Option<String>,
    delta: Option<String>,
}

impl Theme {
    /// The theme named `name`: a user theme from `config_dir/themes/<name>.toml` if there is
    /// one, else a built-in.
    pub fn load(name: &str, config_dir: Option<&Path>) -> anyhow::Result<Theme> {
        let user_path = config_dir
            .map(|dir| dir.join("themes").join(format!("{name}.toml")))
            .filter(|path| path.is_file());
        let built_in = BUILT_IN.iter().find(|(built_in, _)| *built_in == name);
        let (file, text) = match (user_path, built_in) {
            (Some(path), _) => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
                (path.display().to_string(), text)
            }
            (None, Some((_, text))) => (format!("themes/{name}.toml"), text.to_string()),
            (None, None) => {
                let known: Vec<&str> = BUILT_IN.iter().map(|(name, _)| *name).collect();
                anyhow::bail!(
                    "no theme named '{name}' (built in: {}; yours go in <config dir>/themes/)",
                    known.join(", ")
                );
            }
        };
        let theme_file: ThemeFile =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{file}: {}", e.message()))?;
        let base = Theme::built_in(theme_file.extends.as_deref().unwrap_or("dark"))
            .map_err(|e| anyhow::anyhow!("{file}: extends: {e}"))?;
        theme_file
            .apply(name, base)
            .map_err(|e| anyhow::anyhow!("{file}: {e}"))
    }

    /// A built-in theme by name.
    pub fn built_in(name: &str) -> anyhow::Result<Theme> {
        let Some((_, text)) = BUILT_IN.iter().find(|(built_in, _)| *built_in == name) else {
            let known: Vec<&str> = BUILT_IN.iter().map(|(name, _)| *name).collect();
            anyhow::bail!("no built-in theme '{name}' (known: {})", known.join(", "));
        };
        let theme_file: ThemeFile = toml::from_str(text)
            .map_err(|e| anyhow::anyhow!("themes/{name}.toml: {}", e.message()))?;
        theme_file
            .apply(name, Theme::fallback())
            .map_err(|e| anyhow::anyhow!("themes/{name}.toml: {e}"))
    }

    /// What a built-in theme's missing keys become (each built-in names them all).
    fn fallback() -> Theme {
        Theme {
            name: "fallback".into(),
            background: Color::Reset,
            text: Color::Reset,
            dim: Color::DarkGray,
            accent: Color::Cyan,
            border: Color::DarkGray,
            selected_fg: Color::Black,
            selected_bg: Color::Cyan,
            key: Color::Yellow,
            ok: Color::Green,
            warn: Color::Yellow,
            error: Color::Red,
            credit: Color::Magenta,
            collateral: Color::Blue,
            delta: Color::White,
        }
    }

    pub fn base(&self) -> Style {
        Style::new().fg(self.text).bg(self.background)
    }
    pub fn text(&self) -> Style {
        Style::new().fg(self.text)
    }
    pub fn dim(&self) -> Style {
        Style::new().fg(self.dim)
    }
    pub fn accent(&self) -> Style {
        Style::new().fg(self.accent)
    }
    pub fn title(&self) -> Style {
        Style::new().fg(self.accent).add_modifier(Modifier::BOLD)
    }
    pub fn border(&self) -> Style {
        Style::new().fg(self.border)
    }
    pub fn selected(&self) -> Style {
        Style::new().fg(self.selected_fg).bg(self.selected_bg)
    }
    pub fn key(&self) -> Style {
        Style::new().fg(self.key).add_modifier(Modifier::BOLD)
    }
    pub fn ok(&self) -> Style {
        Style::new().fg(self.ok)
    }
    pub fn warn(&self) -> Style {
        Style::new().fg(self.warn)
    }
    pub fn error(&self) -> Style {
        Style::new().fg(self.error)
    }
    pub fn credit(&self) -> Style {
        Style::new().fg(self.credit)
    }
    pub fn collateral(&self) -> Style {
        Style::new().fg(self.collateral)
    }
    pub fn delta(&self) -> Style {
        Style::new().fg(self.delta).add_modifier(Modifier::BOLD)
    }
}

impl ThemeFile {
    fn apply(self, name: &str, base: Theme) -> Result<Theme, String> {
        let colour = |key: &str, value: Option<String>, base: Color| match value {
            None => Ok(base),
            Some(text) => {
                Color::from_str(&text).map_err(|_| format!("{key}: '{text}' is not a colour"))
            }
        };
        Ok(Theme {
            name: name.to_string(),
            background: colour("background", self.background, base.background)?,
            text: colour("text", self.text, base.text)?,
            dim: colour("dim", self.dim, base.dim)?,
            accent: colour("accent", self.accent, base.accent)?,
            border: colour("border", self.border, base.border)?,
            selected_fg: colour("selected_fg", self.selected_fg, base.selected_fg)?,
            selected_bg: colour("selected_bg", self.selected_bg, base.selected_bg)?,
            key: colour("key", self.key, base.key)?,
            ok: colour("ok", self.ok, base.ok)?,
            warn: colour("warn", self.warn, base.warn)?,
            error: colour("error", self.error, base.error)?,
            credit: colour("credit", self.credit, base.credit)?,
            collateral: colour("collateral", self.collateral, base.collateral)?,
            delta: colour("delta", self.delta, base.delta)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_themes_load() {
        for (name, _) in BUILT_IN {
            let theme = Theme::load(name, None).expect("built-in theme");
            assert_eq!(theme.name, name);
        }
        assert_eq!(Theme::load("dark", None).expect("dark").text, Color::Gray);
        let error = Theme::load("solarized", None).expect_err("unknown");
        assert!(error.to_string().contains("no theme named 'solarized'"));
    }

    #[test]
    fn user_themes_add_and_replace_by_name() {
        let dir = tempfile::tempdir().expect("temp dir");
        let themes = dir.path().join("themes");
        std::fs::create_dir(&themes).expect("themes dir");
        std::fs::write(themes.join("dark.toml"), "accent = \"#ff8800\"\n").expect("write");
        std::fs::write(
            themes.join("paper.toml"),
            "extends = \"light\"\ntext = \"blue\"\n",
        )
        .expect("write");
        std::fs::write(themes.join("broken.toml"), "accent = \"mauve\"\n").expect("write");
        std::fs::write(themes.join("typo.toml"), "acent = \"red\"\n").expect("write");

        let dark = Theme::load("dark", Some(dir.path())).expect("user dark");
        assert_eq!(dark.accent, Color::Rgb(0xff, 0x88, 0x00));
        assert_eq!(dark.text, Color::Gray, "the rest from the built-in dark");

        let paper = Theme::load("paper", Some(dir.path())).expect("user theme");
        assert_eq!(paper.text, Color::Blue);
        assert_eq!(paper.background, Color::White, "the rest from light");

        let broken = Theme::load("broken", Some(dir.path())).expect_err("bad colour");
        assert!(
            broken
                .to_string()
                .contains("accent: 'mauve' is not a colour")
        );
        let typo = Theme::load("typo", Some(dir.path())).expect_err("unknown key");
        assert!(typo.to_string().contains("acent"), "{typo}");
    }
}
