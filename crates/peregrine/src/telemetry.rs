//! Logging to stderr, as text or JSON lines, filtered by RUST_LOG.
//!
//! A line logged while a request is answered names the request in a span,
//! `request{request_id="…"}`, as if the request had run inside it. The span is made only
//! when such a line is logged, from the id the API keeps current while it answers
//! ([`peregrine_api::current_request_id`]): a span for every request would cost about a
//! sixth of the server's work per request, and nearly every request logs nothing.

use std::cell::RefCell;
use std::io::IsTerminal;

use tracing::span::EnteredSpan;
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::cli::LogFormat;

/// Libraries whose verbose levels record user data (tokio-postgres logs every statement's
/// parameters, usernames among them, at debug): capped at info whatever RUST_LOG says.
const USER_DATA_LOGGERS: [&str; 1] = ["tokio_postgres=info"];

/// The name of a request's span.
const REQUEST_SPAN: &str = "request";

/// Installs the global subscriber; `default_level` applies when RUST_LOG is not set.
pub fn init(format: LogFormat, default_level: &str) {
    let mut filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    for directive in USER_DATA_LOGGERS {
        if let Ok(directive) = directive.parse() {
            filter = filter.add_directive(directive);
        }
    }
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal());
    // The request's span is entered before the line is written and left after it.
    let logging = tracing_subscriber::registry()
        .with(filter)
        .with(EnterRequestSpan);
    match format {
        LogFormat::Text => logging.with(lines).with(LeaveRequestSpan).init(),
        LogFormat::Json => logging
            .with(lines.json().flatten_event(true))
            .with(LeaveRequestSpan)
            .init(),
    }
}

thread_local! {
    /// The request spans entered for the lines being written on this thread.
    static ENTERED: RefCell<Vec<Option<EnteredSpan>>> = const { RefCell::new(Vec::new()) };
}

/// Before a line is written: enters the span of the request being answered, if any and if
/// the line is not inside it already.
struct EnterRequestSpan;

impl<S> Layer<S> for EnterRequestSpan
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_event(&self, _event: &Event<'_>, context: Context<'_, S>) {
        let entered = peregrine_api::current_request_id()
            .filter(|_| !inside_a_request_span(&context))
            .map(|id| {
                // At the error level, so the span is on whenever any line is.
                tracing::error_span!(REQUEST_SPAN, request_id = id.as_str()).entered()
            });
        ENTERED.with_borrow_mut(|stack| stack.push(entered));
    }
}

/// After a line is written: leaves the span [`EnterRequestSpan`] entered for it.
struct LeaveRequestSpan;

impl<S: Subscriber> Layer<S> for LeaveRequestSpan {
    fn on_event(&self, _event: &Event<'_>, _context: Context<'_, S>) {
        let entered = ENTERED.with_borrow_mut(Vec::pop);
        drop(entered);
    }
}

fn inside_a_request_span<S>(context: &Context<'_, S>) -> bool
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    context
        .lookup_current()
        .is_some_and(|span| span.scope().any(|span| span.name() == REQUEST_SPAN))
}
