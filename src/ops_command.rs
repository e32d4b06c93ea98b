//! The command's `healthcheck` and `config` subcommands: what a container
//! health check and an operator checking a configuration need, without
//! curl or a running server.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use always_online::config::{Config, SETTINGS};
use always_online::logging::Chain;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long the health check waits for the answer.
const HEALTHCHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// GET `url` (default: `/readyz` on the configured listener over
/// loopback); exit 0 on HTTP 200, 1 otherwise.
pub(crate) async fn healthcheck(config: &Config, url: Option<&str>) -> ExitCode {
    let target = match url {
        Some(url) => match parse_http_url(url) {
            Ok(t) => t,
            Err(why) => {
                eprintln!("always-online healthcheck: {why}");
                return ExitCode::from(1);
            }
        },
        None => {
            if config.tls_cert.is_some() {
                eprintln!(
                    "always-online healthcheck: the listeners serve TLS; give --url of a plain-HTTP check (this command speaks HTTP only)"
                );
                return ExitCode::from(1);
            }
            Target {
                addr: loopback(config.listen).to_string(),
                host: loopback(config.listen).to_string(),
                path: "/readyz".into(),
            }
        }
    };
    match tokio::time::timeout(HEALTHCHECK_TIMEOUT, status_of(&target)).await {
        Ok(Ok(200)) => ExitCode::SUCCESS,
        Ok(Ok(status)) => {
            eprintln!(
                "always-online healthcheck: {} answered HTTP {status}",
                target.path
            );
            ExitCode::from(1)
        }
        Ok(Err(e)) => {
            eprintln!(
                "always-online healthcheck: {}: {ec}",
                target.addr,
                ec = Chain(&e)
            );
            ExitCode::from(1)
        }
        Err(_) => {
            eprintln!("always-online healthcheck: no answer within {HEALTHCHECK_TIMEOUT:?}");
            ExitCode::from(1)
        }
    }
}

/// The address a local check reaches a listener on: a wildcard address
/// becomes loopback.
fn loopback(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// Where a health check goes.
#[derive(Debug, PartialEq)]
struct Target {
    /// host:port to connect to.
    addr: String,
    /// The Host header.
    host: String,
    path: String,
}

/// `http://host[:port][/path]`.
fn parse_http_url(url: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs are checked"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/readyz"),
    };
    if authority.is_empty() {
        return Err(format!("{url}: no host"));
    }
    let has_port = authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && !authority.ends_with(']');
    let addr = if has_port {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    Ok(Target {
        addr,
        host: authority.to_owned(),
        path: path.to_owned(),
    })
}

/// The HTTP status of `GET target`.
async fn status_of(target: &Target) -> std::io::Result<u16> {
    let mut stream = tokio::net::TcpStream::connect(&target.addr).await?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nUser-Agent: always-online-healthcheck\r\n\r\n",
        target.path, target.host
    );
    stream.write_all(request.as_bytes()).await?;
    let mut head = [0u8; 64];
    let mut read = 0;
    while read < 12 {
        let n = stream.read(&mut head[read..]).await?;
        if n == 0 {
            break;
        }
        read += n;
    }
    parse_status(&head[..read])
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP response"))
}

/// The status code of an HTTP/1.x status line.
fn parse_status(head: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(head).ok()?;
    let rest = text.strip_prefix("HTTP/1.")?;
    rest.get(2..5)?.parse().ok()
}

/// Prints every setting as it is in effect (TOML, secrets redacted), or
/// with `check`, says the configuration is valid. It was loaded and
/// validated before this runs; the keys that need files (TLS, JWT) are
/// opened here too.
pub(crate) fn config(config: &Config, check: bool) -> ExitCode {
    if let Err(e) = always_online::app::check_files(config) {
        eprintln!("always-online: {ec}", ec = Chain(&e));
        return ExitCode::from(2);
    }
    if check {
        println!("configuration OK");
        return ExitCode::SUCCESS;
    }
    let mut out = String::new();
    for s in SETTINGS {
        out.push_str(&format!("{} = {}\n", s.key, toml_string(&(s.show)(config))));
    }
    // A reader that stops early (`| head`) is not an error.
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), out.as_bytes());
    ExitCode::SUCCESS
}

/// `value` as a TOML basic string.
fn toml_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_status_lines_are_read() {
        assert_eq!(
            parse_http_url("http://127.0.0.1:3000/readyz"),
            Ok(Target {
                addr: "127.0.0.1:3000".into(),
                host: "127.0.0.1:3000".into(),
                path: "/readyz".into()
            })
        );
        assert_eq!(
            parse_http_url("http://node").map(|t| (t.addr, t.path)),
            Ok(("node:80".into(), "/readyz".into()))
        );
        assert!(parse_http_url("https://x/readyz").is_err());
        assert_eq!(parse_status(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(parse_status(b"HTTP/1.0 503 Service"), Some(503));
        assert_eq!(parse_status(b"SSH-2.0"), None);
        assert_eq!(
            loopback("0.0.0.0:3000".parse().expect("addr")),
            "127.0.0.1:3000".parse().expect("addr")
        );
    }

    #[test]
    fn printed_values_are_toml_strings() {
        assert_eq!(toml_string(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
