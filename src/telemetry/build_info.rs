//! What this binary is: its version and the commit it was built from (`build.rs`), as the
//! `build_info` metric and the trace resource name them.

/// The crate's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The commit this binary was built from.
pub const GIT_SHA: &str = env!("ORDER_SERVICE_GIT_SHA");
