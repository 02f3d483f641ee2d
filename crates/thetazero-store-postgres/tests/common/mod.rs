//! Test scaffolding: a fresh schema per test, dropped when the test ends, and
//! a TCP proxy on 127.0.0.1 that a test can cut. Must not be used outside
//! tests, and must never reach beyond this machine.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use thetazero_core::store::Store;
use thetazero_store_postgres::{parse_url, PgStore};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, NoTls};

pub fn base_url() -> String {
    std::env::var("THETAZERO_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A uniquely named schema that is dropped (with everything in it) when this
/// guard is dropped.
pub struct Schema {
    pub name: String,
    /// Roles a test created, dropped after the schema.
    pub roles: Vec<String>,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl Schema {
    pub async fn create() -> Schema {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!(
            "tz_test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst),
            nanos
        );
        let admin = connect(&parse_url(&base_url()).unwrap()).await;
        admin
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .await
            .unwrap();
        Schema {
            name,
            roles: Vec::new(),
        }
    }

    /// The base URL with this schema as the search path.
    pub fn url(&self) -> String {
        let base = base_url();
        let sep = if base.contains('?') { '&' } else { '?' };
        format!("{base}{sep}options=-c%20search_path%3D{}", self.name)
    }

    pub fn config(&self) -> Config {
        let mut config = parse_url(&base_url()).unwrap();
        config.options(format!("-c search_path={}", self.name));
        config
    }

    /// A plain connection inside the schema, as an operator would have.
    pub async fn admin(&self) -> Client {
        connect(&self.config()).await
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        // Drop cannot await; a short-lived runtime on its own thread can.
        let name = self.name.clone();
        let roles = std::mem::take(&mut self.roles);
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let admin = connect(&parse_url(&base_url()).unwrap()).await;
                // A failed test may leave a transaction open in the schema;
                // do not hang on its locks, say so instead.
                if let Err(e) = admin
                    .batch_execute(&format!(
                        "SET lock_timeout = '10s'; DROP SCHEMA IF EXISTS {name} CASCADE"
                    ))
                    .await
                {
                    eprintln!("could not drop test schema {name}: {e}");
                }
                for role in roles {
                    admin
                        .batch_execute(&format!(
                            "DROP OWNED BY {role} CASCADE; DROP ROLE IF EXISTS {role}"
                        ))
                        .await
                        .unwrap();
                }
            })
        });
        let _ = done.join();
    }
}

pub async fn connect(config: &Config) -> Client {
    let (client, connection) = config.connect(NoTls).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// A fresh, migrated store in its own schema, for the conformance suite.
pub async fn fresh() -> (Arc<dyn Store>, Schema) {
    let schema = Schema::create().await;
    let store = PgStore::connect(&schema.url()).await.unwrap();
    (Arc::new(store), schema)
}

/// Where the test database listens, for the proxy to forward to.
pub fn upstream() -> SocketAddr {
    let config = parse_url(&base_url()).unwrap();
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let host = if host == "localhost" {
        "127.0.0.1".into()
    } else {
        host
    };
    format!("{host}:{port}").parse().unwrap()
}

/// A TCP proxy on 127.0.0.1 in front of the test database. `cut` closes every
/// forwarded connection and makes new ones hang silently (as an unreachable
/// host does); `restore` forwards again.
pub struct Proxy {
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    held: Arc<Mutex<Vec<TcpStream>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    pub async fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let target = upstream();
        let accept = {
            let (up, conns, held) = (up.clone(), conns.clone(), held.clone());
            tokio::spawn(async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if !up.load(Ordering::SeqCst) {
                        held.lock().unwrap().push(inbound);
                        continue;
                    }
                    let task = tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(target).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    conns.lock().unwrap().push(task);
                }
            })
        };
        Proxy {
            addr,
            up,
            conns,
            held,
            accept,
        }
    }

    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for task in self.conns.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    pub fn restore(&self) {
        self.held.lock().unwrap().clear();
        self.up.store(true, Ordering::SeqCst);
    }

    /// `config` redirected through this proxy.
    pub fn route(&self, mut config: Config) -> Config {
        let mut routed = Config::new();
        if let Some(user) = config.get_user() {
            routed.user(user);
        }
        if let Some(db) = config.get_dbname() {
            routed.dbname(db);
        }
        if let Some(options) = config.get_options() {
            routed.options(options);
        }
        if let Some(password) = config.get_password() {
            routed.password(password);
        }
        config = routed;
        config.host("127.0.0.1").port(self.addr.port());
        config
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}
