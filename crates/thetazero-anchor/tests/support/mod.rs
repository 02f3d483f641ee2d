//! Shared helpers for the integration tests. Must not be used by the crate
//! itself.

pub mod test_witness;
