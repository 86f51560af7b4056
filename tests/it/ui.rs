//! The operator dashboard (`/ui`): in a real headless Chromium for what a
//! person does, over plain HTTP for what a browser would refuse to send.

use std::time::Duration;

use fantoccini::Locator;
use serde_json::{Value, json};

use crate::support::api::TestApi;
use crate::support::browser::{UiSession, sign_in, wait_for_text, with_browser};
use crate::support::db::TestDb;
use crate::support::eventually;
use crate::support::receiver::{Reply, TestReceiver};
use crate::support::worker::{RunningWorker, test_settings};

const WAIT: Duration = Duration::from_secs(15);

/// What a hostile receiver answers: markup that would run if shown as HTML.
const HOSTILE_BODY: &str = "<script>document.title='pwned'</script><img src=x onerror=\"document.title='pwned'\">";

/// An endpoint at `receiver`, one event sent to it, and (with a worker)
/// that delivery dead after the test retry schedule.
async fn dead_delivery(api: &TestApi, receiver: &TestReceiver) -> (String, String) {
    let endpoint = api
        .post(
            "/v1/endpoints",
            json!({"url": receiver.url, "description": "orders", "headers": {"x-api-key": "k-secret-123"}}),
        )
        .await;
    assert_eq!(endpoint.status, 201, "{endpoint:?}");
    let endpoint_id = endpoint.body["id"].as_str().unwrap().to_owned();
    api.post("/v1/events", json!({"event_type": "order.created", "payload": {"order": 1}})).await;
    let delivery = eventually(WAIT, "the delivery to die", || async {
        let dead = api.get(&format!("/v1/dead-letters?endpoint_id={endpoint_id}")).await;
        dead.body["data"][0]["id"].as_str().map(str::to_owned)
    })
    .await;
    (endpoint_id, delivery)
}

#[tokio::test]
async fn an_operator_signs_in_and_finds_a_failing_endpoints_deliveries_with_the_response_shown_as_text() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    let receiver = TestReceiver::start().await;
    receiver.always(Reply::status(500).header("content-type", "text/html").body(HOSTILE_BODY));
    let worker = RunningWorker::start(&db, test_settings()).await;
    let (endpoint_id, delivery_id) = dead_delivery(&api, &receiver).await;
    worker.stop().await;

    let (base, admin, url) = (api.base.clone(), api.admin.clone(), receiver.url.clone());
    with_browser(move |browser| async move {
        sign_in(&browser, &base, &admin).await;
        browser.goto(&format!("{base}/ui/endpoints?health=failing")).await.unwrap();
        wait_for_text(&browser, "#endpoints a", &url).await;
        browser.find(Locator::Css("#endpoints a")).await.unwrap().click().await.unwrap();
        wait_for_text(&browser, "h2", "Recent deliveries").await;
        let last_day = wait_for_text(&browser, ".card", "Last 24 hours").await;
        assert!(last_day.contains("Dead\n1"), "{last_day}");
        let link = format!("a[href='/ui/deliveries/{delivery_id}']");
        browser.find(Locator::Css(&link)).await.expect("the dead delivery is listed").click().await.unwrap();
        wait_for_text(&browser, "h2", "Attempts").await;
        // The receiver's markup is shown as the text it is, and never ran.
        let shown = wait_for_text(&browser, "details.attempt pre", "<script>").await;
        assert!(shown.contains(HOSTILE_BODY), "{shown}");
        assert_ne!(browser.title().await.unwrap(), "pwned");
        let scripts = browser.execute("return document.querySelectorAll('main script, main img').length", vec![]).await;
        assert_eq!(scripts.unwrap(), json!(0));
        assert!(browser.current_url().await.unwrap().as_str().ends_with(&delivery_id));
        let request = wait_for_text(&browser, "details.attempt table.headers", "webhook-id").await;
        assert!(request.contains("x-api-key") && request.contains("********"), "{request}");
        assert!(!browser.source().await.unwrap().contains("k-secret-123"), "a custom header's value is a secret");
        let endpoint_link = format!("a[href='/ui/endpoints/{endpoint_id}']");
        assert!(browser.find(Locator::Css(&endpoint_link)).await.is_ok(), "the delivery links its endpoint");
    })
    .await;
}

#[tokio::test]
async fn replaying_a_dead_letter_from_the_page_delivers_it() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    let receiver = TestReceiver::start().await;
    receiver.script([Reply::status(503), Reply::status(503), Reply::status(503)]);
    let worker = RunningWorker::start(&db, test_settings()).await;
    let (_, delivery_id) = dead_delivery(&api, &receiver).await;

    let (base, admin) = (api.base.clone(), api.admin.clone());
    with_browser(move |browser| async move {
        sign_in(&browser, &base, &admin).await;
        browser.goto(&format!("{base}/ui/dead-letters")).await.unwrap();
        let replay = format!("form[action='/ui/dead-letters/{delivery_id}/replay'] button");
        browser.wait().for_element(Locator::Css(&replay)).await.unwrap().click().await.unwrap();
        wait_for_text(&browser, ".notice", "queued again").await;
    })
    .await;

    let received = receiver.wait_for(4, WAIT).await;
    assert_eq!(received[3].json()["data"], json!({"order": 1}));
    let delivered = eventually(WAIT, "the replayed delivery to succeed", || async {
        let dead = api.get("/v1/deliveries?state=succeeded").await;
        (dead.body["data"].as_array().is_some_and(|d| d.len() == 1)).then_some(dead)
    })
    .await;
    assert_eq!(delivered.body["data"][0]["attempts"], 4);
    let audit = api.get("/v1/audit-log").await;
    let actions: Vec<&str> =
        audit.body["data"].as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    assert!(actions.contains(&"dead_letter.replay"), "{actions:?}");
    assert!(actions.contains(&"ui.sign_in"), "{actions:?}");
    worker.stop().await;
}

#[tokio::test]
async fn a_read_token_sees_no_change_buttons_and_its_forged_posts_are_refused() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    let receiver = TestReceiver::start().await;
    receiver.always(Reply::status(500));
    let worker = RunningWorker::start(&db, test_settings()).await;
    let (endpoint_id, delivery_id) = dead_delivery(&api, &receiver).await;
    worker.stop().await;
    let reader = TestApi::token(&db, "reader", "read", None).await;

    let (base, token, dead) = (api.base.clone(), reader.clone(), delivery_id.clone());
    with_browser(move |browser| async move {
        sign_in(&browser, &base, &token).await;
        browser.goto(&format!("{base}/ui/dead-letters")).await.unwrap();
        wait_for_text(&browser, "table", "order.created").await;
        let buttons = browser.find_all(Locator::Css("main form[method='post']")).await.unwrap();
        assert!(buttons.is_empty(), "a read token gets no forms that change anything");
        browser.goto(&format!("{base}/ui/deliveries/{dead}")).await.unwrap();
        wait_for_text(&browser, "h2", "Attempts").await;
        assert!(browser.find_all(Locator::Css("main form[method='post']")).await.unwrap().is_empty());
    })
    .await;

    // Forged: the reader's own session and CSRF token, posting what its page did not offer.
    let session = UiSession::sign_in(&api.base, &reader).await;
    let replay = session.post(&format!("/ui/dead-letters/{delivery_id}/replay"), &[]).await;
    assert_eq!(replay.status, 403, "{}", replay.body);
    assert!(replay.body.contains("scope `write`"), "{}", replay.body);
    let disable = session.post(&format!("/ui/endpoints/{endpoint_id}/disable"), &[]).await;
    assert_eq!(disable.status, 403);
    let still = api.get(&format!("/v1/deliveries/{delivery_id}")).await;
    assert_eq!(still.body["state"], "dead");
    assert_eq!(api.get(&format!("/v1/endpoints/{endpoint_id}")).await.body["enabled"], true);
}

#[tokio::test]
async fn a_change_without_the_sessions_csrf_token_or_from_another_origin_is_refused() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    let endpoint = api.post("/v1/endpoints", json!({"url": "https://example.com/hook"})).await;
    let id = endpoint.body["id"].as_str().unwrap();
    let session = UiSession::sign_in(&api.base, &api.admin).await;
    let path = format!("/ui/endpoints/{id}/disable");

    let missing = session.post_raw(&path, &[], &[]).await;
    assert_eq!(missing.status, 403, "{}", missing.body);
    let other_session = UiSession::sign_in(&api.base, &api.admin).await;
    let wrong = session.post_raw(&path, &[("_csrf", &other_session.csrf)], &[]).await;
    assert_eq!(wrong.status, 403, "another session's token does not pass");
    let cross_site = session.post_raw(&path, &[("_csrf", &session.csrf)], &[("origin", "https://evil.example")]).await;
    assert_eq!(cross_site.status, 403);
    assert_eq!(api.get(&format!("/v1/endpoints/{id}")).await.body["enabled"], true);

    let done = session.post(&path, &[("reason", "maintenance")]).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(done.location.as_deref(), Some(format!("/ui/endpoints/{id}?done=disabled").as_str()));
    let endpoint = api.get(&format!("/v1/endpoints/{id}")).await;
    assert_eq!(
        (endpoint.body["enabled"].clone(), endpoint.body["disabled_reason"].clone()),
        (json!(false), json!("maintenance"))
    );
}

#[tokio::test]
async fn pages_need_a_live_session_and_a_session_ends_with_sign_out_or_its_token() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    let anonymous = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let page = anonymous.get(format!("{}/ui/endpoints?health=failing", api.base)).send().await.unwrap();
    assert_eq!(page.status(), 303);
    assert_eq!(page.headers()["location"], "/ui/sign-in?next=%2Fui%2Fendpoints%3Fhealth%3Dfailing");

    let refused =
        anonymous.post(format!("{}/ui/sign-in", api.base)).form(&[("token", "hl_nope")]).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    assert!(refused.text().await.unwrap().contains("not a valid API token"));

    let session = UiSession::sign_in(&api.base, &api.admin).await;
    let overview = session.get("/ui").await;
    let csp = overview.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(overview.headers["cache-control"], "no-store");
    assert!(!overview.body.contains(&api.admin), "the token never appears in a page");
    let out = session.post("/ui/sign-out", &[]).await;
    assert_eq!(out.status, 303);
    assert_eq!(session.get("/ui").await.status, 303, "signed out: back to the sign-in page");

    let temporary = TestApi::token(&db, "temporary", "write", None).await;
    let session = UiSession::sign_in(&api.base, &temporary).await;
    let tokens = api.get("/v1/tokens").await;
    let id = tokens.body["data"].as_array().unwrap().iter().find(|t| t["name"] == "temporary").unwrap()["id"].clone();
    assert_eq!(api.delete(&format!("/v1/tokens/{}", id.as_str().unwrap())).await.status, 204);
    assert_eq!(session.get("/ui").await.status, 303, "a deleted token's sessions end with it");
}

#[tokio::test]
async fn a_tenant_token_sees_only_its_tenants_endpoints_and_deliveries() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    let mine = api.post("/v1/endpoints", json!({"url": "https://a.example/hook", "tenant": "acme"})).await;
    let theirs = api.post("/v1/endpoints", json!({"url": "https://b.example/hook", "tenant": "globex"})).await;
    let token = TestApi::token(&db, "acme ops", "write", Some("acme")).await;
    let session = UiSession::sign_in(&api.base, &token).await;

    let list = session.get("/ui/endpoints").await;
    assert!(list.body.contains("https://a.example/hook"));
    assert!(!list.body.contains("https://b.example/hook"), "another tenant's endpoint is not listed");
    let theirs_id = theirs.body["id"].as_str().unwrap();
    assert_eq!(session.get(&format!("/ui/endpoints/{theirs_id}")).await.status, 404);
    let forged = session.post(&format!("/ui/endpoints/{theirs_id}/disable"), &[]).await;
    assert_eq!(forged.status, 404, "changing another tenant's endpoint: no such endpoint");
    let mine_id = mine.body["id"].as_str().unwrap();
    assert_eq!(session.get(&format!("/ui/endpoints/{mine_id}")).await.status, 200);
}

#[tokio::test]
async fn the_endpoint_page_rotates_a_secret_showing_it_once_and_filters_reject_bad_input() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    let endpoint = api.post("/v1/endpoints", json!({"url": "https://example.com/hook"})).await;
    let id = endpoint.body["id"].as_str().unwrap();
    let session = UiSession::sign_in(&api.base, &api.admin).await;

    let rotated = session.post(&format!("/ui/endpoints/{id}/rotate-secret"), &[]).await;
    assert_eq!(rotated.status, 200);
    let secret = api.get(&format!("/v1/endpoints/{id}/secret")).await.body["secret"].as_str().unwrap().to_owned();
    assert_ne!(Value::String(secret.clone()), endpoint.body["secret"]);
    assert!(rotated.body.contains(&secret), "the new secret is shown right after rotating");
    assert!(!session.get(&format!("/ui/endpoints/{id}")).await.body.contains(&secret), "and never again");

    let bad = session.get("/ui/deliveries?endpoint_id=nope").await;
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("endpoint_id"), "{}", bad.body);
    let bad_time = session.get("/ui/dead-letters/replay?since=yesterday").await;
    assert_eq!(bad_time.status, 400);
    assert!(bad_time.body.contains("since"), "{}", bad_time.body);
}

#[tokio::test]
async fn events_sources_tokens_and_the_audit_log_have_pages_the_last_two_for_admins() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    let endpoint = api.post("/v1/endpoints", json!({"url": "https://example.com/hook"})).await;
    let sent = api.post("/v1/events", json!({"event_type": "order.created", "payload": {"note": "<b>bold</b>"}})).await;
    let source = api
        .post(
            "/v1/sources",
            json!({"name": "github", "scheme": "hmac_sha256", "secret": "s3cr3t-s3cr3t", "event_type": "github.push"}),
        )
        .await;
    assert_eq!(source.status, 201, "{source:?}");
    let admin = UiSession::sign_in(&api.base, &api.admin).await;

    let events = admin.get("/ui/events?event_type=order.created").await;
    let event_id = sent.body["id"].as_str().unwrap();
    assert!(events.body.contains(&format!("/ui/events/{event_id}")), "{}", events.body);
    let event = admin.get(&format!("/ui/events/{event_id}")).await;
    assert!(event.body.contains("&lt;b&gt;bold&lt;/b&gt;"), "the payload is escaped: {}", event.body);
    let delivery = api.get(&format!("/v1/deliveries?endpoint_id={}", endpoint.body["id"].as_str().unwrap())).await;
    assert!(event.body.contains(delivery.body["data"][0]["id"].as_str().unwrap()), "its delivery is listed");

    let sources = admin.get("/ui/sources").await;
    assert!(sources.body.contains("/in/github"), "{}", sources.body);
    assert!(!sources.body.contains("s3cr3t"), "no secret on the page");
    let tokens = admin.get("/ui/tokens").await;
    assert!(tokens.body.contains("test admin") && !tokens.body.contains(&api.admin), "names, never tokens");
    let audit = admin.get("/ui/audit").await;
    assert!(audit.body.contains("source.create") && audit.body.contains("ui.sign_in"), "{}", audit.body);

    let writer = TestApi::token(&db, "writer", "write", None).await;
    let writer = UiSession::sign_in(&api.base, &writer).await;
    let overview = writer.get("/ui").await;
    assert!(!overview.body.contains("href=\"/ui/audit\""), "no link to what the token may not see");
    assert_eq!(writer.get("/ui/audit").await.status, 403);
    assert_eq!(writer.get("/ui/tokens").await.status, 403);
}

#[tokio::test]
async fn bulk_replay_shows_its_count_first_and_endpoint_actions_do_what_they_say() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    let receiver = TestReceiver::start().await;
    receiver.always(Reply::status(500));
    let worker = RunningWorker::start(&db, test_settings()).await;
    let (endpoint_id, _) = dead_delivery(&api, &receiver).await;
    api.post("/v1/events", json!({"event_type": "order.created", "payload": {"order": 2}})).await;
    eventually(WAIT, "two dead letters", || async {
        let dead = api.get(&format!("/v1/dead-letters?endpoint_id={endpoint_id}")).await;
        (dead.body["data"].as_array().map(Vec::len) == Some(2)).then_some(())
    })
    .await;
    worker.stop().await;
    let session = UiSession::sign_in(&api.base, &api.admin).await;

    let preview =
        session.get(&format!("/ui/dead-letters/replay?endpoint_id={endpoint_id}&event_type=order.created")).await;
    assert!(preview.body.contains(r#"<strong id="replay-count">2</strong>"#), "{}", preview.body);
    let replayed = session
        .post("/ui/dead-letters/replay", &[("endpoint_id", &endpoint_id), ("event_type", "order.created")])
        .await;
    assert_eq!(replayed.location.as_deref(), Some("/ui/dead-letters?done=replayed&count=2"));
    assert!(session.get(replayed.location.as_deref().unwrap()).await.body.contains("2 dead letter(s) queued again"));
    let pending = api.get(&format!("/v1/deliveries?endpoint_id={endpoint_id}&state=pending")).await;
    assert_eq!(pending.body["data"].as_array().unwrap().len(), 2);

    let base = format!("/ui/endpoints/{endpoint_id}");
    let tested = session.post(&format!("{base}/test"), &[("event_type", "ping.check")]).await;
    assert_eq!(tested.location.as_deref(), Some(format!("{base}?done=tested").as_str()));
    let events = api.get("/v1/events?event_type=ping.check").await;
    assert_eq!(events.body["data"][0]["source"], "test");
    let bad = session.post(&format!("{base}/test"), &[("event_type", "no spaces")]).await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("event_type"), "{}", bad.body);

    session.post(&format!("{base}/disable"), &[]).await;
    let disabled = api.get(&format!("/v1/endpoints/{endpoint_id}")).await;
    assert_eq!(disabled.body["disabled_reason"], "disabled by test admin");
    let since = (chrono::Utc::now() - chrono::Duration::hours(1)).format("%Y-%m-%dT%H:%M").to_string();
    let refused = session.post(&format!("{base}/recover"), &[("since", &since)]).await;
    assert_eq!(refused.status, 409, "recovering needs the endpoint enabled: {}", refused.body);
    session.post(&format!("{base}/enable"), &[]).await;
    let recovered = session.post(&format!("{base}/recover"), &[("since", &since)]).await;
    let location = recovered.location.unwrap_or_else(|| panic!("{}", recovered.body));
    assert!(location.starts_with(&format!("{base}?done=recovered&count=")), "{location}");
    assert!(!location.ends_with("count=0"), "the deliveries disabling moved to the dead letters come back: {location}");
}
