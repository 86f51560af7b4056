//! `Body<T>`: a JSON request body parsed with serde, so a bad field is named
//! exactly (`event_types[2]`, `headers.x-api-key`) in the 400 problem, while
//! the OpenAPI document still describes `T` through poem-openapi.
//!
//! poem-openapi's own `Json<T>` parser reports which *type* failed, not which
//! field, and coerces numbers and booleans into strings.

use poem::{IntoResponse, Request, RequestBody};
use poem_openapi::payload::{ParsePayload, Payload};
use poem_openapi::registry::{MetaMediaType, MetaRequest, MetaSchemaRef, Registry};
use poem_openapi::types::MaybeUndefined;
use poem_openapi::types::Type;
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::problem::{Problem, ProblemKind};

/// The largest request body accepted, unless configured otherwise.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// The configured body limit, put into request data by the app.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

pub struct Body<T>(pub T);

impl<T: Type> Payload for Body<T> {
    const CONTENT_TYPE: &'static str = "application/json";

    fn check_content_type(content_type: &str) -> bool {
        content_type.parse::<mime::Mime>().is_ok_and(|m| {
            m.type_() == "application" && (m.subtype() == "json" || m.suffix().is_some_and(|s| s == "json"))
        })
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: Type + DeserializeOwned + Send> ParsePayload for Body<T> {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        let limit = request.data::<BodyLimit>().map_or(DEFAULT_MAX_BODY_BYTES, |l| l.0);
        let bytes = read_limited(body.take()?, limit).await?;
        // Every request body is a JSON object; serde alone would also take a
        // struct from an array of its fields.
        let json: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| reject(Problem::new(ProblemKind::InvalidRequest, format!("malformed JSON: {e}"), None)))?;
        if !json.is_object() {
            return Err(reject(Problem::new(ProblemKind::InvalidRequest, "the body must be a JSON object", None)));
        }
        let value: T = serde_path_to_error::deserialize(json).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            match inner.classify() {
                // Wrong types, unknown or missing fields: name the field.
                serde_json::error::Category::Data if path != "." => {
                    reject(Problem::new(ProblemKind::InvalidField, inner.to_string(), Some(path)))
                }
                serde_json::error::Category::Data => {
                    let missing = inner
                        .to_string()
                        .strip_prefix("missing field `")
                        .and_then(|r| r.split('`').next().map(str::to_owned));
                    reject(Problem::new(ProblemKind::InvalidField, inner.to_string(), missing))
                }
                _ => reject(Problem::new(ProblemKind::InvalidRequest, format!("malformed JSON: {inner}"), None)),
            }
        })?;
        Ok(Body(value))
    }
}

impl<'a, T: Type + DeserializeOwned + Send> ApiExtractor<'a> for Body<T> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        <Self as Payload>::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: None,
            content: vec![MetaMediaType { content_type: Self::CONTENT_TYPE, schema: Self::schema_ref() }],
            required: true,
        })
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _options: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        match request.content_type() {
            Some(content_type) if Self::check_content_type(content_type) => {
                <Self as ParsePayload>::from_request(request, body).await
            }
            Some(other) => Err(reject(Problem::new(
                ProblemKind::UnsupportedMediaType,
                format!("the body must be application/json, not {other}"),
                None,
            ))),
            None => Err(reject(Problem::new(
                ProblemKind::UnsupportedMediaType,
                "the body must be application/json (no Content-Type was given)",
                None,
            ))),
        }
    }
}

/// Reads at most `limit` bytes; more is a 413 problem.
pub async fn read_limited(body: poem::Body, limit: usize) -> poem::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut bytes = Vec::new();
    let mut reader = body.into_async_read().take(limit as u64 + 1);
    reader.read_to_end(&mut bytes).await.map_err(|e| {
        reject(Problem::new(ProblemKind::InvalidRequest, format!("reading the body failed: {e}"), None))
    })?;
    if bytes.len() > limit {
        return Err(reject(Problem::new(
            ProblemKind::PayloadTooLarge,
            format!("the body is larger than {limit} bytes"),
            None,
        )));
    }
    Ok(bytes)
}

/// A problem as a poem error, answered as is.
pub fn reject(problem: Problem) -> poem::Error {
    poem::Error::from_response(problem.into_response())
}

/// For optional request fields: absent is `None` (with `#[serde(default)]`),
/// but an explicit `null` is refused like any other wrong type, so the
/// document can say "not nullable" and mean it.
pub fn non_null<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// A request body as raw bytes, whatever its content type, within the body
/// limit: inbound webhooks are verified on exactly the bytes sent. The
/// document describes it as any JSON, which is what it must hold.
pub struct RawBody(pub Vec<u8>);

impl<'a> ApiExtractor<'a> for RawBody {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        <serde_json::Value as Type>::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: Some("The provider's payload, exactly as signed."),
            content: vec![MetaMediaType {
                content_type: "application/json",
                schema: <serde_json::Value as Type>::schema_ref(),
            }],
            required: true,
        })
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _options: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        let limit = request.data::<BodyLimit>().map_or(DEFAULT_MAX_BODY_BYTES, |l| l.0);
        Ok(RawBody(read_limited(body.take()?, limit).await?))
    }
}

/// For a nested object field: serde's derive would also take a struct from
/// an array of its fields (`"batch": []`), which the document does not allow.
pub fn object<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    ObjectOnly::deserialize(deserializer).map(|o| Some(o.0))
}

/// [`object`] for a field that `null` clears.
pub fn maybe_object<'de, D, T>(deserializer: D) -> Result<MaybeUndefined<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    Ok(match Option::<ObjectOnly<T>>::deserialize(deserializer)? {
        Some(o) => MaybeUndefined::Value(o.0),
        None => MaybeUndefined::Null,
    })
}

struct ObjectOnly<T>(T);

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for ObjectOnly<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapOnly<T>(std::marker::PhantomData<T>);

        impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for MapOnly<T> {
            type Value = ObjectOnly<T>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(ObjectOnly)
            }
        }

        deserializer.deserialize_map(MapOnly(std::marker::PhantomData))
    }
}

/// Request enums are read from their names only, as the document has them:
/// serde's derive would also take `{"name": null}` for a name. The enum
/// derives serde's code with `#[serde(remote = "Self")]` for this to call.
macro_rules! enum_by_name {
    ($t:ty) => {
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let name = String::deserialize(deserializer)?;
                <$t>::deserialize(serde::de::value::StringDeserializer::<D::Error>::new(name))
            }
        }
    };
}
pub(crate) use enum_by_name;
