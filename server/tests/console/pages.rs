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
    let token = c.f.login("city", "api-city").await;
    let r = api_get(&c.f, &format!("/api/v1/enterprises/{}", first.code.to_lowercase()), &token).await;
    assert_eq!(r.status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["enterprise"]["credit_code"], first.code.as_str());
    assert_eq!(v["unit_label"], "和平区");
}

#[tokio::test]
async fn monthly_progress_counts_the_month_and_the_rates_at_its_end() {
    let c = city::build().await;
    let b = Browser::login(&c.f, "city").await;
    let token = c.f.login("city", "api-city").await;
    let dash: serde_json::Value =
        serde_json::from_slice(&api_get(&c.f, &format!("/api/v1/dashboard?year={YEAR}"), &token).await.body).unwrap();
    let mut items_total = 0;
    for month in 1..=12u32 {
        let page = text(&b.get(&c.f, &format!("/monthly?year={YEAR}&month={month}")).await);
        if month == 3 {
            assert!(page.contains(&format!("id=\"title\">沈阳市{YEAR}年3月中小微企业职业健康帮扶行动月调度表</h1>")));
            assert!(page.contains("2025-07-30") && page.contains("2025-11-15"), "the deadlines");
        }
        let rows = crate::html_rows(&page, "monthly");
        assert_eq!(rows.len(), 1 + city::COUNTIES.len() + 1, "header, counties, 合计");
        for (k, (code, name)) in city::COUNTIES.iter().enumerate() {
            let row = &rows[1 + k];
            let listed: Vec<_> = c.expected.iter().filter(|e| e.county_code == *code && e.on_list).collect();
            let visited = listed.iter().filter(|e| e.visit_months.contains(&month)).count();
            let visits: usize = listed.iter().map(|e| e.visit_months.iter().filter(|m| **m == month).count()).sum();
            assert_eq!(row[..4], [name.to_string(), listed.len().to_string(), visited.to_string(), visits.to_string()]);
            if month >= 6 {
                // Every visit of the year is in by the end of June: the year's rates.
                let declared = listed.iter().filter(|e| e.declared).count() as f64 / listed.len() as f64;
                assert_eq!(row[5], format!("{:.1}%", declared * 100.0), "{name} in month {month}");
            }
        }
        items_total += rows.last().unwrap()[4].parse::<u32>().unwrap();
    }
    // The items completed over the months are the six ones covered by the year's end.
    let assisted = dash["total"]["assisted"].as_u64().unwrap() as u32;
    let missing: u32 = dash["total"]["missing"].as_object().unwrap().values().map(|v| v.as_u64().unwrap() as u32).sum();
    assert_eq!(items_total, 6 * assisted - missing);

    let x = b.get(&c.f, &format!("/monthly?year={YEAR}&month=6&format=xlsx")).await;
    assert_eq!(x.status, StatusCode::OK);
    let disposition = x.headers["content-disposition"].to_str().unwrap().to_string();
    assert!(disposition.contains("%E6%9C%88%E8%B0%83%E5%BA%A6"), "月调度 in the file name: {disposition}");
    let r = b.get(&c.f, "/monthly?year=2025&month=13").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(text(&r).contains("data-field=\"month\""));
}
