//! Every named SQL statement prepares against the migrated schema, so a typo
//! or a renamed column fails here rather than in production.

use hookline::db::{deliveries, endpoints, workers};

use crate::support::db::TestDb;

#[tokio::test]
async fn every_named_statement_prepares() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let statements = [
        ("DELIVERY_CLAIM_DUE", deliveries::DELIVERY_CLAIM_DUE),
        ("DELIVERY_COMPLETE_MANY", deliveries::DELIVERY_COMPLETE_MANY),
        ("DELIVERY_RELEASE", deliveries::DELIVERY_RELEASE),
        ("DELIVERY_SECONDS_UNTIL_NEXT_DUE", deliveries::DELIVERY_SECONDS_UNTIL_NEXT_DUE),
        ("ENDPOINT_DISABLE", endpoints::ENDPOINT_DISABLE),
        ("ENDPOINT_INSERT_MINIMAL", endpoints::ENDPOINT_INSERT_MINIMAL),
        ("ENDPOINT_FIND_BY_DESCRIPTION", endpoints::ENDPOINT_FIND_BY_DESCRIPTION),
        ("ENDPOINT_SET_URL", endpoints::ENDPOINT_SET_URL),
        ("IDLE_WORKER_REGISTER", workers::IDLE_WORKER_REGISTER),
        ("IDLE_WORKER_DEREGISTER", workers::IDLE_WORKER_DEREGISTER),
        ("IDLE_WORKER_FORGET_STALE", workers::IDLE_WORKER_FORGET_STALE),
    ];
    for (name, sql) in statements {
        if let Err(error) = client.prepare(sql).await {
            panic!("{name} does not prepare: {error}");
        }
    }
}

#[tokio::test]
async fn the_claim_reads_the_due_index() {
    let db = TestDb::new().await;
    let client = db.client().await;
    // With an empty table the planner would scan anyway; make the index worth it.
    client.batch_execute("SET enable_seqscan = off").await.unwrap();
    let sql = deliveries::DELIVERY_CLAIM_DUE.replace("$1", "10").replace("$2", "gen_random_uuid()").replace("$3", "60");
    let plan: Vec<String> =
        client.query(&format!("EXPLAIN {sql}"), &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
    assert!(plan.iter().any(|line| line.contains("delivery_queue_due")), "claim plan:\n{}", plan.join("\n"));
}
