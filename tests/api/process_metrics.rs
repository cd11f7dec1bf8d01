//! What an SRE reads about the process itself at `/metrics` (DESIGN §11): `process_*` from the
//! prometheus crate's process collector, and `build_info{version,git_sha}`.

use crate::helpers::{sample, spawn_app};

#[tokio::test]
async fn metrics_show_the_process_and_the_build() {
    let app = spawn_app().await;
    let page = app.metrics_page().await;
    // the test binary is the process: it holds memory, files and CPU time
    for family in [
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ] {
        assert!(
            sample(&page, family) > 0,
            "{family} missing or zero:\n{page}"
        );
    }
    assert!(page.contains("\nprocess_cpu_seconds_total "), "{page}");
    let build = page
        .lines()
        .find(|l| l.starts_with("build_info{"))
        .expect("build_info");
    assert!(
        build.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))),
        "{build}"
    );
    assert!(build.contains("git_sha=\""), "{build}");
    assert!(build.ends_with(" 1"), "{build}");
}
