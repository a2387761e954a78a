//! The node's container runtime over CRI (the kubelet's own `runtime.v1` gRPC API): the
//! one place that knows pod names, namespaces and container names for the ids a cgroup path
//! carries.
//!
//! We ask for everything at once ([`CriClient::snapshot`]: one `ListPodSandbox` and one
//! `ListContainers`) rather than one `ContainerStatus` per container: a node has at most a
//! few hundred containers, the answer is a few hundred KB, and a table refreshed now and then
//! beats a round trip per zombie on the hot path.

use std::{
    collections::{BTreeMap, HashMap},
    io,
    os::unix::fs::FileTypeExt,
    path::{Path, PathBuf},
    time::Duration,
};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::{
    ListContainersRequest, ListPodSandboxRequest, VersionRequest,
    runtime_service_client::RuntimeServiceClient,
};
use tokio::net::UnixStream;
use tonic::{
    Code, Status,
    transport::{Channel, Endpoint, Uri},
};

/// How long [`CriClient::connect`] waits for the socket and the `Version` answer.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one list call may take; a busy runtime with hundreds of containers answers in
/// tens of milliseconds.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// The kubelet's own limit on CRI answers (tonic's default of 4 MiB is too small for a
/// `ListContainers` on a node packed with annotated containers).
const MAX_MESSAGE_SIZE: usize = 16 << 20;

/// Well-known CRI sockets, relative to the host root, in the order we try them.
const WELL_KNOWN_SOCKETS: [&str; 4] = [
    "run/containerd/containerd.sock",
    "run/k3s/containerd/containerd.sock",
    "var/run/crio/crio.sock",
    "var/run/cri-dockerd.sock",
];

/// What can go wrong talking to the runtime; every message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum CriError {
    #[error(
        "unsupported container runtime endpoint {endpoint:?}: give a unix socket as \
         unix:///path/to/socket or a plain absolute path (e.g. unix:///run/containerd/containerd.sock)"
    )]
    BadEndpoint { endpoint: String },

    #[error(
        "no container runtime socket at {}: set --runtime-endpoint to the node's CRI socket \
         (and mount it into the daemon's pod)",
        path.display()
    )]
    SocketMissing { path: PathBuf },

    #[error(
        "{} exists but is not a unix socket: set --runtime-endpoint to the container runtime's \
         CRI socket",
        path.display()
    )]
    NotASocket { path: PathBuf },

    #[error(
        "cannot connect to the container runtime at {}: {source}; check that the runtime is \
         running and that the daemon may open its socket (run as root)",
        path.display()
    )]
    Connect { path: PathBuf, source: io::Error },

    #[error(
        "the container runtime at {} did not answer {call} within {timeout:?}: check that it \
         is running and healthy, or that --runtime-endpoint names its CRI socket",
        path.display()
    )]
    Timeout {
        path: PathBuf,
        call: &'static str,
        timeout: Duration,
    },

    #[error(
        "{} accepted a connection but does not speak gRPC ({detail}): set --runtime-endpoint \
         to the container runtime's CRI socket",
        path.display()
    )]
    NotGrpc { path: PathBuf, detail: String },

    #[error(
        "{} speaks gRPC but not the CRI runtime.v1 API ({detail}): enable the runtime's CRI \
         plugin (containerd: drop \"cri\" from disabled_plugins) or set --runtime-endpoint to \
         its CRI socket",
        path.display()
    )]
    NotCri { path: PathBuf, detail: String },

    #[error(
        "the container runtime at {} failed {call} ({code:?}: {message}); pod names stay \
         unknown until it recovers, see the runtime's logs",
        path.display()
    )]
    Rpc {
        path: PathBuf,
        call: &'static str,
        code: Code,
        message: String,
    },
}

/// A connected CRI runtime service. Cheap to keep for the daemon's lifetime: the channel
/// reconnects by itself when the runtime restarts.
#[derive(Clone, Debug)]
pub struct CriClient {
    path: PathBuf,
    client: RuntimeServiceClient<Channel>,
    runtime_name: String,
    runtime_version: String,
    call_timeout: Duration,
}

/// Every pod sandbox and container the runtime knows, in any state.
#[derive(Clone, Debug, Default)]
pub struct CriSnapshot {
    /// By sandbox id.
    pub pods: HashMap<String, PodMeta>,
    /// By container id.
    pub containers: HashMap<String, ContainerMeta>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodMeta {
    pub sandbox_id: String,
    pub uid: String,
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerMeta {
    pub id: String,
    pub name: String,
    pub sandbox_id: String,
    pub image: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

impl CriSnapshot {
    /// The pod a container belongs to.
    pub fn pod_of(&self, container_id: &str) -> Option<(&PodMeta, &ContainerMeta)> {
        let c = self.containers.get(container_id)?;
        Some((self.pods.get(&c.sandbox_id)?, c))
    }
}

impl CriClient {
    /// Connects to `endpoint` (`unix:///run/containerd/containerd.sock` or a plain path) and
    /// checks that it speaks CRI by calling `Version`, all within [`CONNECT_TIMEOUT`].
    pub async fn connect(endpoint: &str) -> Result<Self, CriError> {
        Self::connect_with_timeout(endpoint, CONNECT_TIMEOUT).await
    }

    /// [`CriClient::connect`] with another deadline.
    pub async fn connect_with_timeout(endpoint: &str, timeout: Duration) -> Result<Self, CriError> {
        let path = socket_path(endpoint)?;
        match std::fs::metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(CriError::SocketMissing { path });
            }
            Err(source) => return Err(CriError::Connect { path, source }),
            Ok(m) if !m.file_type().is_socket() => return Err(CriError::NotASocket { path }),
            Ok(_) => {}
        }
        let timed_out = || CriError::Timeout {
            path: path.clone(),
            call: "Version",
            timeout,
        };
        // One deadline for connecting and the first answer.
        let deadline = tokio::time::Instant::now() + timeout;
        let channel = tokio::time::timeout_at(deadline, channel(&path))
            .await
            .map_err(|_| timed_out())??;
        let mut client =
            RuntimeServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE_SIZE);
        let version = tokio::time::timeout_at(deadline, client.version(VersionRequest::default()))
            .await
            .map_err(|_| timed_out())?
            .map_err(|status| version_error(&path, status))?
            .into_inner();
        tracing::debug!(
            socket = %path.display(),
            runtime = %version.runtime_name,
            version = %version.runtime_version,
            api = %version.runtime_api_version,
            "connected to the container runtime"
        );
        Ok(Self {
            path,
            client,
            runtime_name: version.runtime_name,
            runtime_version: version.runtime_version,
            call_timeout: CALL_TIMEOUT,
        })
    }

    /// Runtime name and version as `Version` told them, e.g. `("containerd", "v1.6.20")`
    /// (Debian's build says `"1.6.20~ds1"`).
    pub fn runtime(&self) -> (&str, &str) {
        (&self.runtime_name, &self.runtime_version)
    }

    /// The socket this client talks to.
    pub fn socket(&self) -> &Path {
        &self.path
    }

    /// The raw runtime service, for calls this module does not wrap (the end-to-end tests run
    /// pods with it). Cheap: clones share one connection.
    pub fn service(&self) -> RuntimeServiceClient<Channel> {
        self.client.clone()
    }

    /// Every pod sandbox and container, in all states (an exited container's zombies may
    /// still be around): one `ListPodSandbox` and one `ListContainers`, each with a deadline.
    pub async fn snapshot(&mut self) -> Result<CriSnapshot, CriError> {
        let timeout = self.call_timeout;
        let sandboxes = self
            .call("ListPodSandbox", timeout, |mut c| async move {
                c.list_pod_sandbox(ListPodSandboxRequest { filter: None })
                    .await
            })
            .await?
            .items;
        let containers = self
            .call("ListContainers", timeout, |mut c| async move {
                c.list_containers(ListContainersRequest { filter: None })
                    .await
            })
            .await?
            .containers;

        let pods = sandboxes
            .into_iter()
            .map(|s| {
                let m = s.metadata.unwrap_or_default();
                let pod = PodMeta {
                    sandbox_id: s.id.clone(),
                    uid: m.uid,
                    name: m.name,
                    namespace: m.namespace,
                    labels: s.labels.into_iter().collect(),
                    annotations: s.annotations.into_iter().collect(),
                };
                (s.id, pod)
            })
            .collect();
        let containers = containers
            .into_iter()
            .map(|c| {
                let image = c.image.unwrap_or_default();
                // What the user wrote, if the runtime knows it; else what the kubelet asked
                // for (often an image id); else the resolved digest.
                let image = [image.user_specified_image, image.image, c.image_ref]
                    .into_iter()
                    .find(|s| !s.is_empty())
                    .unwrap_or_default();
                let meta = ContainerMeta {
                    id: c.id.clone(),
                    name: c.metadata.unwrap_or_default().name,
                    sandbox_id: c.pod_sandbox_id,
                    image,
                    labels: c.labels.into_iter().collect(),
                    annotations: c.annotations.into_iter().collect(),
                };
                (c.id, meta)
            })
            .collect();
        Ok(CriSnapshot { pods, containers })
    }

    /// One unary call with a deadline, its failure named after `call`.
    async fn call<T, F>(
        &self,
        call: &'static str,
        timeout: Duration,
        f: impl FnOnce(RuntimeServiceClient<Channel>) -> F,
    ) -> Result<T, CriError>
    where
        F: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        match tokio::time::timeout(timeout, f(self.client.clone())).await {
            Err(_) => Err(CriError::Timeout {
                path: self.path.clone(),
                call,
                timeout,
            }),
            Ok(Err(status)) => Err(CriError::Rpc {
                path: self.path.clone(),
                call,
                code: status.code(),
                message: status.message().to_string(),
            }),
            Ok(Ok(resp)) => Ok(resp.into_inner()),
        }
    }
}

/// The socket path an endpoint names: `unix:///abs/path` or a plain absolute path.
/// Other schemes (`tcp://`, `npipe://`) are not something a node agent should use.
pub fn socket_path(endpoint: &str) -> Result<PathBuf, CriError> {
    let path = match endpoint.split_once("://") {
        Some(("unix", rest)) => rest,
        Some(_) => "",
        None => endpoint,
    };
    if path.starts_with('/') {
        Ok(PathBuf::from(path))
    } else {
        Err(CriError::BadEndpoint {
            endpoint: endpoint.to_string(),
        })
    }
}

/// The well-known CRI sockets that exist under `host_root` ("/" or where the host's root is
/// mounted, e.g. "/host"), as `unix://` endpoints: containerd, k3s, CRI-O, cri-dockerd.
pub fn detect_endpoints(host_root: &Path) -> Vec<String> {
    WELL_KNOWN_SOCKETS
        .iter()
        .map(|rel| host_root.join(rel))
        .filter(|p| {
            std::fs::metadata(p)
                .map(|m| m.file_type().is_socket())
                .unwrap_or(false)
        })
        .map(|p| format!("unix://{}", p.display()))
        .collect()
}

/// A gRPC channel over the unix socket at `path` (the URI is a placeholder tonic needs).
async fn channel(path: &Path) -> Result<Channel, CriError> {
    let socket = path.to_path_buf();
    Endpoint::from_static("http://[::]:50051")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move { Ok::<_, io::Error>(TokioIo::new(UnixStream::connect(socket).await?)) }
        }))
        .await
        .map_err(|e| match io_source(&e) {
            Some(source) => CriError::Connect {
                path: path.to_path_buf(),
                source: io::Error::new(source.kind(), source.to_string()),
            },
            None => CriError::NotGrpc {
                path: path.to_path_buf(),
                detail: chain(&e.to_string(), std::error::Error::source(&e)),
            },
        })
}

/// Sorts a failed `Version` into "not gRPC at all", "gRPC but not CRI" and the rest.
fn version_error(path: &Path, status: Status) -> CriError {
    let path = path.to_path_buf();
    // Status's Display dumps its Debug fields; the message and causes read better.
    let detail = chain(status.message(), std::error::Error::source(&status));
    match status.code() {
        // No such service or method: a gRPC server, but not a CRI runtime.
        Code::Unimplemented => CriError::NotCri { path, detail },
        // The HTTP/2 exchange itself failed: whatever listens there is not a gRPC server.
        // Cancelled: the peer closed the connection before the call could even be sent
        // (an HTTP/1 server answering the preface with an error, then hanging up).
        Code::Unavailable | Code::Unknown | Code::Internal | Code::Cancelled => {
            CriError::NotGrpc { path, detail }
        }
        code => CriError::Rpc {
            path,
            call: "Version",
            code,
            message: status.message().to_string(),
        },
    }
}

/// The I/O error at the bottom of a transport error, if it is one (refused, permission denied).
fn io_source<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a io::Error> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            return Some(io);
        }
        cur = err.source();
    }
    None
}

/// An error message and its causes on one line ("h2 protocol error: frame with invalid size").
fn chain(message: &str, source: Option<&(dyn std::error::Error + 'static)>) -> String {
    let mut out = message.to_string();
    let mut cur = source;
    while let Some(err) = cur {
        let s = err.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = err.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use std::{
        io::{Read, Write},
        os::unix::net::UnixListener,
    };

    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("zombie-cri-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn endpoints_name_unix_sockets() {
        let p = |e| socket_path(e).map_err(|e| e.to_string());
        assert_eq!(
            p("unix:///run/containerd/containerd.sock"),
            Ok(PathBuf::from("/run/containerd/containerd.sock"))
        );
        assert_eq!(
            p("/var/run/crio/crio.sock"),
            Ok(PathBuf::from("/var/run/crio/crio.sock"))
        );
        for bad in [
            "tcp://127.0.0.1:1234",
            "npipe:////./pipe/x",
            "unix://run/x.sock",
            "x.sock",
            "",
        ] {
            let err = p(bad).unwrap_err();
            assert!(err.contains("unix:///"), "{bad}: {err}");
        }
    }

    #[test]
    fn detect_finds_the_sockets_that_exist_in_order() {
        let root = temp_dir("detect");
        assert!(detect_endpoints(&root).is_empty());
        let mut listeners = Vec::new();
        for rel in [
            WELL_KNOWN_SOCKETS[3],
            WELL_KNOWN_SOCKETS[0],
            WELL_KNOWN_SOCKETS[2],
        ] {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            listeners.push(UnixListener::bind(&p).unwrap());
        }
        // A regular file where k3s's socket would be is not a socket.
        let k3s = root.join(WELL_KNOWN_SOCKETS[1]);
        std::fs::create_dir_all(k3s.parent().unwrap()).unwrap();
        std::fs::write(&k3s, "").unwrap();
        let r = root.display();
        assert_eq!(
            detect_endpoints(&root),
            [
                format!("unix://{r}/run/containerd/containerd.sock"),
                format!("unix://{r}/var/run/crio/crio.sock"),
                format!("unix://{r}/var/run/cri-dockerd.sock"),
            ]
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_missing_socket_says_to_set_the_endpoint() {
        let err = rt()
            .block_on(CriClient::connect("unix:///nonexistent/containerd.sock"))
            .unwrap_err();
        assert!(matches!(err, CriError::SocketMissing { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "no container runtime socket at /nonexistent/containerd.sock: set \
             --runtime-endpoint to the node's CRI socket (and mount it into the daemon's pod)"
        );
    }

    #[test]
    fn a_regular_file_is_not_a_socket() {
        let dir = temp_dir("file");
        let p = dir.join("containerd.sock");
        std::fs::write(&p, "").unwrap();
        let err = rt()
            .block_on(CriClient::connect(p.to_str().unwrap()))
            .unwrap_err();
        assert!(matches!(err, CriError::NotASocket { .. }), "{err:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_stale_socket_nobody_listens_on_is_refused() {
        let dir = temp_dir("stale");
        let p = dir.join("containerd.sock");
        drop(UnixListener::bind(&p).unwrap());
        let err = rt()
            .block_on(CriClient::connect(p.to_str().unwrap()))
            .unwrap_err();
        assert!(
            matches!(&err, CriError::Connect { source, .. } if source.kind() == io::ErrorKind::ConnectionRefused),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .contains("check that the runtime is running"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_socket_that_answers_http1_is_not_grpc() {
        let dir = temp_dir("http1");
        let p = dir.join("not-grpc.sock");
        let listener = UnixListener::bind(&p).unwrap();
        let server = std::thread::spawn(move || {
            // Answer each connection (tonic may retry) like an HTTP/1 server would.
            for _ in 0..2 {
                let Ok((mut s, _)) = listener.accept() else {
                    return;
                };
                let mut buf = [0; 64];
                let _ = s.read(&mut buf);
                let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
            }
        });
        let err = rt()
            .block_on(CriClient::connect(p.to_str().unwrap()))
            .unwrap_err();
        assert!(matches!(err, CriError::NotGrpc { .. }), "{err:?}");
        assert!(err.to_string().contains("does not speak gRPC"), "{err}");
        // Unblock the server thread if it waits for a second connection.
        let _ = std::os::unix::net::UnixStream::connect(&p);
        server.join().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_socket_that_never_answers_times_out_fast() {
        let dir = temp_dir("silent");
        let p = dir.join("silent.sock");
        let _listener = UnixListener::bind(&p).unwrap(); // never accepts
        let t = std::time::Instant::now();
        let err = rt()
            .block_on(CriClient::connect_with_timeout(
                p.to_str().unwrap(),
                Duration::from_millis(300),
            ))
            .unwrap_err();
        assert!(matches!(err, CriError::Timeout { .. }), "{err:?}");
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
