//! `omnictl apply -f FILE`: parse every document first, then apply them in
//! order, stopping at the first error.

use std::io::{Read, Write};

use anyhow::Context as _;

use crate::args::ApplyArgs;
use crate::manifest;

use super::Context;

fn read_input(args: &ApplyArgs) -> anyhow::Result<(String, String)> {
    if args.file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read standard input")?;
        return Ok((text, "<stdin>".into()));
    }
    let name = args.file.display().to_string();
    let text =
        std::fs::read_to_string(&args.file).with_context(|| format!("cannot read {name}"))?;
    Ok((text, name))
}

pub async fn run(ctx: &Context, args: &ApplyArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let (text, name) = read_input(args)?;
    let docs = manifest::parse(&text).with_context(|| format!("invalid manifest {name}"))?;
    if args.dry_run {
        for doc in &docs {
            writeln!(out, "{} valid (dry run)", doc.identity())?;
        }
        return Ok(());
    }
    let client = ctx.client()?;
    for doc in &docs {
        let applied = client.apply(&doc.resource).await.with_context(|| {
            format!(
                "cannot apply {} (document {} of {name})",
                doc.identity(),
                doc.number
            )
        })?;
        writeln!(out, "{} {}", doc.identity(), applied.result)?;
        out.flush()?;
    }
    Ok(())
}
