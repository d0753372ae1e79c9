//! CSV: a header row whose first column is `label`, then numeric feature columns, used as they
//! are (no scaling). Labels are non-negative integers; `num_classes` is the largest plus one.

use std::path::Path;

use super::{Dataset, DatasetError};

fn cell(s: &str) -> &str {
    let s = s.trim();
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(s)
        .trim()
}

/// Loads a CSV file (see the module docs). Blank lines are skipped; a UTF-8 byte-order mark is
/// allowed. Features must be finite numbers.
pub fn load_csv(path: &Path) -> Result<Dataset, DatasetError> {
    let bytes = std::fs::read(path).map_err(|e| DatasetError::io(path, e))?;
    let text = std::str::from_utf8(&bytes).map_err(|e| DatasetError::BadHeader {
        path: path.to_path_buf(),
        problem: format!("not UTF-8 text ({e})"),
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = lines.next().ok_or_else(|| DatasetError::Empty {
        path: path.to_path_buf(),
    })?;
    let columns: Vec<&str> = header.split(',').map(cell).collect();
    if !columns[0].eq_ignore_ascii_case("label") {
        return Err(DatasetError::BadHeader {
            path: path.to_path_buf(),
            problem: format!(
                "the first header column must be `label`, found `{}`",
                columns[0]
            ),
        });
    }
    if columns.len() < 2 {
        return Err(DatasetError::BadHeader {
            path: path.to_path_buf(),
            problem: "the header has no feature columns after `label`".into(),
        });
    }
    let d = columns.len() - 1;
    let mut features = Vec::new();
    let mut labels = Vec::new();
    for (i, line) in lines {
        let line_no = i + 1;
        let cells: Vec<&str> = line.split(',').map(cell).collect();
        if cells.len() != columns.len() {
            return Err(DatasetError::RaggedRow {
                path: path.to_path_buf(),
                line: line_no,
                expected: columns.len(),
                found: cells.len(),
            });
        }
        let label: u32 = cells[0].parse().map_err(|_| DatasetError::BadCell {
            path: path.to_path_buf(),
            line: line_no,
            column: columns[0].to_string(),
            value: cells[0].to_string(),
            expected: "a non-negative integer label",
        })?;
        labels.push(label);
        for (c, v) in cells[1..].iter().enumerate() {
            match v.parse::<f32>() {
                Ok(x) if x.is_finite() => features.push(x),
                _ => {
                    return Err(DatasetError::BadCell {
                        path: path.to_path_buf(),
                        line: line_no,
                        column: columns[c + 1].to_string(),
                        value: v.to_string(),
                        expected: "a finite number",
                    })
                }
            }
        }
    }
    if labels.is_empty() {
        return Err(DatasetError::Empty {
            path: path.to_path_buf(),
        });
    }
    let num_classes = labels.iter().max().map_or(1, |&m| m as usize + 1);
    Ok(Dataset {
        features,
        labels,
        feature_shape: vec![d],
        num_classes,
    })
}

/// Writes a dataset as CSV in the format [`load_csv`] reads (`label,f0,f1,...`).
pub fn write_csv(path: &Path, data: &Dataset) -> std::io::Result<()> {
    use std::fmt::Write as _;
    let d = data.feature_len();
    let mut out = String::from("label");
    for j in 0..d {
        let _ = write!(out, ",f{j}");
    }
    out.push('\n');
    for i in 0..data.len() {
        let _ = write!(out, "{}", data.labels[i]);
        for x in data.sample(i) {
            // `{}` on f32 prints the shortest string that parses back to the same value.
            let _ = write!(out, ",{x}");
        }
        out.push('\n');
    }
    std::fs::write(path, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.csv");
        std::fs::write(&p, "label,x,y\n1,0.5,-2\n\n0,3e2, 4 \n2,\"1\",0\n").unwrap();
        let d = load_csv(&p).unwrap();
        assert_eq!(d.feature_shape, vec![2]);
        assert_eq!(d.labels, vec![1, 0, 2]);
        assert_eq!(d.features, vec![0.5, -2.0, 300.0, 4.0, 1.0, 0.0]);
        assert_eq!(d.num_classes, 3);
        let q = dir.path().join("b.csv");
        let d2 = Dataset::new(vec![0.1, 1.0 / 3.0, -7.25, 1e-30], vec![1, 0], vec![2], 2).unwrap();
        write_csv(&q, &d2).unwrap();
        assert_eq!(load_csv(&q).unwrap(), d2);
    }

    #[test]
    fn rejects_malformed_files_with_row_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.csv");
        let check = |content: &str, pred: &dyn Fn(&DatasetError) -> bool| {
            std::fs::write(&p, content).unwrap();
            let err = load_csv(&p).unwrap_err();
            assert!(pred(&err), "{err}");
            assert!(err.to_string().contains("bad.csv"), "{err}");
            err
        };
        let err = check(
            "label,x,y\n1,0.5,2\n0,abc,1\n",
            &|e| matches!(e, DatasetError::BadCell { line: 3, column, .. } if column == "x"),
        );
        assert!(
            err.to_string().contains("line 3") && err.to_string().contains("abc"),
            "{err}"
        );
        check("label,x\n1,NaN\n", &|e| {
            matches!(e, DatasetError::BadCell { line: 2, .. })
        });
        check(
            "label,x\n-1,0\n",
            &|e| matches!(e, DatasetError::BadCell { column, .. } if column == "label"),
        );
        check("label,x\n1.5,0\n", &|e| {
            matches!(e, DatasetError::BadCell { .. })
        });
        check("x,label\n1,0\n", &|e| {
            matches!(e, DatasetError::BadHeader { .. })
        });
        check("label\n1\n", &|e| {
            matches!(e, DatasetError::BadHeader { .. })
        });
        check("label,x,y\n1,2\n", &|e| {
            matches!(
                e,
                DatasetError::RaggedRow {
                    line: 2,
                    expected: 3,
                    found: 2,
                    ..
                }
            )
        });
        check("label,x\n", &|e| matches!(e, DatasetError::Empty { .. }));
        check("", &|e| matches!(e, DatasetError::Empty { .. }));
        std::fs::write(&p, [0xff, 0xfe, 0x00]).unwrap();
        assert!(matches!(load_csv(&p), Err(DatasetError::BadHeader { .. })));
    }
}
