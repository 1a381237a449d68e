//! `ohassist demo`: a synthetic city served at once, for a newcomer to see the real thing.
//!
//! 沈阳市 (210100) with its real counties (the embedded division names) and a development
//! zone; users of every role with printed passwords; a year of enterprises and visits made
//! by `core::synthetic` and entered the way a county enters them: each inspector's phone is a
//! real core store with the real sync client, pushing to the server this process started
//! (photos as attachments, a few same-field conflicts between two phones of a county); then
//! the city's supervisor reviews visits through the console's own review code. Nothing is
//! written around the push path.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Instant;

use ohassist_core::model::{AttachmentKind, County, Enterprise, ReviewState};
use ohassist_core::store::{NewAttachment, Store, StoreKey};
use ohassist_core::sync::{self, CancelToken, SyncConfig, SyncProgress};
use ohassist_core::synthetic;
use rand::Rng;

use crate::accounts::{self, Caller, NewUser, Role};
use crate::api::AppState;
use crate::clients;
use crate::db::{now, Db, DB_FILE};
use crate::serve::{serve_state, ServeOptions};
use crate::units::{self, Units};
use crate::web::pages::review_visit;

pub const CITY: &str = "210100";
pub const ZONE_NAME: &str = "沈阳经济技术开发区";
/// The zone's target, as the city set it; it gets fewer enterprises than that.
const ZONE_TARGET: u32 = 12;
const ZONE_ENTERPRISES: u64 = 10;
/// Counties whose second inspector edits the same fields as the first, offline: conflicts.
const CONFLICT_COUNTIES: [&str; 2] = ["210102", "210106"];
/// The phones' stores, removed once the records are on the server.
const PHONES_DIR: &str = "demo-phones";

type DemoResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// One account the demo made, with its password (printed once).
#[derive(Debug, Clone)]
pub struct Account {
    pub role: Role,
    pub username: String,
    pub display_name: String,
    pub org_unit: String,
    pub password: String,
}

/// Refuses a data directory that holds anything unless `force`, which removes the files
/// ohassist keeps there (nothing else).
pub fn prepare_dir(data: &Path, force: bool) -> Result<(), String> {
    let entries: Vec<PathBuf> = match std::fs::read_dir(data) {
        Ok(rd) => rd.filter_map(Result::ok).map(|e| e.path()).collect(),
        Err(_) => Vec::new(),
    };
    if entries.is_empty() {
        return Ok(());
    }
    if !force {
        return Err(format!(
            "数据目录 {dir} 不是空的，演示不会覆盖它；请用 --data 指定一个新目录，或加 --force 删除其中的 ohassist 数据 / \
             the data directory {dir} is not empty and the demo will not overwrite it: pass --data with a fresh \
             directory, or --force to delete the ohassist data in it",
            dir = data.display()
        ));
    }
    for name in [DB_FILE, &format!("{DB_FILE}-wal"), &format!("{DB_FILE}-shm")] {
        let _ = std::fs::remove_file(data.join(name));
    }
    for dir in ["attachments", PHONES_DIR] {
        let _ = std::fs::remove_dir_all(data.join(dir));
    }
    Ok(())
}

/// The counties of the city and the zone, as `(county, enterprises)`.
fn units_of_city(db: &Db) -> DemoResult<Vec<(County, u64)>> {
    let conn = db.blocking_writer();
    let zone = units::create_zone(&conn, CITY, ZONE_NAME, None, Some(ZONE_TARGET), now())?;
    let list = Units::load(&conn)?.children_of_city(CITY);
    Ok(list
        .into_iter()
        .enumerate()
        .map(|(i, u)| {
            // Most counties reach the 20 of the plan, a few are still short of it.
            let n = if u.code == zone { ZONE_ENTERPRISES } else { 17 + (i as u64 * 5) % 8 };
            (County { code: u.code, name: u.name }, n)
        })
        .collect())
}

/// Creates the accounts: a city admin, a city and a county supervisor, an inspector per
/// county and zone, and a second inspector in each conflict county.
fn create_accounts(db: &Db, units: &[(County, u64)]) -> DemoResult<Vec<Account>> {
    let mut list = vec![
        (Role::Admin, "admin".to_string(), "沈阳市管理员".to_string(), CITY.to_string()),
        (Role::Supervisor, "shenyang".to_string(), "沈阳市卫健委".to_string(), CITY.to_string()),
        (Role::Supervisor, "heping".to_string(), "和平区卫健局".to_string(), "210102".to_string()),
    ];
    for (county, _) in units {
        list.push((
            Role::Inspector,
            inspector_name(&county.code, false),
            format!("{}检查员", county.name),
            county.code.clone(),
        ));
    }
    for code in CONFLICT_COUNTIES {
        let name = units.iter().find(|(c, _)| c.code == code).map(|(c, _)| c.name.clone()).unwrap_or_default();
        list.push((Role::Inspector, inspector_name(code, true), format!("{name}检查员（二）"), code.to_string()));
    }
    let conn = db.blocking_writer();
    let mut out = Vec::new();
    for (role, username, display_name, org_unit) in list {
        let password = accounts::generate_password();
        let new = NewUser {
            username: &username,
            display_name: &display_name,
            role,
            org_unit: &org_unit,
            password: &password,
        };
        accounts::create_user(&conn, &new, now())?;
        out.push(Account { role, username, display_name, org_unit, password });
    }
    Ok(out)
}

fn inspector_name(county: &str, second: bool) -> String {
    format!("inspector-{county}{}", if second { "b" } else { "" })
}

/// The demo's year: this year once it is two months old, else last year (a console opened
/// in January shows last year's work), and the last day visits may carry.
fn year_and_last_day() -> (i32, time::Date) {
    let today = time::OffsetDateTime::now_utc().date();
    if today.month() as u8 >= 3 {
        (today.year(), today)
    } else {
        (today.year() - 1, time::Date::from_calendar_date(today.year() - 1, time::Month::December, 20).expect("a date"))
    }
}

/// A small site photo: a sky, a building and the serial as a pattern, as PNG.
fn photo(serial: u64) -> Vec<u8> {
    use image::ImageEncoder;
    let (w, h) = (160u32, 120u32);
    let tint = (serial * 37 % 120) as u8;
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        let building = (40..120).contains(&x) && y > 50 && y < 110;
        let window = building && (x / 10) % 2 == 0 && (y / 10) % 2 == 0;
        if window {
            image::Rgb([230, 220, 120])
        } else if building {
            image::Rgb([120 + tint / 2, 110, 100])
        } else if y >= 110 {
            image::Rgb([90, 130, 70])
        } else {
            image::Rgb([(120 + y) as u8, (160 + y / 2) as u8, 230 - tint])
        }
    });
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(img.as_raw(), w, h, image::ExtendedColorType::Rgb8)
        .expect("encoding a PNG in memory");
    out
}

/// A phone of the demo: its own encrypted store, logged in to the server.
struct Phone {
    store: Store,
    config: SyncConfig,
    user_id: String,
    display_name: String,
}

impl Phone {
    fn login(dir: &Path, url: &str, account: &Account) -> DemoResult<Phone> {
        let store = Store::open(dir.join(format!("{}.db", account.username)), &StoreKey::new(rand::rng().random()))?;
        let mut config = SyncConfig::new(url);
        // The phones reach this process on loopback; the server speaks plain HTTP to them.
        config.allow_http = true;
        let name = format!("演示手机 · {}", account.username);
        let login = sync::login_blocking(&store, &config, &account.username, &account.password, &name)?;
        Ok(Phone { store, config, user_id: login.user_id, display_name: login.display_name })
    }

    fn sync(&self) -> DemoResult<sync::SyncReport> {
        Ok(sync::sync_blocking(&self.store, &self.config, &|_: &SyncProgress| {}, &CancelToken::new())?)
    }
}

/// What the demo entered, for its last line.
#[derive(Debug, Default)]
pub struct Entered {
    pub enterprises: usize,
    pub visits: usize,
    pub photos: usize,
    pub conflicted_records: u64,
    pub approved: usize,
    pub returned: usize,
    pub submitted: usize,
}

/// One county's year on its inspector's phone: the enterprises, their visits (most
/// submitted for review), a photo on every third enterprise's first visit; then a sync.
fn enter_county(
    phone: &Phone,
    county: &County,
    n: u64,
    year: i32,
    last_day: time::Date,
) -> DemoResult<(Vec<Enterprise>, Vec<String>, usize)> {
    let mut enterprises = Vec::new();
    let mut visit_ids = Vec::new();
    let mut photos = 0;
    for serial in 1..=n {
        let e = synthetic::enterprise(county, serial, year);
        phone.store.create_enterprise(e.clone())?;
        let visits = synthetic::visits(&e, serial, year, last_day, (&phone.user_id, &phone.display_name));
        let count = visits.len();
        for (k, mut v) in visits.into_iter().enumerate() {
            // The latest visit of every fourth enterprise is still a draft on the phone.
            if !(k + 1 == count && serial % 4 == 0) {
                v.review.state = ReviewState::Submitted;
            }
            let date = v.visit_date.clone();
            let id = phone.store.create_visit(v)?;
            if k == 0 && serial % 3 == 1 {
                let meta = NewAttachment {
                    kind: Some(AttachmentKind::Photo),
                    media_type: "image/png".into(),
                    caption: "现场照片：作业岗位".into(),
                    taken_at: format!("{date}T10:30:00+08:00"),
                    section: "hazard_identification".into(),
                    ..Default::default()
                };
                phone.store.add_attachment(&id, &photo(serial), meta)?;
                photos += 1;
            }
            visit_ids.push(id);
        }
        enterprises.push(e);
    }
    let report = phone.sync()?;
    if report.held_records > 0 || report.quarantined > 0 {
        return Err(format!("{}: the server held {} record(s) back", county.name, report.held_records).into());
    }
    Ok((enterprises, visit_ids, photos))
}

/// Two phones of one county write the same fields offline, then both sync: conflicts on two
/// visits (the notes) and on an enterprise (the contact's phone).
fn make_conflicts(first: &Phone, second: &Phone, enterprises: &[Enterprise], visits: &[String]) -> DemoResult<u64> {
    second.sync()?;
    for (k, id) in visits.iter().skip(1).step_by(7).take(2).enumerate() {
        first.store.edit_visit(id, |v| v.notes = format!("复查{k}：整改已完成，已拍照留存。"))?;
        second.store.edit_visit(id, |v| v.notes = format!("复查{k}：企业称整改尚未完成，需再次核实。"))?;
    }
    if let Some(e) = enterprises.get(2) {
        first.store.edit_enterprise(&e.credit_code, |e| e.contact.phone = "024-23456789".into())?;
        second.store.edit_enterprise(&e.credit_code, |e| e.contact.phone = "13998765432".into())?;
    }
    first.sync()?;
    Ok(second.sync()?.conflicted_records)
}

/// The city supervisor reviews what was submitted, through the console's review code:
/// about a third approved, one in eight returned with a comment, the rest left submitted.
async fn review(state: &AppState, supervisor: &Account) -> DemoResult<(usize, usize, usize)> {
    let username = supervisor.username.clone();
    let (user, _) = state
        .db
        .with_reader(move |conn| accounts::find_user(conn, &username).map_err(crate::db::DbError::from))
        .await?
        .ok_or("the demo supervisor is missing")?;
    let caller = Caller {
        user_id: user.id,
        username: user.username,
        display_name: user.display_name,
        role: user.role,
        org_unit: user.org_unit,
        device_id: crate::records::WEB_DEVICE.to_string(),
        last_seen: None,
        synced_at: None,
    };
    let submitted: Vec<String> = state
        .db
        .with_reader(|conn| -> Result<_, crate::db::DbError> {
            let mut stmt = conn
                .prepare("SELECT id FROM visits WHERE review_state = 'submitted' AND has_conflicts = 0 ORDER BY id")?;
            let ids = stmt.query_map([], |r| r.get(0))?.collect::<crate::sql::Result<Vec<String>>>()?;
            Ok(ids)
        })
        .await?;
    let (mut approved, mut returned) = (0, 0);
    for (i, id) in submitted.iter().enumerate() {
        let (verdict, comment) = match i % 8 {
            0 | 3 | 5 => (ReviewState::Approved, "材料齐全，同意。"),
            6 => (ReviewState::Returned, "请补充现场照片和整改计划后重新提交。"),
            _ => continue,
        };
        review_visit(state, &caller, id, verdict, comment, false)
            .await
            .map_err(|e| format!("review of visit {id}: {}", e.body().message_en))?;
        if verdict == ReviewState::Approved {
            approved += 1;
        } else {
            returned += 1;
        }
    }
    Ok((approved, returned, submitted.len() - approved - returned))
}

/// Everything the demo enters, once the server listens at `addr`.
fn enter_everything(
    state: &AppState,
    runtime: &tokio::runtime::Handle,
    data: &Path,
    addr: SocketAddr,
    units: &[(County, u64)],
    accounts: &[Account],
) -> DemoResult<Entered> {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let url = format!("http://{}", SocketAddr::new(ip, addr.port()));
    let phones_dir = data.join(PHONES_DIR);
    std::fs::create_dir_all(&phones_dir)?;
    let account = |name: &str| accounts.iter().find(|a| a.username == name).ok_or("a demo account is missing");
    let (year, last_day) = year_and_last_day();
    let mut entered = Entered::default();
    for (county, n) in units {
        let phone = Phone::login(&phones_dir, &url, account(&inspector_name(&county.code, false))?)?;
        let (enterprises, visits, photos) = enter_county(&phone, county, *n, year, last_day)?;
        entered.enterprises += enterprises.len();
        entered.visits += visits.len();
        entered.photos += photos;
        if CONFLICT_COUNTIES.contains(&county.code.as_str()) {
            let second = Phone::login(&phones_dir, &url, account(&inspector_name(&county.code, true))?)?;
            entered.conflicted_records += make_conflicts(&phone, &second, &enterprises, &visits)?;
        }
    }
    let (approved, returned, submitted) = runtime.block_on(review(state, account("shenyang")?))?;
    entered.approved = approved;
    entered.returned = returned;
    entered.submitted = submitted;
    // The records are on the server: the phones' stores were only the way in.
    std::fs::remove_dir_all(&phones_dir)?;
    Ok(entered)
}

fn print_accounts(accounts: &[Account]) {
    println!("演示账号（密码只显示这一次）/ demo accounts (the passwords are shown only once):");
    println!("  {:<11} {:<20} {:<7} {:<17} name", "role", "username", "unit", "password");
    for a in accounts {
        println!(
            "  {:<11} {:<20} {:<7} {:<17} {}",
            a.role.as_str(),
            a.username,
            a.org_unit,
            a.password,
            a.display_name
        );
    }
}

/// `ohassist demo`: prepares `data`, creates the city, serves it, enters the records, and
/// prints `演示已就绪 / demo ready in N s` once the dashboard and the tables show them.
pub async fn run(opts: ServeOptions, started: Instant) -> Result<(), Box<dyn std::error::Error>> {
    let db = Db::open_dir(&opts.data)?;
    let units = units_of_city(&db).map_err(|e| e.to_string())?;
    let accounts = create_accounts(&db, &units).map_err(|e| e.to_string())?;
    print_accounts(&accounts);
    let (client, token) = clients::create(&db.blocking_writer(), "省职业健康信息平台（演示）", CITY, "demo", now())?;
    println!("API client {} (reader, unit {}) token: {token}", client.name, client.org_unit);
    let state = opts.state(db);
    let data = opts.data.clone();
    let runtime = tokio::runtime::Handle::current();
    let seeding = state.clone();
    serve_state(state, opts, move |addr| {
        std::thread::spawn(move || match enter_everything(&seeding, &runtime, &data, addr, &units, &accounts) {
            Ok(e) => {
                println!(
                    "已录入 / entered: {} 家企业 enterprises, {} 次走访 visits, {} 张照片 photos, {} 条冲突记录 \
                     records in conflict; 审核 reviews: {} 通过 approved, {} 退回 returned, {} 待审 submitted",
                    e.enterprises, e.visits, e.photos, e.conflicted_records, e.approved, e.returned, e.submitted
                );
                println!(
                    "演示已就绪，用时 {:.1} 秒 / demo ready in {:.1} s: http://{addr}/login",
                    started.elapsed().as_secs_f64(),
                    started.elapsed().as_secs_f64()
                );
                let _ = std::io::stdout().flush();
            }
            Err(e) => {
                eprintln!("错误 / error: the demo could not enter its records: {e}");
                std::process::exit(1);
            }
        });
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_non_empty_data_directory_is_refused_unless_forced() {
        let dir = tempfile::tempdir().unwrap();
        prepare_dir(dir.path(), false).unwrap();
        prepare_dir(&dir.path().join("not-yet"), false).unwrap();
        std::fs::write(dir.path().join(DB_FILE), b"x").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"mine").unwrap();
        let e = prepare_dir(dir.path(), false).unwrap_err();
        assert!(e.contains("不是空的") && e.contains("not empty") && e.contains("--force"), "{e}");
        prepare_dir(dir.path(), true).unwrap();
        assert!(!dir.path().join(DB_FILE).exists());
        assert!(dir.path().join("notes.txt").exists(), "only ohassist's files are removed");
    }

    #[test]
    fn photos_are_pngs_the_server_can_decode() {
        let bytes = photo(7);
        let img = image::load_from_memory_with_format(&bytes, image::ImageFormat::Png).unwrap();
        assert_eq!((img.width(), img.height()), (160, 120));
        assert_ne!(photo(7), photo(8));
    }
}
