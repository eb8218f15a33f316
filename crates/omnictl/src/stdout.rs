//! Standard output that marks its own broken pipe.
//!
//! A closed stdout (`omnictl get ... | head`) is not a failure and exits 0;
//! a broken pipe anywhere else (a request body cut off by the server, a file
//! on a closed FIFO) is. Only errors raised by writing to stdout carry the
//! [`StdoutClosed`] marker, so `main` can tell the two apart.

use std::io::{self, Write};

/// The marker inside the `io::Error` of a write to a closed stdout.
#[derive(Debug)]
pub struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("standard output was closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// Stdout whose `BrokenPipe` errors carry [`StdoutClosed`].
pub struct Stdout<W = io::Stdout>(pub W);

fn mark(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::BrokenPipe {
        io::Error::new(io::ErrorKind::BrokenPipe, StdoutClosed)
    } else {
        e
    }
}

impl<W: Write> Write for Stdout<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf).map_err(mark)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush().map_err(mark)
    }
}

/// Whether `e` came from writing to a closed stdout, through any context.
pub fn is_stdout_closed(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.is::<StdoutClosed>()
            || c.downcast_ref::<io::Error>()
                .and_then(|io| io.get_ref())
                .is_some_and(|inner| inner.is::<StdoutClosed>())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context as _;

    struct Closed;
    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
    }

    #[test]
    fn only_stdout_broken_pipe_counts() {
        let mut out = io::BufWriter::new(Stdout(Closed));
        let e = writeln!(out, "x")
            .and_then(|()| out.flush())
            .context("printing")
            .unwrap_err();
        assert!(is_stdout_closed(&e), "{e:#}");

        // A broken pipe while sending a request is a failure.
        let e = anyhow::Error::new(io::Error::from(io::ErrorKind::BrokenPipe))
            .context("cannot apply Clusters.omni.sidero.dev(default/c1)");
        assert!(!is_stdout_closed(&e));
        assert!(!is_stdout_closed(&anyhow::anyhow!("other")));
    }
}
