//! A program's request rendered for one user: its `${…}` in the URL, headers and body, and a
//! URL decided at run time pointing it at its own host.

use super::MAX_URL_BYTES;
use crate::engine::PreparedRequest;
use crate::plan::Request;
use crate::variables::{MAX_RENDERED_BYTES, UserVariables, encode_target};

/// The request with its `${…}` rendered for this user, and whether its URL named its own
/// host; or why it cannot be sent. The messages never quote the rendered value: one error
/// row per cause, not per value.
pub(super) fn render(
    prepared: &PreparedRequest,
    variables: &mut UserVariables,
) -> Result<(Request, bool), String> {
    let mut request: Request = (*prepared.request).clone();
    let Some(dynamic) = prepared.request.dynamic.as_deref() else {
        return Ok((request, false));
    };
    let mut relocated = false;
    if dynamic.target.is_dynamic() || dynamic.origin.is_some() {
        let mut rendered = dynamic
            .target
            .try_render(variables, MAX_URL_BYTES)
            .map_err(|too| format!("the rendered URL is over {} bytes", too.limit))?;
        if let Some(origin) = &dynamic.origin {
            let mut full = origin
                .try_render(variables, MAX_URL_BYTES)
                .map_err(|too| format!("the rendered URL is over {} bytes", too.limit))?;
            full.push_str(&rendered);
            rendered = full;
        }
        // `url: ${path}` was joined to the default address with a `/`; a value that brings
        // its own (`/items/1`) must not double it, as JMeter adds one only when missing.
        let path = rendered.strip_prefix('/').filter(|p| p.starts_with('/'));
        // A full URL, in place of the path as JMeter takes one or as the origin gave it.
        let absolute = Some(rendered.strip_prefix('/').unwrap_or(&rendered))
            .filter(|text| crate::url::is_absolute(text));
        if let Some(full) = absolute {
            relocate(&mut request, full)?;
            relocated = true;
        } else if dynamic.origin.is_some() {
            return Err(
                "the rendered URL does not start with http:// or https:// (its host is decided at run time)"
                    .to_owned(),
            );
        } else {
            let target = encode_target(path.unwrap_or(&rendered));
            if target.len() > MAX_URL_BYTES {
                return Err(format!(
                    "the rendered URL is over {MAX_URL_BYTES} bytes once encoded"
                ));
            }
            request.target = target
                .parse()
                .map_err(|_| "the rendered URL is not a valid request target".to_owned())?;
        }
    }
    for (name, template) in &dynamic.headers {
        let value = template
            .try_render(variables, MAX_URL_BYTES)
            .map_err(|too| {
                format!(
                    "header {name}: the rendered value is over {} bytes",
                    too.limit
                )
            })?;
        let value = http::HeaderValue::from_str(&value).map_err(|_| {
            format!("header {name}: the rendered value is not a valid header value (a control character or line break)")
        })?;
        request.headers.insert(name.clone(), value);
    }
    if dynamic.body.is_dynamic() {
        let body = dynamic
            .body
            .try_render(variables, MAX_RENDERED_BYTES)
            .map_err(|too| format!("the rendered body is over {} bytes", too.limit))?;
        request.body = body.into();
    }
    Ok((request, relocated))
}

/// Points `request` at the rendered absolute URL `full`: its scheme, host, port, `Host`
/// header and target.
pub(super) fn relocate(request: &mut Request, full: &str) -> Result<(), String> {
    if full.len() > MAX_URL_BYTES {
        return Err(format!("the rendered URL is over {MAX_URL_BYTES} bytes"));
    }
    let url = crate::url::parse_rendered(full)
        .map_err(|_| "the rendered URL is not a valid http:// or https:// URL".to_owned())?;
    let host = http::HeaderValue::from_str(&url.authority)
        .map_err(|_| "the rendered URL's host is not a valid Host header".to_owned())?;
    request.headers.insert(http::header::HOST, host);
    request.https = url.https;
    request.host = url.host;
    request.port = url.port;
    request.authority = url.authority;
    request.target = url.target;
    Ok(())
}
