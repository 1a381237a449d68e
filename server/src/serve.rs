//! `ohassist serve`: opens the database, makes the first admin if there is no user, and
//! serves the API over HTTP or HTTPS until SIGTERM or ctrl-c.
//!
//! Shutdown is graceful: the listener closes, requests in flight finish. Nothing else is
//! needed for durability, because a push is acknowledged only after its COMMIT.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::accounts::{self, NewUser, Role};
use crate::db::{now, Db};
use crate::{app, AppState};

pub struct ServeOptions {
    pub listen: SocketAddr,
    pub data: PathBuf,
    /// Where the records are: the SQLite file in `data`, or PostgreSQL.
    pub database: crate::db::Location,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub org_unit: String,
    /// Per-file attachment limit in bytes.
    pub max_attachment_bytes: u64,
    /// Per-visit limit: completed attachment files linked to one visit, in bytes.
    pub max_visit_attachment_bytes: u64,
    /// Visits recorded further than this from their enterprise are flagged.
    pub max_visit_distance_m: f64,
    /// Visits whose device capture time is further than this from the receive time are flagged.
    pub max_clock_skew_s: i64,
    /// The upstream to relay to (`crate::relay`), logged in with `ohassist upstream login`.
    pub upstream: Option<String>,
    /// Time between relay rounds.
    pub upstream_interval: Duration,
    /// The byte budget of a pull page.
    pub pull_page_bytes: usize,
}

impl ServeOptions {
    /// The attachment settings of these options, under the data directory.
    pub fn attachments(&self) -> crate::attachments::Config {
        crate::attachments::Config {
            max_file_bytes: self.max_attachment_bytes,
            max_visit_bytes: self.max_visit_attachment_bytes,
            max_visit_distance_m: self.max_visit_distance_m,
            max_clock_skew_s: self.max_clock_skew_s,
            ..crate::attachments::Config::new(&self.data)
        }
    }

    /// The state of a server with these options over `db`.
    pub fn state(&self, db: Db) -> AppState {
        let mut state = AppState::new(db);
        state.attachments = std::sync::Arc::new(self.attachments());
        state.pull_page_bytes = self.pull_page_bytes;
        state
    }
}

/// How long requests in flight get to finish after a shutdown signal (TLS only: plain
/// HTTP waits for them without limit, as axum does).
const TLS_DRAIN: Duration = Duration::from_secs(30);

pub async fn serve(opts: ServeOptions) -> Result<(), Box<dyn std::error::Error>> {
    let db = Db::open_at(&opts.database, &opts.data)?;
    ensure_first_admin(&db, &opts.org_unit).await?;
    let state = opts.state(db);
    if let Some(url) = &opts.upstream {
        start_relay(&state, url, opts.upstream_interval).await?;
    }
    serve_state(state, opts, |_| {}).await
}

/// Serves `state` until a shutdown signal; `listening` is called with the bound address
/// right after the address line is printed (the demo starts entering its records there).
pub async fn serve_state(
    state: AppState,
    opts: ServeOptions,
    listening: impl FnOnce(SocketAddr),
) -> Result<(), Box<dyn std::error::Error>> {
    // Console cookies are marked Secure when this process speaks TLS itself.
    crate::web::session::set_secure_cookies(opts.tls.is_some());
    sweep_partial_uploads(state.attachments.clone());
    let router = app(state).into_make_service_with_connect_info::<SocketAddr>();

    let listener = std::net::TcpListener::bind(opts.listen)?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let scheme = if opts.tls.is_some() { "https" } else { "http" };
    // The signal handlers are installed before the address is printed: a SIGTERM sent as
    // soon as a script reads it must stop the server gracefully, not kill it.
    let shutdown = shutdown_signal();
    // Tests (and scripts) read the port from this exact line.
    println!("listening on {scheme}://{addr}");
    tracing::info!(%addr, scheme, data = %opts.data.display(), "listening");
    listening(addr);

    match opts.tls {
        None => {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            axum::serve(listener, router).with_graceful_shutdown(shutdown).await?;
        }
        Some((cert, key)) => {
            let config = tls_config(&cert, &key).await?;
            let handle = axum_server::Handle::new();
            let stopper = handle.clone();
            tokio::spawn(async move {
                shutdown.await;
                stopper.graceful_shutdown(Some(TLS_DRAIN));
            });
            axum_server::from_tcp_rustls(listener, config).handle(handle).serve(router).await?;
        }
    }
    tracing::info!("stopped");
    Ok(())
}

async fn tls_config(
    cert: &Path,
    key: &Path,
) -> Result<axum_server::tls_rustls::RustlsConfig, Box<dyn std::error::Error>> {
    // One crypto provider for the process; `ring` builds without a C toolchain beyond cc.
    let _ = rustls::crypto::ring::default_provider().install_default();
    axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
        .await
        .map_err(|e| format!("cannot load TLS certificate {} / key {}: {e}", cert.display(), key.display()).into())
}

/// Every hour (and once at start), removes unfinished uploads nobody appended to for
/// [`crate::attachments::PARTIAL_MAX_AGE`], off the async threads.
fn sweep_partial_uploads(cfg: std::sync::Arc<crate::attachments::Config>) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(3600));
        loop {
            every.tick().await;
            let cfg = cfg.clone();
            let swept = tokio::task::spawn_blocking(move || {
                crate::attachments::gc_partials(&cfg, crate::attachments::PARTIAL_MAX_AGE)
            })
            .await;
            match swept {
                Ok(Ok(removed)) if !removed.is_empty() => {
                    tracing::info!(removed = removed.len(), "unfinished uploads removed")
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "sweeping unfinished uploads failed"),
                Err(e) => tracing::warn!(error = %e, "sweeping unfinished uploads panicked"),
            }
        }
    });
}

/// Starts the relay task to `url`. A login to another upstream is refused (log in to this one
/// first); with none yet, the task waits for `ohassist upstream login`.
async fn start_relay(state: &AppState, url: &str, interval: Duration) -> Result<(), Box<dyn std::error::Error>> {
    let url = url.trim_end_matches('/').to_string();
    let link = state.db.with_reader(|conn| crate::relay::link(conn).map_err(crate::db::DbError::from)).await?;
    match link {
        Some(l) if l.url != url => {
            return Err(format!(
                "已登录的上级服务器是 {}，不是 {url}：请先运行 ohassist upstream login --url {url} / this server is \
                 logged in to {}, not {url}: run `ohassist upstream login --url {url}` first",
                l.url, l.url
            )
            .into())
        }
        Some(_) => {}
        None => tracing::warn!(%url, "no upstream login yet: run `ohassist upstream login`; the relay waits for it"),
    }
    tracing::info!(%url, interval_s = interval.as_secs_f64(), "relaying to the upstream");
    tokio::spawn(crate::relay::run(state.db.clone(), state.relay_wake.clone(), interval));
    Ok(())
}

/// On a database without users, creates `admin` with a random password and says so:
/// there is no fixed default password to forget to change.
async fn ensure_first_admin(db: &Db, org_unit: &str) -> Result<(), Box<dyn std::error::Error>> {
    let db = db.clone();
    let org_unit = org_unit.to_string();
    let created = db
        .with_writer(move |conn| -> Result<_, Box<dyn std::error::Error + Send + Sync>> {
            if accounts::count_users(conn)? > 0 {
                return Ok(None);
            }
            let password = accounts::generate_password();
            let new = NewUser {
                username: "admin",
                display_name: "管理员",
                role: Role::Admin,
                org_unit: &org_unit,
                password: &password,
            };
            accounts::create_user(conn, &new, now())?;
            Ok(Some(password))
        })
        .await
        .map_err(|e| e.to_string())?;
    if let Some(password) = created {
        println!("已创建首个管理员账号 / created the first admin: username `admin`, password `{password}`");
        println!("请登录后修改密码 / change it with: ohassist user passwd --username admin");
        // The password goes to the terminal only: logs are copied to places passwords must not be.
        tracing::warn!(username = "admin", "created the first admin; its password was printed on standard output");
    }
    Ok(())
}

/// Installs the SIGINT and SIGTERM handlers now; the future resolves on either signal.
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let (int, term) = {
        use tokio::signal::unix::{signal, SignalKind};
        let install =
            |kind| signal(kind).map_err(|e| tracing::error!(error = %e, "cannot listen for a shutdown signal")).ok();
        (install(SignalKind::interrupt()), install(SignalKind::terminate()))
    };
    async move {
        #[cfg(unix)]
        {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => drop(s.recv().await),
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = wait(int) => {},
                _ = wait(term) => {},
            }
        }
        #[cfg(not(unix))]
        drop(tokio::signal::ctrl_c().await);
        tracing::info!("shutting down");
    }
}
