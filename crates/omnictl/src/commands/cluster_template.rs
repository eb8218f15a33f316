//! `omnictl cluster template {validate,diff,sync,status,delete} -f FILE`.
//!
//! The template logic (parse, validate, render, plan) is `omni_template`;
//! this module reads the file, asks the server what exists, and prints.

mod diff;
mod status;

use std::io::{Read, Write};

use anyhow::{bail, Context as _};
use omni_client::Client;
use omni_resources::specs::cluster::{ClusterSpec, MachineSetNodeSpec, MachineSetSpec};
use omni_resources::specs::machine::MachineSpec;
use omni_resources::specs::Kind;
use omni_resources::{Phase, Resource, NS_DEFAULT};
use omni_template::{Current, Facts, Plan, Problems, Template};

use crate::args::{TemplateArgs, TemplateCommand};

use super::{note, Context};

/// Attempts of a sync that meets concurrent changes (version conflicts).
const SYNC_ATTEMPTS: usize = 3;

pub async fn run(ctx: &Context, args: &TemplateArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let (text, name) = read_template(args)?;
    let invalid = || format!("invalid template {name}");
    // Offline checks first: a broken file needs no server.
    let template = omni_template::parse(&text).with_context(invalid)?;
    let client = match args.command {
        TemplateCommand::Validate { online } => {
            return validate(ctx, &template, &name, online, out).await
        }
        _ => ctx.client()?,
    };
    match &args.command {
        TemplateCommand::Validate { .. } => {}
        TemplateCommand::Diff => {
            let (current, facts) = fetch(&client, &template).await?;
            check(&template, &facts).with_context(invalid)?;
            print_diffs(&omni_template::plan(&template, &current), out)?;
        }
        TemplateCommand::Sync { verbose, dry_run } => {
            sync(&client, &template, *verbose, *dry_run, out)
                .await
                .with_context(|| format!("cannot sync template {name}"))?;
        }
        TemplateCommand::Status => {
            let snapshot = status::Snapshot::fetch(&client, template.name()).await?;
            out.write_all(status::render(&snapshot).as_bytes())?;
        }
        TemplateCommand::Delete => delete(&client, &template, out).await?,
    }
    Ok(())
}

/// The file alone decides validity; whether its machines are registered
/// and free needs the server, so that part runs when omni answers (always
/// with `--online`, where not reaching omni is an error).
async fn validate(
    ctx: &Context,
    template: &Template,
    name: &str,
    online: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let facts = match ctx.client() {
        Ok(client) => fetch(&client, template).await,
        Err(e) => Err(e),
    };
    match facts {
        Ok((_, facts)) => {
            check(template, &facts).with_context(|| format!("invalid template {name}"))?;
            writeln!(out, "template {name} is valid")?;
        }
        Err(e) if online => {
            return Err(e.context("cannot check the template's machines against omni (--online)"))
        }
        Err(e) => {
            writeln!(out, "template {name} is valid")?;
            note(&format!(
                "machines not checked against omni ({e:#}); --online requires that check"
            ));
        }
    }
    Ok(())
}

fn read_template(args: &TemplateArgs) -> anyhow::Result<(String, String)> {
    let Some(file) = &args.file else {
        bail!("a template file is required: -f FILE (before or after the subcommand)");
    };
    if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read standard input")?;
        return Ok((text, "<stdin>".into()));
    }
    let name = file.display().to_string();
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {name}"))?;
    Ok((text, name))
}

fn check(template: &Template, facts: &Facts) -> Result<(), Problems> {
    Problems::check(template.check(facts), ())
}

/// What exists on the server that the template touches, and the facts to
/// check its machines against.
async fn fetch(client: &Client, template: &Template) -> anyhow::Result<(Current, Facts)> {
    let cluster = match client
        .get(ClusterSpec::TYPE, NS_DEFAULT, template.name())
        .await
    {
        Ok(c) => Some(c),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(e.into()),
    };
    let current = Current {
        cluster,
        machine_sets: client.list(MachineSetSpec::TYPE, NS_DEFAULT, None).await?,
        nodes: client
            .list(MachineSetNodeSpec::TYPE, NS_DEFAULT, None)
            .await?,
    };
    let machines = client.list(MachineSpec::TYPE, NS_DEFAULT, None).await?;
    let facts = Facts::from_resources(&machines, &current.nodes);
    Ok((current, facts))
}

fn print_diffs(plan: &Plan, out: &mut dyn Write) -> std::io::Result<()> {
    for r in &plan.create {
        out.write_all(diff::unified(None, Some(r)).as_bytes())?;
    }
    for u in &plan.update {
        out.write_all(diff::unified(Some(&u.old), Some(&u.new)).as_bytes())?;
    }
    for r in &plan.destroy {
        out.write_all(diff::unified(Some(r), None).as_bytes())?;
    }
    Ok(())
}

/// The resource as a user writes it: identity, version, labels,
/// annotations and spec (owner, phase, times and finalizers are the
/// server's).
fn as_written(r: &Resource) -> Resource {
    let mut w = Resource::new(
        &r.metadata.kind,
        &r.metadata.namespace,
        &r.metadata.id,
        r.spec.clone(),
    );
    w.metadata.version = r.metadata.version;
    w.metadata.labels = r.metadata.labels.clone();
    w.metadata.annotations = r.metadata.annotations.clone();
    w
}

async fn sync(
    client: &Client,
    template: &Template,
    verbose: bool,
    dry_run: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let mut changed = false;
    for attempt in 1..=SYNC_ATTEMPTS {
        let (current, facts) = fetch(client, template).await?;
        if let Some(c) = &current.cluster {
            if c.metadata.phase == Phase::TearingDown {
                bail!(
                    "cluster {:?} is being torn down; sync again once it is gone",
                    template.name()
                );
            }
        }
        check(template, &facts).context("invalid template")?;
        let plan = omni_template::plan(template, &current);
        if plan.is_empty() {
            if !changed {
                writeln!(
                    out,
                    "nothing changed: cluster {} matches the template",
                    template.name()
                )?;
            }
            return Ok(());
        }
        match apply_plan(client, &plan, verbose, dry_run, out).await {
            Ok(()) if dry_run => return Ok(()),
            Ok(()) => changed = true,
            Err(e) if attempt < SYNC_ATTEMPTS && is_conflict(&e) => changed = true,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn apply_plan(
    client: &Client,
    plan: &Plan,
    verbose: bool,
    dry_run: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let suffix = if dry_run { " (dry run)" } else { "" };
    for r in &plan.create {
        writeln!(out, "* creating{suffix} {}", r.key())?;
        if verbose {
            out.write_all(diff::unified(None, Some(r)).as_bytes())?;
        }
        if !dry_run {
            client.apply(&as_written(r)).await?;
        }
    }
    for u in &plan.update {
        writeln!(out, "* updating{suffix} {}", u.new.key())?;
        if verbose {
            out.write_all(diff::unified(Some(&u.old), Some(&u.new)).as_bytes())?;
        }
        if !dry_run {
            client.apply(&as_written(&u.new)).await?;
        }
    }
    for r in &plan.destroy {
        writeln!(out, "* destroying{suffix} {}", r.key())?;
        if verbose {
            out.write_all(diff::unified(Some(r), None).as_bytes())?;
        }
        if !dry_run {
            let m = &r.metadata;
            match client.delete(&m.kind, &m.namespace, &m.id).await {
                Err(e) if e.is_not_found() => {}
                other => {
                    other?;
                }
            }
        }
        out.flush()?;
    }
    Ok(())
}

/// Someone changed a resource between our read and our write.
fn is_conflict(e: &anyhow::Error) -> bool {
    e.downcast_ref::<omni_client::ClientError>()
        .is_some_and(|c| c.is_conflict())
}

async fn delete(client: &Client, template: &Template, out: &mut dyn Write) -> anyhow::Result<()> {
    let name = template.name();
    let key = Resource::new(ClusterSpec::TYPE, NS_DEFAULT, name, Default::default()).key();
    let destroyed = match client.delete(ClusterSpec::TYPE, NS_DEFAULT, name).await {
        Ok(d) => d,
        Err(e) if e.is_not_found() => bail!("cluster {name:?} does not exist"),
        Err(e) => return Err(e.into()),
    };
    if destroyed {
        writeln!(out, "* destroyed {key}")?;
    } else {
        writeln!(
            out,
            "* destroying {key} (tearing down: its machine sets and nodes go first)"
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::args::{Cli, ClusterCommand, Command, TemplateCommand};

    fn template_args(argv: &[&str]) -> crate::args::TemplateArgs {
        let cli = Cli::try_parse_from(argv).unwrap();
        let Command::Cluster(ClusterCommand::Template(t)) = cli.command else {
            panic!("not cluster template: {argv:?}")
        };
        t
    }

    #[test]
    fn file_before_or_after_the_subcommand() {
        for argv in [
            &["omnictl", "cluster", "template", "-f", "t.yaml", "diff"][..],
            &["omnictl", "cluster", "template", "diff", "-f", "t.yaml"][..],
            &["omnictl", "cluster", "template", "diff", "--file=t.yaml"][..],
        ] {
            let t = template_args(argv);
            assert_eq!(t.file.as_deref(), Some(std::path::Path::new("t.yaml")));
            assert!(matches!(t.command, TemplateCommand::Diff));
        }
        let t = template_args(&[
            "omnictl",
            "cluster",
            "template",
            "sync",
            "-v",
            "--dry-run",
            "-f",
            "x",
        ]);
        assert!(matches!(
            t.command,
            TemplateCommand::Sync {
                verbose: true,
                dry_run: true
            }
        ));
        assert!(template_args(&["omnictl", "cluster", "template", "status"])
            .file
            .is_none());
    }
}
