//! The dashboard as people use it: headless Chromium driven over WebDriver
//! (Debian's `chromium` and `chromium-driver`), and the same pages over
//! plain HTTP with a session cookie, for what a browser would not send.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;

use super::worker::Process;

/// One chromedriver for the whole test process; each test has its own
/// browser session.
static DRIVER: OnceLock<String> = OnceLock::new();

fn driver_url() -> &'static str {
    DRIVER.get_or_init(|| {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        // The parent-death signal follows the thread that spawned the
        // driver: a thread that lives as long as the process.
        std::thread::spawn(move || {
            let mut command = std::process::Command::new("chromedriver");
            command.arg(format!("--port={port}")).stdout(std::process::Stdio::null());
            let mut driver = Process::spawn(&mut command);
            let _ = driver.wait();
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "chromedriver did not start (apt install chromium-driver)");
            std::thread::sleep(Duration::from_millis(50));
        }
        format!("http://127.0.0.1:{port}")
    })
}

async fn session() -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".to_owned(),
        serde_json::json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                    "--window-size=1280,900"]}),
    );
    ClientBuilder::new(HttpConnector::new())
        .capabilities(capabilities)
        .connect(driver_url())
        .await
        .expect("a Chromium session")
}

/// Runs `test` with a browser, closing it whether the test passes or not.
pub async fn with_browser<F, Fut>(test: F)
where
    F: FnOnce(Client) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let browser = session().await;
    let outcome = tokio::spawn(test(browser.clone())).await;
    let _ = browser.close().await;
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}

/// Signs in at `base` with `token` through the sign-in page.
pub async fn sign_in(browser: &Client, base: &str, token: &str) {
    browser.goto(&format!("{base}/ui")).await.unwrap();
    let field = browser.wait().for_element(Locator::Css("#token")).await.expect("the sign-in page");
    field.send_keys(token).await.unwrap();
    browser.find(Locator::Css("form.sign-in button")).await.unwrap().click().await.unwrap();
    wait_for_text(browser, "h1", "Overview").await;
}

/// Waits until an element matching `css` contains `text`; returns its text.
pub async fn wait_for_text(browser: &Client, css: &str, text: &str) -> String {
    super::eventually(Duration::from_secs(10), &format!("`{text}` in `{css}`"), || async {
        for element in browser.find_all(Locator::Css(css)).await.ok()? {
            let shown = element.text().await.ok()?;
            if shown.contains(text) {
                return Some(shown);
            }
        }
        None
    })
    .await
}

/// A dashboard session over plain HTTP: the cookie and the CSRF token a
/// signed-in page carries.
pub struct UiSession {
    pub base: String,
    pub cookie: String,
    pub csrf: String,
    http: reqwest::Client,
}

/// A page: status and body.
pub struct Page {
    pub status: u16,
    pub body: String,
    pub location: Option<String>,
    pub headers: reqwest::header::HeaderMap,
}

impl UiSession {
    pub async fn sign_in(base: &str, token: &str) -> UiSession {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let response = http.post(format!("{base}/ui/sign-in")).form(&[("token", token)]).send().await.unwrap();
        assert_eq!(response.status(), 303, "sign-in answers with a redirect");
        let cookie = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("hookline_ui="))
            .expect("a session cookie")
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let mut session = UiSession { base: base.to_owned(), cookie, csrf: String::new(), http };
        let overview = session.get("/ui").await;
        assert_eq!(overview.status, 200, "{}", overview.body);
        session.csrf = hidden_csrf(&overview.body).expect("a signed-in page carries the CSRF token");
        session
    }

    pub async fn get(&self, path: &str) -> Page {
        Self::page(self.http.get(format!("{}{path}", self.base)).header("cookie", &self.cookie).send().await.unwrap())
            .await
    }

    /// A form post with this session's CSRF token.
    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let mut form: Vec<(&str, &str)> = vec![("_csrf", &self.csrf)];
        form.extend_from_slice(fields);
        self.post_raw(path, &form, &[]).await
    }

    /// A form post exactly as given (no token added), with extra headers.
    pub async fn post_raw(&self, path: &str, form: &[(&str, &str)], headers: &[(&str, &str)]) -> Page {
        let mut request = self.http.post(format!("{}{path}", self.base)).header("cookie", &self.cookie).form(form);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Self::page(request.send().await.unwrap()).await
    }

    async fn page(response: reqwest::Response) -> Page {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let location = headers.get("location").and_then(|v| v.to_str().ok()).map(str::to_owned);
        Page { status, body: response.text().await.unwrap(), location, headers }
    }
}

fn hidden_csrf(html: &str) -> Option<String> {
    let at = html.find(r#"name="_csrf" value=""#)? + r#"name="_csrf" value=""#.len();
    Some(html[at..].split('"').next()?.to_owned())
}
