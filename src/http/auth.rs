//! The optional API key (`--api-key`, `ONNX_SERVE_API_KEY`, `--api-key-file`): every route
//! but the health routes then needs `Authorization: Bearer <key>`.
//!
//! The key is compared in constant time (the time does not tell how much of a guess was
//! right), and it never reaches a log line or an error message: `ApiKey` has no `Display`
//! and its `Debug` hides the value.

use super::error::ApiError;
use std::fmt;
use std::path::Path;

/// The secret. Printable ASCII without spaces: it travels in a header.
#[derive(Clone)]
pub struct ApiKey(Vec<u8>);

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<hidden>)")
    }
}

impl ApiKey {
    pub fn new(key: &str) -> Result<ApiKey, String> {
        if key.is_empty() {
            return Err("the API key is empty".into());
        }
        if !key.bytes().all(|b| b.is_ascii_graphic()) {
            // Not echoed: it is a secret, even when malformed.
            return Err(
                "the API key must be printable ASCII without spaces (it is sent in a header)"
                    .into(),
            );
        }
        Ok(ApiKey(key.as_bytes().to_vec()))
    }

    /// The key from a file (a mounted secret): its content, without the surrounding
    /// whitespace and final newline such files usually have.
    pub fn from_file(path: &Path) -> Result<ApiKey, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the API key file {}: {e}", path.display()))?;
        ApiKey::new(text.trim()).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Constant-time comparison: every byte of the key is looked at, whatever `guess` is.
    /// Only the key's length could be learnt from the time it takes.
    fn matches(&self, guess: &[u8]) -> bool {
        let key = &self.0;
        let mut difference = key.len() ^ guess.len();
        for (i, &k) in key.iter().enumerate() {
            let g = guess.get(i).copied().unwrap_or(!k);
            difference |= usize::from(k ^ g);
        }
        std::hint::black_box(difference) == 0
    }
}

/// Who may call: anyone, or holders of the key.
#[derive(Clone, Debug, Default)]
pub struct Auth {
    key: Option<ApiKey>,
}

/// The realm named in `WWW-Authenticate`.
const REALM: &str = "Bearer realm=\"onnx-serve\"";

impl Auth {
    pub fn open() -> Auth {
        Auth { key: None }
    }

    pub fn with_key(key: ApiKey) -> Auth {
        Auth { key: Some(key) }
    }

    pub fn is_required(&self) -> bool {
        self.key.is_some()
    }

    /// Lets a request with this `Authorization` header through, or refuses it with 401 and
    /// `WWW-Authenticate`. Everything is open when no key is set.
    pub(super) fn check(&self, authorization: Option<&str>) -> Result<(), ApiError> {
        let Some(key) = &self.key else {
            return Ok(());
        };
        let Some(value) = authorization else {
            return Err(ApiError::new(
                401,
                "this server needs an API key: send the header Authorization: Bearer <key>",
            )
            .with_header("WWW-Authenticate", REALM));
        };
        match bearer_token(value) {
            Some(token) if key.matches(token.as_bytes()) => Ok(()),
            Some(_) => Err(ApiError::new(401, "the API key is not valid").with_header(
                "WWW-Authenticate",
                format!("{REALM}, error=\"invalid_token\""),
            )),
            None => Err(
                ApiError::new(401, "the Authorization header must be Bearer <key>").with_header(
                    "WWW-Authenticate",
                    format!("{REALM}, error=\"invalid_request\""),
                ),
            ),
        }
    }
}

/// The token of `Bearer <token>` (the scheme is case-insensitive).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_exactly() {
        let key = ApiKey::new("s3cret-key").unwrap();
        assert!(key.matches(b"s3cret-key"));
        assert!(!key.matches(b"s3cret-kez"));
        assert!(!key.matches(b"s3cret-key2"));
        assert!(!key.matches(b"s3cret-ke"));
        assert!(!key.matches(b""));
    }

    #[test]
    fn bad_keys_are_refused_without_being_echoed() {
        assert!(ApiKey::new("").is_err());
        let err = ApiKey::new("has space").unwrap_err();
        assert!(!err.contains("has space"), "{err}");
        assert_eq!(
            format!("{:?}", ApiKey::new("abc").unwrap()),
            "ApiKey(<hidden>)"
        );
    }

    #[test]
    fn bearer_tokens() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer   abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("abc"), None);
    }
}
