//! The config file and how the endpoint and token are chosen:
//! flag > environment > config file > default.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};

use crate::args::GlobalArgs;

pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:8099";
pub const ENV_ENDPOINT: &str = "OMNICTL_ENDPOINT";
pub const ENV_TOKEN: &str = "OMNICTL_TOKEN";
pub const ENV_CONFIG: &str = "OMNICTL_CONFIG";

/// What the config file holds.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl std::fmt::Debug for ConfigFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigFile")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl ConfigFile {
    /// Reads the file; `None` when it does not exist.
    pub fn load(path: &Path) -> anyhow::Result<Option<ConfigFile>> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot read config file {}", path.display()))
            }
        };
        if text.trim().is_empty() {
            return Ok(Some(ConfigFile::default()));
        }
        let file = serde_yaml_ng::from_str(&text)
            .with_context(|| format!("invalid config file {}", path.display()))?;
        Ok(Some(file))
    }

    /// Writes the file atomically (temp file + rename), readable by the owner only.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_yaml_ng::to_string(self)?;
        write_private_file(path, &text)
            .with_context(|| format!("cannot write config file {}", path.display()))
    }

    /// The YAML shown by `config show`: the token replaced by `<redacted>`.
    pub fn redacted_yaml(&self) -> anyhow::Result<String> {
        let shown = ConfigFile {
            endpoint: self.endpoint.clone(),
            token: self.token.as_ref().map(|_| "<redacted>".to_string()),
        };
        Ok(serde_yaml_ng::to_string(&shown)?)
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// The default config path: `$XDG_CONFIG_HOME/omnictl/config.yaml`, else
/// `$HOME/.config/omnictl/config.yaml`.
pub fn default_path(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let xdg = env("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    let base = xdg.or_else(|| env("HOME").map(|h| Path::new(&h).join(".config")))?;
    Some(base.join("omnictl").join("config.yaml"))
}

/// Where the config file is and whether the user named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigLocation {
    pub path: Option<PathBuf>,
    pub explicit: bool,
}

impl ConfigLocation {
    pub fn resolve(args: &GlobalArgs, env: &dyn Fn(&str) -> Option<String>) -> Self {
        match args
            .config
            .clone()
            .or_else(|| env(ENV_CONFIG).map(PathBuf::from))
        {
            Some(path) => ConfigLocation {
                path: Some(path),
                explicit: true,
            },
            None => ConfigLocation {
                path: default_path(env),
                explicit: false,
            },
        }
    }

    /// Loads the file; a missing file is an error only when it was named.
    pub fn load(&self) -> anyhow::Result<ConfigFile> {
        let Some(path) = &self.path else {
            return Ok(ConfigFile::default());
        };
        match ConfigFile::load(path)? {
            Some(file) => Ok(file),
            None if self.explicit => bail!("config file {} does not exist", path.display()),
            None => Ok(ConfigFile::default()),
        }
    }
}

/// The endpoint and token a command uses.
#[derive(Clone, PartialEq, Eq)]
pub struct Settings {
    pub endpoint: String,
    pub token: Option<String>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Settings {
    /// Flag > environment > config file > default. Empty values count as unset.
    pub fn resolve(
        args: &GlobalArgs,
        env: &dyn Fn(&str) -> Option<String>,
        file: &ConfigFile,
    ) -> Settings {
        let pick = |flag: &Option<String>, var: &str, from_file: &Option<String>| {
            flag.clone()
                .filter(|v| !v.is_empty())
                .or_else(|| env(var).filter(|v| !v.is_empty()))
                .or_else(|| from_file.clone().filter(|v| !v.is_empty()))
        };
        Settings {
            endpoint: pick(&args.endpoint, ENV_ENDPOINT, &file.endpoint)
                .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string()),
            token: pick(&args.token, ENV_TOKEN, &file.token),
        }
    }
}

/// The process environment, as the resolvers take it.
/// Writes `text` to `path` atomically (temp file + fsync + rename), readable
/// by the owner only; creates the directory (0700) when missing.
pub fn write_private_file(path: &Path, text: &str) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    create_private_dir(dir)
        .with_context(|| format!("cannot create directory {}", dir.display()))?;
    // tempfile creates the file with mode 0600.
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write {}", path.display()))?;
    tmp.write_all(text.as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn flags(endpoint: Option<&str>, token: Option<&str>) -> GlobalArgs {
        GlobalArgs {
            endpoint: endpoint.map(Into::into),
            token: token.map(Into::into),
            config: None,
        }
    }

    #[test]
    fn precedence_flag_env_file_default() {
        let file = ConfigFile {
            endpoint: Some("http://file:1".into()),
            token: Some("file-token".into()),
        };
        let env = env_of(&[(ENV_ENDPOINT, "http://env:1"), (ENV_TOKEN, "env-token")]);
        let none = env_of(&[]);

        let s = Settings::resolve(
            &flags(Some("http://flag:1"), Some("flag-token")),
            &env,
            &file,
        );
        assert_eq!(
            (s.endpoint.as_str(), s.token.as_deref()),
            ("http://flag:1", Some("flag-token"))
        );

        let s = Settings::resolve(&flags(None, None), &env, &file);
        assert_eq!(
            (s.endpoint.as_str(), s.token.as_deref()),
            ("http://env:1", Some("env-token"))
        );

        let s = Settings::resolve(&flags(None, None), &none, &file);
        assert_eq!(
            (s.endpoint.as_str(), s.token.as_deref()),
            ("http://file:1", Some("file-token"))
        );

        let s = Settings::resolve(&flags(None, None), &none, &ConfigFile::default());
        assert_eq!((s.endpoint.as_str(), s.token), (DEFAULT_ENDPOINT, None));

        // Mixed: token from env, endpoint from file; empty env ignored.
        let env = env_of(&[(ENV_ENDPOINT, ""), (ENV_TOKEN, "env-token")]);
        let s = Settings::resolve(&flags(None, None), &env, &file);
        assert_eq!(
            (s.endpoint.as_str(), s.token.as_deref()),
            ("http://file:1", Some("env-token"))
        );
        assert!(!format!("{s:?}").contains("env-token"));
    }

    #[test]
    fn default_path_prefers_xdg() {
        let p = default_path(&env_of(&[("XDG_CONFIG_HOME", "/x"), ("HOME", "/h")]));
        assert_eq!(p, Some(PathBuf::from("/x/omnictl/config.yaml")));
        let p = default_path(&env_of(&[("XDG_CONFIG_HOME", "relative"), ("HOME", "/h")]));
        assert_eq!(p, Some(PathBuf::from("/h/.config/omnictl/config.yaml")));
        assert_eq!(default_path(&env_of(&[])), None);
    }

    #[test]
    fn config_location_flag_then_env() {
        let env = env_of(&[(ENV_CONFIG, "/env.yaml"), ("HOME", "/h")]);
        let args = GlobalArgs {
            config: Some("/flag.yaml".into()),
            ..GlobalArgs::default()
        };
        assert_eq!(
            ConfigLocation::resolve(&args, &env).path,
            Some(PathBuf::from("/flag.yaml"))
        );
        let loc = ConfigLocation::resolve(&GlobalArgs::default(), &env);
        assert_eq!(
            loc,
            ConfigLocation {
                path: Some("/env.yaml".into()),
                explicit: true
            }
        );
        let loc = ConfigLocation::resolve(&GlobalArgs::default(), &env_of(&[("HOME", "/h")]));
        assert!(!loc.explicit);
    }

    #[test]
    fn save_is_private_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/config.yaml");
        let file = ConfigFile {
            endpoint: Some("http://x:1".into()),
            token: Some("secret".into()),
        };
        file.save(&path).unwrap();
        assert_eq!(ConfigFile::load(&path).unwrap(), Some(file.clone()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let shown = file.redacted_yaml().unwrap();
        assert_eq!(shown, "endpoint: http://x:1\ntoken: <redacted>\n");
        let missing = ConfigLocation {
            path: Some(dir.path().join("nope.yaml")),
            explicit: true,
        };
        assert!(missing
            .load()
            .unwrap_err()
            .to_string()
            .contains("does not exist"));
    }

    #[test]
    fn unknown_config_key_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, "endpiont: http://x\n").unwrap();
        let err = format!("{:#}", ConfigFile::load(&path).unwrap_err());
        assert!(err.contains("endpiont"), "{err}");
    }
}
