//! Which TLS version and cipher suite a session negotiated, for the
//! `tls=` field of log lines. lettre keeps its rustls connection private,
//! but it builds its TLS configuration from rustls's process-wide default
//! crypto provider. So that default is ring's provider with each cipher
//! suite's key-derivation step wrapped: when the handshake derives keys
//! (always on the thread that opens the session), the suite notes its
//! name in a thread-local, which `take` reads right after the handshake.
//! Cryptography itself is untouched: every call goes to ring's own code.

use std::cell::Cell;
use std::sync::OnceLock;

use rustls::crypto::tls12::Prf;
use rustls::crypto::tls13::{Hkdf, HkdfExpander, OkmBlock};
use rustls::crypto::{hmac, ActiveKeyExchange, CryptoProvider};
use rustls::{CipherSuite, Error, SupportedCipherSuite, Tls12CipherSuite, Tls13CipherSuite};

thread_local! {
    static NEGOTIATED: Cell<Option<(&'static str, CipherSuite)>> = const { Cell::new(None) };
}

fn note(version: &'static str, suite: CipherSuite) {
    NEGOTIATED.with(|n| n.set(Some((version, suite))));
}

/// Installs the noting provider as rustls's default (once per process).
/// Returns false when another default was installed first, in which case
/// log lines say only `TLS`.
pub fn install() -> bool {
    static INSTALLED: OnceLock<bool> = OnceLock::new();
    *INSTALLED.get_or_init(|| CryptoProvider::install_default(noting_provider()).is_ok())
}

/// Forgets what an earlier handshake on this thread noted.
pub fn clear() {
    NEGOTIATED.with(|n| n.set(None));
}

/// "TLSv1.3/TLS_AES_256_GCM_SHA384" for the last handshake on this thread.
pub fn take() -> Option<String> {
    NEGOTIATED.with(|n| n.take()).map(|(version, suite)| {
        let name = format!("{suite:?}");
        // rustls says TLS13_AES_…; the IANA (and OpenSSL, Postfix) name is TLS_AES_….
        let name = name
            .strip_prefix("TLS13_")
            .map(|rest| format!("TLS_{rest}"))
            .unwrap_or(name);
        format!("{version}/{name}")
    })
}

fn noting_provider() -> CryptoProvider {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites = provider
        .cipher_suites
        .iter()
        .map(|suite| match suite {
            SupportedCipherSuite::Tls13(s) => SupportedCipherSuite::Tls13(wrap13(s)),
            SupportedCipherSuite::Tls12(s) => SupportedCipherSuite::Tls12(wrap12(s)),
        })
        .collect();
    provider
}

// The wrapped suites must be 'static like ring's own; a handful of small
// values, made once per process.
fn wrap13(s: &'static Tls13CipherSuite) -> &'static Tls13CipherSuite {
    let hkdf: &'static NotingHkdf = Box::leak(Box::new(NotingHkdf {
        inner: s.hkdf_provider,
        suite: s.common.suite,
    }));
    Box::leak(Box::new(Tls13CipherSuite {
        common: rustls::crypto::CipherSuiteCommon { ..s.common },
        hkdf_provider: hkdf,
        aead_alg: s.aead_alg,
        quic: s.quic,
    }))
}

fn wrap12(s: &'static Tls12CipherSuite) -> &'static Tls12CipherSuite {
    let prf: &'static NotingPrf = Box::leak(Box::new(NotingPrf {
        inner: s.prf_provider,
        suite: s.common.suite,
    }));
    Box::leak(Box::new(Tls12CipherSuite {
        common: rustls::crypto::CipherSuiteCommon { ..s.common },
        prf_provider: prf,
        kx: s.kx,
        sign: s.sign,
        aead_alg: s.aead_alg,
    }))
}

/// TLS 1.3: every extraction with a salt (handshake and master secrets)
/// uses the suite the server chose; unsalted ones (a resumption PSK's
/// early secret) may not, so they note nothing.
struct NotingHkdf {
    inner: &'static dyn Hkdf,
    suite: CipherSuite,
}

impl Hkdf for NotingHkdf {
    fn extract_from_zero_ikm(&self, salt: Option<&[u8]>) -> Box<dyn HkdfExpander> {
        if salt.is_some() {
            note("TLSv1.3", self.suite);
        }
        self.inner.extract_from_zero_ikm(salt)
    }

    fn extract_from_secret(&self, salt: Option<&[u8]>, secret: &[u8]) -> Box<dyn HkdfExpander> {
        if salt.is_some() {
            note("TLSv1.3", self.suite);
        }
        self.inner.extract_from_secret(salt, secret)
    }

    fn extract_from_kx_shared_secret(
        &self,
        salt: Option<&[u8]>,
        kx: Box<dyn ActiveKeyExchange>,
        peer_pub_key: &[u8],
    ) -> Result<Box<dyn HkdfExpander>, Error> {
        note("TLSv1.3", self.suite);
        self.inner
            .extract_from_kx_shared_secret(salt, kx, peer_pub_key)
    }

    fn expander_for_okm(&self, okm: &OkmBlock) -> Box<dyn HkdfExpander> {
        self.inner.expander_for_okm(okm)
    }

    fn hmac_sign(&self, key: &OkmBlock, message: &[u8]) -> hmac::Tag {
        self.inner.hmac_sign(key, message)
    }

    fn fips(&self) -> bool {
        self.inner.fips()
    }
}

/// TLS 1.2: the master secret (full handshake) or the key block (also on
/// resumption) comes from the negotiated suite's PRF.
struct NotingPrf {
    inner: &'static dyn Prf,
    suite: CipherSuite,
}

impl Prf for NotingPrf {
    fn for_key_exchange(
        &self,
        output: &mut [u8; 48],
        kx: Box<dyn ActiveKeyExchange>,
        peer_pub_key: &[u8],
        label: &[u8],
        seed: &[u8],
    ) -> Result<(), Error> {
        note("TLSv1.2", self.suite);
        self.inner
            .for_key_exchange(output, kx, peer_pub_key, label, seed)
    }

    fn for_secret(&self, output: &mut [u8], secret: &[u8], label: &[u8], seed: &[u8]) {
        note("TLSv1.2", self.suite);
        self.inner.for_secret(output, secret, label, seed)
    }

    fn fips(&self) -> bool {
        self.inner.fips()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_iana() {
        note("TLSv1.3", CipherSuite::TLS13_AES_256_GCM_SHA384);
        assert_eq!(take().as_deref(), Some("TLSv1.3/TLS_AES_256_GCM_SHA384"));
        assert_eq!(take(), None);
        note(
            "TLSv1.2",
            CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        );
        assert_eq!(
            take().as_deref(),
            Some("TLSv1.2/TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")
        );
    }

    #[test]
    fn every_ring_suite_is_wrapped() {
        let provider = noting_provider();
        assert_eq!(
            provider.cipher_suites.len(),
            rustls::crypto::ring::default_provider().cipher_suites.len()
        );
    }
}
