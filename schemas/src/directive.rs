//! CSP directive names: the known set and effective-directive derivation.
