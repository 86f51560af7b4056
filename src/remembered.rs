//! A short memory of lookups, for what every request would otherwise look up
//! in the database (API tokens, inbound sources by name): what was found,
//! and — apart from it, in a bounded set — what was not. A flood of unknown
//! keys then costs one lookup per key rather than per request, and can only
//! push out other unknown keys, never a known one. Known entries are as
//! many as the things that exist.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What is remembered of a key.
#[derive(Debug, Clone, PartialEq)]
pub enum Recall<V> {
    Known(V),
    /// Looked up lately and not found.
    Unknown,
    /// Not looked up within the time to live.
    Forgotten,
}

#[derive(Debug)]
pub struct Remembered<K, V> {
    ttl: Duration,
    unknown_max: usize,
    known: Mutex<HashMap<K, (Instant, V)>>,
    unknown: Mutex<HashMap<K, Instant>>,
}

impl<K: Hash + Eq, V: Clone> Remembered<K, V> {
    /// Remembers each lookup for `ttl`, and at most `unknown_max` unknown keys.
    pub fn new(ttl: Duration, unknown_max: usize) -> Self {
        Remembered { ttl, unknown_max, known: Mutex::default(), unknown: Mutex::default() }
    }

    pub fn recall<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Recall<V>
    where
        K: Borrow<Q>,
    {
        if let Some((at, value)) = self.known.lock().expect("not poisoned").get(key)
            && at.elapsed() < self.ttl
        {
            return Recall::Known(value.clone());
        }
        match self.unknown.lock().expect("not poisoned").get(key) {
            Some(at) if at.elapsed() < self.ttl => Recall::Unknown,
            _ => Recall::Forgotten,
        }
    }

    /// Remembers what a lookup of `key` found.
    pub fn remember(&self, key: K, found: Option<V>) {
        match found {
            Some(value) => {
                self.unknown.lock().expect("not poisoned").remove(&key);
                let mut known = self.known.lock().expect("not poisoned");
                // A miss happens once per key and time to live: the sweep
                // keeps what no longer exists from staying forever.
                known.retain(|_, (at, _)| at.elapsed() < self.ttl);
                known.insert(key, (Instant::now(), value));
            }
            None => {
                self.known.lock().expect("not poisoned").remove(&key);
                let mut unknown = self.unknown.lock().expect("not poisoned");
                if unknown.len() >= self.unknown_max {
                    unknown.retain(|_, at| at.elapsed() < self.ttl);
                    if unknown.len() >= self.unknown_max {
                        unknown.clear();
                    }
                }
                unknown.insert(key, Instant::now());
            }
        }
    }

    /// Forgets `key` at once (this process changed what it stands for).
    pub fn forget<Q: Hash + Eq + ?Sized>(&self, key: &Q)
    where
        K: Borrow<Q>,
    {
        self.known.lock().expect("not poisoned").remove(key);
        self.unknown.lock().expect("not poisoned").remove(key);
    }

    /// Forgets everything (what it stands for changed elsewhere, or may have).
    pub fn forget_all(&self) {
        self.known.lock().expect("not poisoned").clear();
        self.unknown.lock().expect("not poisoned").clear();
    }

    /// Forgets the known entries whose value matches.
    pub fn forget_where(&self, matches: impl Fn(&V) -> bool) {
        self.known.lock().expect("not poisoned").retain(|_, (_, value)| !matches(value));
    }

    #[cfg(test)]
    fn unknown_len(&self) -> usize {
        self.unknown.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scan_of_unknown_keys_never_pushes_out_a_known_one() {
        let memory: Remembered<String, u32> = Remembered::new(Duration::from_secs(60), 100);
        memory.remember("real".into(), Some(7));
        for n in 0..300 {
            memory.remember(format!("guess-{n}"), None);
        }
        assert_eq!(memory.recall("real"), Recall::Known(7));
        assert_eq!(memory.recall("guess-299"), Recall::Unknown);
        assert!(memory.unknown_len() <= 100);
    }

    #[test]
    fn a_key_moves_between_known_and_unknown_and_is_forgotten() {
        let memory: Remembered<String, u32> = Remembered::new(Duration::from_secs(60), 10);
        memory.remember("x".into(), None);
        assert_eq!(memory.recall("x"), Recall::Unknown);
        memory.remember("x".into(), Some(1));
        assert_eq!(memory.recall("x"), Recall::Known(1));
        memory.forget("x");
        assert_eq!(memory.recall("x"), Recall::Forgotten);
        memory.remember("y".into(), Some(2));
        memory.forget_where(|v| *v == 2);
        assert_eq!(memory.recall("y"), Recall::Forgotten);
    }

    #[test]
    fn entries_expire() {
        let memory: Remembered<String, u32> = Remembered::new(Duration::ZERO, 10);
        memory.remember("x".into(), Some(1));
        memory.remember("y".into(), None);
        assert_eq!(memory.recall("x"), Recall::Forgotten);
        assert_eq!(memory.recall("y"), Recall::Forgotten);
    }
}
