//! A small county on a real server, for the API's conformance run and the test that every
//! documented path answers: a city with two counties, enterprises and visits pushed by two
//! inspectors' phones through the real sync path (one visit submitted, one in conflict, one
//! with an attachment), a supervisor of the city and an admin of one county with tokens. The
//! admin's county holds only its own users, so what an admin's test run does to the devices it
//! lists (revoke, mark lost) never touches the supervisor's.

use std::path::Path;

use ohassist_core::model::{AttachmentKind, ReviewState};
use ohassist_core::store::NewAttachment;
use serde_json::json;

use crate::{enterprise, token, visit, Phone, Server, PASSWORD};

pub const CITY: &str = "210100";
pub const HEPING: &str = "210102";
pub const SHENHE: &str = "210103";

/// What was seeded, with the ids a request needs.
pub struct Seeded {
    pub server: Server,
    pub supervisor_token: String,
    pub admin_token: String,
    pub inspector_token: String,
    /// An enterprise's credit code and a visit of it that has an attachment.
    pub enterprise: String,
    pub visit: String,
    pub attachment: String,
    /// A device of an inspector of the admin's county that nothing else uses, for the admin's
    /// device actions.
    pub spare_device: String,
    _phones: Vec<Phone>,
}

impl Seeded {
    pub fn json(&self) -> serde_json::Value {
        json!({
            "url": self.server.url(),
            "supervisor_token": self.supervisor_token,
            "admin_token": self.admin_token,
            "inspector_token": self.inspector_token,
            "enterprise": self.enterprise,
            "visit": self.visit,
            "attachment": self.attachment,
            "spare_device": self.spare_device,
        })
    }
}

pub fn seed(dir: &Path) -> Seeded {
    let server = Server::start(dir, None);
    server.add_user("zhang", "inspector", CITY, PASSWORD);
    server.add_user("li", "inspector", CITY, PASSWORD);
    server.add_user("city", "supervisor", CITY, PASSWORD);
    server.add_user("hepingadmin", "admin", HEPING, PASSWORD);
    server.add_user("wang", "inspector", HEPING, PASSWORD);
    let a = Phone::new(&server.url());
    let b = Phone::new(&server.url());
    a.login("zhang", PASSWORD);
    b.login("li", PASSWORD);
    for i in 0..6 {
        a.store.create_enterprise(enterprise(i, if i % 2 == 0 { HEPING } else { SHENHE })).unwrap();
    }
    let submitted = a.store.create_visit(visit(0)).unwrap();
    a.store.edit_visit(&submitted, |v| v.review.state = ReviewState::Submitted).unwrap();
    let conflicted = a.store.create_visit(visit(1)).unwrap();
    let with_file = a.store.create_visit(visit(2)).unwrap();
    let meta = NewAttachment {
        kind: Some(AttachmentKind::Document),
        media_type: "application/pdf".into(),
        caption: "签到表".into(),
        ..Default::default()
    };
    let attached = a.store.add_attachment(&with_file, b"%PDF-1.4 a sign-in sheet", meta).unwrap();
    let attachment = attached.record.attachments.keys().next().expect("the attachment").clone();
    a.sync();
    b.sync();
    a.store.edit_visit(&conflicted, |v| v.notes = "张：已整改".into()).unwrap();
    b.store.edit_visit(&conflicted, |v| v.notes = "李：未整改".into()).unwrap();
    a.sync();
    b.sync();
    a.sync();
    let url = server.url();
    let spare_device = "spare-device".to_string();
    let _spare = token(&url, "wang", PASSWORD, &spare_device);
    Seeded {
        supervisor_token: token(&url, "city", PASSWORD, "supervisor-laptop"),
        admin_token: token(&url, "hepingadmin", PASSWORD, "admin-laptop"),
        inspector_token: token(&url, "zhang", PASSWORD, "zhang-script"),
        enterprise: crate::credit_code(2),
        visit: with_file,
        attachment,
        spare_device,
        server,
        _phones: vec![a, b],
    }
}
