//! Whether a secret leaked into some output, even in part: any run of [`WINDOW`] characters of
//! it counts, so a token cut short, or redacted only from its prefix on, is still caught.

/// How long a piece of a secret may be before it counts as leaked.
pub const WINDOW: usize = 20;

/// The first piece of `secret`, [`WINDOW`] characters long (or all of a shorter one), found in
/// `text`, if any.
pub fn piece<'s>(secret: &'s str, text: &str) -> Option<&'s str> {
    (0..=secret.len().saturating_sub(WINDOW))
        .filter_map(|i| secret.get(i..(i + WINDOW).min(secret.len())))
        .find(|piece| text.contains(piece))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_piece_of_twenty_counts() {
        let secret = "ghs_0123456789abcdefghijklmnopqrstuvwxyz";
        assert_eq!(piece(secret, "nothing"), None);
        assert_eq!(piece(secret, "ghs_[REDACTED]"), None);
        assert_eq!(
            piece(secret, "…wxyz and 56789abcdefghijklmnopq…"),
            Some("56789abcdefghijklmno")
        );
        assert_eq!(piece(secret, &secret[..19]), None, "19 is not enough");
        assert_eq!(piece("short", "a short one"), Some("short"));
    }
}
