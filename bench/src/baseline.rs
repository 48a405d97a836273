//! Baseline A: a bare hyper 1 + tokio-rustls echo server with the gateway's own client-certificate verification
//! (`ketenpoort::tls::server_config`: same CA, CRL, ring provider, protocol versions and ALPN). It answers every
//! request with its body, so it measures TLS + HTTP and nothing else: the floor the gateway is compared with.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;

pub fn run(certs: &Path) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve(certs))
}

async fn serve(certs: &Path) -> anyhow::Result<()> {
    let tls = ketenpoort::tls::server_config(&ketenpoort::tls::TlsSettings {
        ca: certs.join("ca.crt"),
        crl: Some(certs.join("crl.pem")),
        cert: certs.join("gateway.crt"),
        key: certs.join("gateway.key"),
    })?;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("baseline partner=https://{}", listener.local_addr()?);
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let svc = hyper::service::service_fn(echo);
            let _ = builder.serve_connection(TokioIo::new(tls), svc).await;
        });
    }
}

async fn echo(req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let mut resp = Response::new(Full::new(body));
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}
