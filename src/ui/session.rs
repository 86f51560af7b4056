//! Signing in with an API token, the session cookie, and who is looking.
//!
//! The cookie carries a random key; the database keeps its SHA-256 and the
//! token it stands for (`hookline.ui_sessions`). The CSRF token of a
//! session is derived from its key, so checking it needs no lookup.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{KeyInit, Mac};
use maud::{Markup, html};
use poem::web::cookie::{Cookie, SameSite};
use poem::web::{Data, Form, Redirect};
use poem::{FromRequest, IntoResponse, Request, RequestBody, Response, handler};
use serde::Deserialize;
use sha2::Sha256;

use super::page::{self, UiError};
use crate::api::AppState;
use crate::api::auth::{Principal, Scope, hash_token, random_key};
use crate::db;
use crate::db::audit::Entry;

/// The session cookie's name.
pub const COOKIE: &str = "hookline_ui";

type HmacSha256 = hmac::Hmac<Sha256>;

/// The signed-in token, as the API would see it.
pub struct Viewer {
    pub principal: Principal,
    csrf: String,
}

impl Viewer {
    /// Whether this token's scope allows `scope` (what buttons to show;
    /// the operations check again).
    pub fn may(&self, scope: Scope) -> bool {
        self.principal.scope >= scope
    }

    /// The value every form that changes something carries as `_csrf`.
    pub fn csrf(&self) -> &str {
        &self.csrf
    }
}

impl<'a> FromRequest<'a> for Viewer {
    async fn from_request(req: &'a Request, _body: &mut RequestBody) -> poem::Result<Self> {
        let state = req.data::<AppState>().expect("the dashboard is served inside the API");
        let key = session_key(req).ok_or_else(|| UiError::sign_in(req))?;
        let client = state.client().await.map_err(UiError::from)?;
        let token = db::ui_sessions::token(&client, &hash_token(&key)).await.map_err(UiError::from)?;
        let token = token.ok_or_else(|| UiError::sign_in(req))?;
        let scope = Scope::parse(&token.scope).ok_or_else(|| UiError::sign_in(req))?;
        let principal = Principal { token_id: token.id, name: token.name, scope, tenant: token.tenant };
        Ok(Viewer { principal, csrf: csrf_token(&key) })
    }
}

/// The session key the request's cookie carries, if any.
pub fn session_key(req: &Request) -> Option<String> {
    req.cookie().get(COOKIE).map(|c| c.value_str().to_owned()).filter(|k| !k.is_empty())
}

/// The CSRF token of the session whose key is `key`.
pub fn csrf_token(key: &str) -> String {
    URL_SAFE_NO_PAD.encode(csrf_mac(key).finalize().into_bytes())
}

/// Whether `given` is the CSRF token of the session `key` (constant time).
pub fn csrf_matches(key: &str, given: &str) -> bool {
    URL_SAFE_NO_PAD.decode(given).is_ok_and(|tag| csrf_mac(key).verify_slice(&tag).is_ok())
}

fn csrf_mac(key: &str) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key.as_bytes()).expect("HMAC takes any key length");
    mac.update(b"hookline dashboard csrf");
    mac
}

#[derive(Deserialize)]
pub struct SignInQuery {
    next: Option<String>,
}

#[handler]
pub async fn sign_in_page(poem::web::Query(query): poem::web::Query<SignInQuery>) -> Markup {
    sign_in_form(query.next.as_deref(), None)
}

#[derive(Deserialize)]
pub struct SignInForm {
    token: String,
    next: Option<String>,
}

#[handler]
pub async fn sign_in(
    req: &Request,
    Data(state): Data<&AppState>,
    Form(form): Form<SignInForm>,
) -> Result<Response, UiError> {
    let mut client = state.client().await?;
    let tx = client.transaction().await?;
    let Some(token) = db::tokens::by_hash(&tx, &hash_token(form.token.trim())).await? else {
        let page = sign_in_form(form.next.as_deref(), Some("That is not a valid API token."));
        return Ok(page.with_status(poem::http::StatusCode::UNAUTHORIZED).into_response());
    };
    let key = random_key();
    db::ui_sessions::insert(&tx, &hash_token(&key), token.id).await?;
    let entry = Entry {
        tenant: token.tenant.as_deref(),
        action: "ui.sign_in",
        object_type: "token",
        object_id: Some(token.id.to_string()),
        before: None,
        after: None,
    };
    db::audit::record(&tx, &db::audit::Actor { token_id: Some(token.id), token_name: token.name }, entry).await?;
    tx.commit().await?;

    let mut cookie = Cookie::new_with_str(COOKIE, key);
    cookie.set_path(super::PREFIX);
    cookie.set_http_only(true);
    cookie.set_same_site(SameSite::Strict);
    cookie.set_secure(state.public_url.starts_with("https://"));
    req.cookie().add(cookie);
    Ok(Redirect::see_other(page::local_target(form.next.as_deref())).into_response())
}

#[handler]
pub async fn sign_out(req: &Request, Data(state): Data<&AppState>) -> Result<Response, UiError> {
    if let Some(key) = session_key(req) {
        let client = state.client().await?;
        db::ui_sessions::delete(&client, &hash_token(&key)).await?;
    }
    let mut removal = Cookie::named(COOKIE);
    removal.set_path(super::PREFIX);
    removal.make_removal();
    req.cookie().add(removal);
    Ok(Redirect::see_other(format!("{}/sign-in", super::PREFIX)).into_response())
}

fn sign_in_form(next: Option<&str>, error: Option<&str>) -> Markup {
    page::bare(
        "Sign in",
        html! {
            form.sign-in method="post" action={(super::PREFIX) "/sign-in"} {
                h1 { "hookline" }
                p { "Paste an API token. The browser keeps a session; the token itself is not stored in it." }
                @if let Some(error) = error { p.notice.error role="alert" { (error) } }
                label for="token" { "API token" }
                input #token type="password" name="token" autocomplete="off" required autofocus;
                @if let Some(next) = next { input type="hidden" name="next" value=(next); }
                button.primary type="submit" { "Sign in" }
            }
        },
    )
}
