//! Health reporting and graceful shutdown.

use std::time::Duration;

use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::helpers::{spawn_app, spawn_app_with_grace};

const SERVICES: [&str; 4] = [
    "",
    "partnership.v1.RegistryService",
    "partnership.v1.SubmissionService",
    "partnership.v1.ReportService",
];

backend_test! {
async fn every_service_is_serving_once_started() {
    let app = spawn_app().await;
    let mut health = HealthClient::new(app.channel.clone());
    for service in SERVICES {
        let status =
            health.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner().status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }
    let err = health.check(HealthCheckRequest { service: "nope.Service".into() }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
}
}

backend_test! {
async fn shutdown_reports_not_serving_then_stops() {
    let mut app = spawn_app_with_grace(Duration::from_secs(1)).await;
    let mut health = HealthClient::new(app.channel.clone());
    let mut watch = health
        .watch(HealthCheckRequest { service: "partnership.v1.RegistryService".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(watch.message().await.unwrap().unwrap().status, ServingStatus::Serving as i32);
    // The open Watch stream is an in-flight call: the server must not wait for it past
    // the grace period, and must tell it NOT_SERVING before closing.
    let stopped = tokio::spawn(async move { app.shutdown().await });
    let next = tokio::time::timeout(Duration::from_secs(5), watch.message()).await.expect("watch answers");
    assert_eq!(next.unwrap().unwrap().status, ServingStatus::NotServing as i32);
    tokio::time::timeout(Duration::from_secs(10), stopped)
        .await
        .expect("server stops within the grace period")
        .unwrap()
        .unwrap();
}
}
