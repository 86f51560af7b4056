//! PATCH bodies: a field is absent (unchanged), `null`, or a value.

use poem_openapi::types::MaybeUndefined;

use super::problem::Problem;

/// A field that may be absent but not null.
pub fn required<T>(field: &str, value: MaybeUndefined<T>) -> Result<Option<T>, Problem> {
    match value {
        MaybeUndefined::Undefined => Ok(None),
        MaybeUndefined::Null => Err(Problem::field(field, "may not be null")),
        MaybeUndefined::Value(v) => Ok(Some(v)),
    }
}

/// A field that null clears.
pub fn clearable<T>(value: MaybeUndefined<T>, current: &mut Option<T>) {
    match value {
        MaybeUndefined::Undefined => {}
        MaybeUndefined::Null => *current = None,
        MaybeUndefined::Value(v) => *current = Some(v),
    }
}
