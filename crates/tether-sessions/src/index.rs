//! Sessions by principal: list them, sign them out.

use std::sync::Arc;

use tether_core::{Principal, Revoked, SessionHandle, SessionInfo, SessionStore};
use tracing::Instrument as _;

use crate::Result;
use crate::telemetry::store_span;

/// The sessions of each principal (user), for a "your devices" page and for signing out
/// elsewhere. From [`SessionLayer::index`](crate::SessionLayer::index) or, in a handler,
/// [`Session::index`](crate::Session::index). Cloning is cheap.
///
/// A session appears here once [`Session::set_principal`](crate::Session::set_principal) bound
/// it, and leaves when it ends. Sessions are named by their [`SessionHandle`], never by their
/// id, which is a credential. A revoked session is deleted from the store: its next request,
/// on any server, is anonymous.
///
/// # Example
///
/// ```
/// use axum::{Json, Router, routing::{get, post}};
/// use serde::Deserialize;
/// use tether_sessions::{Principal, Result, Session, SessionHandle};
///
/// /// "Your devices": one line per session of the signed-in user.
/// async fn devices(session: Session) -> Result<String> {
///     let Some(user) = session.principal().await? else {
///         return Ok("not signed in".into());
///     };
///     let current = session.handle();
///     let mut page = String::new();
///     for info in session.index().sessions_of(&user).await? {
///         let this = if Some(info.handle) == current { " (this device)" } else { "" };
///         page += &format!("{} {}{this}\n", info.handle, info.device().unwrap_or("unknown"));
///     }
///     Ok(page)
/// }
///
/// #[derive(Deserialize)]
/// struct SignOut { handle: SessionHandle }
///
/// async fn sign_out(session: Session, Json(form): Json<SignOut>) -> Result<&'static str> {
///     let Some(user) = session.principal().await? else { return Ok("not signed in") };
///     // A handle of another user's session does nothing.
///     session.index().revoke(&user, &form.handle).await?;
///     Ok("signed out")
/// }
///
/// let app: Router = Router::new()
///     .route("/devices", get(devices))
///     .route("/devices/sign-out", post(sign_out));
/// ```
#[derive(Clone, Debug)]
pub struct SessionIndex {
    store: Arc<dyn SessionStore>,
}

impl SessionIndex {
    pub(crate) fn new(store: Arc<dyn SessionStore>) -> Self {
        Self { store }
    }

    /// The live sessions of `principal`, oldest first.
    ///
    /// # Errors
    ///
    /// [`Error::Core`](crate::Error::Core) when the store fails, or does not keep the index
    /// ([`ErrorKind::Unsupported`](tether_core::ErrorKind::Unsupported)).
    pub async fn sessions_of(&self, principal: &Principal) -> Result<Vec<SessionInfo>> {
        let span = store_span!("session.sessions_of");
        Ok(self.store.sessions_of(principal).instrument(span).await?)
    }

    /// Signs out the session `handle` names, if it is one of `principal`'s. A handle of
    /// another principal's session (or of one that ended) changes nothing and answers
    /// [`Revoked::NotFound`].
    ///
    /// # Errors
    ///
    /// As for [`sessions_of`](Self::sessions_of).
    pub async fn revoke(&self, principal: &Principal, handle: &SessionHandle) -> Result<Revoked> {
        let span = store_span!("session.revoke", %handle);
        let revoked = self
            .store
            .revoke(principal, handle)
            .instrument(span)
            .await?;
        match revoked {
            Revoked::Revoked => tracing::info!(%handle, "session revoked"),
            Revoked::NotFound => {
                tracing::info!(%handle, "revoke: the principal has no live session with this handle; nothing revoked");
            }
        }
        Ok(revoked)
    }

    /// Signs out every session of `principal` ("sign out everywhere"), and says how many.
    ///
    /// # Errors
    ///
    /// As for [`sessions_of`](Self::sessions_of); sessions revoked before the error stay
    /// revoked, so trying again finishes the job.
    pub async fn revoke_all(&self, principal: &Principal) -> Result<usize> {
        self.revoke_all_but(principal, None).await
    }

    /// Signs out every session of `principal` but `current` ("sign out everywhere else",
    /// after a password change), and says how many.
    ///
    /// # Errors
    ///
    /// As for [`revoke_all`](Self::revoke_all).
    pub async fn revoke_others(
        &self,
        principal: &Principal,
        current: &SessionHandle,
    ) -> Result<usize> {
        self.revoke_all_but(principal, Some(current)).await
    }

    async fn revoke_all_but(
        &self,
        principal: &Principal,
        keep: Option<&SessionHandle>,
    ) -> Result<usize> {
        let span = store_span!("session.revoke_all");
        let revoked = self
            .store
            .revoke_all(principal, keep)
            .instrument(span)
            .await?;
        tracing::info!(
            revoked,
            kept = keep.is_some(),
            "sessions of a principal revoked"
        );
        Ok(revoked)
    }
}
