//! Reading a campaign's recipients for `yizhan-producer campaign submit --recipients PATH`, one at a
//! time (a file of any size is never held in memory):
//!
//! - JSON lines (`.jsonl`, `.ndjson`, `.json`, or a file whose first non-blank byte is `{`): one
//!   recipient object per line, `{"to": "...", "params": {...}}`, passed on as written.
//! - CSV (anything else): a header row, then one recipient per row. Column `to` is the recipient;
//!   a column `x` sets `params.x` to the cell; a column `x[]` appends the cell to the array
//!   `params.x`, in column order (`to,template_params[],template_params[]`). Cells are strings.
//!   Fields may be quoted (`"a, b"`, `""` for a quote, line breaks inside quotes).

use std::io::BufRead;

use serde_json::{Map, Value};

/// One recipient read from the file, with the line it starts on (1-based) for error messages.
pub(crate) struct Read {
    pub(crate) line: usize,
    pub(crate) recipient: Value,
}

/// Why a line could not be read as a recipient.
#[derive(Debug)]
pub(crate) struct ReadError {
    pub(crate) line: usize,
    pub(crate) reason: String,
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// The recipients file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    JsonLines,
    Csv,
}

impl Format {
    /// By extension; otherwise by the first non-blank byte (`{` is JSON lines).
    pub(crate) fn detect(path: &str, first_bytes: &[u8]) -> Format {
        let lower = path.to_ascii_lowercase();
        if [".jsonl", ".ndjson", ".json"].iter().any(|ext| lower.ends_with(ext)) {
            return Format::JsonLines;
        }
        if lower.ends_with(".csv") {
            return Format::Csv;
        }
        let text = first_bytes.strip_prefix("\u{feff}".as_bytes()).unwrap_or(first_bytes);
        if text.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') { Format::JsonLines } else { Format::Csv }
    }
}

/// Where a CSV column's cell goes.
#[derive(Debug, Clone, PartialEq)]
enum Column {
    To,
    Param(String),
    Append(String),
}

/// An iterator of recipients over a reader.
pub(crate) struct Recipients<R> {
    reader: R,
    format: Format,
    columns: Option<Vec<Column>>,
    /// The line the next read starts on.
    line: usize,
    /// Set by a bad header: no row can be read without it.
    ended: bool,
}

impl<R: BufRead> Recipients<R> {
    pub(crate) fn new(reader: R, format: Format) -> Self {
        Recipients { reader, format, columns: None, line: 1, ended: false }
    }

    /// Reads one physical line (without its line break); None at the end.
    fn read_line(&mut self) -> Result<Option<String>, ReadError> {
        let mut buf = Vec::new();
        match self.reader.read_until(b'\n', &mut buf) {
            Ok(0) => Ok(None),
            Ok(_) => {
                if buf.last() == Some(&b'\n') {
                    buf.pop();
                    if buf.last() == Some(&b'\r') {
                        buf.pop();
                    }
                }
                let line = self.line;
                self.line += 1;
                String::from_utf8(buf).map(Some).map_err(|_| ReadError { line, reason: "not UTF-8 text".to_string() })
            }
            Err(e) => Err(ReadError { line: self.line, reason: format!("cannot read: {e}") }),
        }
    }

    /// One CSV record (which may span lines inside quotes); None at the end.
    fn read_record(&mut self) -> Result<Option<(usize, Vec<String>)>, ReadError> {
        loop {
            let start = self.line;
            let Some(mut text) = self.read_line()? else { return Ok(None) };
            if start == 1 {
                text = text.trim_start_matches('\u{feff}').to_string();
            }
            if text.trim().is_empty() {
                continue;
            }
            let mut record = CsvRecord::default();
            let error = |reason| ReadError { line: start, reason };
            // A quoted field left open continues on the next line, the line break being part of it.
            while !record.feed(&text).map_err(error)? {
                let Some(more) = self.read_line()? else {
                    return Err(error("a quoted field is never closed".to_string()));
                };
                text = more;
            }
            return Ok(Some((start, record.fields)));
        }
    }

    fn header(&mut self) -> Result<Option<Vec<Column>>, ReadError> {
        let Some((line, names)) = self.read_record()? else { return Ok(None) };
        let error = |reason: String| ReadError { line, reason };
        let mut columns = Vec::with_capacity(names.len());
        let mut to = false;
        for name in names {
            let name = name.trim();
            let column = if name == "to" {
                if to {
                    return Err(error("the column `to` appears twice".to_string()));
                }
                to = true;
                Column::To
            } else if let Some(key) = name.strip_suffix("[]") {
                Column::Append(key.to_string())
            } else {
                Column::Param(name.to_string())
            };
            let key = match &column {
                Column::Param(key) | Column::Append(key) => Some(key),
                Column::To => None,
            };
            if let Some(key) = key {
                if key.is_empty() {
                    return Err(error("a column has no name".to_string()));
                }
                let clash = columns.iter().any(|c| match (c, &column) {
                    (Column::Param(a), Column::Param(b)) => a == b,
                    (Column::Param(a), Column::Append(b)) | (Column::Append(a), Column::Param(b)) => a == b,
                    _ => false,
                });
                if clash {
                    return Err(error(format!("the column `{name}` clashes with another column for params.{key}")));
                }
            }
            columns.push(column);
        }
        if !to {
            return Err(error("the header has no `to` column".to_string()));
        }
        Ok(Some(columns))
    }

    fn next_csv(&mut self) -> Option<Result<Read, ReadError>> {
        if self.columns.is_none() {
            match self.header() {
                Ok(Some(columns)) => self.columns = Some(columns),
                Ok(None) => return None,
                Err(e) => {
                    self.ended = true;
                    return Some(Err(e));
                }
            }
        }
        let (line, cells) = match self.read_record() {
            Ok(Some(record)) => record,
            Ok(None) => return None,
            Err(e) => return Some(Err(e)),
        };
        let columns = self.columns.as_ref().expect("header read");
        if cells.len() != columns.len() {
            let reason = format!("{} cells, the header has {} columns", cells.len(), columns.len());
            return Some(Err(ReadError { line, reason }));
        }
        let mut to = String::new();
        let mut params = Map::new();
        for (column, cell) in columns.iter().zip(cells) {
            match column {
                Column::To => to = cell,
                Column::Param(key) => {
                    params.insert(key.clone(), Value::String(cell));
                }
                Column::Append(key) => {
                    let entry = params.entry(key.clone()).or_insert_with(|| Value::Array(Vec::new()));
                    if let Value::Array(items) = entry {
                        items.push(Value::String(cell));
                    }
                }
            }
        }
        let mut recipient = Map::new();
        recipient.insert("to".to_string(), Value::String(to));
        if !params.is_empty() {
            recipient.insert("params".to_string(), Value::Object(params));
        }
        Some(Ok(Read { line, recipient: Value::Object(recipient) }))
    }

    fn next_json(&mut self) -> Option<Result<Read, ReadError>> {
        loop {
            let line = self.line;
            let text = match self.read_line() {
                Ok(Some(text)) => text,
                Ok(None) => return None,
                Err(e) => return Some(Err(e)),
            };
            if text.trim().is_empty() {
                continue;
            }
            let text = if line == 1 { text.trim_start_matches('\u{feff}') } else { &text };
            return Some(match serde_json::from_str::<Value>(text) {
                Ok(recipient @ Value::Object(_)) => Ok(Read { line, recipient }),
                Ok(_) => Err(ReadError { line, reason: "$: not a JSON object".to_string() }),
                Err(e) => Err(ReadError { line, reason: format!("$: not JSON: {e}") }),
            });
        }
    }
}

impl<R: BufRead> Iterator for Recipients<R> {
    type Item = Result<Read, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.ended {
            return None;
        }
        match self.format {
            Format::JsonLines => self.next_json(),
            Format::Csv => self.next_csv(),
        }
    }
}

/// One CSV record (RFC 4180) being split into fields, line by line.
#[derive(Default)]
struct CsvRecord {
    fields: Vec<String>,
    field: String,
    /// Inside a quoted field.
    quoted: bool,
    /// The current field was quoted and its closing quote seen.
    closed: bool,
}

impl CsvRecord {
    /// Takes one line; true when the record is complete, false when a quoted field goes on.
    /// A quote inside an unquoted field is kept as text.
    fn feed(&mut self, line: &str) -> Result<bool, String> {
        if self.quoted {
            self.field.push('\n');
        }
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            if self.quoted {
                match c {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        self.field.push('"');
                    }
                    '"' => {
                        self.quoted = false;
                        self.closed = true;
                    }
                    _ => self.field.push(c),
                }
                continue;
            }
            match c {
                ',' => {
                    self.fields.push(std::mem::take(&mut self.field));
                    self.closed = false;
                }
                _ if self.closed => {
                    return Err(format!("text after the closing quote of field {}", self.fields.len() + 1));
                }
                '"' if self.field.is_empty() => self.quoted = true,
                _ => self.field.push(c),
            }
        }
        if self.quoted {
            return Ok(false);
        }
        self.fields.push(std::mem::take(&mut self.field));
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn read(text: &str, format: Format) -> Vec<Result<(usize, Value), String>> {
        Recipients::new(text.as_bytes(), format)
            .map(|r| r.map(|r| (r.line, r.recipient)).map_err(|e| e.to_string()))
            .collect()
    }

    #[test]
    fn csv_columns_set_and_append_params_in_column_order() {
        let text = "to,template_params[],name,template_params[]\r\n+8613800000001,A,Li,1\n\n+8613800000002,\"B, b\",\"Wang \"\"W\"\"\",2\n";
        let got = read(text, Format::Csv);
        assert_eq!(
            got,
            vec![
                Ok((2, json!({"to": "+8613800000001", "params": {"template_params": ["A", "1"], "name": "Li"}}))),
                Ok((
                    4,
                    json!({"to": "+8613800000002", "params": {"template_params": ["B, b", "2"], "name": "Wang \"W\""}})
                )),
            ]
        );
    }

    #[test]
    fn csv_quoted_fields_may_span_lines_and_only_to_is_required() {
        let got = read("\u{feff}to,note\n\"a@example.com\",\"two\nlines\"\nb@example.com,x\n", Format::Csv);
        assert_eq!(got[0], Ok((2, json!({"to": "a@example.com", "params": {"note": "two\nlines"}}))));
        assert_eq!(got[1], Ok((4, json!({"to": "b@example.com", "params": {"note": "x"}}))));
        assert_eq!(read("to\n+8613800000001\n", Format::Csv), vec![Ok((2, json!({"to": "+8613800000001"})))]);
    }

    #[test]
    fn csv_errors_name_the_line_and_the_reason() {
        assert_eq!(read("phone,x\n1,2\n", Format::Csv), vec![Err("line 1: the header has no `to` column".into())]);
        let got = read("to,x\n1,2\n3\n4,5\n", Format::Csv);
        assert_eq!(got[1], Err("line 3: 1 cells, the header has 2 columns".into()));
        assert!(got[2].is_ok(), "reading goes on after a bad row: {got:?}");
        assert_eq!(
            read("to,x,x[]\n", Format::Csv)[0],
            Err("line 1: the column `x[]` clashes with another column for params.x".into())
        );
        assert_eq!(read("to,x\n\"1,2\n", Format::Csv)[0], Err("line 2: a quoted field is never closed".into()));
        assert_eq!(read("to,x\n1,a\"b\n", Format::Csv)[0], Ok((2, json!({"to": "1", "params": {"x": "a\"b"}}))));
        assert!(read("to,x\n1,\"a\"b\n", Format::Csv)[0].as_ref().unwrap_err().contains("after the closing quote"));
    }

    #[test]
    fn json_lines_pass_objects_on_and_name_bad_lines() {
        let text =
            "{\"to\":\"+8613800000001\",\"params\":{\"template_params\":[\"9\"]}}\n\n[1]\n{oops\n{\"to\":\"x\"}\n";
        let got = read(text, Format::JsonLines);
        assert_eq!(got[0], Ok((1, json!({"to": "+8613800000001", "params": {"template_params": ["9"]}}))));
        assert_eq!(got[1], Err("line 3: $: not a JSON object".into()));
        assert!(got[2].as_ref().unwrap_err().starts_with("line 4: $: not JSON"), "{got:?}");
        assert_eq!(got[3], Ok((5, json!({"to": "x"}))));
    }

    #[test]
    fn the_format_comes_from_the_extension_or_the_first_byte() {
        assert_eq!(Format::detect("r.csv", b"{"), Format::Csv);
        assert_eq!(Format::detect("r.JSONL", b"to"), Format::JsonLines);
        assert_eq!(Format::detect("r.txt", b"  {\"to\""), Format::JsonLines);
        assert_eq!(Format::detect("r.txt", b"to,x"), Format::Csv);
    }
}
