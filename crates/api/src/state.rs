//! What every handler shares ([`AppState`]: the store and the [`ApiSettings`]), and the
//! router type of every resource module.

use std::sync::Arc;

use peregrine_store::UserStore;

use crate::readiness::Readiness;

/// The router type of every resource module.
pub(crate) type Router = axum::Router<AppState>;

/// Largest `limit` a list request may ask for unless configured otherwise.
pub const DEFAULT_MAX_PAGE_SIZE: u32 = 1000;

/// What the API needs to know besides the store.
#[derive(Clone)]
pub struct ApiSettings {
    /// The bearer token writes must present; `None` disables writes.
    pub api_token: Option<String>,
    /// The largest page a list request may ask for.
    pub max_page_size: u32,
    /// Origins allowed by CORS (`*` for any), each checked by [`check_cors_origin`];
    /// none: no CORS headers, `OPTIONS` is 405.
    pub cors_origins: Vec<String>,
    /// When `/readyz` last failed, shared by the apps of every worker (clones share it).
    pub readiness: Readiness,
}

/// The token is a secret: `Debug` says only whether one is set.
impl std::fmt::Debug for ApiSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiSettings")
            .field("api_token", &self.api_token.as_ref().map(|_| "<redacted>"))
            .field("max_page_size", &self.max_page_size)
            .field("cors_origins", &self.cors_origins)
            .finish()
    }
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            api_token: None,
            max_page_size: DEFAULT_MAX_PAGE_SIZE,
            cors_origins: Vec::new(),
            readiness: Readiness::default(),
        }
    }
}

/// Shared by all handlers.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) store: Arc<UserStore>,
    pub(crate) settings: Arc<ApiSettings>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_never_print_the_token() {
        let settings = ApiSettings {
            api_token: Some("hunter2-token".into()),
            ..ApiSettings::default()
        };
        let shown = format!("{settings:?} {settings:#?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }
}
