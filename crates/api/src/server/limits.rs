//! What a client may take of the server ([`Limits`], and their defaults): the settings
//! every room of the server reads, defined apart so that each can read them without
//! reaching the others.

use std::time::Duration;

use crate::json_body::DEFAULT_BODY_TIMEOUT;

/// Connections per process unless configured otherwise: well under the usual open-file
/// limits, so that the database's sockets and the logs always find a descriptor.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Largest request head (request line and headers) unless configured otherwise.
pub const DEFAULT_MAX_HEAD_BYTES: usize = 16 * 1024;
/// How long a connection may wait to send a request head unless configured otherwise.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Open connections per client address unless configured otherwise: a quarter of the
/// process's, so that one address cannot take every slot.
pub const DEFAULT_MAX_CLIENT_CONNECTIONS: usize = DEFAULT_MAX_CONNECTIONS / 4;
/// Request bodies being received at once per client address unless configured otherwise.
pub const DEFAULT_MAX_CLIENT_BODIES: usize = 64;
/// Bytes of answers waiting for clients that do not read them, in total, unless configured
/// otherwise.
pub const DEFAULT_MAX_UNSENT_BYTES: usize = 64 * 1024 * 1024;
/// What a client may take of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Open connections per process; past it the oldest idle connection is closed to make
    /// room, or the new one when none is idle.
    pub max_connections: usize,
    /// Largest request head in bytes; larger ones get 431.
    pub max_head_bytes: usize,
    /// How long a connection may take to send a request head, counted from its previous
    /// response (idle keep-alive) or from its opening.
    pub idle_timeout: Duration,
    /// How long a client may take to send a request body once its head arrived (408 past).
    pub body_timeout: Duration,
    /// Open connections per client address; past it that address's oldest idle connection
    /// is closed to make room, else the one that has been sending its body longest, else
    /// the new one.
    pub max_client_connections: usize,
    /// Request bodies one client address may be sending at once; past it the one of them
    /// that has been sending longest is closed.
    pub max_client_bodies: usize,
    /// Bytes of answers written and waiting for their clients to read them, in total; past
    /// it the connections that have not read for longest are closed.
    pub max_unsent_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_head_bytes: DEFAULT_MAX_HEAD_BYTES,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            max_client_connections: DEFAULT_MAX_CLIENT_CONNECTIONS,
            max_client_bodies: DEFAULT_MAX_CLIENT_BODIES,
            max_unsent_bytes: DEFAULT_MAX_UNSENT_BYTES,
        }
    }
}
