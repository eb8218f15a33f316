//! Output formats. Each is its own type behind [`Printer`].

mod json;
mod table;
mod yaml;

use std::io::{self, Write};

use omni_resources::{Resource, TypeInfo};

use crate::args::OutputFormat;

pub use table::render as render_table;

use json::JsonPrinter;
use table::TablePrinter;
use yaml::YamlPrinter;

/// A change seen by `get --watch` after the initial items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Created,
    Updated,
    Destroyed,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Created => "created",
            Change::Updated => "updated",
            Change::Destroyed => "destroyed",
        }
    }
}

/// Prints resources of one type.
pub trait Printer {
    /// The answer of a plain `get`.
    fn list(&mut self, out: &mut dyn Write, items: &[Resource]) -> io::Result<()>;
    /// `get --watch`: the items that existed when the watch started.
    fn watch_start(&mut self, out: &mut dyn Write, items: &[Resource]) -> io::Result<()>;
    /// `get --watch`: one change after the start.
    fn watch_event(
        &mut self,
        out: &mut dyn Write,
        change: Change,
        resource: &Resource,
    ) -> io::Result<()>;
}

/// The printer for a format and type.
pub fn printer(format: OutputFormat, info: &'static TypeInfo) -> Box<dyn Printer> {
    match format {
        OutputFormat::Table => Box::new(TablePrinter::new(info)),
        OutputFormat::Yaml => Box::new(YamlPrinter::default()),
        OutputFormat::Json => Box::new(JsonPrinter),
    }
}
