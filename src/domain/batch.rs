//! How an endpoint's deliveries are cut into batched requests: at most
//! `max_events` envelopes and `max_bytes` of body each, in due order. An
//! envelope larger than `max_bytes` on its own still goes, alone.

/// An endpoint's `batch` settings as the worker uses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchShape {
    pub max_events: usize,
    pub max_bytes: usize,
    pub format: BatchFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchFormat {
    /// A JSON array of envelopes.
    Json,
    /// One envelope per line, each line ending in `\n`.
    Ndjson,
}

impl BatchFormat {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "json" => Some(Self::Json),
            "ndjson" => Some(Self::Ndjson),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Ndjson => "ndjson",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::Ndjson => "application/x-ndjson",
        }
    }

    /// The request body carrying `envelopes`.
    pub fn body<'a>(self, envelopes: impl IntoIterator<Item = &'a str>) -> String {
        let mut body = String::new();
        if self == Self::Json {
            body.push('[');
        }
        for (i, envelope) in envelopes.into_iter().enumerate() {
            if self == Self::Json && i > 0 {
                body.push(',');
            }
            body.push_str(envelope);
            if self == Self::Ndjson {
                body.push('\n');
            }
        }
        if self == Self::Json {
            body.push(']');
        }
        body
    }

    /// Bytes the body spends on `envelope` besides its own: a separator.
    fn overhead(self) -> usize {
        1
    }
}

impl BatchShape {
    /// Cuts envelopes of these sizes (in order) into requests: the index
    /// ranges of each.
    pub fn cut(&self, sizes: &[usize]) -> Vec<std::ops::Range<usize>> {
        let mut requests = Vec::new();
        let mut start = 0;
        let mut bytes = 2; // `[]`, or the last newline's room
        for (i, size) in sizes.iter().enumerate() {
            let grown = bytes + size + self.format.overhead();
            let full = i - start >= self.max_events || (i > start && grown > self.max_bytes);
            if full {
                requests.push(start..i);
                start = i;
                bytes = 2;
            }
            bytes += size + self.format.overhead();
        }
        if start < sizes.len() {
            requests.push(start..sizes.len());
        }
        requests
    }

    /// What a request of envelopes of these sizes may still take, if
    /// anything: envelopes, and bytes counting one separator each.
    pub fn room(&self, sizes: &[usize]) -> Option<(usize, usize)> {
        let body = 2 + sizes.iter().map(|size| size + self.format.overhead()).sum::<usize>();
        let room = (self.max_events.checked_sub(sizes.len())?, self.max_bytes.checked_sub(body)?);
        (room.0 > 0 && room.1 > 0).then_some(room)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(max_events: usize, max_bytes: usize) -> BatchShape {
        BatchShape { max_events, max_bytes, format: BatchFormat::Json }
    }

    #[test]
    fn requests_hold_at_most_max_events() {
        assert_eq!(shape(2, 1 << 20).cut(&[10, 10, 10, 10, 10]), vec![0..2, 2..4, 4..5]);
    }

    #[test]
    fn requests_hold_at_most_max_bytes_but_a_large_envelope_goes_alone() {
        // [a,b] is 2 + 40 + 40 + 2 = 84 bytes: within 90; a third is not.
        assert_eq!(shape(100, 90).cut(&[40, 40, 40, 500, 10]), vec![0..2, 2..3, 3..4, 4..5]);
    }

    #[test]
    fn a_cut_body_fits_its_max_bytes() {
        let shape = shape(100, 1024);
        let envelopes: Vec<String> = (0..50).map(|i| format!(r#"{{"n":"{}"}}"#, "x".repeat(i * 7))).collect();
        let sizes: Vec<usize> = envelopes.iter().map(String::len).collect();
        for format in [BatchFormat::Json, BatchFormat::Ndjson] {
            let shape = BatchShape { format, ..shape };
            for range in shape.cut(&sizes) {
                let body = format.body(envelopes[range.clone()].iter().map(String::as_str));
                assert!(body.len() <= shape.max_bytes || range.len() == 1, "{} bytes", body.len());
            }
        }
    }

    #[test]
    fn bodies_are_a_json_array_or_ndjson() {
        assert_eq!(BatchFormat::Json.body(["{}", "[1]"]), "[{},[1]]");
        assert_eq!(BatchFormat::Ndjson.body(["{}", "[1]"]), "{}\n[1]\n");
        assert_eq!(BatchFormat::Json.body([]), "[]");
    }

    #[test]
    fn room_is_what_a_request_may_still_take() {
        assert_eq!(shape(100, 1000).room(&[99, 99]), Some((98, 798)));
        assert_eq!(shape(2, 1000).room(&[99, 99]), None);
        assert_eq!(shape(100, 202).room(&[99, 99]), None);
    }
}
