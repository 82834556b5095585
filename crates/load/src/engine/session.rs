//! What a virtual user keeps between requests as a browser would: a cookie jar (Taurus
//! `store-cookie`, on by default) and redirects followed as JMeter follows them (GET for
//! every hop, at most 20, one sample for the whole chain).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{COOKIE, HOST, LOCATION, SET_COOKIE};
use http::{HeaderMap, HeaderValue, Method};

use tokio::time::Instant;

use super::PreparedRequest;
use super::exchange::{Connections, Measured, measure};
use crate::plan::Request;
use crate::stats::ErrorKind;
use crate::variables::encode_target;

/// Most redirects followed for one request, as JMeter (`httpsampler.max_redirects`).
pub const MAX_REDIRECTS: usize = 20;
/// Longest wait for resolving a redirect's new host.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// A user's cookies by name. Domain and path are not checked: a user talks to one
/// service. A cookie set to expire (`Max-Age=0`) is removed.
#[derive(Debug, Default, Clone)]
pub struct CookieJar {
    cookies: Vec<(String, String)>,
}

impl CookieJar {
    /// A jar holding `initial` (the scenario's `cookies`).
    pub fn with(initial: &[(String, String)]) -> Self {
        Self {
            cookies: initial.to_vec(),
        }
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.cookies.is_empty()
    }

    /// Stores every `Set-Cookie` of a response.
    pub fn store(&mut self, headers: &HeaderMap) {
        for value in headers.get_all(SET_COOKIE) {
            let Ok(text) = value.to_str() else { continue };
            let mut attributes = text.split(';');
            let Some((name, value)) = attributes.next().and_then(|p| p.split_once('=')) else {
                continue;
            };
            let (name, value) = (name.trim().to_owned(), value.trim().to_owned());
            let expired = attributes.any(|a| {
                let a = a.trim().to_ascii_lowercase();
                a == "max-age=0" || a.starts_with("max-age=-")
            });
            self.cookies.retain(|(n, _)| *n != name);
            if !expired {
                self.cookies.push((name, value));
            }
        }
    }

    /// The `Cookie` header: the request's own cookies first, then the jar's.
    pub fn add_to(&self, headers: &mut HeaderMap) {
        if self.cookies.is_empty() {
            return;
        }
        let mut text = headers
            .get(COOKIE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .unwrap_or_default();
        for (name, value) in &self.cookies {
            if !text.is_empty() {
                text.push_str("; ");
            }
            text.push_str(name);
            text.push('=');
            text.push_str(value);
        }
        if let Ok(value) = HeaderValue::from_str(&text) {
            headers.insert(COOKIE, value);
        }
    }
}

/// Where a redirect response points, if it is one.
pub fn redirect_location(status: u16, headers: &HeaderMap) -> Option<String> {
    matches!(status, 301 | 302 | 303 | 307 | 308)
        .then(|| headers.get(LOCATION)?.to_str().ok().map(str::to_owned))
        .flatten()
}

/// The next hop of a redirect from `previous`: a GET (HEAD stays HEAD) without a body to
/// `location`, and the address to send it to. `Err` says why it cannot be followed.
pub async fn next_hop(
    previous: &Request,
    address: Option<SocketAddr>,
    location: &str,
) -> Result<(Request, Option<SocketAddr>), String> {
    let mut hop = previous.clone();
    hop.method = if previous.method == Method::HEAD {
        Method::HEAD
    } else {
        Method::GET
    };
    hop.body = bytes::Bytes::new();
    hop.headers.remove(http::header::CONTENT_TYPE);
    hop.headers.remove(http::header::CONTENT_LENGTH);
    hop.dynamic = None;
    let mut hop_address = address;
    let path = if let Some(rest) = location.strip_prefix("http://") {
        let (authority, path) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
        if authority != previous.authority || previous.https {
            hop.https = false;
            let (host, port) = match authority.rsplit_once(':') {
                Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (
                    h.to_owned(),
                    p.parse()
                        .map_err(|_| format!("redirect to {location}: bad port"))?,
                ),
                _ => (authority.to_owned(), 80),
            };
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let lookup = tokio::net::lookup_host((host.as_str(), port));
            hop_address = tokio::time::timeout(RESOLVE_TIMEOUT, lookup)
                .await
                .ok()
                .and_then(Result::ok)
                .and_then(|mut a| a.next());
            if hop_address.is_none() {
                return Err(format!("redirect to {location}: cannot resolve {host}"));
            }
            hop.authority = authority.to_owned();
            hop.host = host;
            hop.port = port;
            let value = HeaderValue::from_str(authority)
                .map_err(|_| format!("redirect to {location}: invalid host"))?;
            hop.headers.insert(HOST, value);
        }
        path.to_owned()
    } else if location.contains("://") {
        return Err(format!("redirect to {location}: only http:// is followed"));
    } else if location.starts_with('/') {
        location.to_owned()
    } else {
        let current = previous.target.path();
        let directory = &current[..current.rfind('/').map_or(0, |i| i + 1)];
        format!("{directory}{location}")
    };
    hop.target = encode_target(if path.is_empty() { "/" } else { &path })
        .parse()
        .map_err(|_| format!("redirect to {location}: invalid target"))?;
    Ok((hop, hop_address))
}

/// Sends `step`, storing cookies and following redirects (GET, at most
/// [`MAX_REDIRECTS`]) when the scenario says so: one sample for the whole chain, with
/// the final response's status, body and error. Without a redirect or a cookie this is one
/// `measure` and two checks of an empty header map: the fast path's cost.
pub async fn send_following_redirects(
    connections: &mut Connections,
    mut jar: Option<&mut CookieJar>,
    step: &PreparedRequest,
    due: Instant,
    start: Instant,
) -> Measured {
    let mut measured = measure(connections.slot(step), step, due, start).await;
    let first_sent = measured.ended - measured.sample.service_time;
    let (mut connect_time, mut bytes) = (measured.sample.connect_time, measured.sample.bytes);
    let mut hops = 0;
    let mut current: Option<PreparedRequest> = None;
    loop {
        if let Some(jar) = jar.as_deref_mut() {
            jar.store(&measured.headers);
        }
        let previous = current.as_ref().unwrap_or(step);
        let location = previous
            .request
            .follow_redirects
            .then(|| redirect_location(measured.sample.status, &measured.headers))
            .flatten();
        let Some(location) = location else { break };
        if hops == MAX_REDIRECTS {
            measured.sample.error = Some((
                ErrorKind::Http,
                Arc::from(format!(
                    "Exceeded maximum number of redirects: {MAX_REDIRECTS}"
                )),
            ));
            break;
        }
        hops += 1;
        let (mut hop, address) =
            match next_hop(&previous.request, previous.address, &location).await {
                Ok(next) => next,
                Err(message) => {
                    measured.sample.error = Some((ErrorKind::Http, Arc::from(message)));
                    break;
                }
            };
        hop.headers.remove(http::header::COOKIE);
        if let Some(jar) = jar.as_deref() {
            jar.add_to(&mut hop.headers);
        }
        // Only relative locations keep https (an absolute one must be http://): the
        // same host, so the same TLS target.
        let tls = if hop.https {
            previous.tls.clone()
        } else {
            None
        };
        let next = step.with_request(hop, address, tls);
        measured = measure(connections.slot(&next), &next, due, start).await;
        connect_time += measured.sample.connect_time;
        bytes += measured.sample.bytes;
        current = Some(next);
    }
    measured.sample.label = step.request.label;
    measured.sample.connect_time = connect_time;
    measured.sample.bytes = bytes;
    // From the first send: in the open model the response time counts from the due time.
    measured.sample.service_time = measured.ended - first_sent;
    measured
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_jar_keeps_the_latest_value_and_forgets_expired_cookies() {
        let mut jar = CookieJar::default();
        let mut headers = HeaderMap::new();
        headers.append(
            SET_COOKIE,
            HeaderValue::from_static("sid=1; Path=/; HttpOnly"),
        );
        headers.append(SET_COOKIE, HeaderValue::from_static("theme=dark"));
        jar.store(&headers);
        let mut headers = HeaderMap::new();
        headers.append(SET_COOKIE, HeaderValue::from_static("sid=2"));
        headers.append(SET_COOKIE, HeaderValue::from_static("theme=; Max-Age=0"));
        jar.store(&headers);
        let mut request = HeaderMap::new();
        request.insert(COOKIE, HeaderValue::from_static("own=x"));
        jar.add_to(&mut request);
        assert_eq!(request[COOKIE], "own=x; sid=2");
    }
}
