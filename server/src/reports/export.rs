//! The two tables as files: XLSX in the official layout (title across the table, Table 2's
//! grouped training header as merged cells, widths that fit Chinese text, one landscape
//! page wide) and CSV (UTF-8 with a byte-order mark, so Excel reads the Chinese).
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
}

fn formats() -> Formats {
    let base = Format::new().set_border(FormatBorder::Thin).set_align(FormatAlign::VerticalCenter);
    Formats {
        title: Format::new().set_bold().set_font_size(16).set_align(FormatAlign::Center),
        header: base.clone().set_bold().set_text_wrap().set_align(FormatAlign::Center),
        cell: base.clone(),
        number: base.set_align(FormatAlign::Center),
    }
}

fn page_setup(ws: &mut Worksheet) {
    ws.set_landscape();
    ws.set_paper_size(9); // A4
    ws.set_print_fit_to_pages(1, 0);
}

fn write_body(
    ws: &mut Worksheet,
    f: &Formats,
    first_row: u32,
    body: &[Vec<String>],
    numeric_from: usize,
) -> Result<u32, XlsxError> {
    let mut row = first_row;
    for cells in body {
        for (c, text) in cells.iter().enumerate() {
            match text.parse::<f64>() {
                Ok(n) if c >= numeric_from => ws.write_number_with_format(row, c as u16, n, &f.number)?,
                _ => ws.write_string_with_format(row, c as u16, text, &f.cell)?,
            };
        }
        row += 1;
    }
    Ok(row)
}

fn write_signature(ws: &mut Worksheet, row: u32, sig: &Signature) -> Result<(), XlsxError> {
    for (c, line) in sig.lines().iter().enumerate() {
        ws.write_string(row + 1, c as u16 * 3, line)?;
    }
    Ok(())
}

/// Table 1 as an XLSX workbook.
pub fn table1_xlsx(title: &str, rows: &[StatusRow], sig: &Signature) -> Result<Vec<u8>, XlsxError> {
    let f = formats();
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet().set_name("帮扶对象名单")?;
    page_setup(ws);
    let n = TABLE1_HEADERS.len() as u16;
    ws.merge_range(0, 0, 0, n - 1, title, &f.title)?;
    ws.set_row_height(0, 28)?;
    let header: Vec<String> = TABLE1_HEADERS.iter().map(|s| s.to_string()).collect();
    for (c, h) in header.iter().enumerate() {
        ws.write_string_with_format(1, c as u16, h, &f.header)?;
    }
    let body = table1_body(rows);
    // 序号 is a number; every other column is text.
    let end = write_body(ws, &f, 2, &body, usize::MAX)?;
    for (r, _) in body.iter().enumerate() {
        ws.write_number_with_format(2 + r as u32, 0, (r + 1) as f64, &f.number)?;
    }
    for (c, w) in column_widths(&[&header], &body, n as usize).into_iter().enumerate() {
        ws.set_column_width(c as u16, w)?;
    }
    ws.set_repeat_rows(1, 1)?;
    write_signature(ws, end, sig)?;
    wb.save_to_buffer()
}

/// Table 2 as an XLSX workbook, with its grouped training header.
pub fn table2_xlsx(title: &str, rows: &[Table2Row], total: &Table2Row, sig: &Signature) -> Result<Vec<u8>, XlsxError> {
    let f = formats();
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet().set_name("完成情况汇总表")?;
    page_setup(ws);
    let [top, sub] = table2_header_grid();
    let n = top.len() as u16;
    ws.merge_range(0, 0, 0, n - 1, title, &f.title)?;
    ws.set_row_height(0, 28)?;
    let mut col: u16 = 0;
    for (i, h) in TABLE2_TOP.iter().enumerate() {
        if i == TABLE2_TRAINING_AT {
            ws.merge_range(1, col, 1, col + 2, h, &f.header)?;
            for (k, s) in TABLE2_TRAINING.iter().enumerate() {
                ws.write_string_with_format(2, col + k as u16, *s, &f.header)?;
            }
            col += 3;
        } else {
            ws.merge_range(1, col, 2, col, h, &f.header)?;
            col += 1;
        }
    }
    let body = table2_body(rows, total);
    let end = write_body(ws, &f, 3, &body, 1)?;
    for (c, w) in column_widths(&[&top, &sub], &body, n as usize).into_iter().enumerate() {
        ws.set_column_width(c as u16, w)?;
    }
    ws.set_repeat_rows(1, 2)?;
    write_signature(ws, end, sig)?;
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

fn csv_bytes(lines: Vec<Vec<String>>) -> Vec<u8> {
    let mut out = vec![0xEF, 0xBB, 0xBF];
    let mut w = csv::WriterBuilder::new().flexible(true).from_writer(Vec::new());
    for line in lines {
        // Writing into memory cannot fail.
        let _ = w.write_record(line.iter().map(|c| neutralise(c).into_owned()));
    }
    out.extend(w.into_inner().unwrap_or_default());
    out
}

fn csv_tail(sig: &Signature) -> Vec<Vec<String>> {
    vec![vec![String::new()], sig.lines().to_vec()]
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
