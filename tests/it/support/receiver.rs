//! A real HTTP receiver on 127.0.0.1 that records what it gets and answers
//! with scripted responses.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use poem::http::{HeaderMap, StatusCode};
use poem::{Endpoint, Request, Response, Route};

#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body: String,
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("JSON body")
    }
}

/// One scripted answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub delay: Duration,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Reply { status, headers: vec![], delay: Duration::ZERO, body: b"ok".to_vec() }
    }
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

#[derive(Default)]
struct State {
    received: Vec<Received>,
    script: VecDeque<Reply>,
    default: Option<Reply>,
    /// Requests being answered right now, and the most there ever were.
    open: usize,
    most_open: usize,
}

#[derive(Clone)]
pub struct TestReceiver {
    pub url: String,
    state: Arc<Mutex<State>>,
}

impl TestReceiver {
    /// Answers 200 unless told otherwise.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let app = Route::new().at("/*path", Recorder { state: state.clone() });
        tokio::spawn(async move {
            let acceptor = poem::listener::TcpAcceptor::from_tokio(listener).unwrap();
            let _ = poem::Server::new_with_acceptor(acceptor).run(app).await;
        });
        TestReceiver { url: format!("http://127.0.0.1:{port}/hook"), state }
    }

    /// The next requests get these replies, in order; then the default.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.lock().unwrap().script.extend(replies);
    }

    /// Replies given once the script is used up (200 unless set).
    pub fn always(&self, reply: Reply) {
        self.state.lock().unwrap().default = Some(reply);
    }

    /// The most requests this receiver was answering at the same time.
    pub fn most_concurrent(&self) -> usize {
        self.state.lock().unwrap().most_open
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// Waits until at least `n` requests arrived.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        super::eventually(timeout, &format!("{n} requests at the receiver"), || async {
            let got = self.received();
            (got.len() >= n).then_some(got)
        })
        .await
    }
}

struct Recorder {
    state: Arc<Mutex<State>>,
}

impl Endpoint for Recorder {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let (method, path, headers) = (req.method().to_string(), req.uri().path().to_owned(), req.headers().clone());
        let body = req.into_body().into_string().await?;
        let reply = {
            let mut state = self.state.lock().unwrap();
            state.received.push(Received { method, path, headers, body, at: Instant::now() });
            state.open += 1;
            state.most_open = state.most_open.max(state.open);
            state.script.pop_front().or_else(|| state.default.clone()).unwrap_or(Reply::status(200))
        };
        if !reply.delay.is_zero() {
            tokio::time::sleep(reply.delay).await;
        }
        self.state.lock().unwrap().open -= 1;
        let mut response = Response::builder().status(StatusCode::from_u16(reply.status).unwrap());
        for (name, value) in reply.headers {
            response = response.header(name, value);
        }
        Ok(response.body(reply.body))
    }
}
