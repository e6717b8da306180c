//! ASCII tables as etcdctl's `-w table` draws them with olekukonko/tablewriter 0.0.5: centred
//! upper-case headers, right-aligned cells, and cells wider than 30 columns wrapped at spaces
//! by its minimum-raggedness algorithm.

/// tablewriter's `MAX_ROW_WIDTH`: cells wrap beyond this many columns, if they have spaces.
const WRAP_WIDTH: usize = 30;
/// tablewriter's `defaultPenalty` for a line that is longer than the wrap width.
const OVERFLOW_PENALTY: usize = 100_000;

/// Renders `header` and `rows` as etcdctl does with `SetAlignment(ALIGN_RIGHT)`.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = vec![0; header.len()];
    for (column, title) in header.iter().enumerate() {
        widths[column] = widths[column].max(wrap_cell(title).1);
    }
    let cells: Vec<Vec<Vec<String>>> = rows
        .iter()
        .map(|row| {
            let mut lines = Vec::with_capacity(row.len());
            for (column, cell) in row.iter().enumerate() {
                let (cell_lines, width) = wrap_cell(cell);
                widths[column] = widths[column].max(width);
                lines.push(cell_lines);
            }
            lines
        })
        .collect();
    let border = border_line(&widths);
    let mut out = border.clone();
    out.push('|');
    for (title, &width) in header.iter().zip(&widths) {
        out.push_str(&format!(" {} |", pad_center(&title.to_uppercase(), width)));
    }
    out.push('\n');
    out.push_str(&border);
    for row in &cells {
        let height = row.iter().map(Vec::len).max().unwrap_or(0);
        for line in 0..height {
            out.push('|');
            for (lines, &width) in row.iter().zip(&widths) {
                // Short cells of a tall row are filled with two spaces, as tablewriter does.
                let text = lines.get(line).map_or("  ", String::as_str);
                out.push_str(&format!(" {} |", pad_left(text, width)));
            }
            out.push('\n');
        }
    }
    out.push_str(&border);
    out
}

fn border_line(widths: &[usize]) -> String {
    let mut line = String::from("+");
    for width in widths {
        line.push_str(&"-".repeat(width + 2));
        line.push('+');
    }
    line.push('\n');
    line
}

/// Display width. tablewriter counts East Asian wide runes double; etcd's cells (ids, URLs,
/// numbers, member names) are practically always narrow, so runes are counted.
fn display_width(text: &str) -> usize {
    text.chars().count()
}

fn pad_left(text: &str, width: usize) -> String {
    format!("{}{text}", " ".repeat(width.saturating_sub(display_width(text))))
}

/// tablewriter's `Pad`: the smaller half of the gap goes to the left.
fn pad_center(text: &str, width: usize) -> String {
    let gap = width.saturating_sub(display_width(text));
    format!("{}{text}{}", " ".repeat(gap / 2), " ".repeat(gap - gap / 2))
}

/// tablewriter's `parseDimension` with auto-wrap: each paragraph wrapped to at most
/// `WRAP_WIDTH` (or its longest word), paragraphs separated by a line holding one space.
/// Returns the lines and the width the cell claims: the wrap limit, even when the wrapped
/// lines come out narrower, as tablewriter counts it.
fn wrap_cell(cell: &str) -> (Vec<String>, usize) {
    let paragraphs: Vec<&str> = cell.split('\n').collect();
    let limit = paragraphs.iter().map(|p| display_width(p)).max().unwrap_or(0).min(WRAP_WIDTH);
    let mut lines: Vec<String> = Vec::new();
    for (index, paragraph) in paragraphs.iter().enumerate() {
        if index > 0 {
            lines.push(" ".to_string());
        }
        lines.extend(wrap_string(paragraph, limit));
    }
    let width = lines.iter().map(|line| display_width(line)).fold(limit, usize::max);
    (lines, width)
}

/// tablewriter's `WrapString`: words split at single spaces, the limit raised to the longest.
fn wrap_string(text: &str, limit: usize) -> Vec<String> {
    let words: Vec<&str> = text.split(' ').collect();
    let limit = words.iter().map(|word| display_width(word)).fold(limit, usize::max);
    wrap_words(&words, limit).into_iter().map(|line| line.join(" ")).collect()
}

/// tablewriter's `WrapWords`: breaks minimising the sum of squared slack per line (the last
/// line free), by dynamic programming from the end.
fn wrap_words<'a>(words: &[&'a str], limit: usize) -> Vec<Vec<&'a str>> {
    let count = words.len();
    // length(i, j): the width of words i..=j joined by single spaces.
    let widths: Vec<usize> = words.iter().map(|word| display_width(word)).collect();
    let length = |i: usize, j: usize| widths[i..=j].iter().sum::<usize>() + (j - i);
    let mut cost = vec![usize::MAX; count];
    let mut next_break = vec![count; count];
    for i in (0..count).rev() {
        if length(i, count - 1) <= limit {
            cost[i] = 0;
            continue;
        }
        for j in i + 1..count {
            let line = length(i, j - 1);
            let slack = limit.abs_diff(line);
            let mut candidate = slack * slack + cost[j];
            if line > limit {
                candidate += OVERFLOW_PENALTY;
            }
            if candidate < cost[i] {
                cost[i] = candidate;
                next_break[i] = j;
            }
        }
    }
    let mut lines = Vec::new();
    let mut start = 0;
    while start < count {
        lines.push(words[start..next_break[start]].to_vec());
        start = next_break[start];
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(header: &[&str], rows: &[&[&str]], expected: &str) {
        let rows: Vec<Vec<String>> =
            rows.iter().map(|row| row.iter().map(|cell| cell.to_string()).collect()).collect();
        assert_eq!(render(header, &rows), expected);
    }

    #[test]
    fn endpoint_health_table_as_etcdctl_draws_it() {
        check(
            &["endpoint", "health", "took", "error"],
            &[
                &["127.0.0.1:23790", "true", "2.972839ms", ""],
                &["127.0.0.1:23999", "false", "5.000635485s", "context deadline exceeded"],
            ],
            "\
+-----------------+--------+--------------+---------------------------+
|    ENDPOINT     | HEALTH |     TOOK     |           ERROR           |
+-----------------+--------+--------------+---------------------------+
| 127.0.0.1:23790 |   true |   2.972839ms |                           |
| 127.0.0.1:23999 |  false | 5.000635485s | context deadline exceeded |
+-----------------+--------+--------------+---------------------------+
",
        );
    }

    #[test]
    fn long_cells_wrap_at_spaces() {
        // Drawn by etcdctl 3.4.23 for a member named "aaaa bbbb ... hhhh".
        check(
            &["ID", "Status", "Name", "Is Learner"],
            &[&["bdae9bbc11dd390d", "started", "aaaa bbbb cccc dddd eeee ffff gggg hhhh", "false"]],
            "\
+------------------+---------+--------------------------------+------------+
|        ID        | STATUS  |              NAME              | IS LEARNER |
+------------------+---------+--------------------------------+------------+
| bdae9bbc11dd390d | started |  aaaa bbbb cccc dddd eeee ffff |      false |
|                  |         |                      gggg hhhh |            |
+------------------+---------+--------------------------------+------------+
",
        );
    }

    #[test]
    fn wrap_words_minimises_raggedness() {
        let words = ["aaaa", "bbbb", "cccc", "dddd", "eeee", "ffff", "gggg", "hhhh"];
        let lines: Vec<String> = wrap_words(&words, 30).iter().map(|l| l.join(" ")).collect();
        // The last line costs nothing, so the first lines are filled as far as they go.
        assert_eq!(lines, ["aaaa bbbb cccc dddd eeee ffff", "gggg hhhh"]);
        let lines: Vec<String> = wrap_words(&words[..7], 14).iter().map(|l| l.join(" ")).collect();
        assert_eq!(lines, ["aaaa bbbb cccc", "dddd eeee ffff", "gggg"]);
        assert_eq!(wrap_string("", 30), [""]);
        assert_eq!(wrap_string("averyveryverylongwordthatexceedsthirtycolumns x", 30).len(), 2);
    }
}
