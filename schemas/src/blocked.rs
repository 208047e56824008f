//! Blocked-URI normalisation and classification.
