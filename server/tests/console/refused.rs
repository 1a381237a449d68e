//! The queue of refused uploads: which record, which inspector, which device, why, in words.

use axum::http::StatusCode;
use ohassist_core::sync::wire::PushResponse;
use ohassist_server::accounts::Role;

use crate::common::*;
use crate::{text, Browser};

#[tokio::test]
async fn a_refused_upload_is_listed_for_the_units_supervisor_in_words() {
    let f = Fixture::new();
    let a = f.user_token("zhang", Role::Inspector, "210102", "phone-a").await;
    f.add_user("chief", Role::Supervisor, "210100");
    f.add_user("far", Role::Supervisor, "220100");
    let (_, inside) = new_enterprise("210102", 1, "甲矿业");
    let (far, outside) = new_enterprise("210103", 2, "乙石材厂");
    let answer: PushResponse = f.push(&a, &[inside, outside]).await.wire();
    assert_eq!(answer.refused.len(), 1);

    let b = Browser::login(&f, "chief").await;
    let page = b.get(&f, "/refused").await;
    let html = text(&page);
    assert_eq!(page.status, StatusCode::OK, "{html}");
    assert!(html.contains("乙石材厂"), "the record in words");
    assert!(html.contains("zhang"), "who");
    assert!(html.contains("不属于您所在单位的辖区"), "why, in Chinese");
    // The id is in the transfer form's fields only; what the supervisor reads is the name.
    let shown = html.replace(&format!("\"{}\"", far.doc.id()), "");
    assert!(!shown.contains(far.doc.id()), "a name, not an id");
    assert!(html.contains("action=\"/refused/transfer\""), "a city supervisor may settle where it belongs");
    let en = text(&b.get(&f, "/refused?lang=en").await);
    assert!(en.contains("outside your org unit"), "and in English");

    let other = Browser::login(&f, "far").await;
    let html = text(&other.get(&f, "/refused").await);
    assert!(!html.contains("乙石材厂"), "another city's supervisor does not see it");
}
