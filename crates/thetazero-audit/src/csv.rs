//! CSV export of audit events for people to read in a spreadsheet. It is a
//! view, not evidence: the response that carries it says so (in a header, so
//! that the file itself stays plain RFC 4180 CSV starting with its header
//! row), and it never lets a cell run as a formula.

use std::io::Write;

use thiserror::Error;

use crate::encoding::hash_b64;
use crate::leaf::{AuditLeaf, Decision, LeafError};
use crate::merkle::{self};

/// What every export is, sent beside it (the `X-Thetazero-Notice` response
/// header and the docs), never inside the file.
pub const NOT_VERIFIABLE_NOTICE: &str = "This CSV is for review only and is not verifiable on its own. For evidence, export the verifiable bundle (format=bundle) and check it with `thetazero audit verify BUNDLE --key VKEY_FILE`.";

/// Column names, in order.
pub const COLUMNS: [&str; 17] = [
    "leaf_index",
    "leaf_hash",
    "time",
    "account_id",
    "agent_id",
    "execution_id",
    "action_type",
    "action_category",
    "permission_state",
    "decision",
    "is_violation",
    "key_id",
    "summary",
    "input_digest",
    "output_digest",
    "payload_commitment",
    "record_id",
];

#[derive(Debug, Error)]
pub enum CsvError {
    #[error("writing CSV: {0}")]
    Csv(#[from] ::csv::Error),
    #[error("writing CSV: {0}")]
    Io(#[from] std::io::Error),
    #[error("leaf {index}: {source}")]
    Leaf { index: u64, source: LeafError },
}

/// Makes a cell inert in spreadsheets: a cell starting with `=`, `+`, `-`,
/// `@`, tab or carriage return is prefixed with `'`, the convention
/// spreadsheet programs read as "text, do not evaluate" (OWASP CSV injection).
pub fn neutralize(cell: &str) -> String {
    match cell.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => format!("'{cell}"),
        _ => cell.to_owned(),
    }
}

/// Writes the header row, then one row per event. Quoting is
/// RFC 4180 (fields with commas, quotes or line breaks are quoted, quotes
/// doubled; CRLF line ends).
pub struct CsvExporter<W: Write> {
    out: ::csv::Writer<W>,
}

impl<W: Write> CsvExporter<W> {
    pub fn new(w: W) -> Result<Self, CsvError> {
        let mut out = ::csv::WriterBuilder::new()
            .terminator(::csv::Terminator::CRLF)
            .quote_style(::csv::QuoteStyle::Necessary)
            .from_writer(w);
        out.write_record(COLUMNS)?;
        Ok(CsvExporter { out })
    }

    /// Continues an export in another buffer: no header row.
    /// Streaming exports write their first chunk with `new`, the rest with this.
    pub fn continuing(w: W) -> Self {
        let out = ::csv::WriterBuilder::new()
            .terminator(::csv::Terminator::CRLF)
            .quote_style(::csv::QuoteStyle::Necessary)
            .from_writer(w);
        CsvExporter { out }
    }

    /// Writes one event from its exact leaf bytes; the hash column is
    /// computed here so it always matches the bytes.
    pub fn write_leaf(
        &mut self,
        record_id: Option<i64>,
        leaf_index: u64,
        leaf_bytes: &[u8],
    ) -> Result<(), CsvError> {
        let leaf = AuditLeaf::from_bytes(leaf_bytes).map_err(|source| CsvError::Leaf {
            index: leaf_index,
            source,
        })?;
        let hash = hash_b64(&merkle::leaf_hash(leaf_bytes));
        let opt = |v: Option<i64>| v.map(|n| n.to_string()).unwrap_or_default();
        let decision = match leaf.decision {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::None => "none",
        };
        let row = [
            leaf_index.to_string(),
            hash,
            leaf.time,
            leaf.account_id.to_string(),
            opt(leaf.agent_id),
            opt(leaf.execution_id),
            leaf.action_type,
            leaf.action_category,
            leaf.permission_state,
            decision.to_owned(),
            leaf.is_violation.to_string(),
            opt(leaf.key_id),
            leaf.summary,
            leaf.input_digest.map(|d| d.to_hex()).unwrap_or_default(),
            leaf.output_digest.map(|d| d.to_hex()).unwrap_or_default(),
            leaf.payload_commitment.to_hex(),
            opt(record_id),
        ];
        // Base64 hashes can start with '+', so every cell goes through the
        // same guard, not only the free-text ones.
        self.out.write_record(row.iter().map(|c| neutralize(c)))?;
        Ok(())
    }

    pub fn finish(self) -> Result<W, CsvError> {
        self.out
            .into_inner()
            .map_err(|e| CsvError::Io(std::io::Error::other(e.to_string())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leaf::tests::sample;

    fn check(input: &str, expected: &str) {
        assert_eq!(neutralize(input), expected, "{input:?}");
    }

    #[test]
    fn formula_injection_cells() {
        check("=1+1", "'=1+1");
        check(
            "=HYPERLINK(\"http://x\",\"y\")",
            "'=HYPERLINK(\"http://x\",\"y\")",
        );
        check("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0");
        check("-2+3", "'-2+3");
        check("@SUM(A1)", "'@SUM(A1)");
        check("\t=1", "'\t=1");
        check("\r=1", "'\r=1");
        check("safe =1", "safe =1");
        check("", "");
        check("'already", "'already");
        check("１=1", "１=1");
    }

    fn export(summaries: &[&str]) -> String {
        let mut ex = CsvExporter::new(Vec::new()).unwrap();
        for (i, s) in summaries.iter().enumerate() {
            let mut leaf = sample(i as i64);
            leaf.summary = (*s).to_owned();
            ex.write_leaf(Some(i as i64 + 100), i as u64, &leaf.to_bytes().unwrap())
                .unwrap();
        }
        String::from_utf8(ex.finish().unwrap()).unwrap()
    }

    #[test]
    fn rows_are_quoted_and_neutralized() {
        let out = export(&["=cmd()", "a,b", "say \"hi\"", "two\nlines", "-1", "plain"]);
        let mut lines = out.split("\r\n");
        assert_eq!(lines.next(), Some(COLUMNS.join(",").as_str()));
        assert!(out.contains(",'=cmd(),"), "{out}");
        assert!(out.contains(",\"a,b\","), "{out}");
        assert!(out.contains(",\"say \"\"hi\"\"\","), "{out}");
        assert!(out.contains(",\"two\nlines\","), "{out}");
        assert!(out.contains(",'-1,"), "{out}");
        assert!(out.contains(",plain,"), "{out}");

        // Reading it back with a CSV parser gives the neutralized cells and
        // the right leaf hash.
        // The file is plain CSV: a reader takes its first line as the header.
        let mut rd = ::csv::Reader::from_reader(out.as_bytes());
        assert_eq!(rd.headers().unwrap().iter().collect::<Vec<_>>(), COLUMNS);
        let rows: Vec<::csv::StringRecord> = rd.records().map(|r| r.unwrap()).collect();
        assert_eq!(rows.len(), 6);
        assert_eq!(&rows[0][12], "'=cmd()");
        assert_eq!(&rows[3][12], "two\nlines");
        let leaf0 = {
            let mut l = sample(0);
            l.summary = "=cmd()".into();
            l.to_bytes().unwrap()
        };
        assert_eq!(
            rows[0][1].trim_start_matches('\''),
            hash_b64(&merkle::leaf_hash(&leaf0))
        );
        for row in &rows {
            for cell in row.iter() {
                assert!(
                    !matches!(
                        cell.as_bytes().first(),
                        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r')
                    ),
                    "live cell {cell:?}"
                );
            }
        }
    }

    #[test]
    fn refuses_non_leaf_bytes() {
        let mut ex = CsvExporter::new(Vec::new()).unwrap();
        assert!(matches!(
            ex.write_leaf(None, 3, b"{}"),
            Err(CsvError::Leaf { index: 3, .. })
        ));
    }
}
