//! `omnictl get TYPE [ID]`, optionally `--watch`.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::bail;
use futures::StreamExt;
use omni_client::{Client, ClientError, WatchEvent};
use omni_resources::{LabelSelector, Resource};

use crate::args::GetArgs;
use crate::kinds::resolve_kind;
use crate::output::{self, Change, Printer};

use super::{note, Context};

pub async fn run(ctx: &Context, args: &GetArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let info = resolve_kind(&args.kind)?;
    let namespace = args.namespace.as_deref().unwrap_or(info.default_namespace);
    let selector = args.selector.as_deref().filter(|s| !s.trim().is_empty());
    if let Some(s) = selector {
        LabelSelector::parse(s)?;
        if args.id.is_some() {
            bail!("--selector cannot be combined with an ID");
        }
    }
    let mut printer = output::printer(args.output, info);
    let client = ctx.client()?;
    if args.watch {
        let target = Target {
            client: &client,
            kind: info.name,
            namespace,
            selector,
            id: args.id.as_deref(),
        };
        return watch(target, printer.as_mut(), out).await;
    }
    let items = match &args.id {
        Some(id) => vec![client.get(info.name, namespace, id).await?],
        None => client.list(info.name, namespace, selector).await?,
    };
    printer.list(out, &items)?;
    out.flush()?;
    Ok(())
}

/// What a watch is on.
struct Target<'a> {
    client: &'a Client,
    kind: &'a str,
    namespace: &'a str,
    selector: Option<&'a str>,
    id: Option<&'a str>,
}

/// Prints the current items, then every change until interrupted. When the
/// server ends the watch because this client fell behind, watches again and
/// prints only the differences.
async fn watch(
    target: Target<'_>,
    printer: &mut dyn Printer,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    // What the user has seen, by id; `None` until the first bootstrap.
    let mut seen: Option<BTreeMap<String, Resource>> = None;
    loop {
        let mut stream = target
            .client
            .watch(target.kind, target.namespace, target.selector, target.id)
            .await?;
        let mut initial: BTreeMap<String, Resource> = BTreeMap::new();
        let mut order: Vec<String> = Vec::new();
        let mut bootstrapped = false;
        let interrupted = loop {
            let event = match stream.next().await {
                Some(Ok(event)) => event,
                Some(Err(ClientError::WatchInterrupted { message })) => break message,
                Some(Err(e)) => return Err(e.into()),
                None => bail!("the server closed the watch"),
            };
            if !bootstrapped {
                match event {
                    WatchEvent::Bootstrapped => {
                        bootstrapped = true;
                        let items: Vec<Resource> =
                            order.iter().filter_map(|id| initial.remove(id)).collect();
                        match &mut seen {
                            None => {
                                printer.watch_start(out, &items)?;
                                seen = Some(
                                    items
                                        .into_iter()
                                        .map(|r| (r.metadata.id.clone(), r))
                                        .collect(),
                                );
                            }
                            Some(seen) => resync(seen, items, printer, out)?,
                        }
                        out.flush()?;
                    }
                    WatchEvent::Destroyed(r) => {
                        initial.remove(&r.metadata.id);
                    }
                    WatchEvent::Created(r) | WatchEvent::Updated(r) => {
                        if !initial.contains_key(&r.metadata.id) {
                            order.push(r.metadata.id.clone());
                        }
                        initial.insert(r.metadata.id.clone(), r);
                    }
                }
                continue;
            }
            let seen = seen.get_or_insert_with(BTreeMap::new);
            let (change, r) = match event {
                WatchEvent::Created(r) => (Change::Created, r),
                WatchEvent::Updated(r) => (Change::Updated, r),
                WatchEvent::Destroyed(r) => (Change::Destroyed, r),
                WatchEvent::Bootstrapped => continue,
            };
            printer.watch_event(out, change, &r)?;
            out.flush()?;
            if change == Change::Destroyed {
                seen.remove(&r.metadata.id);
            } else {
                seen.insert(r.metadata.id.clone(), r);
            }
        };
        note(&format!(
            "watch interrupted ({interrupted}); watching again"
        ));
    }
}

/// Prints what changed between what was seen and a fresh listing.
fn resync(
    seen: &mut BTreeMap<String, Resource>,
    now: Vec<Resource>,
    printer: &mut dyn Printer,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let mut fresh: BTreeMap<String, Resource> = BTreeMap::new();
    for r in now {
        match seen.get(&r.metadata.id) {
            None => printer.watch_event(out, Change::Created, &r)?,
            Some(old) if old != &r => printer.watch_event(out, Change::Updated, &r)?,
            Some(_) => {}
        }
        fresh.insert(r.metadata.id.clone(), r);
    }
    for (id, old) in seen.iter() {
        if !fresh.contains_key(id) {
            printer.watch_event(out, Change::Destroyed, old)?;
        }
    }
    *seen = fresh;
    Ok(())
}
