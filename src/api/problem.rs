//! The only HTTP error type: RFC 9457 problem documents
//! (`application/problem+json`) with a stable `type` per kind of problem.
//!
//! To add a kind: add a `ProblemKind` variant with its status, type and
//! title; if the status is new, add a `Problem` variant for it so the OpenAPI
//! document lists it.

use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};

use crate::db;

/// A problem document (RFC 9457).
#[derive(Object, Debug, Clone)]
#[oai(rename = "Problem")]
pub struct ProblemBody {
    /// A stable identifier of the kind of problem.
    #[oai(rename = "type")]
    pub kind: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong in this request.
    pub detail: String,
    /// The request field at fault, when there is one (e.g. `url`, `event_types[1]`).
    #[oai(skip_serializing_if_is_none)]
    pub field: Option<String>,
    /// Where in the field's JSON value, when the value is at fault inside
    /// (a JSON pointer, e.g. `/order_id` of a payload refused by its schema).
    #[oai(skip_serializing_if_is_none)]
    pub pointer: Option<String>,
}

/// Every error response of the API.
#[derive(ApiResponse, Debug)]
pub enum Problem {
    /// The request is malformed or a field is invalid.
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<Box<ProblemBody>>),
    /// No valid bearer token.
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(Json<Box<ProblemBody>>),
    /// The token's scope or tenant does not allow this.
    #[oai(status = 403, content_type = "application/problem+json")]
    Forbidden(Json<Box<ProblemBody>>),
    /// No such object (or it belongs to another tenant).
    #[oai(status = 404, content_type = "application/problem+json")]
    NotFound(Json<Box<ProblemBody>>),
    /// The request conflicts with the object's current state.
    #[oai(status = 409, content_type = "application/problem+json")]
    Conflict(Json<Box<ProblemBody>>),
    /// The request body is larger than allowed.
    #[oai(status = 413, content_type = "application/problem+json")]
    PayloadTooLarge(Json<Box<ProblemBody>>),
    /// The request body is not JSON.
    #[oai(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(Json<Box<ProblemBody>>),
    /// The request is well-formed but cannot be carried out.
    #[oai(status = 422, content_type = "application/problem+json")]
    Unprocessable(Json<Box<ProblemBody>>),
    /// Something failed on our side; the log has the details.
    #[oai(status = 500, content_type = "application/problem+json")]
    Internal(Json<Box<ProblemBody>>),
}

/// Kinds of problems, each with its status, stable type and title.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    InvalidRequest,
    InvalidField,
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict,
    PayloadTooLarge,
    UnsupportedMediaType,
    Unprocessable,
    SchemaViolation,
    MethodNotAllowed,
    Internal,
}

impl ProblemKind {
    pub fn status(self) -> u16 {
        match self {
            ProblemKind::InvalidRequest | ProblemKind::InvalidField => 400,
            ProblemKind::Unauthorized => 401,
            ProblemKind::Forbidden => 403,
            ProblemKind::NotFound => 404,
            ProblemKind::MethodNotAllowed => 405,
            ProblemKind::Conflict => 409,
            ProblemKind::PayloadTooLarge => 413,
            ProblemKind::UnsupportedMediaType => 415,
            ProblemKind::Unprocessable | ProblemKind::SchemaViolation => 422,
            ProblemKind::Internal => 500,
        }
    }

    pub fn type_uri(self) -> &'static str {
        match self {
            ProblemKind::InvalidRequest => "/problems/invalid-request",
            ProblemKind::InvalidField => "/problems/invalid-field",
            ProblemKind::Unauthorized => "/problems/unauthorized",
            ProblemKind::Forbidden => "/problems/forbidden",
            ProblemKind::NotFound => "/problems/not-found",
            ProblemKind::MethodNotAllowed => "/problems/method-not-allowed",
            ProblemKind::Conflict => "/problems/conflict",
            ProblemKind::PayloadTooLarge => "/problems/payload-too-large",
            ProblemKind::UnsupportedMediaType => "/problems/unsupported-media-type",
            ProblemKind::Unprocessable => "/problems/unprocessable",
            ProblemKind::SchemaViolation => "/problems/schema-violation",
            ProblemKind::Internal => "/problems/internal",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            ProblemKind::InvalidRequest => "The request is malformed",
            ProblemKind::InvalidField => "A field is invalid",
            ProblemKind::Unauthorized => "Authentication required",
            ProblemKind::Forbidden => "Not allowed",
            ProblemKind::NotFound => "Not found",
            ProblemKind::MethodNotAllowed => "Method not allowed",
            ProblemKind::Conflict => "Conflict",
            ProblemKind::PayloadTooLarge => "Payload too large",
            ProblemKind::UnsupportedMediaType => "Unsupported media type",
            ProblemKind::Unprocessable => "Cannot be processed",
            ProblemKind::SchemaViolation => "The payload does not match its event type's schema",
            ProblemKind::Internal => "Internal error",
        }
    }

    pub fn body(self, detail: impl Into<String>, field: Option<String>) -> ProblemBody {
        ProblemBody {
            kind: self.type_uri().to_owned(),
            title: self.title().to_owned(),
            status: self.status(),
            detail: detail.into(),
            field,
            pointer: None,
        }
    }
}

impl Problem {
    pub fn new(kind: ProblemKind, detail: impl Into<String>, field: Option<String>) -> Self {
        let body = Json(Box::new(kind.body(detail, field)));
        match kind {
            ProblemKind::InvalidRequest | ProblemKind::InvalidField => Problem::BadRequest(body),
            ProblemKind::Unauthorized => Problem::Unauthorized(body),
            ProblemKind::Forbidden => Problem::Forbidden(body),
            ProblemKind::NotFound => Problem::NotFound(body),
            ProblemKind::Conflict => Problem::Conflict(body),
            ProblemKind::PayloadTooLarge => Problem::PayloadTooLarge(body),
            ProblemKind::UnsupportedMediaType => Problem::UnsupportedMediaType(body),
            ProblemKind::Unprocessable | ProblemKind::SchemaViolation | ProblemKind::MethodNotAllowed => {
                Problem::Unprocessable(body)
            }
            ProblemKind::Internal => Problem::Internal(body),
        }
    }

    /// A 400 naming the field at fault.
    pub fn field(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(ProblemKind::InvalidField, detail, Some(field.into()))
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(ProblemKind::NotFound, format!("no such {what}"), None)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(ProblemKind::Forbidden, detail, None)
    }

    /// A 4xx naming the field and where inside its JSON value.
    pub fn at_pointer(kind: ProblemKind, field: &str, pointer: &str, detail: impl Into<String>) -> Self {
        let mut problem = Self::new(kind, detail, Some(field.to_owned()));
        problem.body_mut().pointer = Some(pointer.to_owned());
        problem
    }

    /// What the document says (for pages that show it as HTML).
    pub fn details(&self) -> &ProblemBody {
        match self {
            Problem::BadRequest(b)
            | Problem::Unauthorized(b)
            | Problem::Forbidden(b)
            | Problem::NotFound(b)
            | Problem::Conflict(b)
            | Problem::PayloadTooLarge(b)
            | Problem::UnsupportedMediaType(b)
            | Problem::Unprocessable(b)
            | Problem::Internal(b) => &b.0,
        }
    }

    fn body_mut(&mut self) -> &mut ProblemBody {
        match self {
            Problem::BadRequest(b)
            | Problem::Unauthorized(b)
            | Problem::Forbidden(b)
            | Problem::NotFound(b)
            | Problem::Conflict(b)
            | Problem::PayloadTooLarge(b)
            | Problem::UnsupportedMediaType(b)
            | Problem::Unprocessable(b)
            | Problem::Internal(b) => &mut b.0,
        }
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(ProblemKind::Conflict, detail, None)
    }

    /// Logs the cause chain and answers a bare 500.
    pub fn internal(error: &dyn std::error::Error) -> Self {
        tracing::error!(error.cause_chain = %crate::telemetry::error_chain(error), "request failed");
        Self::new(ProblemKind::Internal, "internal error", None)
    }
}

/// A stored secret this process cannot open is a configuration fault
/// (HOOKLINE_SECRET_KEY lacks a key), logged and answered as a 500.
impl From<crate::secrets::OpenError> for Problem {
    fn from(error: crate::secrets::OpenError) -> Self {
        Problem::internal(&error)
    }
}

impl From<db::Error> for Problem {
    fn from(error: db::Error) -> Self {
        match error {
            db::Error::NotFound => Problem::not_found("object"),
            // SQLSTATE class 22, data exception: a value PostgreSQL cannot
            // store, above all a NUL character (\u0000) in text or JSON.
            db::Error::Pg(pg) if pg.code().is_some_and(|c| c.code().starts_with("22")) => {
                let reason = pg.as_db_error().map_or_else(|| pg.to_string(), |d| d.message().to_owned());
                Problem::new(ProblemKind::InvalidRequest, format!("a value cannot be stored: {reason}"), None)
            }
            // The events trigger refused a payload its type's schema does
            // not allow (sql/025_event_types.sql); DETAIL holds where, as JSON.
            db::Error::Pg(pg) if schema_refusal(&pg).is_some() => {
                let (pointer, detail) = schema_refusal(&pg).expect("just matched");
                Problem::at_pointer(ProblemKind::SchemaViolation, "payload", &pointer, detail)
            }
            // SQLSTATE class 54, a limit: above all the events trigger's
            // HOOKLINE_MAX_PAYLOAD_BYTES, which SQL producers meet too.
            db::Error::Pg(pg) if pg.code().is_some_and(|c| c.code().starts_with("54")) => {
                let reason = pg.as_db_error().map_or_else(|| pg.to_string(), |d| d.message().to_owned());
                match reason.strip_prefix("hookline: ") {
                    Some(reason) => Problem::new(ProblemKind::PayloadTooLarge, reason, Some("payload".to_owned())),
                    None => Problem::new(ProblemKind::InvalidRequest, format!("a value is too large: {reason}"), None),
                }
            }
            other => Problem::internal(&other),
        }
    }
}

/// The pointer and message of a payload the events trigger refused.
fn schema_refusal(error: &tokio_postgres::Error) -> Option<(String, String)> {
    let db = error.as_db_error().filter(|d| d.constraint() == Some("event_type_schema"))?;
    let detail: serde_json::Value = serde_json::from_str(db.detail()?).ok()?;
    let pointer = detail["pointer"].as_str()?.to_owned();
    let message = db.message().strip_prefix("hookline: ").unwrap_or(db.message()).to_owned();
    Some((pointer, message))
}

impl From<tokio_postgres::Error> for Problem {
    fn from(error: tokio_postgres::Error) -> Self {
        db::Error::from(error).into()
    }
}

impl From<deadpool_postgres::PoolError> for Problem {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        db::Error::from(error).into()
    }
}

/// Rewrites every error poem raises outside our handlers (unparsable bodies,
/// unknown routes, wrong methods, size limits, failed authentication) as a
/// problem document with the same status.
pub async fn catch_all(error: poem::Error) -> poem::Response {
    let status = error.status();
    let message = error.to_string();
    let response = error.into_response();
    if response.content_type().is_some_and(|c| c.starts_with("application/problem+json")) {
        return response; // already ours (see `body::reject`)
    }
    let kind = match status.as_u16() {
        401 => ProblemKind::Unauthorized,
        403 => ProblemKind::Forbidden,
        404 => ProblemKind::NotFound,
        405 => ProblemKind::MethodNotAllowed,
        413 => ProblemKind::PayloadTooLarge,
        415 => ProblemKind::UnsupportedMediaType,
        400..=499 => ProblemKind::InvalidRequest,
        _ => ProblemKind::Internal,
    };
    let (detail, field) = match kind {
        ProblemKind::Internal => {
            tracing::error!(%message, "request failed");
            ("internal error".to_owned(), None)
        }
        ProblemKind::Unauthorized => ("a valid `Authorization: Bearer <token>` header is required".to_owned(), None),
        _ => (message.replace("param0", "path parameter"), field_of(&message)),
    };
    let mut body = kind.body(detail, field);
    body.status = status.as_u16();
    poem::Response::builder()
        .status(status)
        .content_type("application/problem+json")
        .body(serde_json::to_string(&problem_json(&body)).expect("serialisable"))
}

pub fn problem_json(body: &ProblemBody) -> serde_json::Value {
    let mut value = serde_json::json!({
        "type": body.kind, "title": body.title, "status": body.status, "detail": body.detail,
    });
    if let Some(field) = &body.field {
        value["field"] = serde_json::Value::String(field.clone());
    }
    if let Some(pointer) = &body.pointer {
        value["pointer"] = serde_json::Value::String(pointer.clone());
    }
    value
}

/// poem-openapi names the offending field in its parse errors as
/// `field "name"` or `parameter "name"`: lift it into `field`.
fn field_of(message: &str) -> Option<String> {
    for marker in ["failed to parse field `", "field `", "parameter `", "parameter \""] {
        if let Some(rest) = message.split(marker).nth(1) {
            let name: String = rest.chars().take_while(|c| *c != '`' && *c != '"').collect();
            if !name.is_empty() {
                return Some(name);
            }
        }
    }
    None
}
