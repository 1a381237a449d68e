//! A TCP proxy between phone and server that misbehaves on purpose: it cuts connections
//! at random byte offsets (inside a request, or inside a response after the server has
//! committed), and can shape the link (bandwidth and latency) like one bar of 3G.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy does to each new connection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Probability that a connection is cut while the client sends.
    pub cut_request: f64,
    /// Probability that a connection is cut while the server answers.
    pub cut_response: f64,
    /// Cut offsets are drawn uniformly below this many bytes of the direction's stream.
    pub max_offset: u64,
    pub seed: u64,
    /// Stop cutting after this many cuts (0: no limit).
    pub max_cuts: u64,
    /// Also cut whichever connection is sending when the bytes sent upward through the proxy
    /// reach each multiple of this (0: never), within `max_cuts`: cuts at known points.
    pub cut_every_up: u64,
}

/// Link shaping, applied in both directions.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub bytes_per_second: u64,
    /// One-way delay (half the round trip).
    pub one_way: Duration,
}

#[derive(Debug, Default)]
pub struct Stats {
    pub connections: AtomicU64,
    pub cuts: AtomicU64,
    /// Bytes the proxy forwarded from client to server.
    pub bytes_up: AtomicU64,
    pub bytes_down: AtomicU64,
}

pub struct Proxy {
    pub addr: String,
    pub stats: Arc<Stats>,
    upstream: Arc<Mutex<String>>,
    faults: Arc<Mutex<Faults>>,
    _runtime: tokio::runtime::Runtime,
}

impl Proxy {
    pub fn start(upstream: &str, faults: Faults, shape: Option<Shape>) -> Proxy {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stats = Arc::new(Stats::default());
        let upstream = Arc::new(Mutex::new(upstream.to_string()));
        let faults = Arc::new(Mutex::new(faults));
        let (s, u, f) = (stats.clone(), upstream.clone(), faults.clone());
        runtime.spawn(async move {
            let mut n = 0u64;
            while let Ok((client, _)) = listener.accept().await {
                n += 1;
                let to = u.lock().unwrap().clone();
                let faults = *f.lock().unwrap();
                let stats = s.clone();
                tokio::spawn(handle(client, to, faults, shape, stats, n));
            }
        });
        Proxy { addr, stats, upstream, faults, _runtime: runtime }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Points new connections at another server address (after a restart).
    pub fn set_upstream(&self, addr: &str) {
        *self.upstream.lock().unwrap() = addr.to_string();
    }

    pub fn set_faults(&self, faults: Faults) {
        *self.faults.lock().unwrap() = faults;
    }

    pub fn bytes_up(&self) -> u64 {
        self.stats.bytes_up.load(Ordering::SeqCst)
    }
}

async fn handle(client: TcpStream, upstream: String, faults: Faults, shape: Option<Shape>, stats: Arc<Stats>, n: u64) {
    stats.connections.fetch_add(1, Ordering::SeqCst);
    let Ok(server) = TcpStream::connect(&upstream).await else { return };
    let mut rng = rand::rngs::StdRng::seed_from_u64(faults.seed.wrapping_mul(1_000_003).wrapping_add(n));
    let max = faults.max_offset.max(1);
    let exhausted = faults.max_cuts > 0 && stats.cuts.load(Ordering::SeqCst) >= faults.max_cuts;
    let roll: f64 = if exhausted { 1.0 } else { rng.random() };
    let (up_budget, down_budget) = if roll < faults.cut_request {
        (Some(rng.random_range(0..max)), None)
    } else if roll < faults.cut_request + faults.cut_response {
        (None, Some(rng.random_range(0..max)))
    } else {
        (None, None)
    };
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let every = if faults.cut_every_up > 0 { Some((faults.cut_every_up, faults.max_cuts)) } else { None };
    let up = pump(cr, sw, up_budget, shape, stats.clone(), true, every);
    let down = pump(sr, cw, down_budget, shape, stats.clone(), false, None);
    // When either direction ends (closed or cut), drop both: the connection is gone.
    tokio::select! {
        _ = up => {},
        _ = down => {},
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    budget: Option<u64>,
    shape: Option<Shape>,
    stats: Arc<Stats>,
    upward: bool,
    cut_every: Option<(u64, u64)>,
) {
    // The reader stamps each chunk with the time it would arrive at the far end; the
    // writer delivers it then, no faster than the line rate. A bounded channel stands in
    // for the link's buffer.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(Instant, Vec<u8>)>(64);
    let one_way = shape.map(|s| s.one_way).unwrap_or_default();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.send((Instant::now() + one_way, buf[..n].to_vec())).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    let mut sent = 0u64;
    let mut line_free_at = Instant::now();
    while let Some((arrive, mut chunk)) = rx.recv().await {
        let mut cut = false;
        if let Some(b) = budget {
            if sent + chunk.len() as u64 >= b {
                chunk.truncate(b.saturating_sub(sent) as usize);
                cut = true;
            }
        }
        if let Some((every, max)) = cut_every {
            let cuts = stats.cuts.load(Ordering::SeqCst);
            let next = (cuts + 1) * every;
            let total = stats.bytes_up.load(Ordering::SeqCst);
            if (max == 0 || cuts < max) && total + chunk.len() as u64 >= next {
                chunk.truncate(next.saturating_sub(total) as usize);
                cut = true;
            }
        }
        if let Some(s) = shape {
            let start = line_free_at.max(arrive);
            line_free_at = start + Duration::from_secs_f64(chunk.len() as f64 / s.bytes_per_second as f64);
            tokio::time::sleep_until(line_free_at.into()).await;
        }
        if !chunk.is_empty() && to.write_all(&chunk).await.is_err() {
            break;
        }
        sent += chunk.len() as u64;
        let counter = if upward { &stats.bytes_up } else { &stats.bytes_down };
        counter.fetch_add(chunk.len() as u64, Ordering::SeqCst);
        if cut {
            stats.cuts.fetch_add(1, Ordering::SeqCst);
            break;
        }
    }
    reader.abort();
}
