//! Rules of the ClickHouse DDL in `sql/` that its users share.

/// A bare ClickHouse identifier (`[A-Za-z_][A-Za-z0-9_]*`): the only database, table or cluster
/// names the processor, the API and the tools splice into SQL text.
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        assert!(is_identifier("palisade"));
        assert!(is_identifier("_test_1"));
        assert!(!is_identifier("1abc"));
        assert!(!is_identifier("a; DROP DATABASE b"));
        assert!(!is_identifier("db-name"));
        assert!(!is_identifier(""));
    }
}
