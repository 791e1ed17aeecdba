//! Byte sizes as admins write them ("16MiB", "1MB", "100") and as messages show them.

pub(super) const KIB: u64 = 1 << 10;
pub(super) const MIB: u64 = 1 << 20;
pub(super) const GIB: u64 = 1 << 30;

/// "16MiB", "512 KiB", "1MB", "100" (bytes); units are case-insensitive.
pub(super) fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let multiplier = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "kib" => KIB,
        "mib" => MIB,
        "gib" => GIB,
        _ => return None,
    };
    number.parse::<u64>().ok()?.checked_mul(multiplier)
}

/// A size in the largest binary unit that divides it exactly.
pub(super) fn show_size(bytes: u64) -> String {
    let unit = [(GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")]
        .into_iter()
        .find(|&(size, _)| bytes != 0 && bytes.is_multiple_of(size));
    match unit {
        Some((size, name)) => format!("{}{name}", bytes / size),
        None => format!("{bytes} bytes"),
    }
}
