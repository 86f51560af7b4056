//! The README's pictures of the dashboard, taken by the headless browser the
//! tests use: `just screenshots` (an ignored test, so not part of the suite).

use serde_json::json;

use crate::support::api::TestApi;
use crate::support::browser::{sign_in, wait_for_text, with_browser};
use crate::support::db::TestDb;

/// A day of history for three endpoints, written straight into the hourly
/// rollups (as if a day of deliveries had happened), and their state now.
const HISTORY: &str = "
INSERT INTO hookline.endpoint_hourly (endpoint_id, hour, succeeded, dead, cancelled, attempts, failed_attempts, latency)
SELECT ep.id, h.hour,
       (600 + 400 * sin(extract(hour FROM h.hour) / 3.8) + 90 * n.i)::bigint,
       CASE WHEN n.i = 2 AND extract(hour FROM h.hour)::int % 5 = 0 THEN 40 ELSE 0 END,
       (n.i = 1 AND extract(hour FROM h.hour)::int % 7 = 0)::int * 3,
       700 + 90 * n.i, CASE WHEN n.i = 2 THEN 60 ELSE 4 END,
       hookline.latency_histogram(array[35, 42, 48, 51, 60, 75, 90, 130, 220, 480])
  FROM generate_series(date_trunc('hour', now() - interval '23 hours', 'UTC'), date_trunc('hour', now(), 'UTC'),
                       interval '1 hour') AS h(hour),
       (SELECT id, row_number() OVER (ORDER BY id) - 1 AS i FROM hookline.endpoints) AS n
  JOIN hookline.endpoints AS ep ON ep.id = n.id";

#[tokio::test]
#[ignore = "writes docs/*.png: run with `just screenshots`"]
async fn take_screenshots() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    for (url, description, types) in [
        ("https://billing.example.com/webhooks", "Billing service", json!(["invoice.*"])),
        ("https://crm.example.net/hooks/hookline", "CRM sync", json!(["customer.created", "customer.updated"])),
        ("https://legacy.example.org/notify", "Legacy notifier", json!([])),
    ] {
        let created =
            api.post("/v1/endpoints", json!({"url": url, "description": description, "event_types": types})).await;
        assert_eq!(created.status, 201, "{created:?}");
    }
    db.client().await.batch_execute(HISTORY).await.unwrap();
    let endpoints = api.get("/v1/endpoints").await;
    let billing = endpoints.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["description"] == "Billing service")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    for name in ["invoice.created", "invoice.paid", "invoice.refunded", "customer.updated"] {
        api.post("/v1/event-types", json!({"name": name})).await;
    }
    let portal = api
        .post(
            "/v1/portal/sessions",
            json!({"capabilities": ["manage_endpoints", "reveal_secrets", "replay"],
                   "branding": {"product_name": "Acme Billing", "accent_color": "#7048e8"}}),
        )
        .await;
    let portal_url = portal.body["url"].as_str().unwrap().to_owned();
    let (base, admin) = (api.base.clone(), api.admin.clone());
    let docs = concat!(env!("CARGO_MANIFEST_DIR"), "/docs");
    with_browser(move |browser| async move {
        browser.set_window_size(1280, 900).await.unwrap();
        sign_in(&browser, &base, &admin).await;
        std::fs::create_dir_all(docs).unwrap();
        std::fs::write(format!("{docs}/dashboard-overview.png"), browser.screenshot().await.unwrap()).unwrap();
        browser.set_window_size(390, 844).await.unwrap();
        browser.goto(&format!("{base}/ui/endpoints/{billing}")).await.unwrap();
        wait_for_text(&browser, "h2", "Settings").await;
        std::fs::write(format!("{docs}/dashboard-phone.png"), browser.screenshot().await.unwrap()).unwrap();
        browser.set_window_size(1280, 900).await.unwrap();
        browser.goto(&format!("{base}/ui/endpoints/{billing}")).await.unwrap();
        wait_for_text(&browser, "h2", "Settings").await;
        std::fs::write(format!("{docs}/dashboard-endpoint.png"), browser.screenshot().await.unwrap()).unwrap();
        browser.goto(&portal_url).await.unwrap();
        wait_for_text(&browser, "#portal", "Billing service").await;
        browser
            .find(fantoccini::Locator::LinkText("https://billing.example.com/webhooks"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_for_text(&browser, "h2", "Recent deliveries").await;
        std::fs::write(format!("{docs}/portal-endpoint.png"), browser.screenshot().await.unwrap()).unwrap();
    })
    .await;
}
