//! The web UI for site owners: static files from `api/ui/` built into the binary (no CDN, no
//! build step), answered without a token (the page logs in with the project token and calls the
//! API with it), each with the page's own strict CSP, `nosniff` and `no-referrer`.
//!
//! The CSP allows only this server's own scripts, styles and API (`'self'`), so an injected
//! inline script in a rendered report field does not run even if rendering were wrong. When
//! `--ui-csp-report-uri` is set, violations of this CSP are reported there (a Palisade ingest
//! endpoint: Palisade reports to itself): always as `report-uri`, and for an `https` endpoint
//! also as `report-to` with `Reporting-Endpoints`. Not for an `http` one: Chromium 156 ignores
//! `Reporting-Endpoints` on a plain-HTTP page (even from loopback) and, seeing `report-to`,
//! then drops `report-uri` too, so nothing would be reported (measured; see also
//! `ingest/tests/browser.rs`). An http endpoint means a plain-HTTP setup, where `report-uri`
//! is what works.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;

/// One file of the UI.
#[derive(Debug)]
pub struct Asset {
    /// The file name below `/ui/`.
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

/// Every file the UI serves (`GET /ui/{asset}`); `index.html` is also `GET /ui/`.
pub const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../ui/index.html"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../ui/app.js"),
    },
    Asset {
        name: "api.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../ui/api.js"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../ui/app.css"),
    },
];

/// The asset called `name`, if any.
pub fn asset(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.name == name)
}

/// The page itself.
pub fn index() -> &'static Asset {
    &ASSETS[0]
}

/// The CSP of every UI answer, without reporting.
pub const BASE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; \
    frame-ancestors 'none'";

/// Name of the Reporting API endpoint (`report-to`, `Reporting-Endpoints`).
pub const REPORT_GROUP: &str = "palisade";

/// Why a `--ui-csp-report-uri` cannot be used.
pub fn check_report_uri(uri: &url::Url) -> Result<(), String> {
    if !matches!(uri.scheme(), "http" | "https") {
        return Err("ui-csp-report-uri must be an http or https URL".to_owned());
    }
    if uri.fragment().is_some() {
        return Err("ui-csp-report-uri must not have a #fragment".to_owned());
    }
    // `;` ends a CSP directive, `,` a policy, `"` the Reporting-Endpoints string: any of them
    // would let the flag's value change the policy itself.
    if uri.as_str().contains([';', ',', '"', ' ']) {
        return Err("ui-csp-report-uri must not contain ';', ',', '\"' or spaces".to_owned());
    }
    Ok(())
}

/// The security headers of the UI's answers, built once at start.
#[derive(Debug, Clone)]
pub struct UiHeaders {
    csp: HeaderValue,
    reporting_endpoints: Option<HeaderValue>,
}

impl UiHeaders {
    /// Headers for a validated config (see [`check_report_uri`]). A report URI that still
    /// cannot be a header value is dropped (logged): the page stays protected, unreported.
    pub fn new(report_uri: Option<&url::Url>) -> Self {
        let plain = Self {
            csp: HeaderValue::from_static(BASE_CSP),
            reporting_endpoints: None,
        };
        let Some(uri) = report_uri else {
            return plain;
        };
        let report_to = uri.scheme() == "https";
        let csp = HeaderValue::from_str(&csp(Some(uri.as_str()), report_to));
        let endpoints = HeaderValue::from_str(&format!("{REPORT_GROUP}=\"{uri}\""));
        match (csp, endpoints) {
            (Ok(csp), Ok(endpoints)) => Self {
                csp,
                reporting_endpoints: report_to.then_some(endpoints),
            },
            _ => {
                tracing::error!("ui-csp-report-uri is not a valid header value, not reporting");
                plain
            }
        }
    }

    /// The CSP header value.
    pub fn csp(&self) -> &HeaderValue {
        &self.csp
    }

    /// `asset` with every security header.
    pub fn respond(&self, asset: &Asset) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(Bytes::from_static(asset.body)));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
        // Always revalidate: a new binary serves new files under the same names.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        self.secure(headers);
        response
    }

    /// `GET /`: to the page.
    pub fn redirect(&self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = StatusCode::FOUND;
        let headers = response.headers_mut();
        headers.insert(header::LOCATION, HeaderValue::from_static("/ui/"));
        self.secure(headers);
        response
    }

    fn secure(&self, headers: &mut http::HeaderMap) {
        headers.insert(header::CONTENT_SECURITY_POLICY, self.csp.clone());
        if let Some(endpoints) = &self.reporting_endpoints {
            headers.insert("reporting-endpoints", endpoints.clone());
        }
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
}

/// The UI's CSP, reporting to `report_uri` when given: `report-uri`, plus `report-to` (the
/// Reporting API, which browsers then prefer) when `report_to`.
pub fn csp(report_uri: Option<&str>, report_to: bool) -> String {
    match (report_uri, report_to) {
        (None, _) => BASE_CSP.to_owned(),
        (Some(uri), false) => format!("{BASE_CSP}; report-uri {uri}"),
        (Some(uri), true) => format!("{BASE_CSP}; report-uri {uri}; report-to {REPORT_GROUP}"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn report_uris_that_could_change_the_policy_are_refused() {
        let ok = url::Url::parse("https://palisade.example/api/1/security/?sentry_key=k").unwrap();
        check_report_uri(&ok).unwrap();
        for bad in [
            "https://x.example/a;script-src *",
            "https://x.example/a,default-src *",
            "javascript:alert(1)",
            "https://x.example/#frag",
        ] {
            let uri = url::Url::parse(bad).unwrap();
            assert!(check_report_uri(&uri).is_err(), "{bad}");
        }
    }

    #[test]
    fn headers_carry_the_policy_and_reporting_only_when_configured() {
        let plain = UiHeaders::new(None).respond(index());
        let csp = plain.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert_eq!(csp, BASE_CSP);
        assert!(!csp.contains("report"));
        assert!(!plain.headers().contains_key("reporting-endpoints"));
        assert_eq!(plain.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(plain.headers()[header::REFERRER_POLICY], "no-referrer");

        let uri = url::Url::parse("https://p.example/api/1/security/?sentry_key=k").unwrap();
        let reporting = UiHeaders::new(Some(&uri)).respond(index());
        let csp = reporting.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(csp.starts_with(BASE_CSP));
        assert!(csp.ends_with(
            "; report-uri https://p.example/api/1/security/?sentry_key=k; report-to palisade"
        ));
        assert_eq!(
            reporting.headers()["reporting-endpoints"],
            "palisade=\"https://p.example/api/1/security/?sentry_key=k\""
        );

        // Plain http: report-uri only (report-to would silence it in Chromium).
        let uri = url::Url::parse("http://127.0.0.1:9/api/1/security/?sentry_key=k").unwrap();
        let plain_http = UiHeaders::new(Some(&uri)).respond(index());
        let csp = plain_http.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert_eq!(
            csp,
            format!("{BASE_CSP}; report-uri http://127.0.0.1:9/api/1/security/?sentry_key=k")
        );
        assert!(!plain_http.headers().contains_key("reporting-endpoints"));
    }

    #[test]
    fn every_asset_is_served_with_its_type() {
        assert!(asset("app.js")
            .unwrap()
            .content_type
            .starts_with("text/javascript"));
        assert!(asset("../Cargo.toml").is_none());
        assert!(asset("").is_none());
        let page = std::str::from_utf8(index().body).unwrap();
        // The page loads every other asset, and only by relative path ('self').
        for other in &ASSETS[1..] {
            let linked = page.contains(&format!("\"{}\"", other.name))
                || std::str::from_utf8(asset("app.js").unwrap().body)
                    .unwrap()
                    .contains(&format!("'./{}'", other.name));
            assert!(linked, "{} is not used", other.name);
        }
        assert!(!page.contains("http://") && !page.contains("https://"));
    }

    #[test]
    fn openapi_lists_exactly_these_assets() {
        let document: serde_json::Value =
            serde_json::from_str(include_str!("../openapi.json")).unwrap();
        let documented: Vec<&str> = document["paths"]["/ui/{asset}"]["get"]["parameters"][0]
            ["schema"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|name| name.as_str().unwrap())
            .collect();
        let served: Vec<&str> = ASSETS.iter().map(|asset| asset.name).collect();
        assert_eq!(documented, served);
    }
}
