//! Cursor pagination: `?limit=&cursor=`, answered with `next_cursor`. Lists
//! run newest first by UUIDv7 id, and a cursor is the last id seen, so pages
//! stay stable while new objects are inserted (they sort before page one).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use uuid::Uuid;

use super::problem::Problem;

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 250;

#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    pub after: Option<Uuid>,
    pub limit: u32,
}

impl PageRequest {
    pub fn parse(limit: Option<u32>, cursor: Option<&str>) -> Result<Self, Problem> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(Problem::field("limit", format!("limit must be between 1 and {MAX_LIMIT}")));
        }
        let after = match cursor {
            None | Some("") => None,
            Some(cursor) => {
                Some(decode_cursor(cursor).ok_or_else(|| Problem::field("cursor", "not a cursor from this API"))?)
            }
        };
        Ok(PageRequest { after, limit })
    }

    /// Rows to fetch: one more than the page, to know whether another follows.
    pub fn fetch(&self) -> i64 {
        self.limit as i64 + 1
    }

    /// Cuts `rows` to the page and returns the cursor of the next one.
    pub fn finish<T>(&self, rows: &mut Vec<T>, id: impl Fn(&T) -> Uuid) -> Option<String> {
        if rows.len() <= self.limit as usize {
            return None;
        }
        rows.truncate(self.limit as usize);
        rows.last().map(|last| encode_cursor(id(last)))
    }
}

fn encode_cursor(id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(id.as_bytes())
}

fn decode_cursor(cursor: &str) -> Option<Uuid> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    Uuid::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let id = Uuid::now_v7();
        assert_eq!(decode_cursor(&encode_cursor(id)), Some(id));
        assert!(PageRequest::parse(None, Some("not a cursor")).is_err());
        assert!(PageRequest::parse(Some(0), None).is_err());
        assert!(PageRequest::parse(Some(251), None).is_err());
        assert_eq!(PageRequest::parse(None, None).unwrap().limit, DEFAULT_LIMIT);
    }

    #[test]
    fn finish_cuts_the_extra_row_and_points_after_the_last() {
        let page = PageRequest { after: None, limit: 2 };
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        let mut rows = ids.clone();
        let next = page.finish(&mut rows, |id| *id);
        assert_eq!(rows.len(), 2);
        assert_eq!(next.and_then(|c| decode_cursor(&c)), Some(ids[1]));
        let mut short = vec![ids[0]];
        assert_eq!(page.finish(&mut short, |id| *id), None);
    }
}
