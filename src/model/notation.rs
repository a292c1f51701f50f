//! Model values as Docker and PostgreSQL write them: a byte count as a
//! size in binary units (exact for specs, rounded for people), a list setting's value as its items. `import`
//! writes specs with these and `plan` compares and renders with them, so
//! both read and write a value the same way.

/// Bytes in the largest binary unit that divides them (`512MiB`, `1000B`),
/// a size Docker takes.
pub fn format_bytes(bytes: i64) -> String {
    const UNITS: [(&str, i64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for (unit, size) in UNITS {
        if bytes != 0 && bytes % size == 0 {
            return format!("{}{unit}", bytes / size);
        }
    }
    format!("{bytes}B")
}

/// Bytes with one decimal in the largest binary unit below them.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = "B";
    for next in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = next;
    }
    if unit == "B" {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {unit}")
    }
}

/// The items of a list setting's value (`shared_preload_libraries`),
/// without surrounding blanks or double quotes; empty items are dropped.
pub fn list_items(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(|item| item.trim().trim_matches('"').to_owned())
        .filter(|item| !item.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_the_largest_unit() {
        assert_eq!(format_bytes(8 << 30), "8GiB");
        assert_eq!(format_bytes(512 << 20), "512MiB");
        assert_eq!(format_bytes(1000), "1000B");
        assert_eq!(format_bytes(0), "0B");
    }

    #[test]
    fn list_items_drop_blanks_and_quotes() {
        assert_eq!(
            list_items(" pg_stat_statements, \"auto_explain\",,"),
            ["pg_stat_statements", "auto_explain"]
        );
        assert!(list_items("").is_empty());
    }
}
