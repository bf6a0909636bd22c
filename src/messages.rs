//! What stores and issuers say, made fit for a condition or an event: one line, bounded,
//! with the causes that say what to do. Never a request body: callers pass only what a
//! server or client library answered.

/// Longest message kept (a condition message has room for little more).
pub const MAX: usize = 300;

/// `s` on one line (control characters would garble conditions and logs), cut at `MAX`
/// characters.
pub fn bounded(s: &str) -> String {
    bounded_to(s, MAX)
}

/// `s` on one line, cut at `max` characters.
pub fn bounded_to(s: &str, max: usize) -> String {
    let line: String = s
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match line.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line,
    }
}

/// An error and its sources ("error sending request … : connection refused"): the
/// outermost message of a client library alone says nothing a user can act on.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_bounded_line() {
        let m = bounded(&format!("bad\nscope\u{1b}[31m {}", "x".repeat(500)));
        assert!(m.starts_with("bad scope [31m"), "{m}");
        assert!(!m.chars().any(char::is_control));
        assert_eq!(m.chars().count(), MAX + 1, "cut, with an ellipsis");
        assert_eq!(bounded(" short "), "short");
    }
}
