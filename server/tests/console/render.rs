//! The two XLSX tables as office software prints them: rendered to PDF by LibreOffice
//! headless (installed by `scripts/test.sh`), the words' boxes read back with
//! `pdftotext -bbox-layout`. No two words may overlap (a header row too low for its wrapped
//! text prints over the title or the first data row), the title must stand above the
//! header and the header above the data; a PNG of each first page is kept in
//! `target/artefacts/` for a person to look at.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::city::{self, YEAR};
use crate::Browser;

#[derive(Debug, Clone)]
struct Word {
    text: String,
    x0: f64,
    y0: f64,
    x1: f64,
    y1: f64,
}

impl Word {
    /// The area two boxes share, in square points.
    fn overlap(&self, o: &Word) -> f64 {
        let w = self.x1.min(o.x1) - self.x0.max(o.x0);
        let h = self.y1.min(o.y1) - self.y0.max(o.y0);
        if w > 0.0 && h > 0.0 {
            w * h
        } else {
            0.0
        }
    }
}

pub fn artefacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/artefacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?} could not start ({e}); scripts/test.sh installs it"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A fontconfig file that makes SimSun, the font the XLSX names, resolve to the installed
/// Noto Serif CJK, as a Chinese office machine would resolve it to SimSun itself.
fn fontconfig(dir: &Path) -> PathBuf {
    let path = dir.join("fonts.conf");
    std::fs::write(
        &path,
        r#"<?xml version="1.0"?><!DOCTYPE fontconfig SYSTEM "fonts.dtd"><fontconfig>
<include ignore_missing="yes">/etc/fonts/fonts.conf</include>
<alias binding="same"><family>SimSun</family><prefer><family>Noto Serif CJK SC</family></prefer></alias>
</fontconfig>"#,
    )
    .unwrap();
    path
}

/// Renders `xlsx` to PDF with LibreOffice, returns the words of page 1 and writes a PNG.
fn render(xlsx: &[u8], name: &str) -> Vec<Word> {
    let work = tempfile::tempdir().unwrap();
    let input = work.path().join(format!("{name}.xlsx"));
    std::fs::write(&input, xlsx).unwrap();
    let fonts = fontconfig(work.path());
    run(Command::new("soffice")
        .arg(format!("-env:UserInstallation=file://{}/profile", work.path().display()))
        .args(["--headless", "--norestore", "--convert-to", "pdf", "--outdir"])
        .arg(work.path())
        .arg(&input)
        .env("FONTCONFIG_FILE", &fonts)
        .env("HOME", work.path()));
    let pdf = work.path().join(format!("{name}.pdf"));
    assert!(pdf.exists(), "LibreOffice wrote no PDF");
    let out = artefacts();
    std::fs::copy(&pdf, out.join(format!("{name}.pdf"))).unwrap();
    run(Command::new("pdftoppm")
        .args(["-png", "-r", "80", "-f", "1", "-l", "1", "-singlefile"])
        .arg(&pdf)
        .arg(out.join(name)));
    assert!(std::fs::metadata(out.join(format!("{name}.png"))).unwrap().len() > 1000, "a PNG of the page");
    let html = work.path().join("bbox.html");
    run(Command::new("pdftotext").args(["-bbox-layout", "-f", "1", "-l", "1"]).arg(&pdf).arg(&html));
    words(&std::fs::read_to_string(html).unwrap())
}

fn attr(tag: &str, name: &str) -> f64 {
    let at = tag.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
    tag[at..at + tag[at..].find('"').unwrap()].parse().unwrap()
}

fn words(html: &str) -> Vec<Word> {
    html.split("<word ")
        .skip(1)
        .map(|w| {
            let (tag, rest) = w.split_once('>').unwrap();
            let text = rest[..rest.find("</word>").unwrap()].replace("&amp;", "&");
            Word { text, x0: attr(tag, "xMin"), y0: attr(tag, "yMin"), x1: attr(tag, "xMax"), y1: attr(tag, "yMax") }
        })
        .collect()
}

fn assert_no_overlap(words: &[Word], name: &str) {
    for (i, a) in words.iter().enumerate() {
        for b in &words[i + 1..] {
            // Half a square point: glyph boxes of neighbours may touch, never cover each other.
            assert!(a.overlap(b) < 0.5, "{name}: {:?} prints over {:?}", a, b);
        }
    }
}

/// The words whose text contains `s` (a wrapped header is several words).
fn find<'a>(words: &'a [Word], s: &str) -> Vec<&'a Word> {
    words.iter().filter(|w| w.text.contains(s)).collect()
}

fn joined(words: &[Word]) -> String {
    words.iter().map(|w| w.text.as_str()).collect()
}

#[tokio::test]
async fn both_xlsx_tables_render_in_libreoffice_without_overprinting() {
    let c = city::build().await;
    let b = Browser::login(&c.f, "city").await;
    for (n, first_header, first_cell) in [(1, "序号", "企业00"), (2, "县区名称", "和平区"), (3, "县区名称", "和平区")]
    {
        let path = match n {
            3 => format!("/monthly?year={YEAR}&month=6&reporter=%E5%BC%A0%E4%B8%89&format=xlsx"),
            _ => format!("/tables/{n}?year={YEAR}&reporter=%E5%BC%A0%E4%B8%89&format=xlsx"),
        };
        let x = b.get(&c.f, &path).await;
        assert_eq!(x.status, axum::http::StatusCode::OK);
        let name = if n == 3 { "monthly".to_string() } else { format!("table{n}") };
        let words = render(&x.body, &name);
        let all = joined(&words);
        let title = format!("沈阳市{YEAR}年");
        assert!(all.contains(&title), "{name}: the title is printed: {all}");
        assert!(all.contains("填报单位：沈阳市") && all.contains("填报人：张三"), "{name}: the signature lines");
        assert_no_overlap(&words, &name);

        let title_words = find(&words, &title);
        let header = find(&words, first_header);
        let data = find(&words, first_cell);
        assert!(!title_words.is_empty() && !header.is_empty() && !data.is_empty(), "{name}: {words:?}");
        let title_bottom = title_words.iter().map(|w| w.y1).fold(f64::MIN, f64::max);
        // Every header word (the wrapped lines of every header cell) lies between the title
        // and the first data row.
        let data_top = data.iter().map(|w| w.y0).fold(f64::MAX, f64::min);
        let header_words: Vec<&Word> = words.iter().filter(|w| w.y0 > title_bottom && w.y1 < data_top).collect();
        let header_text: String = header_words.iter().map(|w| w.text.as_str()).collect();
        let headers: Vec<&str> = if n == 1 {
            ohassist_server::reports::TABLE1_HEADERS.to_vec()
        } else if n == 3 {
            ohassist_server::reports::monthly::HEADERS.to_vec()
        } else {
            ohassist_server::reports::TABLE2_TOP
                .iter()
                .chain(&ohassist_server::reports::TABLE2_TRAINING)
                .copied()
                .collect()
        };
        // Wrapped cells interleave in the text order, so compare characters: every
        // character of every header is printed in the band between title and data.
        let mut printed: Vec<char> = header_text.chars().collect();
        for c in headers.concat().chars() {
            let at = printed.iter().position(|p| *p == c);
            assert!(at.is_some(), "{name}: {c:?} of the headers is not printed between title and data: {header_text}");
            printed.swap_remove(at.unwrap());
        }
        assert!(printed.is_empty(), "{name}: only header text in the header band, found also {printed:?}");
    }
}
