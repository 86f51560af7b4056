//! What one attempt says about its endpoint, for the circuit breaker. The
//! breaker itself (the run, open, half-open, probes) lives with the state it
//! guards, in `sql/070_complete_deliveries.sql`.

use super::delivery::ErrorKind;

/// `Some(true)`: the endpoint looks down (no answer, or a 5xx, 408 or 429:
/// "I cannot take this now"). `Some(false)`: it answers, even if it refuses
/// this payload (another 4xx) or redirects. `None`: the attempt never reached
/// it for reasons of our own or its configuration (invalid URL, blocked
/// address, body too large, a secret that cannot sign, a transformation
/// that failed), which say nothing about its health.
pub fn endpoint_down(error: Option<ErrorKind>, status: Option<u16>) -> Option<bool> {
    match error {
        None => Some(false),
        Some(ErrorKind::Dns | ErrorKind::Connect | ErrorKind::Tls | ErrorKind::Timeout) => Some(true),
        Some(ErrorKind::HttpStatus) => Some(status.is_some_and(|s| s >= 500 || s == 408 || s == 429)),
        // A broker that answers, refusing this message (no stream or queue
        // takes it), is up: like a 4xx.
        Some(ErrorKind::BrokerRejected) => Some(false),
        Some(
            ErrorKind::InvalidUrl
            | ErrorKind::BlockedAddress
            | ErrorKind::BodyTooLarge
            | ErrorKind::InvalidSecret
            | ErrorKind::WorkerLost
            | ErrorKind::CircuitOpen
            | ErrorKind::Transformation,
        ) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outages_and_overload_count_against_the_endpoint() {
        let cases = [
            (None, Some(200), Some(false)),
            (Some(ErrorKind::Timeout), None, Some(true)),
            (Some(ErrorKind::Connect), None, Some(true)),
            (Some(ErrorKind::Dns), None, Some(true)),
            (Some(ErrorKind::Tls), None, Some(true)),
            (Some(ErrorKind::HttpStatus), Some(503), Some(true)),
            (Some(ErrorKind::HttpStatus), Some(500), Some(true)),
            (Some(ErrorKind::HttpStatus), Some(429), Some(true)),
            (Some(ErrorKind::HttpStatus), Some(408), Some(true)),
            (Some(ErrorKind::HttpStatus), Some(400), Some(false)),
            (Some(ErrorKind::HttpStatus), Some(307), Some(false)),
            (Some(ErrorKind::InvalidUrl), None, None),
            (Some(ErrorKind::BlockedAddress), None, None),
            (Some(ErrorKind::BodyTooLarge), None, None),
            (Some(ErrorKind::InvalidSecret), None, None),
        ];
        for (kind, status, expected) in cases {
            assert_eq!(endpoint_down(kind, status), expected, "{kind:?} {status:?}");
        }
    }
}
