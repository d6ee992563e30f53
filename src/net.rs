//! Outbound HTTP clients. Every `reqwest` client in the process is built here, because TLS needs
//! a crypto provider chosen first: the build links one, *ring* (WebRTC's DTLS already uses it),
//! instead of reqwest's default aws-lc (a second provider and minutes of C compilation). A client
//! built any other way would panic on "no provider", so clippy refuses the other constructors
//! (`clippy.toml`).

use std::sync::Once;

/// Makes ring the process's rustls provider (once; a provider installed before is kept).
fn install_tls() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A client builder to configure (timeouts, redirects, resolver) and build.
#[allow(clippy::disallowed_methods)]
pub fn client_builder() -> reqwest::ClientBuilder {
    install_tls();
    reqwest::Client::builder()
}

/// A client with reqwest's defaults.
pub fn client() -> reqwest::Client {
    client_builder()
        .build()
        .expect("an HTTP client with default settings builds once a TLS provider is installed")
}

/// One GET with a default client (`reqwest::get`'s shape).
pub async fn get(url: impl reqwest::IntoUrl) -> reqwest::Result<reqwest::Response> {
    client().get(url).send().await
}

#[cfg(test)]
mod tests {
    #[test]
    fn clients_build_with_tls() {
        let _ = super::client();
        let c = super::client_builder()
            .timeout(std::time::Duration::from_secs(1))
            .https_only(true)
            .build();
        assert!(c.is_ok(), "{:?}", c.err());
    }
}
