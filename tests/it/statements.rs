//! Every named SQL statement prepares against the migrated schema, so a typo
//! or a renamed column fails here rather than in production.

use hookline::db::{dashboard, deliveries, endpoints, metrics, portal, sources, stats, tokens, ui_sessions, workers};

use crate::support::explain::Explaining;
use crate::support::{NewEndpoint, db::TestDb};

#[tokio::test]
async fn every_named_statement_prepares() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let statements = [
        ("DELIVERY_CLAIM", deliveries::DELIVERY_CLAIM),
        ("DELIVERY_CLAIM_LIMITED", deliveries::DELIVERY_CLAIM_LIMITED),
        ("DELIVERY_COMPLETE", deliveries::DELIVERY_COMPLETE),
        ("DELIVERY_RELEASE", deliveries::DELIVERY_RELEASE),
        ("DELIVERY_RELEASE_HELD", deliveries::DELIVERY_RELEASE_HELD),
        ("ROLLUP_FOLD", hookline::db::rollups::ROLLUP_FOLD),
        ("ENDPOINT_DISABLE", endpoints::ENDPOINT_DISABLE),
        ("ENDPOINT_INSERT_MINIMAL", endpoints::ENDPOINT_INSERT_MINIMAL),
        ("ENDPOINT_FIND_BY_DESCRIPTION", endpoints::ENDPOINT_FIND_BY_DESCRIPTION),
        ("ENDPOINT_SET_URL", endpoints::ENDPOINT_SET_URL),
        ("IDLE_WORKER_REGISTER", workers::IDLE_WORKER_REGISTER),
        ("IDLE_WORKER_DEREGISTER", workers::IDLE_WORKER_DEREGISTER),
        ("IDLE_WORKER_FORGET_STALE", workers::IDLE_WORKER_FORGET_STALE),
        ("METRICS_DELIVERIES_24H", metrics::METRICS_DELIVERIES_24H),
        ("METRICS_CIRCUITS", metrics::METRICS_CIRCUITS),
        ("SOURCE_INSERT", sources::SOURCE_INSERT),
        ("SOURCE_GET", sources::SOURCE_GET),
        ("SOURCE_GET_FOR_UPDATE", sources::SOURCE_GET_FOR_UPDATE),
        ("SOURCE_BY_NAME", sources::SOURCE_BY_NAME),
        ("SOURCE_LIST_PAGE", sources::SOURCE_LIST_PAGE),
        ("SOURCE_UPDATE", sources::SOURCE_UPDATE),
        ("SOURCE_DELETE", sources::SOURCE_DELETE),
        ("SOURCE_ADD_COUNTS", sources::SOURCE_ADD_COUNTS),
        ("SOURCE_COUNTS", sources::SOURCE_COUNTS),
        ("STATS_QUEUE", stats::STATS_QUEUE),
        ("STATS_QUEUE_OF_TENANT", stats::STATS_QUEUE_OF_TENANT),
        ("STATS_TOTALS", stats::STATS_TOTALS),
        ("STATS_TOTALS_OF_TENANT", stats::STATS_TOTALS_OF_TENANT),
        ("TOKEN_LIST_PAGE", tokens::TOKEN_LIST_PAGE),
        ("DELIVERY_REQUEUE", deliveries::DELIVERY_REQUEUE),
        ("DELIVERY_CANCEL", deliveries::DELIVERY_CANCEL),
        ("DEAD_LETTER_COUNT_MATCHING", deliveries::DEAD_LETTER_COUNT_MATCHING),
        ("DASHBOARD_HOURS", dashboard::DASHBOARD_HOURS),
        ("DASHBOARD_LATENCY", dashboard::DASHBOARD_LATENCY),
        ("DASHBOARD_CIRCUITS", dashboard::DASHBOARD_CIRCUITS),
        ("DASHBOARD_INBOUND", dashboard::DASHBOARD_INBOUND),
        ("DASHBOARD_ENDPOINTS", dashboard::DASHBOARD_ENDPOINTS),
        ("DASHBOARD_ENDPOINT_RATES", dashboard::DASHBOARD_ENDPOINT_RATES),
        ("SESSION_INSERT", ui_sessions::SESSION_INSERT),
        ("SESSION_TOKEN", ui_sessions::SESSION_TOKEN),
        ("SESSION_TOUCH", ui_sessions::SESSION_TOUCH),
        ("SESSION_DELETE", ui_sessions::SESSION_DELETE),
        ("SESSION_DELETE_EXPIRED", ui_sessions::SESSION_DELETE_EXPIRED),
        ("LINK_INSERT", portal::LINK_INSERT),
        ("LINK_EXCHANGE", portal::LINK_EXCHANGE),
        ("LINK_DELETE", portal::LINK_DELETE),
        ("LINK_DELETE_EXPIRED", portal::LINK_DELETE_EXPIRED),
        ("PORTAL_SESSION_INSERT", portal::SESSION_INSERT),
        ("PORTAL_SESSION_LINK", portal::SESSION_LINK),
    ];
    for (name, sql) in statements {
        if let Err(error) = client.prepare(sql).await {
            panic!("{name} does not prepare: {error}");
        }
    }
}

/// The claim is one statement: auto_explain reports its plan (and those of
/// the functions it calls) as notices.
#[tokio::test]
async fn the_claim_reads_the_due_index() {
    let db = TestDb::new().await;
    NewEndpoint::default().insert(&db).await;
    db.client().await.execute("SELECT hookline.send('a.b', '{}')", &[]).await.unwrap();
    let explaining = Explaining::connect(&db).await;
    let client = &explaining.client;
    client.batch_execute("SET enable_seqscan = off").await.unwrap(); // a tiny table would be scanned anyway
    let none: Vec<uuid::Uuid> = vec![];
    let rows = client
        .query(
            deliveries::DELIVERY_CLAIM,
            &[
                &uuid::Uuid::now_v7(),
                &10i32,
                &10i32,
                &60.0f64,
                &10i32,
                &none,
                &Vec::<i32>::new(),
                &none,
                &None::<chrono::DateTime<chrono::Utc>>,
                &None::<bool>,
            ],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 2, "one claimed, and the summary row");
    let plans = explaining.plans().await;
    assert!(plans.contains("delivery_queue_due"), "claim plans:\n{plans}");
}
