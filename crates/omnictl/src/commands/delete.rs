//! `omnictl delete TYPE ID [-n NS]`.

use std::io::Write;

use crate::args::DeleteArgs;
use crate::kinds::resolve_kind;

use super::Context;

pub async fn run(ctx: &Context, args: &DeleteArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let info = resolve_kind(&args.kind)?;
    let namespace = args.namespace.as_deref().unwrap_or(info.default_namespace);
    let destroyed = ctx.client()?.delete(info.name, namespace, &args.id).await?;
    let msg = if destroyed {
        "destroyed"
    } else {
        "tearing down (finalizers pending)"
    };
    writeln!(out, "{msg}")?;
    Ok(())
}
