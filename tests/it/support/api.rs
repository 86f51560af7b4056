//! The HTTP API served in-process on 127.0.0.1, with an admin token.

use reqwest::Method;
use serde_json::Value;

use hookline::api::ApiSettings;

use super::db::TestDb;

/// The defaults of `serve`, with this body limit.
pub fn settings(max_body_bytes: usize) -> ApiSettings {
    ApiSettings {
        max_body_bytes,
        strict_event_types: false,
        public_url: String::new(),
        portal_frame_ancestors: vec!["https://app.example.com".to_owned()],
    }
}

pub struct TestApi {
    pub base: String,
    pub admin: String,
    http: reqwest::Client,
}

/// A response: status, content type and parsed body (`Value::Null` when empty).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: Value,
}

impl Reply {
    /// Asserts a problem document with this status and field.
    #[track_caller]
    pub fn assert_problem(&self, status: u16, field: Option<&str>) {
        assert_eq!(self.status, status, "{self:?}");
        assert!(self.content_type.starts_with("application/problem+json"), "{self:?}");
        assert_eq!(self.body["status"], status, "{self:?}");
        assert!(self.body["type"].as_str().is_some_and(|t| t.starts_with("/problems/")), "{self:?}");
        assert_eq!(self.body["field"].as_str(), field, "{self:?}");
    }
}

impl TestApi {
    pub async fn start(db: &TestDb) -> Self {
        Self::start_with_limit(db, hookline::api::body::DEFAULT_MAX_BODY_BYTES).await
    }

    pub async fn start_with_limit(db: &TestDb, max_body_bytes: usize) -> Self {
        Self::start_with_pool(db, db.pool.clone(), settings(max_body_bytes)).await
    }

    /// An API with HOOKLINE_STRICT_EVENT_TYPES on.
    pub async fn start_strict(db: &TestDb) -> Self {
        let settings =
            ApiSettings { strict_event_types: true, ..settings(hookline::api::body::DEFAULT_MAX_BODY_BYTES) };
        Self::start_with_pool(db, db.pool.clone(), settings).await
    }

    /// An API on a pool of its own (say, one connection a test can take away).
    pub async fn start_with_pool(db: &TestDb, pool: deadpool_postgres::Pool, settings: ApiSettings) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let settings = ApiSettings { public_url: base.clone(), ..settings };
        let app = hookline::api::app(hookline::api::AppState::new(pool, settings, super::test_keys()));
        tokio::spawn(async move {
            let acceptor = poem::listener::TcpAcceptor::from_tokio(listener).unwrap();
            let _ = poem::Server::new_with_acceptor(acceptor).run(app).await;
        });
        let admin = Self::token(db, "test admin", "admin", None).await;
        TestApi { base, admin, http: reqwest::Client::new() }
    }

    /// Creates a token straight in the database.
    pub async fn token(db: &TestDb, name: &str, scope: &str, tenant: Option<&str>) -> String {
        let scope = hookline::api::auth::Scope::parse(scope).unwrap();
        let client = db.client().await;
        hookline::api::auth::create_token(&client, name, scope, tenant).await.unwrap().0
    }

    pub async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<&Value>) -> Reply {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        Self::reply(request.send().await.expect("request")).await
    }

    pub async fn raw(&self, method: Method, path: &str, content_type: &str, body: Vec<u8>) -> Reply {
        let request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.admin)
            .header("content-type", content_type)
            .body(body);
        Self::reply(request.send().await.expect("request")).await
    }

    /// A request to an inbound receiver: no token, the given headers, raw bytes.
    pub async fn inbound(&self, source: &str, headers: &[(&str, String)], body: &[u8]) -> Reply {
        let mut request = self.http.post(format!("{}/in/{source}", self.base)).body(body.to_vec());
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        Self::reply(request.send().await.expect("request")).await
    }

    async fn reply(response: reqwest::Response) -> Reply {
        let status = response.status().as_u16();
        let content_type =
            response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let text = response.text().await.unwrap();
        let body =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        Reply { status, content_type, body }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, Some(&self.admin), None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(&self.admin), Some(&body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Reply {
        self.call(Method::PATCH, path, Some(&self.admin), Some(&body)).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.call(Method::DELETE, path, Some(&self.admin), None).await
    }
}
