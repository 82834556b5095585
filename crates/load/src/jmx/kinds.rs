//! What each JMeter test element class is, by its class name without the package: the
//! reader's one table of which elements it runs, ignores, refuses or warns about.

/// The role of a test element in the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// `TestPlan`.
    Plan,
    /// A thread group (core or plugin), setUp and tearDown groups included.
    ThreadGroup,
    /// An HTTP request.
    HttpSampler,
    /// Flow Control Action (`TestAction`): pause, stop, next iteration.
    Action,
    /// A sampler of another protocol, or a script: the run stops with an error.
    OtherSampler,
    /// A logic controller.
    Controller,
    /// A test fragment: runs only where a Module or Include controller puts it.
    Fragment,
    /// A config element, timer, assertion, pre/post-processor: applies to its scope.
    Scoped,
    /// A listener: results go to Peregrine's reports instead; ignored silently.
    Listener,
    /// Anything else: warned about and skipped.
    Unknown,
}

/// Thread groups Peregrine runs.
pub(super) const THREAD_GROUPS: &[&str] = &[
    "ThreadGroup",
    "SetupThreadGroup",
    "PostThreadGroup",
    "ConcurrencyThreadGroup",
    "SteppingThreadGroup",
    "UltimateThreadGroup",
];

const CONTROLLERS: &[&str] = &[
    "GenericController",
    "RecordingController",
    "CriticalSectionController",
    "TransactionController",
    "LoopController",
    "WhileController",
    "IfController",
    "OnceOnlyController",
    "ForeachController",
    "InterleaveControl",
    "RandomController",
    "RandomOrderController",
    "RuntimeController",
    "ModuleController",
    "IncludeController",
    "SwitchController",
    "ThroughputController",
];

/// Config elements, timers, assertions and processors the reader knows, supported or not
/// (the unsupported ones are warned about by name in `scope`).
const SCOPED: &[&str] = &[
    "ConfigTestElement",
    "HeaderManager",
    "CookieManager",
    "CacheManager",
    "AuthManager",
    "DNSCacheManager",
    "Arguments",
    "CSVDataSet",
    "ConstantTimer",
    "UniformRandomTimer",
    "GaussianRandomTimer",
    "PoissonRandomTimer",
    "ConstantThroughputTimer",
    "ResponseAssertion",
    "DurationAssertion",
    "SizeAssertion",
    "JSONPathAssertion",
    "XPathAssertion",
    "XPath2Assertion",
    "RegexExtractor",
    "JSONPostProcessor",
    "JSONPathExtractor",
    "XPathExtractor",
    "XPath2Extractor",
    "BoundaryExtractor",
    "HtmlExtractor",
];

/// Listener classes that do not say so in their name.
const LISTENERS: &[&str] = &["Summariser", "MailerResultCollector"];

/// The role of class `class` (package already removed).
pub(super) fn kind(class: &str) -> Kind {
    match class {
        "TestPlan" => Kind::Plan,
        "HTTPSamplerProxy" | "HTTPSampler" | "HTTPSampler2" => Kind::HttpSampler,
        "TestAction" => Kind::Action,
        "TestFragmentController" => Kind::Fragment,
        _ if THREAD_GROUPS.contains(&class) => Kind::ThreadGroup,
        _ if CONTROLLERS.contains(&class) => Kind::Controller,
        _ if SCOPED.contains(&class) => Kind::Scoped,
        _ if LISTENERS.contains(&class)
            || class.contains("ResultCollector")
            || class.contains("Listener")
            || class.contains("Visualizer")
            || class.contains("Vizualizer") =>
        {
            Kind::Listener
        }
        _ if class.ends_with("Sampler") => Kind::OtherSampler,
        _ => Kind::Unknown,
    }
}
