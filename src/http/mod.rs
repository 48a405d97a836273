//! The HTTP layer, and the only module that speaks HTTP: the listeners (the partner API over mutual TLS, the
//! plain-HTTP ops listener), routers, extractors, handlers, problem+json (`problem`) and the console's pages.
//!
//! Each TLS connection's verified client certificate is read once and attached to every request on it; the
//! identity phase runs as a route layer before any handler (`partner`). Handlers parse what HTTP carries (path,
//! query, headers, body within its limits), call one domain function and render its result or its `Refusal`.
//! Nothing here parses HTTP itself (hyper does), decides a policy question, or trusts a header for who the caller is.

pub mod audit;
pub mod console;
pub mod datalekken;
pub mod ops;
pub mod partner;
pub mod problem;

use crate::config::Config;
use crate::gateway::{Gateway, StartError};
use crate::identity::Peer;
use crate::refusal::ProblemCode;
use crate::tls::{self, TlsSettings};
use axum::body::Body;
use axum::extract::Request;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

/// The peer certificate of the connection a request arrived on (absent only if TLS gave none).
#[derive(Clone)]
pub(crate) struct ConnPeer(pub(crate) Option<Arc<Peer>>);

pub struct Running {
    pub partner_addr: SocketAddr,
    pub ops_addr: SocketAddr,
    pub gateway: Arc<Gateway>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    writer: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops accepting, lets in-flight requests finish (up to the grace period) and flushes the log.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        self.gateway.writer.flush().await;
        let gw = self.gateway;
        drop(gw);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.writer).await;
    }
}

/// Builds the gateway, binds both listeners and starts serving.
pub async fn start(config: Config) -> Result<Running, StartError> {
    let tls_config = tls::server_config(&TlsSettings {
        ca: config.tls.ca.clone(),
        crl: config.tls.crl.clone(),
        cert: config.tls.cert.clone(),
        key: config.tls.key.clone(),
    })?;
    let partner_listener = TcpListener::bind(config.server.listen).await.map_err(|e| {
        StartError::Policy(format!("cannot listen on {}: {e}", config.server.listen))
    })?;
    let ops_listener = TcpListener::bind(config.server.ops_listen)
        .await
        .map_err(|e| {
            StartError::Policy(format!(
                "cannot listen on {}: {e}",
                config.server.ops_listen
            ))
        })?;
    let (gw, writer) = Gateway::start(config).await?;
    let pusher = crate::push::Pusher::new(&gw).map_err(StartError::Push)?;
    let partner_addr = partner_listener.local_addr().expect("bound address");
    let ops_addr = ops_listener.local_addr().expect("bound address");
    let (shutdown, rx) = watch::channel(false);
    let mut tasks = vec![
        tokio::spawn(serve_partners(
            gw.clone(),
            partner_listener,
            tls_config,
            rx.clone(),
        )),
        tokio::spawn(crate::retention::run(gw.clone(), rx.clone())),
        tokio::spawn(ops::serve(gw.clone(), ops_listener, rx.clone())),
        tokio::spawn(crate::gateway::watch_crl(gw.clone(), rx.clone())),
    ];
    if let Some(pusher) = pusher {
        tasks.push(tokio::spawn(crate::push::run(gw.clone(), pusher, rx)));
    }
    Ok(Running {
        partner_addr,
        ops_addr,
        gateway: gw,
        shutdown,
        tasks,
        writer,
    })
}

async fn serve_partners(
    gw: Arc<Gateway>,
    listener: TcpListener,
    tls_config: Arc<rustls::ServerConfig>,
    mut stop: watch::Receiver<bool>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls_config);
    let router = partner::router(gw.clone());
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(gw.config.server.header_timeout_secs));
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let handshake_timeout = Duration::from_secs(gw.config.server.header_timeout_secs);
    loop {
        let (tcp, _addr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let router = router.clone();
        let builder = builder.clone();
        let gw = gw.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::info!(error = %e, "TLS handshake refused");
                    return;
                }
                Err(_) => return,
            };
            let peer = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .and_then(|der| gw.peers.peer(der.as_ref()));
            // Per-partner connection cap, so one partner cannot exhaust the others' capacity.
            let partner_id = peer
                .as_ref()
                .and_then(|p| gw.partners.by_certificate(&p.cert.oin, &p.cert.common_name))
                .map(|i| i.partner.id.clone());
            let _slot = match &partner_id {
                Some(id) => match gw.limits.open_connection(id) {
                    Some(slot) => Some(slot),
                    None => {
                        gw.metrics.refusal(ProblemCode::TooManyConnections.as_str());
                        tracing::warn!(partner = %id, "connection cap reached; connection closed");
                        return;
                    }
                },
                None => None,
            };
            let conn_peer = ConnPeer(peer);
            let svc = router.map_request(move |mut req: Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(conn_peer.clone());
                req.map(Body::new)
            });
            let conn = builder.serve_connection(TokioIo::new(tls), TowerToHyperService::new(svc));
            let conn = watcher.watch(conn.into_owned());
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let grace = Duration::from_secs(gw.config.server.shutdown_grace_secs);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("grace period over; closing remaining connections");
    }
}
