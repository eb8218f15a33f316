//! `omnictl token create|revoke|list`.

use std::io::Write;

use crate::args::{GetArgs, TokenCommand};

use super::{get, note, Context};

pub async fn run(ctx: &Context, cmd: TokenCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::Create { role, description } => {
            let created = ctx.client()?.create_token(&role, &description).await?;
            // Only the token on stdout, so `$(omnictl token create ...)` works.
            writeln!(out, "{}", created.token)?;
            note(&format!(
                "created token {} with role {} (it is shown only once)",
                created.id, created.role
            ));
            Ok(())
        }
        TokenCommand::Revoke { id } => {
            ctx.client()?.revoke_token(&id).await?;
            writeln!(out, "revoked token {id}")?;
            Ok(())
        }
        TokenCommand::List { output } => {
            let args = GetArgs {
                kind: "apitokens".into(),
                id: None,
                namespace: Some(omni_resources::specs::auth::NS_AUTH.into()),
                output,
                selector: None,
                watch: false,
            };
            get::run(ctx, &args, out).await
        }
    }
}
