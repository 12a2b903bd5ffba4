//! A TCP proxy on 127.0.0.1 in front of the MariaDB server, switched by the test: up, stalled (bytes
//! held: a database that stopped answering) or cut (connections closed and refused: a database that
//! is down). It also counts the statements clients execute (MySQL protocol `COM_QUERY` and
//! `COM_STMT_EXECUTE` packets), so a test can tell how many queries an operation cost.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does with the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Bytes pass both ways.
    Up,
    /// Bytes are held; connections stay open.
    Stalled,
    /// Connections are closed and new ones refused.
    Cut,
}

/// The proxy; stops accepting when dropped.
#[derive(Debug)]
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    link: watch::Sender<Link>,
    statements: Arc<AtomicU64>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.link.send_replace(Link::Cut);
    }
}

/// `host:port` of a `mysql://` URL (host as an IP: `localhost` becomes 127.0.0.1).
pub fn server_addr(url: &str) -> SocketAddr {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let after_at = rest.rsplit_once('@').map_or(rest, |(_, rest)| rest);
    let host_port = after_at.split(['/', '?']).next().unwrap_or_default();
    let host_port = host_port.replace("localhost", "127.0.0.1");
    let with_port = if host_port.contains(':') {
        host_port
    } else {
        format!("{host_port}:3306")
    };
    with_port
        .parse()
        .unwrap_or_else(|e| panic!("the test needs an IP host in {url}: {e}"))
}

impl Proxy {
    /// Starts a proxy in front of `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().unwrap();
        let (link, _) = watch::channel(Link::Up);
        let statements = Arc::new(AtomicU64::new(0));
        let rx = link.subscribe();
        let counter = Arc::clone(&statements);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let link = rx.clone();
                let counter = Arc::clone(&counter);
                tokio::spawn(async move {
                    if *link.borrow() == Link::Cut {
                        return;
                    }
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::join!(
                        pump(client_read, server_write, link.clone(), Some(counter)),
                        pump(server_read, client_write, link, None)
                    );
                });
            }
        });
        Proxy {
            addr,
            link,
            statements,
            accept,
        }
    }

    /// Switches the traffic.
    pub fn set(&self, link: Link) {
        self.link.send_replace(link);
    }

    /// `url` with its host and port replaced by the proxy's.
    pub fn url(&self, url: &str) -> String {
        let upstream = server_addr(url);
        let (scheme, rest) = url.split_once("://").unwrap_or(("mysql", url));
        let (user, after) = match rest.rsplit_once('@') {
            Some((user, after)) => (format!("{user}@"), after),
            None => (String::new(), rest),
        };
        let tail = after
            .find(['/', '?'])
            .map_or(String::new(), |i| after[i..].to_string());
        let _ = upstream;
        format!("{scheme}://{user}127.0.0.1:{}{tail}", self.addr.port())
    }

    /// Statements executed through the proxy so far.
    pub fn statements(&self) -> u64 {
        self.statements.load(Ordering::SeqCst)
    }
}

/// Copies one direction until either end closes or the link is cut; holds bytes while stalled. On the
/// client's side, counts statement packets (`[len:3][seq:1][command:1]...`).
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut link: watch::Receiver<Link>,
    counter: Option<Arc<AtomicU64>>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut frames = Frames::default();
    loop {
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            _ = link.wait_for(|l| *l == Link::Cut) => return,
        };
        match link.wait_for(|l| *l != Link::Stalled).await {
            Ok(l) if *l == Link::Up => {}
            _ => return,
        }
        if let Some(counter) = &counter {
            counter.fetch_add(frames.statements_in(&buf[..n]), Ordering::SeqCst);
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Splits a client's byte stream into MySQL packets.
#[derive(Debug, Default)]
struct Frames {
    header: Vec<u8>,
    /// Payload bytes of the current packet still to skip.
    remaining: usize,
    /// Whether the next payload byte is the command byte of a packet.
    at_command: bool,
}

impl Frames {
    fn statements_in(&mut self, mut bytes: &[u8]) -> u64 {
        const COM_QUERY: u8 = 0x03;
        const COM_STMT_EXECUTE: u8 = 0x17;
        let mut count = 0;
        while !bytes.is_empty() {
            if self.remaining == 0 {
                let need = 4 - self.header.len();
                let take = need.min(bytes.len());
                self.header.extend_from_slice(&bytes[..take]);
                bytes = &bytes[take..];
                if self.header.len() == 4 {
                    let h = &self.header;
                    self.remaining =
                        usize::from(h[0]) | usize::from(h[1]) << 8 | usize::from(h[2]) << 16;
                    // Sequence 0 starts a command; later sequences belong to the handshake.
                    self.at_command = h[3] == 0 && self.remaining > 0;
                    self.header.clear();
                }
                continue;
            }
            if self.at_command {
                if matches!(bytes[0], COM_QUERY | COM_STMT_EXECUTE) {
                    count += 1;
                }
                self.at_command = false;
            }
            let take = self.remaining.min(bytes.len());
            self.remaining -= take;
            bytes = &bytes[take..];
        }
        count
    }
}
