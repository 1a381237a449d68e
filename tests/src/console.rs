//! A browser-less client of the supervisor console, for end-to-end tests that act as a
//! supervisor would (forms with the session's CSRF token, cookies kept by hand).

use crate::PASSWORD;

/// A browser-less console client: cookies kept by hand, redirects not followed.
pub struct Console {
    base: String,
    cookies: Vec<String>,
    pub csrf: String,
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
}

impl Console {
    pub fn login(base: &str, username: &str) -> Console {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let mut c = Console { base: base.to_string(), cookies: Vec::new(), csrf: String::new(), rt, client };
        let (_, page) = c.get("/login");
        c.csrf = csrf_of(&page);
        let (status, _) = c.post("/login", &[("username", username), ("password", PASSWORD)]);
        assert_eq!(status, 303, "console login of {username}");
        let (_, page) = c.get("/dashboard?year=2025");
        c.csrf = csrf_of(&page);
        c
    }

    fn absorb(&mut self, resp: &reqwest::Response) {
        for v in resp.headers().get_all("set-cookie") {
            let pair = v.to_str().unwrap().split(';').next().unwrap().to_string();
            let name = pair.split('=').next().unwrap().to_string();
            self.cookies.retain(|c| !c.starts_with(&format!("{name}=")));
            self.cookies.push(pair);
        }
    }

    pub fn get(&mut self, path: &str) -> (u16, String) {
        let req = self.client.get(format!("{}{path}", self.base)).header("cookie", self.cookies.join("; "));
        let resp = self.rt.block_on(req.send()).unwrap();
        self.absorb(&resp);
        let status = resp.status().as_u16();
        (status, self.rt.block_on(resp.text()).unwrap())
    }

    pub fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> (u16, String) {
        let mut body: Vec<String> = fields.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect();
        body.push(format!("csrf={}", self.csrf));
        let req = self
            .client
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookies.join("; "))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.join("&"));
        let resp = self.rt.block_on(req.send()).unwrap();
        self.absorb(&resp);
        let status = resp.status().as_u16();
        (status, self.rt.block_on(resp.text()).unwrap())
    }
}

pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub fn csrf_of(html: &str) -> String {
    let key = "name=\"csrf\" value=\"";
    let at = html.find(key).expect("a form with a CSRF token") + key.len();
    html[at..at + html[at..].find('"').unwrap()].to_string()
}
