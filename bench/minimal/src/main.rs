//! The yardstick `bench/list.sh` measures `peregrine serve` against: `GET /users/`
//! (`?limit=N`, default 100 as Peregrine's) and `GET /users/{id}` as the simplest fast server a good
//! engineer would write with hyper and tokio-postgres, and nothing else: one thread per
//! core, each with a single-threaded runtime, its own `SO_REUSEPORT` listener and one
//! PostgreSQL connection on which its requests' queries pipeline, the statements prepared
//! once. No router, middleware, limits, logging, metrics or error bodies.
//!
//! ```text
//! minimal-server ADDRESS 'host=127.0.0.1 port=5432 user=orguser dbname=orgdb' [THREADS]
//! ```

use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::rc::Rc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpSocket;
use tokio_postgres::{Client, NoTls, Statement};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Failure = Box<dyn std::error::Error + Send + Sync>;

/// One thread's database connection and statements.
struct Database {
    client: Client,
    list: Statement,
    get: Statement,
}

fn main() {
    if let Err(err) = run() {
        eprintln!("minimal-server: {err}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Failure> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: minimal-server ADDRESS DATABASE-CONFIG [THREADS]";
    let address: SocketAddr = args.next().ok_or(usage)?.parse()?;
    let database = args.next().ok_or(usage)?;
    let threads = match args.next() {
        Some(text) => text.parse::<usize>()?.clamp(1, 256),
        None => std::thread::available_parallelism().map_or(1, usize::from),
    };
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let database = database.clone();
            std::thread::spawn(move || serve_thread(address, &database))
        })
        .collect();
    for worker in workers {
        worker.join().map_err(|_| "a server thread panicked")??;
    }
    Ok(())
}

fn serve_thread(address: SocketAddr, database: &str) -> Result<(), Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let (client, connection) = tokio_postgres::connect(database, NoTls).await?;
        tokio::task::spawn_local(connection);
        let list = client
            .prepare("SELECT id, username FROM orguser WHERE id > $1 ORDER BY id LIMIT $2")
            .await?;
        let get = client
            .prepare("SELECT id, username FROM orguser WHERE id = $1")
            .await?;
        let database = Rc::new(Database { client, list, get });
        let socket = if address.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseport(true)?;
        socket.bind(address)?;
        let listener = socket.listen(4096)?;
        loop {
            let (tcp, _) = listener.accept().await?;
            tcp.set_nodelay(true)?;
            let database = Rc::clone(&database);
            tokio::task::spawn_local(async move {
                let service = service_fn(move |request| respond(Rc::clone(&database), request));
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    })
}

async fn respond(
    database: Rc<Database>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path();
    let answer = if path == "/users/" || path == "/users" {
        let limit = limit_of(request.uri().query());
        list(&database, limit).await
    } else if let Some(id) = path.strip_prefix("/users/").and_then(|id| id.parse().ok()) {
        get(&database, id).await
    } else {
        Ok(None)
    };
    let (status, body) = match answer {
        Ok(Some(json)) => (StatusCode::OK, json),
        Ok(None) => (StatusCode::NOT_FOUND, Vec::new()),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, Vec::new()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

/// `limit=N` from the query string; without one, 100 (Peregrine's default page).
fn limit_of(query: Option<&str>) -> i64 {
    query
        .into_iter()
        .flat_map(|query| query.split('&'))
        .find_map(|pair| pair.strip_prefix("limit=")?.parse().ok())
        .unwrap_or(100)
}

async fn list(database: &Database, limit: i64) -> Result<Option<Vec<u8>>, Failure> {
    let rows = database
        .client
        .query(&database.list, &[&0_i32, &limit])
        .await?;
    let mut json = Vec::with_capacity(2 + 40 * rows.len());
    json.push(b'[');
    for (index, row) in rows.iter().enumerate() {
        if index > 0 {
            json.push(b',');
        }
        user(&mut json, row.try_get(0)?, row.try_get(1)?)?;
    }
    json.push(b']');
    Ok(Some(json))
}

async fn get(database: &Database, id: i32) -> Result<Option<Vec<u8>>, Failure> {
    let row = database.client.query_opt(&database.get, &[&id]).await?;
    let Some(row) = row else { return Ok(None) };
    let mut json = Vec::with_capacity(64);
    user(&mut json, row.try_get(0)?, row.try_get(1)?)?;
    Ok(Some(json))
}

fn user(json: &mut Vec<u8>, id: i32, username: &str) -> Result<(), Failure> {
    write!(json, "{{\"id\":{id},\"username\":")?;
    serde_json::to_writer(&mut *json, username)?;
    json.push(b'}');
    Ok(())
}
