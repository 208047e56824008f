//! Certificate failure reports: Expect-CT (RFC 9163), HPKP (RFC 7469) and Expect-Staple.
//!
//! All three are dead in current browsers, but old clients, replays and the seed documents
//! use them. Their keys are kebab-case; `hostname` is required (it is the only thing that
//! says which site failed).

use super::fields::Fields;
use super::json::Members;
use crate::parse::{ParsedReport, ReportError};
use crate::report::{CertificateDetails, Details, ReportKind, WireFormat};

/// Parses the object holding the certificate keys (the wrapped value for Expect-CT and
/// Expect-Staple, the whole body for HPKP).
pub(crate) fn parse<'v>(
    object: Members<'_, 'v>,
    kind: ReportKind,
    wire: WireFormat,
) -> Result<ParsedReport<'v>, ReportError> {
    let mut fields = Fields::new(object);
    let hostname = match fields.raw(&["hostname"]) {
        None => return Err(ReportError::MissingField("hostname")),
        Some(value) => match value.as_str().map(str::trim) {
            Some("") => return Err(ReportError::MissingField("hostname")),
            Some(host) => host.to_owned(),
            None => return Err(ReportError::WrongType("hostname")),
        },
    };
    let details = CertificateDetails {
        hostname,
        port: fields.u16(&["port"]),
        date_time: fields.string(&["datetime"]),
        effective_expiration_date: fields.string(&["effectiveexpirationdate"]),
        include_subdomains: fields.bool(&["includesubdomains"]),
        noted_hostname: fields.string(&["notedhostname"]),
        served_certificate_chain: fields
            .strings(&["servedcertificatechain"])
            .unwrap_or_default(),
        validated_certificate_chain: fields
            .strings(&["validatedcertificatechain"])
            .unwrap_or_default(),
        known_pins: fields.strings(&["knownpins"]).unwrap_or_default(),
        scts: fields.values(&["scts"]).unwrap_or_default(),
        response_status: fields.string(&["responsestatus"]),
        cert_status: fields.string(&["certstatus"]),
    };
    let mut report = ParsedReport::blank(kind, wire);
    report.details = Details::Certificate(details);
    report.extra.absorb(fields.into_map());
    Ok(report)
}
