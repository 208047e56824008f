//! The process-wide Prometheus recorder of a test binary.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// The handle of the one global recorder of this test binary, installed on first use (the
/// `metrics` macros report to one global recorder per process, so every service started
/// in-process shares it).
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder)
                .expect("only this OnceLock installs a recorder in a test binary");
            handle
        })
        .clone()
}
