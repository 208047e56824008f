//! How every binary renders an error for a log line or an answer's detail: the message and its
//! `#[source]` chain, `a: b: c`. Pure `std`, so it lives in the one crate they all share.

/// `error`'s message followed by each of its sources, joined by `": "`.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Middle);

    #[derive(Debug, thiserror::Error)]
    #[error("middle")]
    struct Middle(#[source] std::io::Error);

    #[test]
    fn every_source_is_joined_in_order() {
        let inner = std::io::Error::other("inner");
        assert_eq!(error_chain(&Outer(Middle(inner))), "outer: middle: inner");
        assert_eq!(error_chain(&std::io::Error::other("alone")), "alone");
    }
}
