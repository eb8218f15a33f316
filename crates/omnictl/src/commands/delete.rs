//! `omnictl delete TYPE ID... | -l SELECTOR | --all`: checks every named id
//! exists before deleting any, then waits until each resource is really gone
//! (its finalizers released), unless `--wait=false`.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use omni_client::Client;
use omni_resources::duration::parse_go_duration;
use omni_resources::LabelSelector;

use crate::args::DeleteArgs;
use crate::kinds::resolve_kind;

use super::Context;

/// Time between two looks at a resource tearing down.
const POLL: Duration = Duration::from_millis(250);

pub async fn run(ctx: &Context, args: &DeleteArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let info = resolve_kind(&args.kind)?;
    let namespace = args.namespace.as_deref().unwrap_or(info.default_namespace);
    let timeout = parse_go_duration(&args.timeout).context("--timeout")?;
    let selector = args.selector.as_deref().filter(|s| !s.trim().is_empty());
    if let Some(s) = selector {
        LabelSelector::parse(s)?;
    }
    let client = ctx.client()?;
    let ids = if args.all || selector.is_some() {
        let items = client.list(info.name, namespace, selector).await?;
        items.into_iter().map(|r| r.metadata.id).collect()
    } else {
        existing(&client, info.name, namespace, &args.ids).await?
    };
    if ids.is_empty() {
        super::note(&format!("no {} to delete", info.name));
        return Ok(());
    }
    let mut pending = Vec::new();
    for id in &ids {
        let name = format!("{}({namespace}/{id})", info.name);
        match client.delete(info.name, namespace, id).await {
            Ok(true) => writeln!(out, "{name} destroyed")?,
            Ok(false) if args.wait => pending.push((id, name)),
            Ok(false) => writeln!(out, "{name} tearing down (finalizers pending)")?,
            // Gone between the listing and now: what was asked for.
            Err(e) if e.is_not_found() => writeln!(out, "{name} destroyed")?,
            Err(e) => return Err(e).with_context(|| format!("cannot delete {name}")),
        }
        out.flush()?;
    }
    let deadline = Instant::now() + timeout;
    for (id, name) in pending {
        loop {
            match client.get(info.name, namespace, id).await {
                Err(e) if e.is_not_found() => break,
                Err(e) => return Err(e).with_context(|| format!("waiting for {name} to go")),
                Ok(r) if Instant::now() >= deadline => bail!(
                    "{name} is still tearing down after {} (finalizers: {}); \
                     it will go once they are released",
                    args.timeout,
                    r.metadata.finalizers.join(", ")
                ),
                Ok(_) => tokio::time::sleep(POLL).await,
            }
        }
        writeln!(out, "{name} destroyed")?;
        out.flush()?;
    }
    Ok(())
}

/// The ids, once each is known to exist: a typo deletes nothing.
async fn existing(
    client: &Client,
    kind: &str,
    namespace: &str,
    ids: &[String],
) -> anyhow::Result<Vec<String>> {
    let mut missing = Vec::new();
    for id in ids {
        match client.get(kind, namespace, id).await {
            Ok(_) => {}
            Err(e) if e.is_not_found() => missing.push(id.as_str()),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read {kind}({namespace}/{id})"))
            }
        }
    }
    if !missing.is_empty() {
        bail!(
            "{kind} in namespace {namespace} not found: {} (nothing deleted)",
            missing.join(", ")
        );
    }
    let mut unique = ids.to_vec();
    unique.dedup();
    Ok(unique)
}
