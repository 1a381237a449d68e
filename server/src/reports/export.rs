//! The two tables as files: XLSX in the official layout (title across the table, Table 2's
//! grouped training header as merged cells, widths that fit Chinese text, one landscape
//! page wide) and CSV (UTF-8 with a byte-order mark, so Excel reads the Chinese).
//!
//! Fonts and rows, so that Excel, WPS and LibreOffice print the same page: every cell names
//! SimSun (宋体, present wherever Chinese office software is; the GB2312 charset makes
//! others substitute a Chinese font rather than a Latin one), and every row that wraps is
//! given the height of its lines, since office software does not grow rows of merged or
//! pre-sized cells by itself. A4 landscape, one page wide, header rows repeated per page.
//!
//! Both layouts, row by row: the title; the header row (Table 2: two rows); the data rows
//! (Table 2: then 合计); an empty row; 填报单位 / 填报人 / 联系电话 in the first three columns.

use ohassist_core::status::Table2Row;
use rust_xlsxwriter::{Format, FormatAlign, FormatBorder, Workbook, Worksheet, XlsxError};

use super::{table2_cells, Signature, StatusRow, TABLE1_HEADERS, TABLE2_TOP, TABLE2_TRAINING, TABLE2_TRAINING_AT};

/// The cells of Table 1 below its header: one row per enterprise, 序号 first.
pub fn table1_body(rows: &[StatusRow]) -> Vec<Vec<String>> {
    rows.iter()
        .enumerate()
        .map(|(i, r)| std::iter::once((i + 1).to_string()).chain(r.table1_cells()).collect())
        .collect()
}

/// The cells of Table 2 below its header: the counties, then 合计.
pub fn table2_body(rows: &[Table2Row], total: &Table2Row) -> Vec<Vec<String>> {
    rows.iter().chain(std::iter::once(total)).map(|r| table2_cells(r).to_vec()).collect()
}

/// Table 2's two header rows as a grid (a merged cell's text in its first cell only).
pub fn table2_header_grid() -> [Vec<String>; 2] {
    let mut top = Vec::new();
    let mut sub = Vec::new();
    for (i, h) in TABLE2_TOP.iter().enumerate() {
        if i == TABLE2_TRAINING_AT {
            top.push(h.to_string());
            top.extend(["".to_string(), "".to_string()]);
            sub.extend(TABLE2_TRAINING.iter().map(|s| s.to_string()));
        } else {
            top.push(h.to_string());
            sub.push(String::new());
        }
    }
    [top, sub]
}

/// Display width of text in Excel's column units: a CJK character counts two.
fn text_width(s: &str) -> usize {
    s.chars().map(|c| if c.is_ascii() { 1 } else { 2 }).sum()
}

fn column_widths(header: &[&[String]], body: &[Vec<String>], columns: usize) -> Vec<f64> {
    (0..columns)
        .map(|c| {
            let data = body.iter().filter_map(|r| r.get(c)).map(|s| text_width(s)).max().unwrap_or(0);
            // Headers wrap; give them up to 16 units before wrapping.
            let head = header.iter().filter_map(|r| r.get(c)).map(|s| text_width(s).min(16)).max().unwrap_or(0);
            (data.max(head) + 2).min(60) as f64
        })
        .collect()
}

struct Formats {
    title: Format,
    header: Format,
    cell: Format,
    number: Format,
    plain: Format,
}

/// The font every cell names (see the module's notes).
pub const FONT: &str = "SimSun";
/// GB2312, the charset office software reads as "substitute a Chinese font".
const FONT_CHARSET: u8 = 134;
/// Points of font size.
const FONT_SIZE: f64 = 11.0;
const TITLE_SIZE: f64 = 16.0;

fn font(f: Format) -> Format {
    f.set_font_name(FONT).set_font_charset(FONT_CHARSET).set_font_size(FONT_SIZE)
}

fn formats() -> Formats {
    let base = font(Format::new()).set_border(FormatBorder::Thin).set_align(FormatAlign::VerticalCenter);
    Formats {
        title: font(Format::new()).set_bold().set_font_size(TITLE_SIZE).set_align(FormatAlign::Center),
        header: base.clone().set_bold().set_text_wrap().set_align(FormatAlign::Center),
        cell: base.clone().set_text_wrap(),
        number: base.set_align(FormatAlign::Center),
        plain: font(Format::new()),
    }
}

fn page_setup(ws: &mut Worksheet) {
    ws.set_landscape();
    ws.set_paper_size(9); // A4
    ws.set_print_fit_to_pages(1, 0);
    // Inches: narrow sides for the wide tables, room for the page number below.
    ws.set_margins(0.4, 0.4, 0.6, 0.7, 0.3, 0.3);
    ws.set_print_center_horizontally(true);
    ws.set_footer("&C第 &P 页，共 &N 页");
}

/// Width of text in column units at [`FONT_SIZE`] (a CJK character is about 2.2 digits;
/// bold is a little wider), rounded up.
fn printed_width(s: &str) -> f64 {
    s.chars().map(|c| if c.is_ascii() { 1.1 } else { 2.2 }).sum()
}

/// Lines `text` wraps to in a cell `width` column units wide.
fn wrapped_lines(text: &str, width: f64) -> u32 {
    let usable = (width - 1.5).max(1.0);
    text.split('\n').map(|l| (printed_width(l) / usable).ceil().max(1.0) as u32).sum::<u32>().max(1)
}

/// Row height in points for `lines` lines of text at `size` points.
fn row_height(lines: u32, size: f64) -> f64 {
    (lines as f64 * size * 1.35 + 6.0).ceil()
}

fn write_body(
    ws: &mut Worksheet,
    f: &Formats,
    first_row: u32,
    body: &[Vec<String>],
    numeric: impl Fn(usize) -> bool,
    widths: &[f64],
) -> Result<u32, XlsxError> {
    let mut row = first_row;
    for cells in body {
        let mut lines = 1;
        for (c, text) in cells.iter().enumerate() {
            match text.parse::<f64>() {
                Ok(n) if numeric(c) => ws.write_number_with_format(row, c as u16, n, &f.number)?,
                // The yes/no and percentage columns read best centred, like the numbers.
                _ if text == "是" || text == "否" || text.ends_with('%') => {
                    ws.write_string_with_format(row, c as u16, text, &f.number)?
                }
                _ => {
                    lines = lines.max(wrapped_lines(text, widths.get(c).copied().unwrap_or(10.0)));
                    ws.write_string_with_format(row, c as u16, text, &f.cell)?
                }
            };
        }
        ws.set_row_height(row, row_height(lines, FONT_SIZE))?;
        row += 1;
    }
    Ok(row)
}

fn write_signature(ws: &mut Worksheet, f: &Formats, row: u32, sig: &Signature) -> Result<(), XlsxError> {
    for (c, line) in sig.lines().iter().enumerate() {
        ws.write_string_with_format(row + 1, c as u16 * 3, line, &f.plain)?;
    }
    ws.set_row_height(row + 1, row_height(1, FONT_SIZE))?;
    Ok(())
}

/// The title row: merged across the table, as high as its wrapped lines.
fn write_title(ws: &mut Worksheet, f: &Formats, title: &str, widths: &[f64]) -> Result<(), XlsxError> {
    ws.merge_range(0, 0, 0, widths.len() as u16 - 1, title, &f.title)?;
    let lines = wrapped_lines(title, widths.iter().sum::<f64>() * FONT_SIZE / TITLE_SIZE);
    ws.set_row_height(0, row_height(lines, TITLE_SIZE))?;
    Ok(())
}

/// Table 1 as an XLSX workbook.
pub fn table1_xlsx(title: &str, rows: &[StatusRow], sig: &Signature) -> Result<Vec<u8>, XlsxError> {
    // 序号 is a number; every other column is text.
    grid_xlsx("帮扶对象名单", title, &TABLE1_HEADERS, &table1_body(rows), |c| c == 0, sig)
}

/// A table with one header row as an XLSX workbook: title, header, body, signature.
pub fn grid_xlsx(
    sheet: &str,
    title: &str,
    headers: &[&str],
    body: &[Vec<String>],
    numeric: impl Fn(usize) -> bool,
    sig: &Signature,
) -> Result<Vec<u8>, XlsxError> {
    let f = formats();
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet().set_name(sheet)?;
    page_setup(ws);
    let n = headers.len();
    let header: Vec<String> = headers.iter().map(|s| s.to_string()).collect();
    let widths = column_widths(&[&header], body, n);
    for (c, w) in widths.iter().enumerate() {
        ws.set_column_width(c as u16, *w)?;
    }
    write_title(ws, &f, title, &widths)?;
    let mut lines = 1;
    for (c, h) in header.iter().enumerate() {
        ws.write_string_with_format(1, c as u16, h, &f.header)?;
        lines = lines.max(wrapped_lines(h, widths[c]));
    }
    ws.set_row_height(1, row_height(lines, FONT_SIZE))?;
    let end = write_body(ws, &f, 2, body, numeric, &widths)?;
    ws.set_repeat_rows(1, 1)?;
    write_signature(ws, &f, end, sig)?;
    wb.save_to_buffer()
}

/// Table 2 as an XLSX workbook, with its grouped training header.
pub fn table2_xlsx(title: &str, rows: &[Table2Row], total: &Table2Row, sig: &Signature) -> Result<Vec<u8>, XlsxError> {
    let f = formats();
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet().set_name("完成情况汇总表")?;
    page_setup(ws);
    let [top, sub] = table2_header_grid();
    let body = table2_body(rows, total);
    let widths = column_widths(&[&top, &sub], &body, top.len());
    for (c, w) in widths.iter().enumerate() {
        ws.set_column_width(c as u16, *w)?;
    }
    write_title(ws, &f, title, &widths)?;
    // Lines of the two header rows: the sub-columns in the second; a cell spanning both
    // needs the two together; the group's title in the first.
    let (mut top_lines, mut sub_lines, mut span_lines) = (1, 1, 1);
    let mut col: u16 = 0;
    for (i, h) in TABLE2_TOP.iter().enumerate() {
        if i == TABLE2_TRAINING_AT {
            ws.merge_range(1, col, 1, col + 2, h, &f.header)?;
            let group: f64 = widths[col as usize..col as usize + 3].iter().sum();
            top_lines = top_lines.max(wrapped_lines(h, group));
            for (k, s) in TABLE2_TRAINING.iter().enumerate() {
                ws.write_string_with_format(2, col + k as u16, *s, &f.header)?;
                sub_lines = sub_lines.max(wrapped_lines(s, widths[col as usize + k]));
            }
            col += 3;
        } else {
            ws.merge_range(1, col, 2, col, h, &f.header)?;
            span_lines = span_lines.max(wrapped_lines(h, widths[col as usize]));
            col += 1;
        }
    }
    let sub_h = row_height(sub_lines, FONT_SIZE);
    let top_h = row_height(top_lines, FONT_SIZE).max(row_height(span_lines, FONT_SIZE) - sub_h);
    ws.set_row_height(1, top_h)?;
    ws.set_row_height(2, sub_h)?;
    let end = write_body(ws, &f, 3, &body, |c| c >= 1, &widths)?;
    ws.set_repeat_rows(1, 2)?;
    write_signature(ws, &f, end, sig)?;
    wb.save_to_buffer()
}

/// A cell a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab, CR first) is
/// written with a leading apostrophe: an enterprise named `=HYPERLINK(…)` stays text.
pub fn neutralise(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}").into(),
        _ => cell.into(),
    }
}

/// CSV of `lines`; an empty line is written as an empty line (the csv crate would write a
/// record of one empty field as `""`).
fn csv_bytes(lines: Vec<Vec<String>>) -> Vec<u8> {
    let mut out = vec![0xEF, 0xBB, 0xBF];
    for line in lines {
        if line.iter().all(|c| c.is_empty()) {
            out.extend_from_slice(b"\r\n");
            continue;
        }
        let mut w = csv::WriterBuilder::new().flexible(true).terminator(csv::Terminator::CRLF).from_writer(Vec::new());
        // Writing into memory cannot fail.
        let _ = w.write_record(line.iter().map(|c| neutralise(c).into_owned()));
        out.extend(w.into_inner().unwrap_or_default());
    }
    out
}

fn csv_tail(sig: &Signature) -> Vec<Vec<String>> {
    vec![vec![], sig.lines().to_vec()]
}

/// Table 1 as CSV.
pub fn table1_csv(title: &str, rows: &[StatusRow], sig: &Signature) -> Vec<u8> {
    let mut lines = vec![vec![title.to_string()], TABLE1_HEADERS.iter().map(|s| s.to_string()).collect()];
    lines.extend(table1_body(rows));
    lines.extend(csv_tail(sig));
    csv_bytes(lines)
}

/// Table 2 as CSV: two header rows, the training group's title over its first column.
pub fn table2_csv(title: &str, rows: &[Table2Row], total: &Table2Row, sig: &Signature) -> Vec<u8> {
    let [top, sub] = table2_header_grid();
    let mut lines = vec![vec![title.to_string()], top, sub];
    lines.extend(table2_body(rows, total));
    lines.extend(csv_tail(sig));
    csv_bytes(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_written_as_text() {
        for cell in ["=HYPERLINK(\"x\")", "+1", "-1+2", "@SUM(A1)", "\tx", "\rx"] {
            assert!(neutralise(cell).starts_with('\''), "{cell}");
        }
        assert_eq!(neutralise("甲矿业"), "甲矿业");
        assert_eq!(neutralise("12"), "12");
        let csv = String::from_utf8(csv_bytes(vec![vec!["=cmd|' /C calc'!A0".into(), "2".into()]])).unwrap();
        assert!(csv.contains("'=cmd"), "{csv}");
    }
}
