//! Queries (filled in below).
