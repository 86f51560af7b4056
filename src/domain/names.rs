//! The names hookline keeps: tenants and event types.

/// The characters of a tenant or event type name.
pub fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-')
}

/// The longest event type, in characters.
pub const EVENT_TYPE_MAX: usize = 200;

/// Whether `value` may be an event type.
pub fn is_event_type(value: &str) -> bool {
    !value.is_empty() && value.chars().count() <= EVENT_TYPE_MAX && value.chars().all(is_name_char)
}
