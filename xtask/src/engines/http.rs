//! A small HTTP/1.0 client over TCP or a Unix socket: health checks, versions and
//! pushes to the local registry, without a dependency and without curl.
//!
//! HTTP/1.0 keeps it simple: one request per connection, and the Go servers on the
//! other end (dockerd, Podman, the registry) answer without chunked encoding and
//! close the connection after the body.

use std::{
    io::{Read, Write},
    net::{TcpStream, ToSocketAddrs},
    os::unix::net::UnixStream,
    path::Path,
    time::Duration,
};

use anyhow::{bail, Context};

/// How long to wait for a connection, and for each read or write.
const TIMEOUT: Duration = Duration::from_secs(10);

/// An HTTP request.
#[derive(Debug)]
pub(super) struct Request<'a> {
    /// `GET`, `HEAD`, `POST`, `PUT`.
    method: &'a str,
    /// Path and query.
    target: &'a str,
    /// Extra header fields.
    headers: Vec<(&'a str, &'a str)>,
    /// The body, sent with a `Content-Length`.
    body: &'a [u8],
}

/// An HTTP response.
#[derive(Debug)]
pub(super) struct Response {
    /// Status code.
    pub(super) status: u16,
    /// Header fields, names as received.
    headers: Vec<(String, String)>,
    /// The body (empty for `HEAD`).
    pub(super) body: Vec<u8>,
}

impl<'a> Request<'a> {
    /// A request without body.
    pub(super) fn new(method: &'a str, target: &'a str) -> Request<'a> {
        Request {
            method,
            target,
            headers: Vec::new(),
            body: &[],
        }
    }

    /// A `GET` request.
    pub(super) fn get(target: &'a str) -> Request<'a> {
        Request::new("GET", target)
    }

    /// Adds a header field.
    pub(super) fn header(mut self, name: &'a str, value: &'a str) -> Request<'a> {
        self.headers.push((name, value));
        self
    }

    /// Sets the body.
    pub(super) fn body(mut self, body: &'a [u8]) -> Request<'a> {
        self.body = body;
        self
    }

    /// Sends the request to `addr` (`host:port`) over TCP.
    pub(super) fn send_tcp(&self, addr: &str) -> anyhow::Result<Response> {
        let context = || format!("{} http://{addr}{}", self.method, self.target);
        let socket_addr = addr
            .to_socket_addrs()
            .with_context(context)?
            .next()
            .with_context(|| format!("{addr} resolves to no address"))?;
        let stream = TcpStream::connect_timeout(&socket_addr, TIMEOUT).with_context(context)?;
        stream.set_read_timeout(Some(TIMEOUT))?;
        stream.set_write_timeout(Some(TIMEOUT))?;
        self.exchange(stream, addr).with_context(context)
    }

    /// Sends the request over the Unix socket at `socket`.
    pub(super) fn send_unix(&self, socket: &Path) -> anyhow::Result<Response> {
        let context = || format!("{} {} on {}", self.method, self.target, socket.display());
        let stream = UnixStream::connect(socket).with_context(context)?;
        stream.set_read_timeout(Some(TIMEOUT))?;
        stream.set_write_timeout(Some(TIMEOUT))?;
        self.exchange(stream, "localhost").with_context(context)
    }

    /// Writes the request, reads the whole response.
    fn exchange(&self, mut stream: impl Read + Write, host: &str) -> anyhow::Result<Response> {
        let mut head = format!(
            "{} {} HTTP/1.0\r\nHost: {host}\r\n",
            self.method, self.target
        );
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if !self.body.is_empty() || matches!(self.method, "POST" | "PUT") {
            head.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes())?;
        stream.write_all(self.body)?;
        stream.flush()?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw)?;
        Response::parse(&raw)
    }
}

impl Response {
    /// Parses a whole HTTP/1.x response.
    fn parse(raw: &[u8]) -> anyhow::Result<Response> {
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .context("response without end of header")?;
        let head = std::str::from_utf8(&raw[..split]).context("response header is not UTF-8")?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .with_context(|| format!("bad status line `{status_line}`"))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
            .collect();
        let response = Response {
            status,
            headers,
            body: raw[split + 4..].to_vec(),
        };
        if response
            .header("Transfer-Encoding")
            .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
        {
            bail!("chunked response to an HTTP/1.0 request");
        }
        Ok(response)
    }

    /// The first header field named `name` (case-insensitive).
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub(super) fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&self.body).context("response body is not JSON")
    }

    /// Ok for `expected`, else an error with the status and the start of the body.
    pub(super) fn expect(&self, expected: u16) -> anyhow::Result<&Response> {
        if self.status == expected {
            return Ok(self);
        }
        let body = String::from_utf8_lossy(&self.body);
        bail!(
            "HTTP {} (expected {expected}): {}",
            self.status,
            body.chars().take(300).collect::<String>().trim()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_response() {
        let raw = b"HTTP/1.0 201 Created\r\nDocker-Content-Digest: sha256:ab\r\nContent-Length: 2\r\n\r\nok";
        let response = Response::parse(raw).expect("valid response");
        assert_eq!(response.status, 201);
        assert_eq!(response.header("docker-content-digest"), Some("sha256:ab"));
        assert_eq!(response.body, b"ok");
        assert!(response.expect(201).is_ok());
        assert!(response.expect(200).is_err());
    }

    #[test]
    fn rejects_garbage() {
        assert!(Response::parse(b"HTTP/1.0 200 OK\r\n").is_err());
        assert!(Response::parse(b"nonsense\r\n\r\n").is_err());
    }
}
