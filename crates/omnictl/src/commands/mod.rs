//! One module per command; `run` dispatches.

mod apply;
mod cluster_template;
mod config;
mod delete;
mod etcd_backup;
mod get;
mod token;

use std::io::Write;

use anyhow::Context as _;
use omni_client::Client;

use crate::args::{Cli, ClusterCommand, Command, GlobalArgs};
use crate::config::{process_env, ConfigLocation, Settings};

/// What every command may need: the global flags and where the config is.
pub struct Context {
    pub global: GlobalArgs,
    pub location: ConfigLocation,
}

impl Context {
    pub fn new(global: GlobalArgs) -> Self {
        let location = ConfigLocation::resolve(&global, &process_env);
        Context { global, location }
    }

    /// A client for the resolved endpoint and token.
    pub fn client(&self) -> anyhow::Result<Client> {
        let file = self.location.load()?;
        let settings = Settings::resolve(&self.global, &process_env, &file);
        Client::new(&settings.endpoint, settings.token).context("cannot set up the API client")
    }
}

/// Runs a parsed command line, writing results to `out`.
pub async fn run(cli: Cli, out: &mut dyn Write) -> anyhow::Result<()> {
    let ctx = Context::new(cli.global);
    match cli.command {
        Command::Get(args) => get::run(&ctx, &args, out).await,
        Command::Apply(args) => apply::run(&ctx, &args, out).await,
        Command::Delete(args) => delete::run(&ctx, &args, out).await,
        Command::Token(cmd) => token::run(&ctx, cmd, out).await,
        Command::Config(cmd) => config::run(&ctx, cmd, out),
        Command::EtcdBackup(cmd) => etcd_backup::run(&ctx, cmd, out).await,
        Command::Cluster(ClusterCommand::Template(args)) => {
            cluster_template::run(&ctx, &args, out).await
        }
    }
}

/// A note for the user on stderr; failures to write it are ignored.
pub fn note(msg: &str) {
    let _ = writeln!(std::io::stderr(), "{msg}");
}
