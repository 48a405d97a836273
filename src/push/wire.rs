//! The one outbound HTTP request of the gateway: a POST of one message to a partner's push endpoint over mutual TLS
//! (hyper's HTTP/1.1 client connection over tokio-rustls), with a deadline on the connect and one on the TLS handshake
//! and the whole response.
//!
//! Knows nothing of messages, queues or logs. It must never follow a redirect, reuse a connection for another partner,
//! or report anything the receiver wrote (status code only; the body is read and dropped, so neither a payload echoed
//! back nor the receiver's text can reach a log, a trace or an error).

use crate::identity::PushEndpoint;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use rustls::pki_types::ServerName;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

/// What the receiver may answer with at most; more is not read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// One POST to send.
pub struct PushRequest<'a> {
    pub endpoint: &'a PushEndpoint,
    pub headers: &'a [(&'static str, String)],
    pub body: Bytes,
}

/// How a POST ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The receiver answered with this status; `server` is the SHA-256 (hex) of its certificate.
    Status { status: u16, server: String },
    /// No answer. `code` is fixed (`connect-failed`, `connect-timeout`, `tls-failed`, `timeout`, `connection-lost`);
    /// `may_have_reached` when the request may have been read by the receiver (it was sent, then the answer failed).
    Failed {
        code: &'static str,
        may_have_reached: bool,
    },
}

fn failed(code: &'static str, may_have_reached: bool) -> Answer {
    Answer::Failed {
        code,
        may_have_reached,
    }
}

/// POSTs `req` over a new connection; `connect` bounds the TCP connect, `response` the TLS handshake, the request
/// and the whole answer.
pub async fn post(
    tls: Arc<rustls::ClientConfig>,
    req: PushRequest<'_>,
    connect: Duration,
    response: Duration,
) -> Answer {
    let ep = req.endpoint;
    let tcp = match tokio::time::timeout(connect, TcpStream::connect((ep.host.as_str(), ep.port)))
        .await
    {
        Err(_) => return failed("connect-timeout", false),
        Ok(Err(_)) => return failed("connect-failed", false),
        Ok(Ok(s)) => s,
    };
    let _ = tcp.set_nodelay(true);
    let Ok(name) = ServerName::try_from(ep.host.clone()) else {
        return failed("tls-failed", false);
    };
    let deadline = tokio::time::Instant::now() + response;
    let handshake = async {
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .ok()?;
        let server = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| hex::encode(ring::digest::digest(&ring::digest::SHA256, c.as_ref())))?;
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .ok()?;
        Some((server, sender, conn))
    };
    let (server, mut sender, conn) = match tokio::time::timeout_at(deadline, handshake).await {
        Ok(Some(v)) => v,
        Ok(None) => return failed("tls-failed", false),
        Err(_) => return failed("timeout", false),
    };
    let driver = tokio::spawn(conn);
    let authority = if ep.port == 443 {
        ep.host.clone()
    } else if ep.host.contains(':') {
        format!("[{}]:{}", ep.host, ep.port)
    } else {
        format!("{}:{}", ep.host, ep.port)
    };
    let mut builder = hyper::Request::post(ep.path.as_str())
        .header(hyper::header::HOST, authority)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::USER_AGENT, "ketenpoort-push");
    for (name, value) in req.headers {
        builder = builder.header(*name, value.as_str());
    }
    let Ok(request) = builder.body(Full::new(req.body)) else {
        driver.abort();
        return failed("tls-failed", false);
    };
    let exchange = async {
        let answer = sender.send_request(request).await.ok()?;
        let status = answer.status().as_u16();
        // Read (and drop) a bounded answer, so the receiver has finished before it counts as accepted.
        let _ = Limited::new(answer.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await;
        Some(status)
    };
    let outcome = tokio::time::timeout_at(deadline, exchange).await;
    driver.abort();
    match outcome {
        Ok(Some(status)) => Answer::Status { status, server },
        Ok(None) => failed("connection-lost", true),
        Err(_) => failed("timeout", true),
    }
}
