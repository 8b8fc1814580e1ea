//! kiln's own BuildKit session: the gRPC services the daemon's BuildKit
//! calls back into while it builds (registry credentials, build secrets,
//! health), served over an HTTP connection to the engine upgraded at
//! `POST /session`. bollard's BuildKit support serves only credentials, so
//! kiln runs the session itself and bollard only sends `POST /build?version=2`.
//!
//! Secret values live in this process only: they are handed to BuildKit when
//! a `RUN --mount=type=secret` asks for them, and never logged.

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bollard::auth::DockerCredentials;
use bollard_buildkit_proto::health::health_check_response::ServingStatus;
use bollard_buildkit_proto::health::health_server::{Health, HealthServer};
use bollard_buildkit_proto::health::{
    HealthCheckRequest, HealthCheckResponse, HealthListRequest, HealthListResponse,
};
use bollard_buildkit_proto::moby::buildkit::secrets::v1::secrets_server::{Secrets, SecretsServer};
use bollard_buildkit_proto::moby::buildkit::secrets::v1::{GetSecretRequest, GetSecretResponse};
use bollard_buildkit_proto::moby::filesync::v1::auth_server::{Auth, AuthServer};
use bollard_buildkit_proto::moby::filesync::v1::{
    CredentialsRequest, CredentialsResponse, FetchTokenRequest, FetchTokenResponse,
    GetTokenAuthorityRequest, GetTokenAuthorityResponse, VerifyTokenAuthorityRequest,
    VerifyTokenAuthorityResponse,
};
use bytes::Bytes;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::{Request, Response, Status};

use crate::docker::Endpoint;

/// The gRPC methods kiln's session serves, announced to the engine.
const METHODS: &[&str] = &[
    "/grpc.health.v1.Health/Check",
    "/moby.filesync.v1.Auth/Credentials",
    "/moby.buildkit.secrets.v1.Secrets/GetSecret",
];

/// Why the session could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// `DOCKER_HOST` could not be read.
    #[error("cannot tell where the docker engine is")]
    Endpoint(#[source] crate::docker::ConnectError),
    /// BuildKit sessions need a connection kiln can upgrade itself.
    #[error(
        "BuildKit builds need a unix:// or plain tcp:// DOCKER_HOST; `{host}` (TLS) is not supported for BuildKit sessions yet (use `build.builder: classic`)"
    )]
    UnsupportedHost {
        /// The host.
        host: String,
    },
    /// The engine could not be reached.
    #[error("cannot connect to the docker engine at `{host}` for the BuildKit session")]
    Connect {
        /// The host.
        host: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP exchange failed.
    #[error("the docker engine refused the BuildKit session")]
    Http {
        /// Cause.
        #[source]
        source: hyper::Error,
    },
    /// The engine answered without switching protocols.
    #[error(
        "the docker engine answered `POST /session` with HTTP {status} (does it support BuildKit?)"
    )]
    NotUpgraded {
        /// The status.
        status: u16,
    },
}

/// What the session hands to BuildKit: credentials by registry host and
/// secret values by id.
#[derive(Clone, Default)]
pub struct SessionData {
    /// Registry credentials by host.
    pub credentials: HashMap<String, DockerCredentials>,
    /// Secret values by id.
    pub secrets: BTreeMap<String, Arc<Vec<u8>>>,
}

/// A running session; dropping it closes the connection.
pub struct Session {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A fresh random session id (BuildKit wants an opaque unique string).
pub fn new_id() -> String {
    format!("kiln-{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

/// Opens the session `id` on the engine at `endpoint` and serves it until
/// the returned [`Session`] is dropped.
pub async fn open(
    endpoint: &Endpoint,
    id: &str,
    data: SessionData,
) -> Result<Session, SessionError> {
    let io = connect(endpoint).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|source| SessionError::Http { source })?;
    let driver = tokio::spawn(conn.with_upgrades());
    let mut req = hyper::Request::post("/session")
        .header("Host", "docker")
        .header("Connection", "Upgrade")
        .header("Upgrade", "h2c")
        .header("X-Docker-Expose-Session-Uuid", id)
        .header("X-Docker-Expose-Session-Name", "kiln")
        .header("X-Docker-Expose-Session-Sharedkey", "");
    for m in METHODS {
        req = req.header("X-Docker-Expose-Session-Grpc-Method", *m);
    }
    let req = req
        .body(http_body_util::Empty::<Bytes>::new())
        .expect("static request is valid");
    let resp = sender
        .send_request(req)
        .await
        .map_err(|source| SessionError::Http { source })?;
    if resp.status().as_u16() != 101 {
        driver.abort();
        return Err(SessionError::NotUpgraded {
            status: resp.status().as_u16(),
        });
    }
    let upgraded = hyper::upgrade::on(resp)
        .await
        .map_err(|source| SessionError::Http { source })?;
    let io = Upgraded(TokioIo::new(upgraded));
    let data = Arc::new(data);
    let task = tokio::spawn(async move {
        let served = tonic::transport::Server::builder()
            .add_service(HealthServer::new(Healthy))
            .add_service(AuthServer::new(Creds(data.clone())))
            .add_service(SecretsServer::new(SecretStore(data)))
            .serve_with_incoming(futures_util::stream::iter([Ok::<_, std::io::Error>(io)]))
            .await;
        if let Err(e) = served {
            tracing::debug!("BuildKit session ended: {e}");
        }
        drop(driver);
    });
    Ok(Session { task })
}

/// The stream to the engine: a unix socket or plain TCP.
enum EngineIo {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream),
}

async fn connect(endpoint: &Endpoint) -> Result<EngineIo, SessionError> {
    let host = endpoint.host.as_str();
    let err = |source| SessionError::Connect {
        host: host.to_string(),
        source,
    };
    if let Some(path) = host.strip_prefix("unix://") {
        return tokio::net::UnixStream::connect(path)
            .await
            .map(EngineIo::Unix)
            .map_err(err);
    }
    let plain = host
        .strip_prefix("tcp://")
        .or_else(|| host.strip_prefix("http://"));
    match plain {
        Some(addr) if endpoint.tls.is_none() => tokio::net::TcpStream::connect(addr)
            .await
            .map(EngineIo::Tcp)
            .map_err(err),
        _ => Err(SessionError::UnsupportedHost {
            host: host.to_string(),
        }),
    }
}

impl AsyncRead for EngineIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            EngineIo::Unix(s) => Pin::new(s).poll_read(cx, buf),
            EngineIo::Tcp(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for EngineIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            EngineIo::Unix(s) => Pin::new(s).poll_write(cx, buf),
            EngineIo::Tcp(s) => Pin::new(s).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            EngineIo::Unix(s) => Pin::new(s).poll_flush(cx),
            EngineIo::Tcp(s) => Pin::new(s).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            EngineIo::Unix(s) => Pin::new(s).poll_shutdown(cx),
            EngineIo::Tcp(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// The upgraded connection, as tonic's server wants its IO.
struct Upgraded(TokioIo<hyper::upgrade::Upgraded>);

impl tonic::transport::server::Connected for Upgraded {
    type ConnectInfo = ();
    fn connect_info(&self) {}
}

impl AsyncRead for Upgraded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Upgraded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

/// Health: the engine drops a session that stops answering.
struct Healthy;

type WatchStream =
    Pin<Box<dyn futures_util::Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Health for Healthy {
    async fn check(
        &self,
        _: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        Ok(Response::new(HealthCheckResponse {
            status: ServingStatus::Serving as i32,
        }))
    }
    async fn list(
        &self,
        _: Request<HealthListRequest>,
    ) -> Result<Response<HealthListResponse>, Status> {
        Err(Status::unimplemented("list"))
    }
    type WatchStream = WatchStream;
    async fn watch(&self, _: Request<HealthCheckRequest>) -> Result<Response<WatchStream>, Status> {
        Err(Status::unimplemented("watch"))
    }
}

/// Registry credentials for BuildKit's own pulls: only the hosts the
/// request holds credentials for, basic auth (token flows are left to
/// BuildKit with these).
struct Creds(Arc<SessionData>);

#[tonic::async_trait]
impl Auth for Creds {
    async fn credentials(
        &self,
        request: Request<CredentialsRequest>,
    ) -> Result<Response<CredentialsResponse>, Status> {
        let host = &request.get_ref().host;
        let found = self.0.credentials.get(host);
        let (username, secret) = match found {
            Some(c) => match &c.identitytoken {
                Some(t) => (String::new(), t.clone()),
                None => (
                    c.username.clone().unwrap_or_default(),
                    c.password.clone().unwrap_or_default(),
                ),
            },
            None => (String::new(), String::new()),
        };
        Ok(Response::new(CredentialsResponse { username, secret }))
    }
    async fn fetch_token(
        &self,
        _: Request<FetchTokenRequest>,
    ) -> Result<Response<FetchTokenResponse>, Status> {
        Err(Status::unimplemented("fetch_token"))
    }
    async fn get_token_authority(
        &self,
        _: Request<GetTokenAuthorityRequest>,
    ) -> Result<Response<GetTokenAuthorityResponse>, Status> {
        Err(Status::unimplemented("get_token_authority"))
    }
    async fn verify_token_authority(
        &self,
        _: Request<VerifyTokenAuthorityRequest>,
    ) -> Result<Response<VerifyTokenAuthorityResponse>, Status> {
        Err(Status::unimplemented("verify_token_authority"))
    }
}

/// Build secrets by id; an unknown id is `NotFound` (BuildKit fails the
/// step unless the mount says `required=false`).
struct SecretStore(Arc<SessionData>);

#[tonic::async_trait]
impl Secrets for SecretStore {
    async fn get_secret(
        &self,
        request: Request<GetSecretRequest>,
    ) -> Result<Response<GetSecretResponse>, Status> {
        let id = &request.get_ref().id;
        match self.0.secrets.get(id) {
            Some(v) => Ok(Response::new(GetSecretResponse {
                data: v.as_ref().clone(),
            })),
            None => Err(Status::not_found(format!(
                "no build secret `{id}` in the recipe's build.secrets"
            ))),
        }
    }
}
