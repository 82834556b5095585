//! Requests whose scheme and host are decided at run time (`- ${url}`, `http://${host}/`,
//! a full URL in a path variable, as JMeter takes one): where such a rendered request
//! connects. Each user keeps the hosts it resolved (a host it could not resolve for a second
//! only, so a resolver's hiccup does not fail the rest of the run); the run shares one TLS
//! setup, made only when the plan has such requests. Requests with a fixed host never come
//! here.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::TlsTarget;

/// Longest wait for resolving a host decided at run time.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Hosts a user keeps resolved; past this the cache starts over (a URL list of many
/// hosts must not grow a user's memory without bound).
const MAX_REMEMBERED: usize = 64;
/// How long a user takes a failed lookup's answer before asking again: retried, but at most
/// once a second per host, not before every request.
const RETRY_FAILED_AFTER: Duration = Duration::from_secs(1);

/// How an https URL decided at run time opens its TLS session: the client is set up when
/// the first such URL is sent (a run whose URLs all stay http never loads certificates).
pub struct RunTimeTls {
    options: crate::tls::TlsOptions,
    connector: OnceLock<Result<tokio_rustls::TlsConnector, String>>,
    ca_certs: Arc<[std::path::PathBuf]>,
}

impl RunTimeTls {
    /// The setup for the run's TLS options.
    pub fn new(options: &crate::tls::TlsOptions) -> Self {
        Self {
            options: options.clone(),
            connector: OnceLock::new(),
            ca_certs: options.ca_certs.clone().into(),
        }
    }
}

/// A user's resolved hosts.
#[derive(Default)]
pub struct Resolved {
    hosts: Vec<((String, u16), Lookup)>,
}

/// A lookup's answer (`None`: the host could not be resolved) and when it came.
#[derive(Clone, Copy)]
struct Lookup {
    address: Option<SocketAddr>,
    at: Instant,
}

impl Lookup {
    /// Whether the answer still holds at `now`: an address until the run ends, a failure
    /// for [`RETRY_FAILED_AFTER`].
    fn holds(&self, now: Instant) -> bool {
        self.address.is_some() || now.saturating_duration_since(self.at) < RETRY_FAILED_AFTER
    }
}

impl Resolved {
    /// Where `host:port` is (`None`: it cannot be resolved, which the request reports as a
    /// connect error). An IP address is used as it is.
    pub async fn address(&mut self, host: &str, port: u16) -> Option<SocketAddr> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Some(SocketAddr::new(ip, port));
        }
        let known = self
            .hosts
            .iter()
            .position(|((h, p), _)| h == host && *p == port);
        if let Some(index) = known
            && self.hosts[index].1.holds(Instant::now())
        {
            return self.hosts[index].1.address;
        }
        let lookup = tokio::net::lookup_host((host, port));
        let address = tokio::time::timeout(RESOLVE_TIMEOUT, lookup)
            .await
            .ok()
            .and_then(Result::ok)
            .and_then(|mut a| a.next());
        let answer = Lookup {
            address,
            at: Instant::now(),
        };
        match known {
            Some(index) => self.hosts[index].1 = answer,
            None => {
                if self.hosts.len() == MAX_REMEMBERED {
                    self.hosts.clear();
                }
                self.hosts.push(((host.to_owned(), port), answer));
            }
        }
        address
    }
}

/// The TLS target for an https request to `host`, or why there is none.
pub fn tls_target(setup: Option<&RunTimeTls>, host: &str) -> Result<TlsTarget, String> {
    let setup = setup.ok_or("https is not set up for this request")?;
    let connector = setup
        .connector
        .get_or_init(|| crate::tls::client_config(&setup.options).map(Into::into))
        .clone()?;
    Ok(TlsTarget {
        connector,
        // Not quoted: one error row per cause, not per rendered value.
        name: crate::tls::server_name(host)
            .map_err(|_| "the rendered host is not a valid TLS server name".to_owned())?,
        ca_certs: Arc::clone(&setup.ca_certs),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_lookup_is_asked_again_after_a_second_and_an_address_is_kept() {
        let at = Instant::now();
        let failed = Lookup { address: None, at };
        assert!(failed.holds(at + Duration::from_millis(900)));
        assert!(!failed.holds(at + RETRY_FAILED_AFTER));
        let found = Lookup {
            address: Some(SocketAddr::from(([127, 0, 0, 1], 80))),
            at,
        };
        assert!(found.holds(at + Duration::from_secs(3600)));
    }

    #[tokio::test]
    async fn a_host_that_cannot_be_resolved_is_looked_up_again_once_its_failure_is_stale() {
        let mut resolved = Resolved::default();
        assert_eq!(resolved.address("no-such-host.invalid", 80).await, None);
        let first = resolved.hosts[0].1.at;
        // Within the second: the failure is the answer, no second lookup.
        assert_eq!(resolved.address("no-such-host.invalid", 80).await, None);
        assert_eq!(resolved.hosts[0].1.at, first);
        resolved.hosts[0].1.at = first - RETRY_FAILED_AFTER;
        assert_eq!(resolved.address("no-such-host.invalid", 80).await, None);
        assert!(resolved.hosts[0].1.at > first - RETRY_FAILED_AFTER);
        assert_eq!(resolved.hosts.len(), 1);
    }
}
