//! Requests whose scheme and host are decided at run time (`- ${url}`, `http://${host}/`,
//! a full URL in a path variable, as JMeter takes one): where such a rendered request
//! connects. Each user keeps the hosts it resolved; the run shares one TLS setup, made only
//! when the plan has such requests. Requests with a fixed host never come here.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::TlsTarget;

/// Longest wait for resolving a host decided at run time.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Hosts a user keeps resolved; past this the cache starts over (a URL list of many
/// hosts must not grow a user's memory without bound).
const MAX_REMEMBERED: usize = 64;

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
    hosts: Vec<((String, u16), Option<SocketAddr>)>,
}

impl Resolved {
    /// Where `host:port` is (`None`: it cannot be resolved, which the request reports as a
    /// connect error). An IP address is used as it is.
    pub async fn address(&mut self, host: &str, port: u16) -> Option<SocketAddr> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Some(SocketAddr::new(ip, port));
        }
        if let Some((_, address)) = self
            .hosts
            .iter()
            .find(|((h, p), _)| h == host && *p == port)
        {
            return *address;
        }
        let lookup = tokio::net::lookup_host((host, port));
        let address = tokio::time::timeout(RESOLVE_TIMEOUT, lookup)
            .await
            .ok()
            .and_then(Result::ok)
            .and_then(|mut a| a.next());
        if self.hosts.len() == MAX_REMEMBERED {
            self.hosts.clear();
        }
        self.hosts.push(((host.to_owned(), port), address));
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
