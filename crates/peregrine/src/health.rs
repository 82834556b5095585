//! `peregrine health`: one GET of a health URL, for container health checks in images that
//! have no curl. Exit 0 on a 2xx answer, 1 otherwise, always within the timeout.

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cli::HealthArgs;

/// The longest status line read; anything longer is not an HTTP answer.
const MAX_HEAD: usize = 1024;

/// Asks `args.url` once and fails unless it answers 2xx within `args.timeout`.
pub async fn run(args: HealthArgs) -> anyhow::Result<()> {
    let timeout = args.timeout;
    let (authority, path) = split_url(&args.url)?;
    let status = tokio::time::timeout(timeout, get_status(authority, path))
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "{} did not answer within {}",
                args.url,
                humantime::format_duration(timeout)
            )
        })?
        .with_context(|| format!("cannot GET {}", args.url))?;
    if !(200..300).contains(&status) {
        bail!("{} answered {status}", args.url);
    }
    Ok(())
}

/// `http://HOST:PORT/PATH` as (`HOST:PORT`, `/PATH`).
fn split_url(url: &str) -> anyhow::Result<(&str, &str)> {
    let Some(rest) = url.strip_prefix("http://") else {
        bail!("--url: {url:?} is not an http:// URL (e.g. http://127.0.0.1:8000/healthz)");
    };
    let (authority, path) = rest.find('/').map_or((rest, "/"), |i| rest.split_at(i));
    if authority.is_empty() {
        bail!("--url: {url:?} names no host");
    }
    Ok((authority, path))
}

/// Sends one `GET` and returns the status code of the answer.
async fn get_status(authority: &str, path: &str) -> anyhow::Result<u16> {
    let address = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let mut stream = tokio::net::TcpStream::connect(&address).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut head = Vec::with_capacity(64);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n") && head.len() < MAX_HEAD {
        if stream.read(&mut byte).await? == 0 {
            break;
        }
        head.push(byte[0]);
    }
    let line = String::from_utf8_lossy(&head);
    line.split(' ')
        .nth(1)
        .filter(|_| line.starts_with("HTTP/1."))
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("not an HTTP answer: {:?}", line.trim_end()))
}
