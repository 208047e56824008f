//! Sample report bodies of every kind a browser sends, as posted to ingest by ingest's Kafka
//! test and the end-to-end pipeline test (one set, so both check the same inputs).

/// A legacy `report-uri` CSP report with a query, a fragment and a referrer (privacy stripping).
pub const LEGACY_WRAPPED: &str = r#"{"csp-report":{
    "document-uri":"https://shop.example/cart?session=secret#top",
    "referrer":"https://search.example/?q=shoes",
    "blocked-uri":"https://evil.example/x.js?id=1",
    "violated-directive":"script-src-elem",
    "effective-directive":"script-src-elem",
    "original-policy":"script-src 'self'; report-uri /csp",
    "disposition":"enforce","status-code":200,
    "source-file":"https://shop.example/app.js?v=3","line-number":10,"column-number":5}}"#;

/// Old WebKit / proxies: the legacy keys without the wrapper object.
pub const LEGACY_UNWRAPPED: &str = r#"{"document-uri":"https://shop.example/unwrapped",
    "blocked-uri":"inline","violated-directive":"style-src"}"#;

/// One Reporting API batch with every type Chromium sends, plus one we do not know.
pub const BATCH: &str = r#"[
 {"type":"csp-violation","age":10,"url":"https://shop.example/b","user_agent":"UA/1",
  "body":{"documentURL":"https://shop.example/b","blockedURL":"https://cdn.other.example/lib.js",
          "effectiveDirective":"script-src-elem","originalPolicy":"script-src 'self'",
          "disposition":"report","statusCode":200}},
 {"type":"network-error","age":0,"url":"https://api.shop.example/v1?token=abc","user_agent":"UA/1",
  "body":{"elapsed_time":45,"method":"GET","phase":"connection","protocol":"http/1.1",
          "referrer":"https://shop.example/","sampling_fraction":1.0,"server_ip":"192.0.2.1",
          "status_code":0,"type":"tcp.timed_out"}},
 {"type":"deprecation","age":1,"url":"https://shop.example/d","user_agent":"UA/1",
  "body":{"id":"WebSQL","anticipatedRemoval":"2024-01-01","message":"WebSQL is deprecated",
          "sourceFile":"https://shop.example/d.js","lineNumber":1,"columnNumber":2}},
 {"type":"intervention","age":1,"url":"https://shop.example/i","user_agent":"UA/1",
  "body":{"id":"HeavyAdIntervention","message":"Ad removed"}},
 {"type":"crash","age":1,"url":"https://shop.example/c","user_agent":"UA/1",
  "body":{"reason":"oom","is_top_level":true,"visibility_state":"visible"}},
 {"type":"coep","age":1,"url":"https://shop.example/e","user_agent":"UA/1",
  "body":{"type":"corp","blockedURL":"https://third.example/i.png","destination":"image",
          "disposition":"enforce"}},
 {"type":"coop","age":1,"url":"https://shop.example/o","user_agent":"UA/1",
  "body":{"disposition":"enforce","effectivePolicy":"same-origin",
          "type":"navigation-from-response","previousResponseURL":"https://x.example/"}},
 {"type":"permissions-policy-violation","age":1,"url":"https://shop.example/p","user_agent":"UA/1",
  "body":{"policyId":"camera","sourceFile":"https://shop.example/p.js","lineNumber":3,
          "columnNumber":4,"disposition":"enforce"}},
 {"type":"integrity-violation","age":1,"url":"https://shop.example/s","user_agent":"UA/1",
  "body":{"documentURL":"https://shop.example/s","blockedURL":"https://cdn.example/x.js",
          "destination":"script","reportOnly":true}},
 {"type":"test","age":1,"url":"https://shop.example/t","user_agent":"UA/1",
  "body":{"message":"hello"}},
 {"type":"future-thing","age":1,"url":"https://shop.example/f","user_agent":"UA/1",
  "body":{"answer":42}},
 {"type":"csp-violation","age":1,"url":"https://shop.example/n","user_agent":"UA/1",
  "body":{"documentURL":"https://shop.example/n","blockedURL":"chrome-extension://abc/x.js",
          "effectiveDirective":"script-src-elem"}}
]"#;

/// Safari 16.4+: one Reporting API object, under the legacy content type.
pub const SAFARI_SINGLE: &str = r#"{"type":"csp-violation","url":"https://shop.example/safari",
  "body":{"documentURL":"https://shop.example/safari","blockedURL":"eval",
          "effectiveDirective":"script-src","disposition":"enforce",
          "originalPolicy":"script-src 'self'"}}"#;

pub const EXPECT_CT: &str = r#"{"expect-ct-report":{"date-time":"2019-01-01T00:00:00Z",
  "hostname":"shop.example","port":443,"effective-expiration-date":"2019-06-01T00:00:00Z",
  "served-certificate-chain":["-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"],
  "validated-certificate-chain":[],
  "scts":[{"version":1,"status":"invalid","source":"tls-extension","serialized_sct":"AAAA"}]}}"#;

pub const HPKP: &str = r#"{"date-time":"2019-01-01T00:00:00Z","hostname":"shop.example","port":443,
  "effective-expiration-date":"2019-06-01T00:00:00Z","include-subdomains":false,
  "noted-hostname":"shop.example","served-certificate-chain":[],"validated-certificate-chain":[],
  "known-pins":["pin-sha256=\"d6qzRu9zOECb90Uez27xWltNsj0e1Md7GkYYkVoZWmM=\""]}"#;

pub const EXPECT_STAPLE: &str = r#"{"expect-staple-report":{"date-time":"2019-01-01T00:00:00Z",
  "hostname":"shop.example","port":443,"response-status":"ERROR_RESPONSE","cert-status":"REVOKED",
  "served-certificate-chain":[],"validated-certificate-chain":[]}}"#;

pub const XSS: &str = r#"{"xss-report":{"request-url":"https://shop.example/search?q=%3Cscript%3E",
  "request-body":""}}"#;

/// A legacy CSP report with credentials, tokens and fragments in all four URL fields (ingest's
/// default privacy must remove every one of [`SECRETS`]).
pub const WITH_SECRETS_LEGACY: &str = r#"{"csp-report":{
    "document-uri":"https://alice:hunter2@shop.example/cart?session=SECRET1#frag1",
    "referrer":"https://bob:pw2@search.example/?q=SECRET2",
    "blocked-uri":"https://carol:pw3@evil.example/x.js?id=SECRET3#frag3",
    "violated-directive":"script-src-elem",
    "source-file":"https://dave:pw4@shop.example/app.js?v=SECRET4","line-number":1}}"#;

/// Reporting API items with credentials, tokens and fragments in the envelope URL, the body
/// and the kind-specific fields; plus a free-text field with a `?` that must stay.
pub const WITH_SECRETS_BATCH: &str = r#"[
 {"type":"network-error","age":0,"url":"https://eve:pw5@api.shop.example/v1?token=SECRET5",
  "user_agent":"UA/1","body":{"elapsed_time":45,"method":"GET","phase":"connection",
  "protocol":"http/1.1","referrer":"https://frank:pw6@shop.example/?SECRET6#frag6",
  "sampling_fraction":1.0,"server_ip":"192.0.2.1","status_code":0,"type":"tcp.timed_out"}},
 {"type":"coop","age":1,"url":"https://gina:pw7@shop.example/o?SECRET7","user_agent":"UA/1",
  "body":{"disposition":"enforce","effectivePolicy":"same-origin","type":"navigation-from-response",
  "previousResponseURL":"https://hank:pw8@x.example/?SECRET8#frag8"}},
 {"type":"future-thing","age":1,"url":"https://shop.example/f","user_agent":"UA/1",
  "body":{"where":"wss://ivan:pw9@ws.example/s?SECRET9","note":"free text? kept"}}
]"#;

/// What [`WITH_SECRETS_LEGACY`] and [`WITH_SECRETS_BATCH`] hide: none may be stored.
pub const SECRETS: [&str; 12] = [
    "hunter2", "alice", "pw2", "pw3", "pw4", "pw5", "pw6", "pw7", "pw8", "pw9", "SECRET", "frag",
];

/// The document URLs of those four reports once stripped, sorted.
pub const WITH_SECRETS_DOCUMENTS: [&str; 4] = [
    "https://api.shop.example/v1",
    "https://shop.example/cart",
    "https://shop.example/f",
    "https://shop.example/o",
];
