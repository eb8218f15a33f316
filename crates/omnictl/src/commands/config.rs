//! `omnictl config set|show`.

use std::io::Write;

use anyhow::{anyhow, bail};

use crate::args::ConfigCommand;
use crate::config::ConfigFile;

use super::Context;

pub fn run(ctx: &Context, cmd: ConfigCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    let path = ctx
        .location
        .path
        .clone()
        .ok_or_else(|| anyhow!("no config file location: pass --config FILE or set HOME"))?;
    match cmd {
        ConfigCommand::Set => {
            let global = &ctx.global;
            if global.endpoint.is_none() && global.token.is_none() {
                bail!("nothing to set: pass --endpoint and/or --token");
            }
            let mut file = ConfigFile::load(&path)?.unwrap_or_default();
            // An empty value removes the setting.
            if let Some(endpoint) = &global.endpoint {
                if !endpoint.is_empty() {
                    // Refuse to save an endpoint the client would reject later.
                    omni_client::Client::new(endpoint, None)?;
                }
                file.endpoint = Some(endpoint.clone()).filter(|e| !e.is_empty());
            }
            if let Some(token) = &global.token {
                file.token = Some(token.clone()).filter(|t| !t.is_empty());
            }
            file.save(&path)?;
            writeln!(out, "wrote {}", path.display())?;
        }
        ConfigCommand::Show => {
            let Some(file) = ConfigFile::load(&path)? else {
                bail!(
                    "config file {} does not exist (create it with `omnictl config set`)",
                    path.display()
                );
            };
            writeln!(out, "# {}", path.display())?;
            out.write_all(file.redacted_yaml()?.as_bytes())?;
        }
    }
    Ok(())
}
