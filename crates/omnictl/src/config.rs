//! The config file and how the endpoint and token are chosen:
//! flag > environment > config file > default.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};

use crate::args::GlobalArgs;

pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:8099";
pub const ENV_ENDPOINT: &str = "OMNICTL_ENDPOINT";
pub const ENV_TOKEN: &str = "OMNICTL_TOKEN";
pub const ENV_CONFIG: &str = "OMNICTL_CONFIG";
pub const ENV_CONTEXT: &str = "OMNICTL_CONTEXT";
pub const ENV_CA_CERT: &str = "OMNICTL_CA_CERT";
pub const ENV_INSECURE: &str = "OMNICTL_INSECURE_SKIP_TLS_VERIFY";

/// One server: where it is, how to trust it, and the token for it.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Endpoint {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// PEM CA certificate; a relative path is relative to the config file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_tls_verify: bool,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("ca_cert", &self.ca_cert)
            .field("insecure_skip_tls_verify", &self.insecure_skip_tls_verify)
            .finish()
    }
}

impl Endpoint {
    fn redacted(&self) -> Endpoint {
        Endpoint {
            token: self.token.as_ref().map(|_| "<redacted>".to_string()),
            ..self.clone()
        }
    }
}

/// What the config file holds. The top-level endpoint (the only one before
/// contexts existed) is used when no context is selected, so old files keep
/// meaning what they meant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "RawFile", into = "RawFile")]
pub struct ConfigFile {
    pub top: Endpoint,
    /// The selected context (`omnictl config use-context`).
    pub context: Option<String>,
    pub contexts: BTreeMap<String, Endpoint>,
}

/// The file's layout: serde's `flatten` would lose `deny_unknown_fields`,
/// so the top-level endpoint's keys are spelled out here.
#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ca_cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    insecure_skip_tls_verify: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    context: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    contexts: BTreeMap<String, Endpoint>,
}

impl From<RawFile> for ConfigFile {
    fn from(r: RawFile) -> Self {
        ConfigFile {
            top: Endpoint {
                endpoint: r.endpoint,
                token: r.token,
                ca_cert: r.ca_cert,
                insecure_skip_tls_verify: r.insecure_skip_tls_verify,
            },
            context: r.context,
            contexts: r.contexts,
        }
    }
}

impl From<ConfigFile> for RawFile {
    fn from(c: ConfigFile) -> Self {
        RawFile {
            endpoint: c.top.endpoint,
            token: c.top.token,
            ca_cert: c.top.ca_cert,
            insecure_skip_tls_verify: c.top.insecure_skip_tls_verify,
            context: c.context,
            contexts: c.contexts,
        }
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
            top: self.top.redacted(),
            context: self.context.clone(),
            contexts: self
                .contexts
                .iter()
                .map(|(k, v)| (k.clone(), v.redacted()))
                .collect(),
        };
        Ok(serde_yaml_ng::to_string(&shown)?)
    }

    /// The context a command uses: `--context` > `OMNICTL_CONTEXT` > the
    /// file's selection; `None` means the top-level endpoint.
    ///
    /// # Errors
    /// A named context the file does not have.
    pub fn select(
        &self,
        args: &GlobalArgs,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<(Option<String>, &Endpoint)> {
        let name = args
            .context
            .clone()
            .or_else(|| env(ENV_CONTEXT))
            .or_else(|| self.context.clone())
            .filter(|n| !n.is_empty());
        let Some(name) = name else {
            return Ok((None, &self.top));
        };
        match self.contexts.get(&name) {
            Some(entry) => Ok((Some(name), entry)),
            None => {
                let known: Vec<&str> = self.contexts.keys().map(String::as_str).collect();
                bail!(
                    "context {name:?} is not in the config file (known: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                )
            }
        }
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

/// The endpoint, token and TLS trust a command uses.
#[derive(Clone, PartialEq, Eq)]
pub struct Settings {
    pub endpoint: String,
    pub token: Option<String>,
    pub ca_cert: Option<PathBuf>,
    pub insecure_skip_tls_verify: bool,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("ca_cert", &self.ca_cert)
            .field("insecure_skip_tls_verify", &self.insecure_skip_tls_verify)
            .finish()
    }
}

impl Settings {
    /// Flag > environment > config file (its selected context) > default.
    /// Empty values count as unset. `base` resolves a relative `ca-cert`
    /// of the file (the config file's directory).
    ///
    /// # Errors
    /// An unknown context, or an unreadable boolean in the environment.
    pub fn resolve(
        args: &GlobalArgs,
        env: &dyn Fn(&str) -> Option<String>,
        file: &ConfigFile,
        base: Option<&Path>,
    ) -> anyhow::Result<Settings> {
        let (_, entry) = file.select(args, env)?;
        let pick = |flag: &Option<String>, var: &str, from_file: &Option<String>| {
            flag.clone()
                .filter(|v| !v.is_empty())
                .or_else(|| env(var).filter(|v| !v.is_empty()))
                .or_else(|| from_file.clone().filter(|v| !v.is_empty()))
        };
        let file_ca = entry.ca_cert.as_ref().map(|p| match base {
            Some(dir) if p.is_relative() => dir.join(p),
            _ => p.clone(),
        });
        let ca_cert = args
            .ca_cert
            .clone()
            .or_else(|| {
                env(ENV_CA_CERT)
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
            })
            .or(file_ca);
        let insecure = if args.insecure_skip_tls_verify {
            true
        } else {
            match env(ENV_INSECURE).as_deref().map(str::trim) {
                None | Some("") => entry.insecure_skip_tls_verify,
                Some("1" | "true") => true,
                Some("0" | "false") => false,
                Some(other) => bail!("{ENV_INSECURE}={other:?}: expected true or false"),
            }
        };
        Ok(Settings {
            endpoint: pick(&args.endpoint, ENV_ENDPOINT, &entry.endpoint)
                .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string()),
            token: pick(&args.token, ENV_TOKEN, &entry.token),
            ca_cert,
            insecure_skip_tls_verify: insecure,
        })
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
            ..GlobalArgs::default()
        }
    }

    #[test]
    fn precedence_flag_env_file_default() {
        let file = ConfigFile {
            top: Endpoint {
                endpoint: Some("http://file:1".into()),
                token: Some("file-token".into()),
                ..Endpoint::default()
            },
            ..ConfigFile::default()
        };
        let env = env_of(&[(ENV_ENDPOINT, "http://env:1"), (ENV_TOKEN, "env-token")]);
        let none = env_of(&[]);

        let s = Settings::resolve(
            &flags(Some("http://flag:1"), Some("flag-token")),
            &env,
            &file,
            None,
        )
        .unwrap();
        assert_eq!(
            (s.endpoint.as_str(), s.token.as_deref()),
            ("http://flag:1", Some("flag-token"))
        );

        let s = Settings::resolve(&flags(None, None), &env, &file, None).unwrap();
        assert_eq!(
            (s.endpoint.as_str(), s.token.as_deref()),
            ("http://env:1", Some("env-token"))
        );

        let s = Settings::resolve(&flags(None, None), &none, &file, None).unwrap();
        assert_eq!(
            (s.endpoint.as_str(), s.token.as_deref()),
            ("http://file:1", Some("file-token"))
        );

        let s = Settings::resolve(&flags(None, None), &none, &ConfigFile::default(), None).unwrap();
        assert_eq!((s.endpoint.as_str(), s.token), (DEFAULT_ENDPOINT, None));

        // Mixed: token from env, endpoint from file; empty env ignored.
        let env = env_of(&[(ENV_ENDPOINT, ""), (ENV_TOKEN, "env-token")]);
        let s = Settings::resolve(&flags(None, None), &env, &file, None).unwrap();
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
            top: Endpoint {
                endpoint: Some("http://x:1".into()),
                token: Some("secret".into()),
                ..Endpoint::default()
            },
            ..ConfigFile::default()
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

    #[test]
    fn contexts_select_endpoint_token_and_tls() {
        let text = "endpoint: http://legacy:1\ntoken: legacy-token\ncontext: prod\ncontexts:\n  prod:\n    endpoint: https://prod:443\n    token: prod-token\n    ca-cert: ca.pem\n  lab:\n    endpoint: https://lab:1\n    insecure-skip-tls-verify: true\n";
        let file: ConfigFile = serde_yaml_ng::from_str(text).unwrap();
        let none = env_of(&[]);
        let base = Path::new("/etc/omnictl");
        let s = Settings::resolve(&GlobalArgs::default(), &none, &file, Some(base)).unwrap();
        assert_eq!(s.endpoint, "https://prod:443");
        assert_eq!(s.token.as_deref(), Some("prod-token"));
        assert_eq!(s.ca_cert, Some(PathBuf::from("/etc/omnictl/ca.pem")));
        assert!(!s.insecure_skip_tls_verify);

        let lab = GlobalArgs {
            context: Some("lab".into()),
            ..GlobalArgs::default()
        };
        let s = Settings::resolve(&lab, &none, &file, Some(base)).unwrap();
        assert_eq!((s.endpoint.as_str(), s.token), ("https://lab:1", None));
        assert!(s.insecure_skip_tls_verify);
        // The environment picks a context too; the flag beats it.
        let env = env_of(&[(ENV_CONTEXT, "lab"), (ENV_CA_CERT, "/env/ca.pem")]);
        let s = Settings::resolve(&GlobalArgs::default(), &env, &file, Some(base)).unwrap();
        assert_eq!(s.endpoint, "https://lab:1");
        assert_eq!(s.ca_cert, Some(PathBuf::from("/env/ca.pem")));

        let err = Settings::resolve(
            &GlobalArgs {
                context: Some("nope".into()),
                ..GlobalArgs::default()
            },
            &none,
            &file,
            None,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("\"nope\"") && err.to_string().contains("lab, prod"),
            "{err}"
        );

        // No selection: the top-level (pre-context) endpoint.
        let legacy = ConfigFile {
            context: None,
            ..file.clone()
        };
        let s = Settings::resolve(&GlobalArgs::default(), &none, &legacy, None).unwrap();
        assert_eq!(s.endpoint, "http://legacy:1");
        assert_eq!(s.token.as_deref(), Some("legacy-token"));

        let env = env_of(&[(ENV_INSECURE, "maybe")]);
        let err = Settings::resolve(&GlobalArgs::default(), &env, &legacy, None).unwrap_err();
        assert!(err.to_string().contains(ENV_INSECURE), "{err}");

        let shown = file.redacted_yaml().unwrap();
        assert!(
            !shown.contains("prod-token") && !shown.contains("legacy-token"),
            "{shown}"
        );
        assert!(shown.contains("ca-cert: ca.pem"), "{shown}");
    }

    #[test]
    fn pre_context_file_loads_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, "endpoint: http://x:1\ntoken: t\n").unwrap();
        let file = ConfigFile::load(&path).unwrap().unwrap();
        assert_eq!(file.top.endpoint.as_deref(), Some("http://x:1"));
        assert!(file.contexts.is_empty());
        file.save(&path).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "endpoint: http://x:1\ntoken: t\n"
        );
    }
}
