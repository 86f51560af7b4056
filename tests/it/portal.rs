//! The tenant portal (`/portal`): links made by `POST /v1/portal/sessions`,
//! exchanged once for a session that sees one tenant, with only the
//! link's capabilities, framed only by the configured origins.

use std::time::Duration;

use fantoccini::Locator;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::api::{TestApi, settings};
use crate::support::browser::{wait_for_text, with_browser};
use crate::support::db::TestDb;
use crate::support::eventually;

const WAIT: Duration = Duration::from_secs(15);

/// A portal session over plain HTTP, as the portal's script holds it.
struct PortalClient {
    base: String,
    session: String,
    http: reqwest::Client,
}

impl PortalClient {
    async fn open(base: &str, link: &str) -> PortalClient {
        let key = link.split_once("#key=").expect("the key is in the fragment").1;
        let http = reqwest::Client::new();
        let answer = http.post(format!("{base}/portal/exchange")).json(&json!({"key": key})).send().await.unwrap();
        assert_eq!(answer.status(), 200);
        let session = answer.json::<Value>().await.unwrap()["session"].as_str().unwrap().to_owned();
        PortalClient { base: base.to_owned(), session, http }
    }

    async fn call(&self, method: Method, path: &str, form: &[(&str, &str)]) -> (u16, String) {
        let request =
            self.http.request(method, format!("{}{path}", self.base)).header("x-portal-session", &self.session);
        let response = request.form(form).send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }
}

async fn link(api: &TestApi, token: &str, body: Value) -> crate::support::api::Reply {
    api.call(Method::POST, "/v1/portal/sessions", Some(token), Some(&body)).await
}

#[tokio::test]
async fn who_may_make_a_portal_link_and_for_what() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    let theirs = api.post("/v1/endpoints", json!({"url": "https://b.example/hook", "tenant": "globex"})).await;
    let acme_writer = TestApi::token(&db, "acme", "write", Some("acme")).await;
    let acme_reader = TestApi::token(&db, "acme read", "read", Some("acme")).await;
    let any_writer = TestApi::token(&db, "writer", "write", None).await;

    let made = link(&api, &acme_writer, json!({"capabilities": ["replay"], "expires_in_s": 600})).await;
    assert_eq!(made.status, 201, "{made:?}");
    assert_eq!(made.body["tenant"], "acme");
    assert!(made.body["url"].as_str().unwrap().starts_with(&format!("{}/portal#key=", api.base)));
    link(&api, &acme_writer, json!({"tenant": "globex"})).await.assert_problem(400, Some("tenant"));
    assert_eq!(link(&api, &acme_reader, json!({})).await.status, 403);
    assert_eq!(
        link(&api, &any_writer, json!({"tenant": "acme"})).await.status,
        403,
        "a tenant-wide token must be admin"
    );
    let foreign = json!({"tenant": "acme", "endpoint_ids": [theirs.body["id"]]});
    link(&api, &api.admin, foreign).await.assert_problem(400, Some("endpoint_ids[0]"));
    let colour = json!({"tenant": "acme", "branding": {"accent_color": "red; }"}});
    link(&api, &api.admin, colour).await.assert_problem(400, Some("branding.accent_color"));
    link(&api, &api.admin, json!({"capabilities": ["admin"]})).await.assert_problem(400, Some("capabilities[0]"));
    let audit = api.get("/v1/audit-log").await;
    assert_eq!(audit.body["data"][0]["action"], "portal_link.create");
}

#[tokio::test]
async fn a_portal_session_sees_one_tenant_and_does_only_what_its_link_allows() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    let mine = api.post("/v1/endpoints", json!({"url": "https://a.example/hook", "tenant": "acme"})).await;
    let theirs = api.post("/v1/endpoints", json!({"url": "https://b.example/hook", "tenant": "globex"})).await;
    let (mine, theirs) = (mine.body["id"].as_str().unwrap(), theirs.body["id"].as_str().unwrap());
    api.post("/v1/event-types", json!({"name": "order.created", "description": "An order was placed"})).await;
    api.post("/v1/event-types", json!({"name": "globex.internal", "tenant": "globex"})).await;
    let made = link(&api, &api.admin, json!({"tenant": "acme", "capabilities": ["manage_endpoints"]})).await;
    let url = made.body["url"].as_str().unwrap();
    let portal = PortalClient::open(&api.base, url).await;

    let key = url.split_once("#key=").unwrap().1;
    let again = reqwest::Client::new().post(format!("{}/portal/exchange", api.base)).json(&json!({"key": key})).send();
    assert_eq!(again.await.unwrap().status(), 401, "a link works once");

    let (status, home) = portal.call(Method::GET, "/portal/home", &[]).await;
    assert_eq!(status, 200);
    assert!(home.contains("https://a.example/hook") && !home.contains("https://b.example/hook"), "{home}");
    assert!(
        home.contains("An order was placed") && !home.contains("globex.internal"),
        "the tenant's catalogue: {home}"
    );
    assert_eq!(portal.call(Method::GET, &format!("/portal/endpoints/{theirs}"), &[]).await.0, 404);
    let (status, _) = portal.call(Method::POST, &format!("/portal/endpoints/{theirs}/test"), &[]).await;
    assert_eq!(status, 404, "another tenant's endpoint does not exist here");
    let (status, body) = portal.call(Method::POST, &format!("/portal/endpoints/{mine}/rotate-secret"), &[]).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("reveal_secrets"), "{body}");

    let (status, _) = portal
        .call(
            Method::POST,
            &format!("/portal/endpoints/{mine}/event-types"),
            &[("event_type", "order.created"), ("event_type", "order.paid")],
        )
        .await;
    assert_eq!(status, 200);
    let changed = api.get(&format!("/v1/endpoints/{mine}")).await;
    assert_eq!(changed.body["event_types"], json!(["order.created", "order.paid"]));
    let (status, page) =
        portal.call(Method::POST, "/portal/endpoints", &[("url", "http://[::1"), ("description", "x")]).await;
    assert_eq!(status, 200, "a bad URL shows the form again");
    assert!(page.contains("url") && page.contains("Add endpoint"), "{page}");
    let audit = api.get("/v1/audit-log").await;
    let update =
        audit.body["data"].as_array().unwrap().iter().find(|e| e["action"] == "endpoint.update").unwrap().clone();
    assert_eq!(update["token_name"], format!("portal link {}", made.body["id"].as_str().unwrap()));

    assert_eq!(reqwest::get(format!("{}/portal/home", api.base)).await.unwrap().status(), 401, "no session, nothing");
    db.client()
        .await
        .execute("UPDATE hookline.portal_links SET expires_at = now() - interval '1 second'", &[])
        .await
        .unwrap();
    assert_eq!(portal.call(Method::GET, "/portal/home", &[]).await.0, 401, "the session ends with its link");
}

#[tokio::test]
async fn a_customer_manages_their_endpoint_in_the_portal_inside_the_configured_sites_iframe() {
    let db = TestDb::new().await;
    // The embedding application: a page on another origin with the portal in an iframe.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host_origin = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let mut api_settings = settings(hookline::api::body::DEFAULT_MAX_BODY_BYTES);
    api_settings.portal_frame_ancestors = vec![host_origin.clone()];
    let api = TestApi::start_with_pool(&db, db.pool.clone(), api_settings).await;
    api.post("/v1/event-types", json!({"name": "invoice.paid", "tenant": "acme"})).await;
    api.post("/v1/endpoints", json!({"url": "https://b.example/hook", "tenant": "globex"})).await;
    let made = link(
        &api,
        &api.admin,
        json!({"tenant": "acme", "capabilities": ["manage_endpoints", "reveal_secrets"],
               "branding": {"product_name": "Acme Billing", "accent_color": "#aa3355"}}),
    )
    .await;
    let portal_url = made.body["url"].as_str().unwrap().to_owned();
    let host_page = format!(
        "<!doctype html><title>Acme</title><iframe id=portal src=\"{portal_url}\" width=1000 height=800></iframe>"
    );
    tokio::spawn(async move {
        let page = poem::endpoint::make_sync(move |_| poem::web::Html(host_page.clone()));
        let acceptor = poem::listener::TcpAcceptor::from_tokio(listener).unwrap();
        let _ = poem::Server::new_with_acceptor(acceptor).run(page).await;
    });

    with_browser(move |browser| async move {
        browser.goto(&host_origin).await.unwrap();
        let frame = browser.wait().for_element(Locator::Id("portal")).await.unwrap();
        frame.enter_frame().await.unwrap();
        wait_for_text(&browser, "header.portal-top", "Acme Billing").await;
        let home = wait_for_text(&browser, "#portal", "No endpoints yet").await;
        assert!(!home.contains("b.example"), "{home}");
        browser.find(Locator::LinkText("Add endpoint")).await.unwrap().click().await.unwrap();
        let url = browser.wait().for_element(Locator::Css("input[name=url]")).await.unwrap();
        url.send_keys("https://acme-customer.example/webhooks").await.unwrap();
        browser.find(Locator::Css("form.stacked button")).await.unwrap().click().await.unwrap();
        let added = wait_for_text(&browser, ".notice", "Endpoint added").await;
        assert!(added.contains("whsec_"), "the secret is shown once, with reveal_secrets: {added}");
        browser.find(Locator::Css("input[value='invoice.paid']")).await.unwrap().click().await.unwrap();
        browser.find(Locator::Css("form.subscriptions button")).await.unwrap().click().await.unwrap();
        wait_for_text(&browser, ".notice", "Event types saved").await;
        // The link was used: opening it again (a reload of the fragment) does not work.
        browser.enter_parent_frame().await.unwrap();
    })
    .await;

    let endpoints = eventually(WAIT, "the portal's endpoint", || async {
        let list = api.get("/v1/endpoints?tenant=acme").await;
        list.body["data"].as_array().filter(|d| !d.is_empty()).cloned()
    })
    .await;
    assert_eq!(endpoints[0]["url"], "https://acme-customer.example/webhooks");
    assert_eq!(endpoints[0]["event_types"], json!(["invoice.paid"]));
}

#[tokio::test]
async fn the_portal_may_be_framed_only_by_the_configured_origins_and_an_expired_link_opens_nothing() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    let page = reqwest::get(format!("{}/portal", api.base)).await.unwrap();
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("frame-ancestors 'self' https://app.example.com;"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");

    let made = link(&api, &api.admin, json!({"tenant": "acme", "expires_in_s": 1})).await;
    let url = made.body["url"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    with_browser(move |browser| async move {
        browser.goto(&url).await.unwrap();
        wait_for_text(&browser, "#portal", "does not work any more").await;
        assert!(!browser.current_url().await.unwrap().as_str().contains("key="), "the key leaves the address bar");
    })
    .await;
}

#[tokio::test]
async fn a_portal_link_ends_when_deleted_or_with_its_token_and_shows_only_its_listed_endpoints() {
    let db = TestDb::new().await;
    let api = TestApi::start(&db).await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let made =
            api.post("/v1/endpoints", json!({"url": format!("https://e{n}.example/hook"), "tenant": "acme"})).await;
        ids.push(made.body["id"].as_str().unwrap().to_owned());
    }
    let acme = TestApi::token(&db, "acme", "write", Some("acme")).await;
    let listed =
        link(&api, &acme, json!({"endpoint_ids": [ids[0]], "capabilities": ["replay", "manage_endpoints"]})).await;
    let portal = PortalClient::open(&api.base, listed.body["url"].as_str().unwrap()).await;
    let (_, home) = portal.call(Method::GET, "/portal/home", &[]).await;
    assert!(home.contains("https://e0.example/hook") && !home.contains("https://e1.example/hook"), "{home}");
    assert!(!home.contains("Add endpoint"), "a link limited to listed endpoints adds none");
    assert_eq!(portal.call(Method::GET, &format!("/portal/endpoints/{}", ids[1]), &[]).await.0, 404);
    // A test event's delivery is pending, not dead: nothing to replay.
    portal.call(Method::POST, &format!("/portal/endpoints/{}/test", ids[0]), &[]).await;
    let delivery = api.get(&format!("/v1/deliveries?endpoint_id={}", ids[0])).await.body["data"][0]["id"].clone();
    let (status, _) =
        portal.call(Method::POST, &format!("/portal/deliveries/{}/replay", delivery.as_str().unwrap()), &[]).await;
    assert_eq!(status, 404, "only dead deliveries are replayed");

    let other = link(&api, &acme, json!({})).await;
    let other_portal = PortalClient::open(&api.base, other.body["url"].as_str().unwrap()).await;
    let id = other.body["id"].as_str().unwrap();
    assert_eq!(api.call(Method::DELETE, &format!("/v1/portal/sessions/{id}"), Some(&acme), None).await.status, 204);
    assert_eq!(other_portal.call(Method::GET, "/portal/home", &[]).await.0, 401, "a deleted link's session ends");

    let tokens = api.get("/v1/tokens").await;
    let token_id = tokens.body["data"].as_array().unwrap().iter().find(|t| t["name"] == "acme").unwrap()["id"].clone();
    assert_eq!(api.delete(&format!("/v1/tokens/{}", token_id.as_str().unwrap())).await.status, 204);
    assert_eq!(portal.call(Method::GET, "/portal/home", &[]).await.0, 401, "and so do the sessions of a deleted token");
}
