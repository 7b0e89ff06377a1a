//! CSV files as people make them: the one reader behind every CSV chancery
//! takes in (referral batches, outcome imports).
//!
//! A file saved from a spreadsheet may start with a byte-order mark, end its
//! lines with CRLF, carry empty columns and rows of commas after the data,
//! spell a header in another case, or be separated by semicolons (Excel in
//! many locales). This reader takes all of those as the data they hold, and
//! numbers each row by the physical line it starts on. Pure: it reads from any
//! `Read` and returns values or messages; the caller bounds the input.

use std::io::Read;

use crate::referral::truncate;

/// How to read a CSV file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CsvOptions {
    /// The cell separator; `None` is a comma, and a file that is plainly
    /// separated by semicolons or tabs is then refused with how to read it.
    pub delimiter: Option<u8>,
}

/// Parses a `--delimiter` value: one ASCII punctuation character, or `tab`.
pub fn parse_delimiter(s: &str) -> Result<u8, String> {
    match s {
        "tab" | "\\t" | "\t" => Ok(b'\t'),
        _ if s.len() == 1 && s.as_bytes()[0].is_ascii_punctuation() && !matches!(s, "\"" | "'") => Ok(s.as_bytes()[0]),
        _ => Err(format!("delimiter {:?} is not one punctuation character or `tab`; for example ';'", truncate(s, 10))),
    }
}

/// A file's data rows in file order, each with where it stands (`name:line`)
/// and its value, or why it cannot be read.
pub type Rows<T> = Vec<(String, Result<T, String>)>;

/// A CSV file read into memory, its header parsed; rows are read by
/// [`CsvFile::collect`] or [`CsvFile::collect_each`].
pub struct CsvFile {
    name: String,
    text: Vec<u8>,
    delimiter: u8,
    /// Header names, trimmed and in lowercase (every name a protocol declares
    /// is lowercase); wholly empty trailing columns are not among them.
    headers: Vec<String>,
    /// Where the rows start, after the header record.
    body: usize,
    /// The physical line the header starts on.
    header_line: u64,
}

impl CsvFile {
    /// Reads `input` (named `name` in messages) and its header row.
    pub fn read(name: &str, mut input: impl Read, options: &CsvOptions) -> Result<CsvFile, String> {
        let mut text = Vec::new();
        input.read_to_end(&mut text).map_err(|e| format!("{name}: cannot read the file: {e}"))?;
        if text.starts_with(b"\xEF\xBB\xBF") {
            text.drain(..3);
        }
        if let Err(e) = std::str::from_utf8(&text) {
            let line = text[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count() + 1;
            return Err(format!("{name}:{line}: the file is not UTF-8 text; save it as UTF-8 CSV"));
        }
        let delimiter = options.delimiter.unwrap_or(b',');
        let mut reader = builder(delimiter).from_reader(&text[..]);
        let mut header = csv::StringRecord::new();
        let found =
            reader.read_record(&mut header).map_err(|e| format!("{name}:1: cannot read the header row: {e}"))?;
        if !found {
            return Err(format!("{name}: the file is empty; it needs a header row"));
        }
        let start = header.position().map_or(0, |p| p.byte() as usize);
        let header_line = Lines::default().at(&text, start);
        let body = reader.position().byte() as usize;
        if options.delimiter.is_none() && header.len() == 1 {
            for (sep, what, flag) in [(';', "semicolons", "';'"), ('\t', "tabs", "tab")] {
                if header[0].contains(sep) {
                    return Err(format!(
                        "{name}:{header_line}: the file is separated by {what}, not commas; save it as CSV (comma delimited) or pass --delimiter {flag}"
                    ));
                }
            }
        }
        let mut headers: Vec<String> = header.iter().map(|h| h.trim().to_ascii_lowercase()).collect();
        while headers.last().is_some_and(String::is_empty) {
            headers.pop();
        }
        if let Some(i) = headers.iter().position(String::is_empty) {
            return Err(format!(
                "{name}:{header_line}: column {} has no name in the header; name it or delete the column",
                i + 1
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for h in &headers {
            if !seen.insert(h) {
                return Err(format!(
                    "{name}:{header_line}: column {:?} appears twice in the header (names are matched without regard to case)",
                    truncate(h, 40)
                ));
            }
        }
        Ok(CsvFile { name: name.to_string(), text, delimiter, headers, body, header_line })
    }

    /// The file's name, as given.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The header names: trimmed, lowercase, without empty trailing columns.
    pub fn headers(&self) -> &[String] {
        &self.headers
    }

    /// The physical line of the header row.
    pub fn header_line(&self) -> u64 {
        self.header_line
    }

    /// Refuses a header that does not start with the names `first` or has
    /// fewer than `columns` names; `then` says what the first names are
    /// followed by, for the message.
    pub fn expect_header(&self, first: &[&str], columns: usize, then: &str) -> Result<(), String> {
        let headers = &self.headers;
        if headers.len() < columns.max(first.len()) || !headers.iter().zip(first).all(|(h, f)| h == f) {
            return Err(format!(
                "{}:{}: the header must start with {} then {then} (found {:?})",
                self.name,
                self.header_line,
                first.join(","),
                truncate(&headers.join(","), 60)
            ));
        }
        Ok(())
    }

    /// Every data row made into a value by `row`, each with where it stands
    /// (`name:line`). The file is refused whole if any row has a problem
    /// (every one is listed, see [`all_readable`]) or if it has no data rows;
    /// `what` names the rows it should have held, for that message.
    pub fn collect<T>(
        &self,
        what: &str,
        row: impl FnMut(&csv::StringRecord) -> Result<T, String>,
    ) -> Result<Vec<(String, T)>, String> {
        all_readable(&self.name, self.collect_each(what, row)?)
    }

    /// Every data row made into a value by `row`, or the problem that stops
    /// it (the reader's or `row`'s), each with where it stands (`name:line`),
    /// in file order: for a caller that checks the readable rows further and
    /// lists every problem of the file at once. Refused whole only if it has
    /// no data rows; `what` names them, for that message.
    pub fn collect_each<T>(
        &self,
        what: &str,
        mut row: impl FnMut(&csv::StringRecord) -> Result<T, String>,
    ) -> Result<Rows<T>, String> {
        let name = &self.name;
        let mut out = Vec::new();
        self.each_row(|line, record| out.push((format!("{name}:{line}"), record.and_then(&mut row))));
        if out.is_empty() {
            return Err(format!("{name}: the file has a header but no {what}"));
        }
        Ok(out)
    }

    /// Calls `row` with each data row's physical line and its cells, or the
    /// reason they cannot be read (a malformed row, too few cells, a value in
    /// a column without a name). Wholly empty rows are skipped.
    fn each_row(&self, mut row: impl FnMut(u64, Result<&csv::StringRecord, String>)) {
        let width = self.headers.len();
        let mut reader = builder(self.delimiter).from_reader(&self.text[self.body..]);
        let mut lines = Lines::default();
        lines.at(&self.text, self.body);
        let mut record = csv::StringRecord::new();
        loop {
            let start = self.body;
            match reader.read_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) => {
                    let at = start + e.position().map_or(0, |p| p.byte() as usize);
                    row(lines.at(&self.text, at), Err(format!("cannot read the row: {e}")));
                    continue;
                }
            }
            let at = start + record.position().map_or(0, |p| p.byte() as usize);
            let line = lines.at(&self.text, at);
            if record.iter().all(|c| c.trim().is_empty()) {
                continue;
            }
            if record.len() < width {
                row(line, Err(format!("the row has {} cells but the header has {width}", record.len())));
                continue;
            }
            if let Some(extra) = record.iter().skip(width).position(|c| !c.trim().is_empty()) {
                row(
                    line,
                    Err(format!(
                        "column {} holds a value but has no name in the header; name the column or delete the value",
                        width + extra + 1
                    )),
                );
                continue;
            }
            row(line, Ok(&record));
        }
    }
}

/// The rows' values if every row could be read; else one message listing
/// every row that could not (`N rows of NAME cannot be read, …`), in file
/// order.
pub fn all_readable<T>(name: &str, rows: Rows<T>) -> Result<Vec<(String, T)>, String> {
    let problems: Vec<String> =
        rows.iter().filter_map(|(at, r)| r.as_ref().err().map(|m| format!("{at}: {m}"))).collect();
    if !problems.is_empty() {
        let rows = if problems.len() == 1 { "row" } else { "rows" };
        return Err(format!(
            "{} {rows} of {name} cannot be read, so nothing was written:\n  {}",
            problems.len(),
            problems.join("\n  ")
        ));
    }
    Ok(rows.into_iter().filter_map(|(at, r)| r.ok().map(|v| (at, v))).collect())
}

fn builder(delimiter: u8) -> csv::ReaderBuilder {
    let mut b = csv::ReaderBuilder::new();
    b.has_headers(false).flexible(true).delimiter(delimiter);
    b
}

/// Physical line numbers by byte offset, counted once through the file.
///
/// The csv crate's own line count is taken before a record's terminator is
/// read: after a CRLF-ended record the `\n` is still unread, so every later
/// record would be numbered one line too low, and blank lines are not
/// counted at all. A record starts at its first byte that is not a line end.
#[derive(Default)]
struct Lines {
    offset: usize,
    newlines: u64,
}

impl Lines {
    fn at(&mut self, text: &[u8], from: usize) -> u64 {
        let mut start = from.min(text.len());
        while start < text.len() && matches!(text[start], b'\r' | b'\n') {
            start += 1;
        }
        if start > self.offset {
            self.newlines += text[self.offset..start].iter().filter(|&&b| b == b'\n').count() as u64;
            self.offset = start;
        }
        self.newlines + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Headers, rows (line, cells) and problems.
    type Read = (Vec<String>, Vec<(u64, Vec<String>)>, Vec<String>);

    fn read(text: &str) -> Result<Read, String> {
        let f = CsvFile::read("t.csv", text.as_bytes(), &CsvOptions::default())?;
        let (mut rows, mut problems) = (Vec::new(), Vec::new());
        f.each_row(|line, r| match r {
            Ok(r) => rows.push((line, r.iter().take(f.headers().len()).map(str::to_string).collect())),
            Err(m) => problems.push(format!("t.csv:{line}: {m}")),
        });
        Ok((f.headers().to_vec(), rows, problems))
    }

    #[test]
    fn crlf_and_blank_lines_number_rows_by_physical_line() {
        let (_, rows, _) = read("a,b\r\n1,2\r\n\r\n3,4\r\n").unwrap();
        assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), [2, 4]);
        let (_, rows, _) = read("a,b\n1,2\n\n3,4\n").unwrap();
        assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), [2, 4]);
        let (_, rows, _) = read("a,b\n\"x\ny\",2\n3,4").unwrap();
        assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), [2, 4]);
    }

    #[test]
    fn spreadsheet_leftovers_are_ignored() {
        let (h, rows, problems) = read("\u{feff}Participant , SITE,,\r\nP1,x,,\r\n,,,\r\n,,,\r\n").unwrap();
        assert_eq!(h, ["participant", "site"]);
        assert_eq!(rows, [(2, vec!["P1".to_string(), "x".to_string()])]);
        assert!(problems.is_empty(), "{problems:?}");
        let (_, _, problems) = read("a,b,\n1,2,3\n").unwrap();
        assert_eq!(
            problems,
            ["t.csv:2: column 3 holds a value but has no name in the header; name the column or delete the value"]
        );
    }

    #[test]
    fn semicolons_are_recognised() {
        let e = read("participant;site\r\nP1;x\r\n").unwrap_err();
        assert!(e.contains("separated by semicolons") && e.contains("--delimiter ';'"), "{e}");
        let f = CsvFile::read("t.csv", &b"a;b\n1;2\n"[..], &CsvOptions { delimiter: Some(b';') }).unwrap();
        assert_eq!(f.headers(), ["a", "b"]);
        assert_eq!(parse_delimiter(";"), Ok(b';'));
        assert_eq!(parse_delimiter("tab"), Ok(b'\t'));
        assert!(parse_delimiter("ab").is_err());
    }

    #[test]
    fn headers_clash_without_regard_to_case() {
        let e = read("a,A\n1,2\n").unwrap_err();
        assert!(e.contains("appears twice"), "{e}");
        let e = read("a,,b\n1,2,3\n").unwrap_err();
        assert!(e.contains("column 2 has no name"), "{e}");
    }
}
