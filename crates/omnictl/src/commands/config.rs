//! `omnictl config set|show|contexts|use-context|add-context`.

use std::io::Write;
use std::path::Path;

use anyhow::{anyhow, bail};

use crate::args::{ConfigCommand, GlobalArgs};
use crate::config::{ConfigFile, Endpoint};

use super::Context;

pub fn run(ctx: &Context, cmd: ConfigCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    let path = ctx
        .location
        .path
        .clone()
        .ok_or_else(|| anyhow!("no config file location: pass --config FILE or set HOME"))?;
    let global = &ctx.global;
    match cmd {
        ConfigCommand::Set => {
            if !has_endpoint_flags(global) {
                bail!("nothing to set: pass --endpoint, --token, --ca-cert or --insecure-skip-tls-verify");
            }
            let mut file = ConfigFile::load(&path)?.unwrap_or_default();
            let name = global.context.clone().or_else(|| file.context.clone());
            let entry = match &name {
                Some(n) => file
                    .contexts
                    .get_mut(n)
                    .ok_or_else(|| anyhow!("context {n:?} is not in the config file (add it with `omnictl config add-context`)"))?,
                None => &mut file.top,
            };
            apply_flags(global, entry)?;
            file.save(&path)?;
            match name {
                Some(n) => writeln!(out, "wrote context {n} in {}", path.display())?,
                None => writeln!(out, "wrote {}", path.display())?,
            }
        }
        ConfigCommand::Show => {
            let file = existing(&path)?;
            writeln!(out, "# {}", path.display())?;
            out.write_all(file.redacted_yaml()?.as_bytes())?;
        }
        ConfigCommand::Contexts => {
            let file = existing(&path)?;
            let current = global.context.as_ref().or(file.context.as_ref());
            writeln!(out, "{:<8}{:<24}ENDPOINT", "CURRENT", "NAME")?;
            for (name, entry) in &file.contexts {
                let mark = if Some(name) == current { "*" } else { "" };
                let endpoint = entry.endpoint.as_deref().unwrap_or("");
                writeln!(out, "{mark:<8}{name:<24}{endpoint}")?;
            }
        }
        ConfigCommand::UseContext { name } => {
            let mut file = existing(&path)?;
            if !file.contexts.contains_key(&name) {
                bail!("context {name:?} is not in the config file (add it with `omnictl config add-context`)");
            }
            file.context = Some(name.clone());
            file.save(&path)?;
            writeln!(out, "switched to context {name}")?;
        }
        ConfigCommand::AddContext { name, use_it } => {
            if name.trim().is_empty() {
                bail!("context name must not be empty");
            }
            if global.endpoint.as_deref().unwrap_or("").is_empty() {
                bail!("add-context needs --endpoint URL");
            }
            let mut file = ConfigFile::load(&path)?.unwrap_or_default();
            let mut entry = Endpoint::default();
            apply_flags(global, &mut entry)?;
            let replaced = file.contexts.insert(name.clone(), entry).is_some();
            if use_it {
                file.context = Some(name.clone());
            }
            file.save(&path)?;
            let verb = if replaced { "replaced" } else { "added" };
            writeln!(out, "{verb} context {name} in {}", path.display())?;
        }
    }
    Ok(())
}

fn has_endpoint_flags(g: &GlobalArgs) -> bool {
    g.endpoint.is_some() || g.token.is_some() || g.ca_cert.is_some() || g.insecure_skip_tls_verify
}

fn existing(path: &Path) -> anyhow::Result<ConfigFile> {
    ConfigFile::load(path)?.ok_or_else(|| {
        anyhow!(
            "config file {} does not exist (create it with `omnictl config set` or `add-context`)",
            path.display()
        )
    })
}

/// Copies the endpoint flags into `entry`; an empty value removes a setting.
fn apply_flags(global: &GlobalArgs, entry: &mut Endpoint) -> anyhow::Result<()> {
    if let Some(endpoint) = &global.endpoint {
        if !endpoint.is_empty() {
            // Refuse to save an endpoint the client would reject later.
            omni_client::Client::new(endpoint, None)?;
        }
        entry.endpoint = Some(endpoint.clone()).filter(|e| !e.is_empty());
    }
    if let Some(token) = &global.token {
        entry.token = Some(token.clone()).filter(|t| !t.is_empty());
    }
    if let Some(ca) = &global.ca_cert {
        if ca.as_os_str().is_empty() {
            entry.ca_cert = None;
        } else {
            // Stored absolute: the command may run from anywhere.
            let abs =
                std::path::absolute(ca).map_err(|e| anyhow!("--ca-cert {}: {e}", ca.display()))?;
            if !abs.is_file() {
                bail!("--ca-cert {}: no such file", ca.display());
            }
            entry.ca_cert = Some(abs);
        }
    }
    if global.insecure_skip_tls_verify {
        entry.insecure_skip_tls_verify = true;
    }
    Ok(())
}
