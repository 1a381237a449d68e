//! The smaller readings of issue 12: the enterprise page in words, the list's marks for
//! conflicts and visits waiting for review, the header naming the unit, credit codes as
//! typed.

use axum::http::StatusCode;

use crate::city::{self, YEAR};
use crate::{api_get, text, Browser};

#[tokio::test]
async fn enterprise_page_and_list_read_in_words() {
    let c = city::build().await;
    let b = Browser::login(&c.f, "city").await;
    let first = &c.expected[0];
    let page = text(&b.get(&c.f, &format!("/enterprises/{}", first.code)).await);
    assert!(page.contains("data-state=\"submitted\">已提交</td>"), "the review state in Chinese: {page}");
    assert!(!page.contains(">submitted<"));
    assert!(page.contains("id=\"size\">未填</dd>") && page.contains("id=\"occupational-disease\">否</dd>"));
    assert!(page.contains("<dd>和平区</dd>"), "the county by name");
    let en = text(&b.get(&c.f, &format!("/enterprises/{}?lang=en", first.code)).await);
    assert!(en.contains(">Submitted</td>"), "and in English");

    // The list marks the enterprise with a visit to review and the one with a conflict.
    let list = text(&b.get(&c.f, &format!("/enterprises?year={YEAR}")).await);
    let row = |code: &str| {
        let at = list.find(&format!("data-code=\"{code}\"")).unwrap();
        list[at..at + list[at..].find("</tr>").unwrap()].to_string()
    };
    assert!(row(&first.code).contains("1 条待审核"), "{}", row(&first.code));
    assert!(row(&c.expected[1].code).contains("attention-conflict"), "{}", row(&c.expected[1].code));
    assert!(!row(&c.expected[2].code).contains("attention-"), "nothing to do for the third");
    let only = text(&b.get(&c.f, &format!("/enterprises?year={YEAR}&attention=1")).await);
    assert_eq!(only.matches("<tr data-code=").count(), 2, "only the two that need a supervisor");
    assert!(only.contains("· 沈阳市 ·"), "the header names the unit, apart from the language link");

    // A credit code typed in lower case finds the enterprise.
    let token = c.f.login("city", "api").await;
    let r = api_get(&c.f, &format!("/api/v1/enterprises/{}", first.code.to_lowercase()), &token).await;
    assert_eq!(r.status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["enterprise"]["credit_code"], first.code.as_str());
    assert_eq!(v["unit_label"], "和平区");
}
