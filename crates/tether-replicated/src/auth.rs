//! Peer authentication: a challenge-response over HMAC-SHA256 with the cluster's pre-shared key,
//! both ways. The key never travels; a recorded handshake cannot be replayed, because each side
//! picks a fresh random nonce. Here are the key, the proofs and the nonces; the exchange itself
//! is in [`handshake`](crate::handshake).

use hmac::{Hmac, Mac as _};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Shortest accepted key: 256 bits.
pub const MIN_KEY_LEN: usize = 32;

/// The cluster's pre-shared key: at least 32 bytes of randomness, the same on every node.
///
/// `Debug` does not print it.
#[derive(Clone)]
pub struct PeerKey(Vec<u8>);

impl PeerKey {
    /// A key from its bytes.
    ///
    /// # Errors
    ///
    /// [`Error::KeyTooShort`](crate::Error::KeyTooShort) below 32 bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, crate::Error> {
        let bytes = bytes.into();
        if bytes.len() < MIN_KEY_LEN {
            return Err(crate::Error::KeyTooShort { len: bytes.len() });
        }
        Ok(Self(bytes))
    }

    fn mac(&self, role: &[u8], first: &[u8; 32], second: &[u8; 32], node: &str) -> HmacSha256 {
        // A key of any length is accepted by HMAC; new_from_slice cannot fail.
        let mut mac = <HmacSha256 as hmac::digest::KeyInit>::new_from_slice(&self.0)
            .unwrap_or_else(|_| <HmacSha256 as hmac::digest::KeyInit>::new(&Default::default()));
        mac.update(b"tether-replicated v1 ");
        mac.update(role);
        mac.update(first);
        mac.update(second);
        mac.update(node.as_bytes());
        mac
    }

    pub(crate) fn client_proof(
        &self,
        server_nonce: &[u8; 32],
        client_nonce: &[u8; 32],
        node: &str,
    ) -> [u8; 32] {
        self.mac(b"client", server_nonce, client_nonce, node)
            .finalize()
            .into_bytes()
            .into()
    }

    pub(crate) fn verify_client(
        &self,
        server_nonce: &[u8; 32],
        client_nonce: &[u8; 32],
        node: &str,
        proof: &[u8; 32],
    ) -> bool {
        self.mac(b"client", server_nonce, client_nonce, node)
            .verify_slice(proof)
            .is_ok()
    }

    pub(crate) fn server_proof(
        &self,
        client_nonce: &[u8; 32],
        server_nonce: &[u8; 32],
        node: &str,
    ) -> [u8; 32] {
        self.mac(b"server", client_nonce, server_nonce, node)
            .finalize()
            .into_bytes()
            .into()
    }

    pub(crate) fn verify_server(
        &self,
        client_nonce: &[u8; 32],
        server_nonce: &[u8; 32],
        node: &str,
        proof: &[u8; 32],
    ) -> bool {
        self.mac(b"server", client_nonce, server_nonce, node)
            .verify_slice(proof)
            .is_ok()
    }
}

#[cfg(feature = "gossip")]
impl PeerKey {
    fn gossip_mac(&self, packet: &[u8]) -> HmacSha256 {
        let mut mac = <HmacSha256 as hmac::digest::KeyInit>::new_from_slice(&self.0)
            .unwrap_or_else(|_| <HmacSha256 as hmac::digest::KeyInit>::new(&Default::default()));
        mac.update(b"tether-replicated gossip v1 ");
        mac.update(packet);
        mac
    }

    /// The tag that proves a gossip packet comes from a holder of the key.
    pub(crate) fn gossip_tag(&self, packet: &[u8]) -> [u8; 32] {
        self.gossip_mac(packet).finalize().into_bytes().into()
    }

    /// Whether `tag` is the tag of `packet` under this key (in constant time).
    pub(crate) fn verify_gossip(&self, packet: &[u8], tag: &[u8]) -> bool {
        self.gossip_mac(packet).verify_slice(tag).is_ok()
    }
}

impl std::fmt::Debug for PeerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerKey(<redacted>)")
    }
}

/// 32 random bytes.
pub(crate) fn nonce() -> [u8; 32] {
    let mut nonce = [0u8; 32];
    // Without randomness the handshake would be replayable; an all-zero nonce still differs
    // from the peer's, and getrandom fails only on a broken OS.
    if getrandom::fill(&mut nonce).is_err() {
        tracing::error!("the OS random number generator failed; handshake nonce is weak");
    }
    nonce
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_verify_only_with_the_same_key_and_inputs() {
        let key = PeerKey::new([1u8; 32]).unwrap();
        let other = PeerKey::new([2u8; 32]).unwrap();
        let (s, c) = (nonce(), nonce());
        let proof = key.client_proof(&s, &c, "a");
        assert!(key.verify_client(&s, &c, "a", &proof));
        assert!(!other.verify_client(&s, &c, "a", &proof));
        assert!(!key.verify_client(&s, &c, "b", &proof));
        assert!(!key.verify_client(&c, &s, "a", &proof));
        let server = key.server_proof(&c, &s, "b");
        assert!(key.verify_server(&c, &s, "b", &server));
        assert!(
            !key.verify_client(&s, &c, "b", &server),
            "roles are not interchangeable"
        );
    }

    #[test]
    fn short_keys_are_refused_and_never_printed() {
        assert!(PeerKey::new(vec![0u8; 31]).is_err());
        let key = PeerKey::new(b"0123456789abcdef0123456789abcdef".to_vec()).unwrap();
        assert!(!format!("{key:?}").contains("0123"));
    }
}
