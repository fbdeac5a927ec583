//! Validation of the built-in kinds (being written).
