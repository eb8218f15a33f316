//! Watch streams: NDJSON lines turned into typed events.

use bytes::{Buf, Bytes, BytesMut};
use futures::stream::{BoxStream, Stream, StreamExt};
use omni_resources::Resource;
use serde::Deserialize;

use crate::ClientError;

/// Longest accepted watch line; a resource is far smaller.
pub const MAX_LINE: usize = 16 << 20;

/// One change seen by a watch.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent {
    Created(Resource),
    Updated(Resource),
    Destroyed(Resource),
    /// Every item that existed when the watch started has been sent.
    Bootstrapped,
}

impl WatchEvent {
    pub fn resource(&self) -> Option<&Resource> {
        match self {
            WatchEvent::Created(r) | WatchEvent::Updated(r) | WatchEvent::Destroyed(r) => Some(r),
            WatchEvent::Bootstrapped => None,
        }
    }

    /// The wire name: `created`, `updated`, `destroyed`, `bootstrapped`.
    pub fn name(&self) -> &'static str {
        match self {
            WatchEvent::Created(_) => "created",
            WatchEvent::Updated(_) => "updated",
            WatchEvent::Destroyed(_) => "destroyed",
            WatchEvent::Bootstrapped => "bootstrapped",
        }
    }
}

/// The events of one watch, ending when the server closes it.
pub type WatchStream = BoxStream<'static, Result<WatchEvent, ClientError>>;

#[derive(Deserialize)]
struct Line {
    event: String,
    #[serde(default)]
    resource: Option<Resource>,
    #[serde(default)]
    message: Option<String>,
}

/// Parses one line; `None` for lines to skip (blank, unknown future events).
pub(crate) fn parse_line(endpoint: &str, line: &[u8]) -> Option<Result<WatchEvent, ClientError>> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    let decode = |source| ClientError::Decode {
        endpoint: endpoint.to_string(),
        source,
    };
    let parsed: Line = match serde_json::from_slice(line) {
        Ok(l) => l,
        Err(e) => return Some(Err(decode(e))),
    };
    let with_resource = |make: fn(Resource) -> WatchEvent| match parsed.resource {
        Some(r) => Ok(make(r)),
        None => Err(decode(serde::de::Error::custom(format!(
            "{} event without a resource",
            parsed.event
        )))),
    };
    Some(match parsed.event.as_str() {
        "created" => with_resource(WatchEvent::Created),
        "updated" => with_resource(WatchEvent::Updated),
        "destroyed" => with_resource(WatchEvent::Destroyed),
        "bootstrapped" => Ok(WatchEvent::Bootstrapped),
        "error" => Err(ClientError::WatchInterrupted {
            message: parsed.message.unwrap_or_else(|| "no reason given".into()),
        }),
        _ => return None,
    })
}

/// Splits a byte stream into lines and parses each. Stops after the first error.
pub(crate) fn events<S>(endpoint: String, body: S) -> WatchStream
where
    S: Stream<Item = Result<Bytes, ClientError>> + Send + 'static,
{
    struct St<S> {
        body: S,
        buf: BytesMut,
        done: bool,
    }
    let st = St {
        body: Box::pin(body),
        buf: BytesMut::new(),
        done: false,
    };
    futures::stream::unfold(st, move |mut st| {
        let endpoint = endpoint.clone();
        async move {
            loop {
                if st.done {
                    return None;
                }
                if let Some(pos) = st.buf.iter().position(|&b| b == b'\n') {
                    let line = st.buf.split_to(pos + 1);
                    match parse_line(&endpoint, &line[..pos]) {
                        Some(Err(e)) => {
                            st.done = true;
                            return Some((Err(e), st));
                        }
                        Some(ok) => return Some((ok, st)),
                        None => continue,
                    }
                }
                if st.buf.len() > MAX_LINE {
                    st.done = true;
                    return Some((Err(ClientError::WatchLineTooLong { limit: MAX_LINE }), st));
                }
                match st.body.next().await {
                    Some(Ok(chunk)) => st.buf.extend_from_slice(chunk.chunk()),
                    Some(Err(e)) => {
                        st.done = true;
                        return Some((Err(e), st));
                    }
                    None => {
                        // A final line without a newline still counts.
                        st.done = true;
                        let rest = std::mem::take(&mut st.buf);
                        match parse_line(&endpoint, &rest) {
                            Some(item) => return Some((item, st)),
                            None => return None,
                        }
                    }
                }
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;

    fn chunks(parts: &[&str]) -> impl Stream<Item = Result<Bytes, ClientError>> + Send + 'static {
        let owned: Vec<Result<Bytes, ClientError>> = parts
            .iter()
            .map(|p| Ok(Bytes::from(p.to_string())))
            .collect();
        futures::stream::iter(owned)
    }

    const RES: &str = r#"{"metadata":{"namespace":"default","type":"Clusters.omni.sidero.dev","id":"c1","version":1,"phase":"running"},"spec":{}}"#;

    #[test]
    fn lines_split_across_chunks() {
        let first = format!(r#"{{"event":"created","resource":{RES}}}"#);
        let (a, b) = first.split_at(40);
        let body = chunks(&[
            a,
            b,
            "\n",
            "\n{\"event\":\"bootstrapped\",\"resource\":null}\n{\"event\":\"future\"}\n",
            &first,
        ]);
        let got: Vec<_> = block_on(events("http://x".into(), body).collect::<Vec<_>>());
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(matches!(&got[0], Ok(WatchEvent::Created(r)) if r.metadata.id == "c1"));
        assert!(matches!(&got[1], Ok(WatchEvent::Bootstrapped)));
        assert!(matches!(&got[2], Ok(WatchEvent::Created(_))));
    }

    #[test]
    fn error_line_ends_the_stream() {
        let body = chunks(&[
            "{\"event\":\"error\",\"message\":\"fell behind\"}\n{\"event\":\"bootstrapped\"}\n",
        ]);
        let got: Vec<_> = block_on(events("http://x".into(), body).collect::<Vec<_>>());
        assert_eq!(got.len(), 1);
        let err = got.into_iter().next().unwrap().unwrap_err();
        assert_eq!(
            err.to_string(),
            "watch interrupted by the server: fell behind"
        );
    }

    #[test]
    fn garbage_is_a_decode_error() {
        let got: Vec<_> =
            block_on(events("http://x".into(), chunks(&["nope\n"])).collect::<Vec<_>>());
        assert!(matches!(&got[..], [Err(ClientError::Decode { .. })]));
    }
}
