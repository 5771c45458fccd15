//! Bearer-token auth. Tokens come from a file (`SKEP_API_TOKENS_FILE`, as a
//! Docker secret mounts it): one `TOKEN SCOPE` pair per line, `#` comments
//! and blank lines ignored, scope `read` or `admin`. `admin` can do what
//! `read` can.
//!
//! Guarantees: a token is compared in constant time (SHA-256 digests of the
//! presented and every known token, each compared with `subtle`, no early
//! exit), so timing tells nothing of which prefix matched; a token is never
//! logged nor echoed in an error; a route that the API table does not name
//! needs `admin` (closed by default).

use std::path::Path;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Look: every `GET` of the API.
    Read,
    /// Change a job or the swarm.
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "read" => Some(Scope::Read),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }
}

/// The known tokens, by digest.
#[derive(Clone, Default)]
pub struct Tokens {
    entries: Vec<([u8; 32], Scope)>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens").field("count", &self.entries.len()).finish()
    }
}

pub(super) fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

/// Tokens shorter than this are refused when the file is read: a short
/// token can be guessed.
pub const MIN_TOKEN_LEN: usize = 16;

impl Tokens {
    /// Parses a tokens file's text. Errors name the line, never the token.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (Some(token), Some(scope), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(format!("line {}: expected `TOKEN SCOPE`", i + 1));
            };
            let scope = Scope::parse(scope)
                .ok_or_else(|| format!("line {}: scope {scope:?} is neither `read` nor `admin`", i + 1))?;
            if token.len() < MIN_TOKEN_LEN {
                return Err(format!(
                    "line {}: the token is shorter than {MIN_TOKEN_LEN} characters",
                    i + 1
                ));
            }
            entries.push((digest(token.as_bytes()), scope));
        }
        if entries.is_empty() {
            return Err("no tokens in the file".to_owned());
        }
        Ok(Self { entries })
    }

    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {}", path.display(), e.kind()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The scope of `token`, or `None` when it is not known. Takes the same
    /// time whichever token (if any) matches.
    pub fn scope_of(&self, token: &str) -> Option<Scope> {
        let presented = digest(token.as_bytes());
        let mut found: Option<Scope> = None;
        for (known, scope) in &self.entries {
            let hit: bool = presented.ct_eq(known).into();
            // NB: no early exit; a later equal digest cannot exist with a
            // different scope that matters more than the highest one.
            if hit && found.is_none_or(|f| *scope > f) {
                found = Some(*scope);
            }
        }
        found
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Who may call the API.
#[derive(Clone, Debug)]
pub enum Auth {
    /// Every request needs a known token with the route's scope.
    Tokens(Tokens),
    /// No auth at all (`--api-no-auth`, for a controller bound to loopback
    /// on a developer's machine). Without it and without tokens, every
    /// route but the open ones answers 401.
    Disabled,
}

impl Auth {
    /// Checks the `Authorization` header value against the scope `needed`;
    /// the scope the caller has (`admin` without auth).
    pub fn check(&self, header: Option<&str>, needed: Scope) -> Result<Scope, ApiError> {
        let tokens = match self {
            Auth::Disabled => return Ok(Scope::Admin),
            Auth::Tokens(t) => t,
        };
        if tokens.is_empty() {
            return Err(ApiError::Unauthorized(
                "the API has no tokens: start the controller with SKEP_API_TOKENS_FILE".to_owned(),
            ));
        }
        let Some(header) = header else {
            return Err(ApiError::Unauthorized(
                "missing bearer token (Authorization: Bearer TOKEN)".to_owned(),
            ));
        };
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .ok_or_else(|| ApiError::Unauthorized("the Authorization header is not `Bearer TOKEN`".to_owned()))?;
        match tokens.scope_of(token) {
            None => Err(ApiError::Unauthorized("unknown token".to_owned())),
            Some(have) if have < needed => Err(ApiError::Forbidden(format!(
                "this route needs the {} scope; the token has {}",
                needed.as_str(),
                have.as_str()
            ))),
            Some(have) => Ok(have),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const READ: &str = "read-token-0123456789";
    const ADMIN: &str = "admin-token-0123456789";

    fn tokens() -> Tokens {
        Tokens::parse(&format!("# comment\n\n{READ} read\n{ADMIN}   admin\n")).unwrap()
    }

    #[test]
    fn scopes_by_token() {
        let t = tokens();
        assert_eq!(t.len(), 2);
        assert_eq!(t.scope_of(READ), Some(Scope::Read));
        assert_eq!(t.scope_of(ADMIN), Some(Scope::Admin));
        assert_eq!(t.scope_of("admin-token-012345678"), None, "a prefix is not the token");
        assert_eq!(t.scope_of(""), None);
    }

    #[test]
    fn check_maps_to_401_and_403() {
        let auth = Auth::Tokens(tokens());
        let bearer = |t: &str| format!("Bearer {t}");
        assert!(matches!(auth.check(None, Scope::Read), Err(ApiError::Unauthorized(_))));
        assert!(matches!(
            auth.check(Some("Basic abc"), Scope::Read),
            Err(ApiError::Unauthorized(_))
        ));
        assert!(matches!(
            auth.check(Some(&bearer("nope-nope-nope-nope")), Scope::Read),
            Err(ApiError::Unauthorized(_))
        ));
        assert!(matches!(
            auth.check(Some(&bearer(READ)), Scope::Admin),
            Err(ApiError::Forbidden(_))
        ));
        assert_eq!(auth.check(Some(&bearer(READ)), Scope::Read).unwrap(), Scope::Read);
        assert_eq!(auth.check(Some(&bearer(ADMIN)), Scope::Admin).unwrap(), Scope::Admin);
        assert_eq!(auth.check(Some(&bearer(ADMIN)), Scope::Read).unwrap(), Scope::Admin);
        assert_eq!(Auth::Disabled.check(None, Scope::Admin).unwrap(), Scope::Admin);
        let closed = Auth::Tokens(Tokens::default());
        assert!(matches!(
            closed.check(Some(&bearer(ADMIN)), Scope::Read),
            Err(ApiError::Unauthorized(_))
        ));
    }

    #[test]
    fn bad_files_name_the_line_not_the_token() {
        let err = Tokens::parse("secret-secret-secret-1 superuser\n").unwrap_err();
        assert!(err.contains("line 1") && !err.contains("secret-secret"), "{err}");
        let err = Tokens::parse("short admin\n").unwrap_err();
        assert!(err.contains("shorter") && !err.contains("short admin"), "{err}");
        assert!(Tokens::parse("a b c d\n").unwrap_err().contains("TOKEN SCOPE"));
        assert!(Tokens::parse("# nothing\n").unwrap_err().contains("no tokens"));
        assert!(!format!("{:?}", tokens()).contains(READ));
    }
}
