//! `/v1/event-types`: the catalogue of the event types producers publish,
//! each with an optional JSON Schema that events are checked against (by
//! the database, for every producer: `sql/025_event_types.sql`).
//!
//! A type with no `tenant` is shared by every tenant; a tenant may keep its
//! own type of the same name, which then applies to its events instead.
//! `{name}` routes take `?tenant=` to pick a tenant's own type; without it a
//! token of no tenant means the shared one. A tenant-bound token reads the
//! type that applies to its tenant, and changes only its tenant's own.

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use serde::Deserialize;

use super::auth::{Auth, Principal, Scope};
use super::body::{self, Body};
use super::page::PageRequest;
use super::patch::required;
use super::problem::{Problem, ProblemKind};
use super::{ApiTags, AppState, validate};
use crate::db;
use crate::db::audit::Entry;
use crate::db::event_types::EventTypeSettings;

/// What happens to an event whose payload does not match the type's schema.
#[derive(Enum, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "snake_case")]
#[serde(remote = "Self", rename_all = "snake_case")]
pub enum Validation {
    /// Not checked.
    Off,
    /// Accepted, with the failure recorded on the event (`schema_warning`)
    /// and counted (`warnings_24h`).
    Warn,
    /// Refused: 422 over the API, SQLSTATE 23514 from SQL.
    Enforce,
}
body::enum_by_name!(Validation);

impl Validation {
    fn as_str(self) -> &'static str {
        match self {
            Validation::Off => "off",
            Validation::Warn => "warn",
            Validation::Enforce => "enforce",
        }
    }

    fn from_db(s: &str) -> Self {
        match s {
            "warn" => Validation::Warn,
            "enforce" => Validation::Enforce,
            _ => Validation::Off,
        }
    }
}

/// A new event type. `validation` is `off` unless given; `warn` and
/// `enforce` need a `schema`.
#[derive(Object, Deserialize, Debug)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct EventTypeCreate {
    /// The event type, e.g. `order.created`.
    #[oai(validator(pattern = r"^[A-Za-z0-9_.:-]{1,200}$"))]
    pub name: String,
    /// Only this tenant's events (default: every tenant's; a tenant-bound
    /// token's own tenant).
    #[oai(validator(pattern = r"^[A-Za-z0-9_.:-]{1,100}$"))]
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub tenant: Option<String>,
    #[oai(validator(max_length = 1000))]
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub description: Option<String>,
    /// A JSON Schema, draft 2020-12, of the payload (`data` in the delivered
    /// envelope). References must stay within it (`#/$defs/...`);
    /// `$dynamicRef`, `$anchor` and `unevaluated*` are not supported.
    /// Patterns mean what ECMA-262's do (hookline translates them for
    /// PostgreSQL); `\b`, `\p{…}` and inline options are refused.
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub schema: Option<serde_json::Value>,
    /// A payload of this type; must match `schema`.
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub example: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub deprecated: Option<bool>,
    #[serde(default, deserialize_with = "super::body::non_null")]
    pub validation: Option<Validation>,
}

/// Changes to an event type: absent fields stay as they are; `null`
/// removes the schema or the example.
#[derive(Object, Deserialize, Debug, Default)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct EventTypeUpdate {
    #[oai(validator(max_length = 1000))]
    #[serde(default)]
    pub description: MaybeUndefined<String>,
    #[oai(nullable)]
    #[serde(default)]
    pub schema: MaybeUndefined<serde_json::Value>,
    #[oai(nullable)]
    #[serde(default)]
    pub example: MaybeUndefined<serde_json::Value>,
    #[serde(default)]
    pub deprecated: MaybeUndefined<bool>,
    #[serde(default)]
    pub validation: MaybeUndefined<Validation>,
}

#[derive(Object, Debug, Clone)]
pub struct EventType {
    pub name: String,
    /// `null`: shared by every tenant.
    #[oai(nullable)]
    pub tenant: Option<String>,
    pub description: String,
    #[oai(nullable)]
    pub schema: Option<serde_json::Value>,
    #[oai(nullable)]
    pub example: Option<serde_json::Value>,
    pub deprecated: bool,
    pub validation: Validation,
    /// Events accepted in the last 24 hours although their payload does not
    /// match the schema (`validation: warn`).
    pub warnings_24h: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Object, Debug)]
pub struct EventTypeList {
    pub data: Vec<EventType>,
    #[oai(nullable)]
    pub next_cursor: Option<String>,
}

#[derive(ApiResponse)]
pub enum CreateEventTypeResponse {
    #[oai(status = 201)]
    Created(Json<EventType>),
}

#[derive(ApiResponse)]
pub enum SchemaResponse {
    /// The JSON Schema as it was stored.
    #[oai(status = 200, content_type = "application/schema+json")]
    Schema(Json<serde_json::Value>),
}

#[derive(ApiResponse)]
pub enum DeleteEventTypeResponse {
    /// Deleted; events of the type are no longer checked against its schema.
    #[oai(status = 204)]
    Deleted,
}

impl From<db::event_types::EventType> for EventType {
    fn from(row: db::event_types::EventType) -> Self {
        let s = row.settings;
        EventType {
            name: s.name,
            tenant: s.tenant,
            description: s.description,
            schema: s.schema,
            example: s.example,
            deprecated: s.deprecated,
            validation: Validation::from_db(&s.validation),
            warnings_24h: row.warnings_24h,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

#[derive(Default)]
pub struct EventTypesApi;

#[OpenApi(prefix_path = "/v1", tag = "ApiTags::EventTypes")]
impl EventTypesApi {
    /// Add an event type to the catalogue
    #[oai(path = "/event-types", method = "post", operation_id = "createEventType")]
    async fn create(
        &self,
        auth: Auth,
        state: Data<&AppState>,
        body: Body<EventTypeCreate>,
    ) -> Result<CreateEventTypeResponse, Problem> {
        auth.0.require(Scope::Write)?;
        let c = body.0;
        validate::event_type("name", &c.name)?;
        let tenant = auth.0.owner_for_create(c.tenant.as_deref())?;
        if let Some(tenant) = &tenant {
            validate::tenant("tenant", tenant)?;
        }
        let settings = EventTypeSettings {
            name: c.name,
            tenant,
            description: c.description.unwrap_or_default(),
            schema: c.schema,
            example: c.example,
            deprecated: c.deprecated.unwrap_or(false),
            validation: c.validation.unwrap_or(Validation::Off).as_str().to_owned(),
        };
        let mut client = state.pool.get().await?;
        check(&client, &settings).await?;
        let tx = client.transaction().await?;
        let row = db::event_types::insert(&tx, &settings).await.map_err(name_taken)?;
        audit(&tx, &auth.0, "event_type.create", None, Some(&row)).await?;
        tx.commit().await?;
        Ok(CreateEventTypeResponse::Created(Json(row.into())))
    }

    /// List the event types
    #[oai(path = "/event-types", method = "get", operation_id = "listEventTypes")]
    async fn list(
        &self,
        auth: Auth,
        state: Data<&AppState>,
        /// Page size, 1 to 250 (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "250")))]
        limit: Query<Option<u32>>,
        /// `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
        /// Only the types that apply to this tenant: the shared ones and its own.
        tenant: Query<Option<String>>,
        /// Only deprecated (`true`) or only current (`false`) types.
        deprecated: Query<Option<bool>>,
    ) -> Result<Json<EventTypeList>, Problem> {
        let page = PageRequest::parse(limit.0, cursor.0.as_deref())?;
        let mut rows = list_event_types(&auth.0, &state, page, tenant.0.as_deref(), deprecated.0).await?;
        let next_cursor = page.finish(&mut rows, |t| t.id);
        Ok(Json(EventTypeList { data: rows.into_iter().map(EventType::from).collect(), next_cursor }))
    }

    /// Get an event type
    #[oai(path = "/event-types/:name", method = "get", operation_id = "getEventType")]
    async fn get(
        &self,
        auth: Auth,
        state: Data<&AppState>,
        name: Path<String>,
        /// A tenant's own type of this name (default: the shared one).
        tenant: Query<Option<String>>,
    ) -> Result<Json<EventType>, Problem> {
        auth.0.require(Scope::Read)?;
        let client = state.client().await?;
        Ok(Json(readable(&client, &auth.0, &name.0, tenant.0.as_deref()).await?.into()))
    }

    /// Get an event type's JSON Schema
    ///
    /// The schema as it was stored, for code generators and receivers.
    #[oai(path = "/event-types/:name/schema", method = "get", operation_id = "getEventTypeSchema")]
    async fn schema(
        &self,
        auth: Auth,
        state: Data<&AppState>,
        name: Path<String>,
        /// A tenant's own type of this name (default: the shared one).
        tenant: Query<Option<String>>,
    ) -> Result<SchemaResponse, Problem> {
        auth.0.require(Scope::Read)?;
        let client = state.client().await?;
        let row = readable(&client, &auth.0, &name.0, tenant.0.as_deref()).await?;
        let schema = row
            .settings
            .schema
            .ok_or_else(|| Problem::new(ProblemKind::NotFound, "this event type has no schema", None))?;
        Ok(SchemaResponse::Schema(Json(schema)))
    }

    /// Change an event type
    #[oai(path = "/event-types/:name", method = "patch", operation_id = "updateEventType")]
    async fn update(
        &self,
        auth: Auth,
        state: Data<&AppState>,
        name: Path<String>,
        /// A tenant's own type of this name (default: the shared one).
        tenant: Query<Option<String>>,
        body: Body<EventTypeUpdate>,
    ) -> Result<Json<EventType>, Problem> {
        auth.0.require(Scope::Write)?;
        let mut client = state.pool.get().await?;
        let tx = client.transaction().await?;
        let before = changeable(&tx, &auth.0, &name.0, tenant.0.as_deref()).await?;
        let mut settings = before.settings.clone();
        apply(&mut settings, body.0)?;
        check(&tx, &settings).await?;
        let after = db::event_types::update(&tx, before.id, &settings).await?;
        audit(&tx, &auth.0, "event_type.update", Some(&before), Some(&after)).await?;
        tx.commit().await?;
        Ok(Json(after.into()))
    }

    /// Delete an event type
    #[oai(path = "/event-types/:name", method = "delete", operation_id = "deleteEventType")]
    async fn delete(
        &self,
        auth: Auth,
        state: Data<&AppState>,
        name: Path<String>,
        /// A tenant's own type of this name (default: the shared one).
        tenant: Query<Option<String>>,
    ) -> Result<DeleteEventTypeResponse, Problem> {
        auth.0.require(Scope::Write)?;
        let mut client = state.pool.get().await?;
        let tx = client.transaction().await?;
        let row = changeable(&tx, &auth.0, &name.0, tenant.0.as_deref()).await?;
        if state.strict_event_types {
            let subscribed = db::event_types::subscribers_left_without(&tx, &row).await?;
            if subscribed > 0 {
                return Err(Problem::conflict(format!(
                    "{subscribed} endpoint(s) subscribe to `{}` and HOOKLINE_STRICT_EVENT_TYPES is on: \
                     change their event_types first, or deprecate the type",
                    row.settings.name
                )));
            }
        }
        db::event_types::delete(&tx, row.id).await?;
        audit(&tx, &auth.0, "event_type.delete", Some(&row), None).await?;
        tx.commit().await?;
        Ok(DeleteEventTypeResponse::Deleted)
    }
}

/// The type a caller reads under `{name}`: a tenant-bound token gets the one
/// that applies to its tenant; others the one `?tenant=` names.
async fn readable(
    db: &impl deadpool_postgres::GenericClient,
    principal: &Principal,
    name: &str,
    tenant: Option<&str>,
) -> Result<db::event_types::EventType, Problem> {
    let row = match (&principal.tenant, tenant) {
        (Some(own), Some(asked)) if own != asked => None,
        (Some(own), _) => db::event_types::for_tenant(db, name, own).await?,
        (None, asked) => db::event_types::get(db, name, asked).await?,
    };
    row.ok_or_else(|| Problem::not_found("event type"))
}

/// The type a caller may change under `{name}`, locked: a tenant-bound
/// token only its tenant's own.
async fn changeable(
    db: &impl deadpool_postgres::GenericClient,
    principal: &Principal,
    name: &str,
    tenant: Option<&str>,
) -> Result<db::event_types::EventType, Problem> {
    let owner = match (&principal.tenant, tenant) {
        (Some(own), Some(asked)) if own != asked => return Err(Problem::not_found("event type")),
        (Some(own), _) => Some(own.as_str()),
        (None, asked) => asked,
    };
    if let Some(row) = db::event_types::get_for_update(db, name, owner).await? {
        return Ok(row);
    }
    if principal.tenant.is_some() && db::event_types::get(db, name, None).await?.is_some() {
        return Err(Problem::forbidden("a shared event type is changed by a token of no tenant"));
    }
    Err(Problem::not_found("event type"))
}

fn apply(s: &mut EventTypeSettings, u: EventTypeUpdate) -> Result<(), Problem> {
    if let Some(description) = required("description", u.description)? {
        s.description = description;
    }
    super::patch::clearable(u.schema, &mut s.schema);
    super::patch::clearable(u.example, &mut s.example);
    if let Some(deprecated) = required("deprecated", u.deprecated)? {
        s.deprecated = deprecated;
    }
    if let Some(validation) = required("validation", u.validation)? {
        s.validation = validation.as_str().to_owned();
    }
    Ok(())
}

/// The rules create and update must both leave true; each names its field.
async fn check(db: &impl deadpool_postgres::GenericClient, s: &EventTypeSettings) -> Result<(), Problem> {
    validate::text("description", &s.description, 0, 1000)?;
    if s.validation != Validation::Off.as_str() && s.schema.is_none() {
        return Err(Problem::field("validation", "`warn` and `enforce` need a schema"));
    }
    if let Some(schema) = &s.schema {
        if let Err(refused) = db::event_types::check_schema(db, schema).await? {
            return Err(Problem::at_pointer(
                ProblemKind::InvalidField,
                "schema",
                &refused.pointer,
                refused.to_string(),
            ));
        }
        if let Some(example) = &s.example
            && let Some(violation) = db::event_types::schema_violation(db, schema, example).await?
        {
            let detail = match violation.pointer.as_str() {
                "" => format!("does not match the schema: {}", violation.reason),
                pointer => format!("does not match the schema at {pointer}: {}", violation.reason),
            };
            return Err(Problem::at_pointer(ProblemKind::InvalidField, "example", &violation.pointer, detail));
        }
    }
    Ok(())
}

/// A type of this name exists for the tenant: a 409 naming the field.
fn name_taken(error: db::Error) -> Problem {
    let taken = matches!(&error, db::Error::Pg(pg) if pg.as_db_error().and_then(|d| d.constraint()) == Some("event_types_name_tenant"));
    if taken {
        return Problem::new(ProblemKind::Conflict, "an event type with this name exists here", Some("name".into()));
    }
    error.into()
}

/// Records a change of an event type in the audit log.
async fn audit(
    tx: &impl deadpool_postgres::GenericClient,
    principal: &Principal,
    action: &str,
    before: Option<&db::event_types::EventType>,
    after: Option<&db::event_types::EventType>,
) -> Result<(), Problem> {
    let row = after.or(before).expect("an event type changed");
    let entry = Entry {
        tenant: row.settings.tenant.as_deref(),
        action,
        object_type: "event_type",
        object_id: Some(row.settings.name.clone()),
        before: before.map(audit_json),
        after: after.map(audit_json),
    };
    Ok(db::audit::record(tx, &principal.actor(), entry).await?)
}

fn audit_json(row: &db::event_types::EventType) -> serde_json::Value {
    let s = &row.settings;
    serde_json::json!({
        "id": row.id, "name": s.name, "tenant": s.tenant, "description": s.description, "schema": s.schema,
        "example": s.example, "deprecated": s.deprecated, "validation": s.validation,
    })
}

/// With HOOKLINE_STRICT_EVENT_TYPES: each pattern an endpoint of `tenant`
/// newly subscribes to names a type that applies to the tenant, or
/// (`prefix.*`) matches one. Patterns it had before stay, so turning the
/// setting on does not lock existing endpoints.
pub(super) async fn check_subscriptions(
    db: &impl deadpool_postgres::GenericClient,
    tenant: &str,
    patterns: &[String],
    before: &[String],
) -> Result<(), Problem> {
    let new = || patterns.iter().enumerate().filter(|(_, p)| *p != "*" && !before.contains(p));
    if new().next().is_none() {
        return Ok(());
    }
    let names = db::event_types::names_for_tenant(db, tenant).await?;
    for (i, pattern) in new() {
        let known = match pattern.strip_suffix('*') {
            Some(prefix) => names.iter().any(|name| name.starts_with(prefix)),
            None => names.contains(pattern),
        };
        if !known {
            return Err(Problem::field(
                format!("event_types[{i}]"),
                format!("`{pattern}` is not in the event-type catalogue (HOOKLINE_STRICT_EVENT_TYPES is on)"),
            ));
        }
    }
    Ok(())
}

/// A page of the types that apply to `tenant` (narrowed to the caller's):
/// the shared ones and its own.
pub(crate) async fn list_event_types(
    principal: &Principal,
    state: &AppState,
    page: PageRequest,
    tenant: Option<&str>,
    deprecated: Option<bool>,
) -> Result<Vec<db::event_types::EventType>, Problem> {
    principal.require(Scope::Read)?;
    let client = state.client().await?;
    let tenant = principal.tenant_filter(tenant);
    Ok(db::event_types::list_page(&client, page.after, page.fetch(), tenant, deprecated).await?)
}
