//! Absolute `http://` and `https://` URLs taken apart as a request needs them: where to
//! connect, what to send as `Host`, and the origin-form target. Used when a config is read
//! and, for URLs decided at run time (`- ${url}`), when the request is rendered.

use http::Uri;

/// An absolute URL, taken apart.
#[derive(Debug, Clone)]
pub struct AbsoluteUrl {
    /// `host:port` as written (the `Host` header).
    pub authority: String,
    /// The host, without brackets around an IPv6 address.
    pub host: String,
    /// The port, written or the scheme's.
    pub port: u16,
    /// `https://`.
    pub https: bool,
    /// Path and query.
    pub target: Uri,
}

/// Whether `text` starts with `http://` or `https://` (any case), as JMeter tells a full
/// URL in a sampler's path from a path.
pub fn is_absolute(text: &str) -> bool {
    let starts = |prefix: &str| {
        text.get(..prefix.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
    };
    starts("http://") || starts("https://")
}

/// Takes `full` apart; its path and query must already be encoded.
pub fn parse(full: &str) -> Result<AbsoluteUrl, String> {
    let uri: Uri = full
        .parse()
        .map_err(|e| format!("invalid URL {full:?}: {e}"))?;
    let https = match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
        Some("http") => false,
        Some("https") => true,
        _ => {
            return Err(format!(
                "{full:?}: the URL must start with http:// or https://"
            ));
        }
    };
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("{full:?} has no host"))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let authority = uri.authority().map(ToString::to_string).unwrap_or_default();
    let target: Uri = uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .parse()
        .map_err(|e| format!("invalid path: {e}"))?;
    Ok(AbsoluteUrl {
        authority,
        host,
        port,
        https,
        target,
    })
}

/// Takes apart a URL rendered at run time: its path and query are encoded first (a value
/// may bring spaces or braces), its scheme and host are not touched.
pub fn parse_rendered(full: &str) -> Result<AbsoluteUrl, String> {
    let after_scheme = full.find("://").map_or(0, |i| i + 3);
    let end = full[after_scheme..]
        .find(['/', '?'])
        .map_or(full.len(), |i| after_scheme + i);
    let (base, rest) = full.split_at(end);
    let encoded = if rest.is_empty() {
        String::new()
    } else {
        crate::variables::encode_target(rest)
    };
    parse(&format!("{base}{encoded}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rendered_url_keeps_its_host_and_encodes_its_path() {
        let url = parse_rendered("HTTP://127.0.0.1:8080/a b?q={x}").unwrap();
        assert_eq!(
            (
                url.authority.as_str(),
                url.host.as_str(),
                url.port,
                url.https
            ),
            ("127.0.0.1:8080", "127.0.0.1", 8080, false)
        );
        assert_eq!(url.target, "/a%20b?q=%7Bx%7D");
        let url = parse_rendered("https://[::1]").unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.target.path()),
            ("::1", 443, "/")
        );
        assert!(parse_rendered("ftp://host/").is_err());
        assert!(parse_rendered("/just/a/path").is_err());
        assert!(is_absolute("Https://x") && !is_absolute("/http://x"));
    }
}
