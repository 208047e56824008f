//! Test harness for real servers (filled in by the testbed work).
