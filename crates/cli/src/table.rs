//! Text tables as SmartOS's tools print them: left-aligned columns
//! separated by two spaces, each at least as wide as its header, its
//! minimum width and its widest cell, trailing blanks trimmed; missing
//! values shown as `-`. The parsable form (`vmadm list -p`) joins cells
//! with `:`, without header or padding, missing values empty.

/// One column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    /// Header text.
    pub header: String,
    /// Minimum width (SmartOS's width for the field).
    pub min_width: usize,
}

impl Column {
    /// A column with `header` at least `min_width` wide.
    pub fn new(header: impl Into<String>, min_width: usize) -> Self {
        Self { header: header.into(), min_width }
    }
}

/// How to render.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Style {
    /// Print the header line.
    pub header: bool,
    /// Colon-separated, unpadded.
    pub parsable: bool,
    /// Columns keep their widths and a longer value overflows into the
    /// next, as `vmadm list` (sprintf `%-Ns`) prints; otherwise a column
    /// widens to its longest value, as `imgadm list` prints.
    pub fixed: bool,
}

/// Renders `rows` (one cell per column; `None` is a missing value).
pub fn render(columns: &[Column], rows: &[Vec<Option<String>>], style: Style) -> String {
    let mut out = String::new();
    if style.parsable {
        if style.header {
            let line: Vec<&str> = columns.iter().map(|c| c.header.as_str()).collect();
            out.push_str(&line.join(":"));
            out.push('\n');
        }
        for row in rows {
            let mut first = true;
            for cell in row {
                if !first {
                    out.push(':');
                }
                first = false;
                out.push_str(cell.as_deref().unwrap_or(""));
            }
            out.push('\n');
        }
        return out;
    }
    let mut widths: Vec<usize> = columns.iter().map(|c| c.min_width.max(width(&c.header))).collect();
    for row in rows.iter().filter(|_| !style.fixed) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.as_deref().map_or(1, width));
        }
    }
    if style.header {
        push_line(&mut out, &widths, columns.iter().map(|c| c.header.as_str()));
    }
    for row in rows {
        push_line(&mut out, &widths, row.iter().map(|c| c.as_deref().unwrap_or("-")));
    }
    out
}

fn width(s: &str) -> usize {
    s.chars().count()
}

fn push_line<'a>(out: &mut String, widths: &[usize], cells: impl Iterator<Item = &'a str>) {
    let start = out.len();
    for (n, (cell, w)) in cells.zip(widths).enumerate() {
        if n > 0 {
            out.push_str("  ");
        }
        out.push_str(cell);
        for _ in width(cell)..*w {
            out.push(' ');
        }
    }
    let trimmed = out[start..].trim_end().len();
    out.truncate(start + trimmed);
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols() -> Vec<Column> {
        vec![Column::new("UUID", 4), Column::new("RAM", 7), Column::new("ALIAS", 10)]
    }

    fn rows() -> Vec<Vec<Option<String>>> {
        vec![
            vec![Some("aaaa".into()), Some("512".into()), Some("web01".into())],
            vec![Some("bbbbbb".into()), None, None],
        ]
    }

    const TABLE: Style = Style { header: true, parsable: false, fixed: false };

    #[test]
    fn padded_columns_with_header() {
        let text = render(&cols(), &rows(), TABLE);
        assert_eq!(text, "UUID    RAM      ALIAS\naaaa    512      web01\nbbbbbb  -        -\n");
    }

    #[test]
    fn fixed_columns_let_a_long_value_overflow() {
        let style = Style { header: true, parsable: false, fixed: true };
        let text = render(&cols(), &rows(), style);
        assert_eq!(text, "UUID  RAM      ALIAS\naaaa  512      web01\nbbbbbb  -        -\n");
    }

    #[test]
    fn without_header() {
        let text = render(&cols(), &rows(), Style { header: false, parsable: false, fixed: false });
        assert_eq!(text, "aaaa    512      web01\nbbbbbb  -        -\n");
    }

    #[test]
    fn parsable_rows() {
        let text = render(&cols(), &rows(), Style { header: false, parsable: true, fixed: false });
        assert_eq!(text, "aaaa:512:web01\nbbbbbb::\n");
    }

    #[test]
    fn wide_cells_widen_the_column_and_no_rows_prints_header_only() {
        let rows = vec![vec![Some("x".into()), Some("123456789".into()), Some("y".into())]];
        let text = render(&cols(), &rows, TABLE);
        assert_eq!(text, "UUID  RAM        ALIAS\nx     123456789  y\n");
        assert_eq!(render(&cols(), &[], TABLE), "UUID  RAM      ALIAS\n");
    }
}
