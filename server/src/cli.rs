//! The `ohassist` command line: `serve`, and the `user`/`device`/`backup`/`restore` tools an
//! admin runs on the server itself (they open the same database; SQLite serialises them with
//! a running server).

use std::io::{BufRead, IsTerminal};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::accounts::{self, NewUser, Role};
use crate::attachments;
use crate::clients;
use crate::db::{now, Db, Location};
use crate::scope;
use crate::serve::{serve, ServeOptions};

#[derive(Debug, Parser)]
#[command(name = "ohassist", version, about = "ohassist county server / 职业健康帮扶县级服务器")]
pub struct Cli {
    /// Data directory; the database is `<data>/ohassist.db`.
    #[arg(long, global = true, default_value = "./data", env = "OHASSIST_DATA")]
    pub data: PathBuf,
    /// The records in PostgreSQL instead of the SQLite file (`postgres://user@host/db`);
    /// attachments stay in the data directory.
    #[arg(long, global = true, env = "OHASSIST_DATABASE")]
    pub database: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API until SIGTERM or ctrl-c.
    Serve(ServeArgs),
    /// Create a synthetic city (沈阳市, its counties and a development zone, a year of
    /// records entered by phones) in an empty data directory, and serve it.
    Demo(DemoArgs),
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage devices.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// The link to an upstream server (county → city → province): log in, see it, relay once.
    #[command(subcommand)]
    Upstream(UpstreamCommand),
    /// Manage API clients: read-only tokens for the records export (`GET /api/v1/export`).
    #[command(subcommand)]
    Client(ClientCommand),
    /// Attachment files (photos, signatures, documents).
    #[command(subcommand)]
    Attachments(AttachmentsCommand),
    /// Copy the county's SQLite database into an empty PostgreSQL database, the server
    /// stopped (迁移, docs/deployment.md); phones keep syncing without starting over.
    Migrate {
        /// The PostgreSQL database: `postgres://user@host/db`, empty.
        #[arg(long)]
        to: String,
    },
    /// Copy the database and the attachment files into a new directory while the server
    /// runs (备份, docs/deployment.md).
    Backup {
        /// The backup's directory: new, or empty. Written beside it and renamed when whole.
        #[arg(long)]
        to: PathBuf,
    },
    /// Bring a backup back into the data directory, the server stopped (恢复).
    Restore {
        /// A directory `ohassist backup` wrote.
        #[arg(long)]
        from: PathBuf,
        /// Replace a data directory that holds data (what is there is kept in
        /// `<data>/before-restore-<time>/`).
        #[arg(long)]
        force: bool,
        /// Only verify the backup (manifest, hashes, integrity); change nothing.
        #[arg(long)]
        verify_only: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum UpstreamCommand {
    /// Log this server in to its upstream with the relay account its admin created (role
    /// `relay`); the token is kept in this server's database. Run again to rotate the token.
    Login {
        /// The upstream server, `https://city.example`.
        #[arg(long)]
        url: String,
        #[arg(long)]
        username: String,
        /// Read the password from the first line of standard input (else it is asked for).
        #[arg(long)]
        password_stdin: bool,
        /// Allow a plain `http://` upstream (a lab network, tests on loopback).
        #[arg(long)]
        allow_http: bool,
    },
    /// Print the link: last relay, changes waiting up and down, the last error in words.
    Status,
    /// Relay one round now (push what waits, pull what came), then print the status.
    Sync,
}

#[derive(Debug, Subcommand)]
pub enum AttachmentsCommand {
    /// Re-hash every stored attachment file; report missing or corrupt ones (exit code 1 if any).
    Check,
    /// Remove partial uploads not continued for some days.
    Gc {
        #[arg(long, default_value_t = 7)]
        partial_older_than_days: u64,
    },
}

/// A phone reads a pull answer of at most 256 MiB; a page may exceed its budget by one
/// document (at most 8 MiB).
const MAX_PULL_PAGE_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// PEM certificate chain: serve HTTPS (with --tls-key).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Org unit of the first admin, created when the database has no user.
    #[arg(long, default_value = scope::COUNTRY)]
    pub org_unit: String,
    /// Largest attachment file accepted, in bytes.
    #[arg(long, default_value_t = ohassist_core::sync::wire::DEFAULT_MAX_ATTACHMENT_BYTES)]
    pub max_attachment_bytes: u64,
    /// Most bytes of attachment files per visit.
    #[arg(long, default_value_t = attachments::DEFAULT_MAX_VISIT_BYTES)]
    pub max_visit_attachment_bytes: u64,
    /// Flag visits recorded further than this (metres) from their enterprise's registered location.
    #[arg(long, default_value_t = attachments::DEFAULT_MAX_VISIT_DISTANCE_M)]
    pub max_visit_distance_m: f64,
    /// Flag visits whose device capture time is further than this (seconds) from the server's receive time.
    #[arg(long, default_value_t = attachments::DEFAULT_MAX_CLOCK_SKEW_S)]
    pub max_clock_skew_s: i64,
    /// Relay to this upstream server (`https://city.example`), logged in first with
    /// `ohassist upstream login`: push what this server holds, pull what the upstream holds
    /// in this server's unit, continuously.
    #[arg(long)]
    pub upstream: Option<String>,
    /// Seconds between relay rounds (a push by a phone starts one at once).
    #[arg(long, default_value_t = crate::relay::DEFAULT_INTERVAL.as_secs_f64())]
    pub upstream_interval: f64,
    /// Bytes of records a pull page aims at (a smaller page is answered sooner on a slow link).
    #[arg(long, default_value_t = ohassist_core::sync::wire::PULL_PAGE_BYTES,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=MAX_PULL_PAGE_BYTES))]
    pub pull_page_bytes: usize,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Delete the ohassist data already in the data directory (the database and the
    /// attachments) instead of refusing to start.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user; prints a generated password unless --password-stdin.
    Add {
        #[arg(long)]
        username: String,
        #[arg(long)]
        display_name: String,
        #[arg(long, value_parser = ["inspector", "supervisor", "admin", "relay"])]
        role: String,
        /// 6-digit administrative division code.
        #[arg(long)]
        org_unit: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a user's password (logs all their devices out); prints a generated one unless --password-stdin.
    Passwd {
        #[arg(long)]
        username: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Move a user to another org unit (6-digit division code), e.g. an inspector who now
    /// works for another county.
    SetUnit {
        #[arg(long)]
        username: String,
        #[arg(long)]
        org_unit: String,
    },
    /// List users.
    List,
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Create an API client; prints its token once.
    Add {
        /// Who uses it, e.g. 省职业健康信息平台.
        #[arg(long)]
        name: String,
        /// 6-digit administrative division code: the client reads the records of this unit.
        #[arg(long)]
        org_unit: String,
    },
    /// List API clients.
    List,
    /// Revoke an API client: its token is refused from now on.
    Revoke { client_id: String },
}

#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// List devices.
    List,
    /// Revoke a device: its token stops working and it cannot log in again.
    Revoke { device_id: String },
    /// Mark a device lost: every request is refused, and the phone erases its store (unsynced
    /// data included) when it next reaches the server.
    Lost { device_id: String },
    /// Retire a device: it may push what it still holds, then erases its store and logs out.
    Retire { device_id: String },
}

fn init_logging(default: &str) {
    let filter = EnvFilter::try_from_env("OHASSIST_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    // Logs go to stderr: stdout carries what the operator must read (address, passwords).
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

pub fn run(cli: Cli) -> ExitCode {
    // The demo's own lines (accounts, readiness) would drown in a log line per request.
    init_logging(if matches!(cli.command, Command::Demo(_)) { "warn" } else { "info" });
    let location = match Location::of(cli.database.as_deref(), &cli.data) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("错误 / error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let postgres = matches!(location, Location::Postgres(_));
    let result = match cli.command {
        Command::Demo(_) | Command::Backup { .. } | Command::Restore { .. } if postgres => Err(
            "demo、backup 与 restore 只用于 SQLite 数据目录；PostgreSQL 请用 pg_dump / pg_restore（见 docs/deployment.md） \
             / demo, backup and restore work on an SQLite data directory; for PostgreSQL use pg_dump and pg_restore (docs/deployment.md)"
                .into(),
        ),
        Command::Migrate { .. } if postgres => {
            Err("migrate 从数据目录的 SQLite 文件复制，不要同时给 --database / migrate copies the data directory's SQLite file: leave --database out".into())
        }
        Command::Migrate { to } => run_migrate(&cli.data, &to),
        Command::Serve(args) => run_serve(&cli.data, &location, args),
        Command::Demo(args) => run_demo(&cli.data, args),
        Command::User(cmd) => run_user(&cli.data, &location, cmd),
        Command::Device(cmd) => run_device(&cli.data, &location, cmd),
        Command::Client(cmd) => run_client(&cli.data, &location, cmd),
        Command::Attachments(AttachmentsCommand::Check) => match check_attachments(&cli.data, &location) {
            Ok(report) if report.ok() => Ok(()),
            Ok(report) => {
                eprintln!(
                    "错误 / error: {} missing, {} corrupt attachment file(s)",
                    report.missing.len(),
                    report.corrupt.len()
                );
                return ExitCode::FAILURE;
            }
            Err(e) => Err(e),
        },
        Command::Backup { to } => run_backup(&cli.data, &to),
        Command::Upstream(cmd) => run_upstream(&cli.data, &location, cmd),
        Command::Restore { from, force, verify_only } => run_restore(&cli.data, &from, force, verify_only),
        Command::Attachments(AttachmentsCommand::Gc { partial_older_than_days }) => {
            let cfg = attachments::Config::new(&cli.data);
            let age = std::time::Duration::from_secs(partial_older_than_days * 24 * 3600);
            attachments::gc_partials(&cfg, age).map_err(Into::into).map(|removed| {
                for sha in &removed {
                    println!("removed partial upload {sha}");
                }
                println!("removed {} partial upload(s)", removed.len());
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("错误 / error: {e}");
            ExitCode::FAILURE
        }
    }
}

type CliResult = Result<(), Box<dyn std::error::Error>>;

fn run_serve(data: &Path, location: &Location, args: ServeArgs) -> CliResult {
    if !scope::is_division_code(&args.org_unit) {
        return Err("--org-unit must be a 6-digit administrative division code".into());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(serve(ServeOptions {
        listen: args.listen,
        data: data.to_path_buf(),
        database: location.clone(),
        tls: args.tls_cert.zip(args.tls_key),
        org_unit: args.org_unit,
        max_attachment_bytes: args.max_attachment_bytes,
        max_visit_attachment_bytes: args.max_visit_attachment_bytes,
        max_visit_distance_m: args.max_visit_distance_m,
        max_clock_skew_s: args.max_clock_skew_s,
        upstream: args.upstream,
        upstream_interval: std::time::Duration::from_secs_f64(args.upstream_interval.clamp(0.05, 86_400.0)),
        pull_page_bytes: args.pull_page_bytes,
    }))
}

fn run_migrate(data: &Path, to: &str) -> CliResult {
    let url = crate::sql::PgUrl::parse(to).ok_or("--to 须为 postgres:// 地址 / --to must be a postgres:// URL")?;
    let report = crate::migrate::migrate(data, &url)?;
    for (table, rows) in &report.rows {
        println!("{table:<20} {rows:>9}");
    }
    println!(
        "已迁移并核对 / copied and checked: {} 份记录 / documents, {} 条修改 / changes (feed up to {}) -> {url}",
        report.documents, report.changes, report.last_seq
    );
    println!("今后启动请加 / from now on start with: ohassist --database {url} --data {} serve", data.display());
    Ok(())
}

fn run_upstream(data: &Path, location: &Location, cmd: UpstreamCommand) -> CliResult {
    let db = Db::open_at(location, data)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cmd {
        UpstreamCommand::Login { url, username, password_stdin, allow_http } => {
            if !password_stdin && std::io::stdin().is_terminal() {
                eprintln!("请输入中继账号的密码后回车 / type the relay account's password and press enter:");
            }
            let mut password = String::new();
            std::io::stdin().lock().read_line(&mut password)?;
            let password = password.trim_end_matches(['\r', '\n']).to_string();
            let link = runtime
                .block_on(crate::relay::login(&db, &url, &username, &password, allow_http))
                .map_err(|e| format!("{} / {e}", e.message_zh()))?;
            println!(
                "已登录上级服务器 / logged in to the upstream {} as {} (unit {}, device {})",
                link.url, link.username, link.org_unit, link.device_id
            );
        }
        UpstreamCommand::Status => print_link_status(&db)?,
        UpstreamCommand::Sync => {
            let round = runtime.block_on(crate::relay::round(&db));
            match round {
                Ok(r) => println!(
                    "中继完成 / relayed: {} 条修改上传 / changes up, {} 份记录被拒 / refused, {} 条下载 / down",
                    r.pushed, r.refused, r.pulled
                ),
                Err(e) => {
                    print_link_status(&db)?;
                    return Err(format!("{} / {e}", e.message_zh()).into());
                }
            }
            print_link_status(&db)?;
        }
    }
    Ok(())
}

fn print_link_status(db: &Db) -> CliResult {
    let s = crate::relay::status(&db.blocking_writer())?;
    if !s.configured {
        println!("未配置上级服务器 / no upstream: run `ohassist upstream login --url … --username …`");
        return Ok(());
    }
    let when = |t: Option<i64>| match t {
        Some(t) => crate::relay::local_time(t),
        None => "从未 / never".to_string(),
    };
    println!("上级服务器 / upstream:        {} ({}, device {})", s.url, s.username, s.device_id);
    println!("最近上传 / last relayed up:    {}", when(s.last_up_at));
    println!("最近下载 / last relayed down:  {}", when(s.last_down_at));
    println!("待上传 / waiting up:           {} 条修改 / changes", s.waiting_up);
    println!("待下载 / waiting down:         {}", if s.waiting_down { "还有 / more pages wait" } else { "无 / none" });
    if s.waiting_enterprise > 0 {
        println!("待企业 / waiting for their enterprise: {}", s.waiting_enterprise);
    }
    println!("累计 / in all:                 {} 上传 / up, {} 下载 / down", s.pushed, s.pulled);
    println!("被拒 / refused now:            {}", s.refused_now);
    for (doc, zh, en) in &s.refused {
        println!("  {doc}: {zh} / {en}");
    }
    match (&s.last_error_zh, &s.last_error_en) {
        (Some(zh), Some(en)) => println!("最近错误 / last error ({}): {zh} / {en}", when(s.last_error_at)),
        _ => println!("最近错误 / last error:         无 / none"),
    }
    match s.token_expires_at {
        Some(t) => println!(
            "令牌有效期至 / token valid until: {} (到期前一个月自动续期 / renews itself a month before)",
            when(Some(t))
        ),
        None => println!("令牌有效期至 / token valid until: 未知 / unknown"),
    }
    if !s.logged_in {
        println!("未登录 / not logged in: run `ohassist upstream login` again");
    }
    Ok(())
}

fn run_demo(data: &Path, args: DemoArgs) -> CliResult {
    let started = std::time::Instant::now();
    crate::demo::prepare_dir(data, args.force)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let opts = ServeOptions {
        listen: args.listen,
        data: data.to_path_buf(),
        database: Location::Sqlite(data.join(crate::db::DB_FILE)),
        tls: None,
        org_unit: crate::demo::CITY.to_string(),
        max_attachment_bytes: ohassist_core::sync::wire::DEFAULT_MAX_ATTACHMENT_BYTES,
        max_visit_attachment_bytes: attachments::DEFAULT_MAX_VISIT_BYTES,
        max_visit_distance_m: attachments::DEFAULT_MAX_VISIT_DISTANCE_M,
        max_clock_skew_s: attachments::DEFAULT_MAX_CLOCK_SKEW_S,
        upstream: None,
        upstream_interval: crate::relay::DEFAULT_INTERVAL,
        pull_page_bytes: ohassist_core::sync::wire::PULL_PAGE_BYTES,
    };
    runtime.block_on(crate::demo::run(opts, started))
}

fn run_backup(data: &Path, to: &Path) -> CliResult {
    let r = crate::backup::backup(data, to)?;
    let m = &r.manifest;
    println!(
        "备份完成 / backup complete: {} (feed position {}, {} documents, {} changes, {} attachment files)",
        to.display(),
        m.feed_seq,
        m.counts.documents,
        m.counts.changes,
        m.counts.attachments
    );
    println!(
        "snapshot between {} and {}; {} bytes; snapshot {} ms, total {} ms",
        m.snapshot_started_at, m.snapshot_finished_at, r.bytes, r.snapshot_ms, r.total_ms
    );
    Ok(())
}

fn run_restore(data: &Path, from: &Path, force: bool, verify_only: bool) -> CliResult {
    if verify_only {
        let m = crate::backup::verify(from)?;
        println!(
            "备份完好 / the backup verifies: feed position {}, {} documents, {} attachment files, taken {}",
            m.feed_seq, m.counts.documents, m.counts.attachments, m.snapshot_started_at
        );
        return Ok(());
    }
    let r = crate::backup::restore(from, data, force)?;
    if let Some(aside) = &r.kept_aside {
        println!("原有数据已移到 / the former data was moved to {}", aside.display());
    }
    println!(
        "恢复完成 / restored into {}: the backup of {} (feed position {}, {} documents, {} attachment files); \
         the feed continues at {}",
        data.display(),
        r.manifest.snapshot_started_at,
        r.manifest.feed_seq,
        r.manifest.counts.documents,
        r.manifest.counts.attachments,
        r.feed_continues_at
    );
    println!(
        "手机下次同步时会重新上传服务器缺少的内容 / phones push again what the server lacks at their next sync; \
         those that logged in after the backup log in again"
    );
    Ok(())
}

/// `ohassist attachments check`: prints one line per missing or corrupt file and a summary.
pub fn check_attachments(
    data: &Path,
    location: &Location,
) -> Result<attachments::CheckReport, Box<dyn std::error::Error>> {
    let db = Db::open_at(location, data)?;
    let conn = db.blocking_writer();
    let report = attachments::check(&conn, &attachments::Config::new(data))?;
    for sha in &report.missing {
        println!("missing {sha}");
    }
    for sha in &report.corrupt {
        println!("corrupt {sha}");
    }
    println!(
        "checked {} attachment file(s): {} missing, {} corrupt",
        report.checked,
        report.missing.len(),
        report.corrupt.len()
    );
    Ok(report)
}

fn read_password(from_stdin: bool) -> Result<(String, bool), Box<dyn std::error::Error>> {
    if !from_stdin {
        return Ok((accounts::generate_password(), true));
    }
    if std::io::stdin().is_terminal() {
        eprintln!("请输入密码后回车 / type the password and press enter:");
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok((line.trim_end_matches(['\r', '\n']).to_string(), false))
}

fn run_user(data: &Path, location: &Location, cmd: UserCommand) -> CliResult {
    let db = Db::open_at(location, data)?;
    let mut conn = db.blocking_writer();
    match cmd {
        UserCommand::Add { username, display_name, role, org_unit, password_stdin } => {
            let role = Role::parse(&role).ok_or("role must be inspector, supervisor, admin or relay")?;
            let (password, generated) = read_password(password_stdin)?;
            let new = NewUser {
                username: &username,
                display_name: &display_name,
                role,
                org_unit: &org_unit,
                password: &password,
            };
            let user = accounts::create_user(&conn, &new, now())?;
            println!("created user {} ({}), id {}", user.username, user.role.as_str(), user.id);
            if generated {
                println!("password: {password}");
            }
        }
        UserCommand::Passwd { username, password_stdin } => {
            let (password, generated) = read_password(password_stdin)?;
            accounts::set_password(&mut conn, &username, &password)?;
            println!("password of {username} changed; their devices must log in again");
            if generated {
                println!("password: {password}");
            }
        }
        UserCommand::SetUnit { username, org_unit } => {
            accounts::set_org_unit(&conn, &username, &org_unit)?;
            println!("{username} now belongs to {org_unit}");
        }
        UserCommand::List => {
            println!("{:<20} {:<12} {:<8} {:<8} display name", "username", "role", "unit", "disabled");
            for u in accounts::list_users(&conn, scope::COUNTRY)? {
                println!(
                    "{:<20} {:<12} {:<8} {:<8} {}",
                    u.username,
                    u.role.as_str(),
                    u.org_unit,
                    u.disabled,
                    u.display_name
                );
            }
        }
    }
    Ok(())
}

fn run_client(data: &Path, location: &Location, cmd: ClientCommand) -> CliResult {
    let db = Db::open_at(location, data)?;
    let conn = db.blocking_writer();
    match cmd {
        ClientCommand::Add { name, org_unit } => {
            let (client, token) = clients::create(&conn, &name, &org_unit, "cli", now())?;
            println!(
                "created API client {} ({}, unit {}), id {}",
                client.name, client.role, client.org_unit, client.id
            );
            println!("token: {token}");
            println!("此令牌只显示这一次 / the token is shown only once: GET /api/v1/export with `Authorization: Bearer <token>`");
        }
        ClientCommand::List => {
            println!("{:<32} {:<8} {:<8} {:<8} name", "client id", "role", "unit", "revoked");
            for c in clients::list(&conn, scope::COUNTRY)? {
                println!("{:<32} {:<8} {:<8} {:<8} {}", c.id, c.role, c.org_unit, c.revoked_at.is_some(), c.name);
            }
        }
        ClientCommand::Revoke { client_id } => {
            clients::revoke(&conn, &client_id, now())?;
            println!("API client {client_id} revoked");
        }
    }
    Ok(())
}

fn run_device(data: &Path, location: &Location, cmd: DeviceCommand) -> CliResult {
    let db = Db::open_at(location, data)?;
    let conn = db.blocking_writer();
    match cmd {
        DeviceCommand::List => {
            println!(
                "{:<36} {:<20} {:<10} {:<8} {:<8} {:<10} name",
                "device id", "user", "logged in", "revoked", "status", "unsynced"
            );
            for d in accounts::list_devices(&conn, scope::COUNTRY, now())? {
                let unsynced = match (d.pending_changes, d.pending_attachments) {
                    (Some(c), Some(a)) => format!("{c}+{a}"),
                    _ => "-".into(),
                };
                println!(
                    "{:<36} {:<20} {:<10} {:<8} {:<8} {:<10} {}",
                    d.id,
                    d.username,
                    d.logged_in,
                    d.revoked_at.is_some(),
                    d.status.as_str(),
                    unsynced,
                    d.name
                );
            }
        }
        DeviceCommand::Lost { device_id } => {
            accounts::set_device_status(&conn, &device_id, accounts::DeviceStatus::Lost, now())?;
            println!("device {device_id} marked lost: it erases its data when it next reaches the server");
        }
        DeviceCommand::Retire { device_id } => {
            accounts::set_device_status(&conn, &device_id, accounts::DeviceStatus::Retired, now())?;
            println!("device {device_id} retired: it pushes what it holds, then erases its data");
        }
        DeviceCommand::Revoke { device_id } => {
            accounts::revoke_device(&conn, &device_id, now())?;
            println!("device {device_id} revoked");
        }
    }
    Ok(())
}
