//! What the API's test files share: serving an app in this process.

use std::net::SocketAddr;
use std::time::Duration;

use peregrine_api::{App, Limits, Server};
use tokio::sync::oneshot;

/// Serves `app` on a free port of 127.0.0.1 within `limits` until the returned sender is
/// dropped (then in-flight requests get a second to finish).
pub fn serve(app: App, limits: Limits) -> (SocketAddr, oneshot::Sender<()>) {
    let server = Server::bind_with(([127, 0, 0, 1], 0).into(), app, limits)
        .unwrap_or_else(|e| panic!("{e}"));
    let address = server.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server.run(
        async move {
            let _ = stopped.await;
        },
        Duration::from_secs(1),
    ));
    (address, stop)
}
