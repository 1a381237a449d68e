//! Backups under load, shared by the backup end-to-end test and the backup bench: phones that
//! push while `ohassist backup` runs, and what they were told acknowledged when.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use ohassist_core::model::AttachmentKind;
use ohassist_core::store::NewAttachment;

use crate::{cli, visit, Phone};

pub fn parse_time(s: &str) -> SystemTime {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap();
    SystemTime::UNIX_EPOCH + Duration::from_nanos(t.unix_timestamp_nanos() as u64)
}

pub fn attachment(phone: &Phone, visit_id: &str, bytes: &[u8]) -> String {
    let meta = NewAttachment {
        kind: Some(AttachmentKind::Photo),
        media_type: "image/jpeg".into(),
        caption: "现场照片".into(),
        ..Default::default()
    };
    let r = phone.store.add_attachment(visit_id, bytes, meta).unwrap();
    r.record.attachments.keys().find(|k| ohassist_core::store::sha256_hex(bytes) == **k).unwrap().clone()
}

/// A visit a phone created, when the sync that pushed it began (nothing of it was on the
/// server before) and when it returned (the phone had been told it was acknowledged).
pub struct Acked {
    pub id: String,
    pub sent: SystemTime,
    pub at: SystemTime,
}

/// What [`backup_while_pushing`] saw.
pub struct Run {
    pub manifest: serde_json::Value,
    /// The manifest's snapshot times.
    pub started: SystemTime,
    pub finished: SystemTime,
    pub acked: Vec<Acked>,
    /// (start, duration) of every sync.
    pub syncs: Vec<(SystemTime, Duration)>,
    /// What `ohassist backup` printed, and its wall time.
    pub output: String,
    pub wall: Duration,
}

impl Run {
    /// Sync durations, sorted: those under way while the snapshot was taken, and the others.
    pub fn latency(&self) -> (Vec<Duration>, Vec<Duration>) {
        let overlaps = |(s, d): &(SystemTime, Duration)| *s <= self.finished && *s + *d >= self.started;
        let mut during: Vec<Duration> = self.syncs.iter().filter(|x| overlaps(x)).map(|(_, d)| *d).collect();
        let mut others: Vec<Duration> = self.syncs.iter().filter(|x| !overlaps(x)).map(|(_, d)| *d).collect();
        during.sort();
        others.sort();
        (during, others)
    }
}

/// Every phone creates a visit of its enterprise (`enterprise(i)`) and syncs, again and
/// again; after `lead`, `ohassist backup` runs on `live`; the phones go on for a while after.
pub fn backup_while_pushing(phones: &[Arc<Phone>], live: &Path, to: &Path, lead: Duration) -> Run {
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let syncs: Arc<Mutex<Vec<(SystemTime, Duration)>>> = Arc::default();
    let workers: Vec<_> = phones
        .iter()
        .enumerate()
        .map(|(i, phone)| {
            let (phone, stop, acked, syncs) = (phone.clone(), stop.clone(), acked.clone(), syncs.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let id = phone.store.create_visit(visit(i)).unwrap();
                    let (start, clock) = (SystemTime::now(), Instant::now());
                    phone.sync();
                    syncs.lock().unwrap().push((start, clock.elapsed()));
                    assert_eq!(phone.store.outbox_len().unwrap(), 0, "everything acknowledged");
                    acked.lock().unwrap().push(Acked { id, sent: start, at: SystemTime::now() });
                }
            })
        })
        .collect();
    std::thread::sleep(lead);
    let t = Instant::now();
    let output = cli(live, &["backup", "--to", to.to_str().unwrap()], "");
    let wall = t.elapsed();
    assert!(output.contains("备份完成 / backup complete"), "{output}");
    std::thread::sleep(Duration::from_millis(800));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(to.join("manifest.json")).unwrap()).unwrap();
    let started = parse_time(manifest["snapshot_started_at"].as_str().unwrap());
    let finished = parse_time(manifest["snapshot_finished_at"].as_str().unwrap());
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    let syncs = std::mem::take(&mut *syncs.lock().unwrap());
    Run { manifest, started, finished, acked, syncs, output, wall }
}

pub fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| if e.file_type().unwrap().is_dir() { dir_bytes(&e.path()) } else { e.metadata().unwrap().len() })
        .sum()
}
