//! Representative request bodies, from the schemas fixtures and corpus shipped in the repository.

/// A legacy `report-uri` CSP report from Chrome (the most common body on the wire).
pub const LEGACY_CSP: &str = r#"{"csp-report":{"document-uri":"https://shop.example.com/checkout?step=2","referrer":"https://shop.example.com/cart","violated-directive":"script-src-elem","effective-directive":"script-src-elem","original-policy":"default-src 'self'; script-src 'self' https://cdn.example.com; report-uri /api/1/security/?sentry_key=k","disposition":"enforce","blocked-uri":"https://tracker.example.net/t.js","status-code":200,"script-sample":""}}"#;

/// A Reporting API batch as Chromium uploads it (`application/reports+json`).
pub const REPORTING_BATCH: &str = r#"[{"age":12,"body":{"blockedURL":"https://ads.example.org/pixel.gif","disposition":"enforce","documentURL":"https://shop.example.com/","effectiveDirective":"img-src","originalPolicy":"default-src 'self'; report-to default","referrer":"","sample":"","statusCode":200},"type":"csp-violation","url":"https://shop.example.com/","user_agent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"},{"age":40,"body":{"blockedURL":"inline","disposition":"report","documentURL":"https://shop.example.com/","effectiveDirective":"script-src-elem","lineNumber":14,"columnNumber":9,"originalPolicy":"script-src 'self'; report-to default","sample":"console.log(1)","sourceFile":"https://shop.example.com/","statusCode":200},"type":"csp-violation","url":"https://shop.example.com/","user_agent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"},{"age":5000,"body":{"elapsed_time":48,"method":"GET","phase":"connection","protocol":"http/1.1","referrer":"","sampling_fraction":1.0,"server_ip":"203.0.113.7","status_code":0,"type":"tcp.timed_out"},"type":"network-error","url":"https://api.example.com/v1/items","user_agent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"}]"#;

/// Every sample, named, for benchmarks that iterate over shapes.
pub const ALL: &[(&str, &str)] = &[
    ("legacy_csp", LEGACY_CSP),
    ("reporting_batch", REPORTING_BATCH),
];
