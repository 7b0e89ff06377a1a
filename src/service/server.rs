//! Starting and stopping the service: the checks it refuses to start
//! without, the tokio runtime, the listener (plain on loopback, or TLS with
//! rustls), and the graceful shutdown on SIGTERM or ctrl-c, after which the
//! writer finishes its group before the process ends.

use std::net::SocketAddr;
use std::time::Duration;

use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;

use crate::error::{Error, Result};
use crate::operations as op;

use super::{AppState, ServeOptions, router};

/// Serves the trial until SIGTERM or ctrl-c. `listening` is called with the
/// service's address (`http://127.0.0.1:8080`) once it accepts connections:
/// the command line prints it as its first line.
///
/// Refuses to start with a key file others can read, a key that is not this
/// trial's, or plain HTTP on an address other than loopback unless
/// `insecure_http`.
pub fn serve(options: ServeOptions, listening: impl FnOnce(&str)) -> Result<()> {
    if !options.listen.ip().is_loopback() && options.tls.is_none() && !options.insecure_http {
        return Err(Error::Input(format!(
            "--listen {} is not a loopback address and no --tls-cert/--tls-key were given: passwords, session cookies and allocations would cross the network unencrypted; give --tls-cert and --tls-key, or listen on 127.0.0.1 behind a TLS proxy, or give --insecure-http if the network is protected some other way",
            options.listen
        )));
    }
    // The database first: a mistyped --db is reported as such, not as its
    // key file missing.
    drop(op::open_read_only(&options.db)?);
    let key_path = op::key_path(&options.db, options.key.as_deref());
    let key = op::read_trial_key(&key_path)?;
    let signing_path = crate::keys::signing_key_path(&key_path);
    let signing = if signing_path.exists() { Some(op::read_signing_key(&key_path)?) } else { None };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(Error::io("starting the service's runtime"))?;
    let (state, writer) = AppState::new(options.clone(), key, signing)?;
    let served = runtime.block_on(run(state, &options, listening));
    // Every handle to the writer is gone with the router: it finishes the
    // group it holds and stops.
    drop(runtime);
    let _ = writer.join();
    served
}

async fn run(state: AppState, options: &ServeOptions, listening: impl FnOnce(&str)) -> Result<()> {
    let listener =
        std::net::TcpListener::bind(options.listen).map_err(Error::io(format!("listening on {}", options.listen)))?;
    listener.set_nonblocking(true).map_err(Error::io("setting up the listener"))?;
    let addr = listener.local_addr().map_err(Error::io("reading the listener's address"))?;
    let handle = Handle::new();
    tokio::spawn(shutdown_on_signal(handle.clone()));
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    match &options.tls {
        Some((cert, key)) => {
            // rustls is built without a default provider: ring, installed once
            // (deprecated only for lacking post-quantum key exchange; aws-lc-rs,
            // which has it, needs a C and assembler toolchain to build).
            #[allow(deprecated)]
            let _ = rustls::crypto::ring::default_provider().install_default();
            let config = RustlsConfig::from_pem_file(cert, key).await.map_err(|e| {
                Error::Input(format!(
                    "the TLS certificate {} or key {} cannot be used ({e}); give PEM files of a certificate chain and its private key",
                    cert.display(),
                    key.display()
                ))
            })?;
            listening(&format!("https://{addr}"));
            axum_server::from_tcp_rustls(listener, config).handle(handle).serve(app).await.map_err(Error::io("serving"))
        }
        None => {
            listening(&format!("http://{addr}"));
            axum_server::from_tcp(listener).handle(handle).serve(app).await.map_err(Error::io("serving"))
        }
    }
}

/// Waits for SIGTERM or ctrl-c, then stops taking connections and lets the
/// requests in flight finish (at most 30 seconds).
async fn shutdown_on_signal(handle: Handle) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing the requests in flight");
    handle.graceful_shutdown(Some(Duration::from_secs(30)));
}
