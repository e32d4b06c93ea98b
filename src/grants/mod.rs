//! Room grants: what a connection that logged in with a JSON Web Token may
//! do, taken from the token's claims (opt-in, see docs/OPERATIONS.md "Room
//! grants").
//!
//! A connection that logged in with a stored token has no grant and may
//! join any room, as in the original service.

pub mod jwt;
pub mod ttl;

pub use jwt::{Claims, JwtError, Signer, Verifier};

/// What a verified token lets its connection do.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Grant {
    /// Room id patterns the connection may join (`*` matches any run of
    /// characters); `None` when the token has no `rooms` claim (any room).
    pub rooms: Option<Vec<String>>,
    /// The token allows joining as an observer (`dummy: true`).
    pub observer: bool,
}

impl Grant {
    /// Whether the grant lets its connection join `room` (the room's
    /// string form, as `protocol::parse_join` gives it).
    pub fn allows_room(&self, room: &str) -> bool {
        match &self.rooms {
            None => true,
            Some(patterns) => patterns.iter().any(|p| pattern_matches(p, room)),
        }
    }
}

/// Whether `text` matches `pattern`, in which `*` stands for any run of
/// characters (also none) and every other character for itself.
pub fn pattern_matches(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was, and where in `text` it is tried to end.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                // Let the last `*` take one more character and retry.
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_matches_any_run_of_characters() {
        for (pattern, text) in [
            ("r1", "r1"),
            ("*", "anything"),
            ("team-*", "team-"),
            ("team-*", "team-42"),
            ("*-42", "team-42"),
            ("a*b*c", "aXbYc"),
            ("a*b*c", "abc"),
            ("a**c", "ac"),
            ("10*", "1000"),
        ] {
            assert!(pattern_matches(pattern, text), "{pattern} ~ {text}");
        }
        for (pattern, text) in [
            ("r1", "r2"),
            ("r1", "r10"),
            ("team-*", "team"),
            ("team-*", "other-1"),
            ("*-42", "team-43"),
            ("a*b*c", "aXbY"),
            ("", "x"),
        ] {
            assert!(!pattern_matches(pattern, text), "{pattern} !~ {text}");
        }
    }

    #[test]
    fn no_rooms_claim_allows_every_room() {
        assert!(Grant::default().allows_room("any"));
        let g = Grant {
            rooms: Some(vec!["doc-*".into(), "1000".into()]),
            observer: false,
        };
        assert!(g.allows_room("doc-7") && g.allows_room("1000"));
        assert!(!g.allows_room("1001") && !g.allows_room("admin"));
        let none = Grant {
            rooms: Some(vec![]),
            observer: true,
        };
        assert!(!none.allows_room("doc-7"));
    }
}
