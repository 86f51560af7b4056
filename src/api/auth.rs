//! Bearer tokens: `hl_<random>`, stored as SHA-256; scopes read < write <
//! admin; optionally bound to a tenant, whose token then sees only that
//! tenant's objects (others are 404 to it).

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use poem::Request;
use poem_openapi::SecurityScheme;
use poem_openapi::auth::Bearer;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::AppState;
use super::problem::Problem;
use crate::db;
use crate::remembered::{Recall, Remembered};

/// Verified tokens are remembered this long, so most requests cost no token
/// lookup; a deleted token stops working within this time. Unknown tokens
/// are remembered as long, so a stream of bad ones costs one lookup each,
/// not one per request.
const CACHE_TTL: Duration = Duration::from_secs(10);
/// Unknown tokens remembered at most (apart from the known ones, which they
/// can never push out); past this the set starts over.
const UNKNOWN_MAX: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    Read,
    Write,
    Admin,
}

impl Scope {
    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "read" => Some(Scope::Read),
            "write" => Some(Scope::Write),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }
}

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Principal {
    pub token_id: Uuid,
    pub name: String,
    pub scope: Scope,
    /// `None`: every tenant.
    pub tenant: Option<String>,
}

impl Principal {
    pub fn require(&self, needed: Scope) -> Result<(), Problem> {
        if self.scope >= needed {
            Ok(())
        } else {
            Err(Problem::forbidden(format!("this needs a token with scope `{}`", needed.as_str())))
        }
    }

    /// Whether objects of `tenant` exist for this caller.
    pub fn sees(&self, tenant: &str) -> bool {
        self.tenant.as_deref().is_none_or(|own| own == tenant)
    }

    /// The tenant to filter lists by (`None` = all).
    pub fn tenant_filter<'a>(&'a self, requested: Option<&'a str>) -> Option<&'a str> {
        self.tenant.as_deref().or(requested)
    }

    /// The tenant a new object goes to: the requested one (default
    /// `default`), which a tenant-bound token must not leave.
    pub fn tenant_for_create(&self, requested: Option<&str>) -> Result<String, Problem> {
        Ok(self.owner_for_create(requested)?.unwrap_or_else(|| "default".to_owned()))
    }

    /// The same where no tenant is allowed (`None`: what every tenant
    /// shares, as event types may be), when a token of no tenant asks none.
    pub fn owner_for_create(&self, requested: Option<&str>) -> Result<Option<String>, Problem> {
        match (&self.tenant, requested) {
            (Some(own), Some(asked)) if own != asked => {
                Err(Problem::field("tenant", format!("this token may only create in tenant `{own}`")))
            }
            (Some(own), _) => Ok(Some(own.clone())),
            (None, asked) => Ok(asked.map(str::to_owned)),
        }
    }

    pub fn actor(&self) -> db::audit::Actor {
        db::audit::Actor { token_id: Some(self.token_id), token_name: self.name.clone() }
    }
}

/// `Authorization: Bearer <token>`.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", checker = "authenticate")]
pub struct Auth(pub Principal);

async fn authenticate(request: &Request, bearer: Bearer) -> Option<Principal> {
    let state = request.data::<AppState>()?;
    let hash = hash_token(&bearer.token);
    match state.tokens.0.recall(&hash) {
        Recall::Known(principal) => return Some(principal),
        Recall::Unknown => return None,
        Recall::Forgotten => {}
    }
    let client = state.pool.get().await.ok()?;
    let principal = db::tokens::by_hash(&client, &hash).await.ok()?.and_then(|token| {
        Some(Principal {
            token_id: token.id,
            name: token.name,
            scope: Scope::parse(&token.scope)?,
            tenant: token.tenant,
        })
    });
    state.tokens.0.remember(hash, principal.clone());
    principal
}

/// Looked-up tokens by hash, known and unknown (see [`crate::remembered`]).
pub struct TokenCache(Remembered<Vec<u8>, Principal>);

impl Default for TokenCache {
    fn default() -> Self {
        TokenCache(Remembered::new(CACHE_TTL, UNKNOWN_MAX))
    }
}

impl TokenCache {
    /// Forgets every token (tokens changed elsewhere, see [`super::changes`]).
    pub fn forget_all(&self) {
        self.0.forget_all();
    }

    /// Forgets a token at once (after it was deleted through this process).
    pub fn forget(&self, token_id: Uuid) {
        self.0.forget_where(|p| p.token_id == token_id);
    }
}

pub fn hash_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// 32 random bytes as URL-safe text: tokens, session and portal keys.
pub fn random_key() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// A new random token and the prefix shown in lists.
pub fn generate_token() -> (String, String) {
    let token = format!("hl_{}", random_key());
    let prefix = token.chars().take(7).collect();
    (token, prefix)
}

/// Creates a token; returns it (shown once) and its row.
pub async fn create_token(
    db: &impl deadpool_postgres::GenericClient,
    name: &str,
    scope: Scope,
    tenant: Option<&str>,
) -> db::Result<(String, db::tokens::Token)> {
    let (token, prefix) = generate_token();
    let hash = hash_token(&token);
    let row = db::tokens::insert(
        db,
        &db::tokens::NewToken { name, scope: scope.as_str(), tenant, hash: &hash, prefix: &prefix },
    )
    .await?;
    Ok((token, row))
}
