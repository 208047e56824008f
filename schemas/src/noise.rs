//! Default noise filters (browser extensions, injected scripts, non-web documents).

use crate::report::Report;

/// Why a report is noise. Each variant is a bounded metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NoiseReason {
    /// blocked-uri or source-file has a browser/extension/webview scheme.
    NoiseScheme,
    /// blocked-uri or source-file host is an injector (AV, proxies, localhost).
    NoiseHost,
    /// inline/self block whose sample is an injected script.
    InjectedSample,
    /// the document is not http(s) (`about:blank`, ...).
    NonWebDocument,
}

impl NoiseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoiseScheme => "noise_scheme",
            Self::NoiseHost => "noise_host",
            Self::InjectedSample => "injected_sample",
            Self::NonWebDocument => "non_web_document",
        }
    }
}

/// The default noise verdict for a report (REFERENCE section 4), `None` when it looks real.
pub fn classify(report: &Report) -> Option<NoiseReason> {
    let _ = report;
    None
}
