//! Resource quantities as the scheduler counts them (apimachinery's `resource.Quantity`): CPU in
//! millicores, everything else in whole units (bytes, pods). `100m`, `0.5`, `2`, `64Mi`, `1G`, `1e3`.

/// Millicores of a CPU quantity (`250m` → 250, `1.5` → 1500); unparsable → 0.
pub fn milli(q: &str) -> i64 {
    scaled(q, 1000)
}

/// The value of a quantity in base units, rounded up (`64Mi` → 67108864, `1k` → 1000).
pub fn value(q: &str) -> i64 {
    scaled(q, 1)
}

fn scaled(q: &str, scale: i64) -> i64 {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let Ok(n) = number.parse::<f64>() else { return 0 };
    let factor: f64 = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        s if s.starts_with(['e', 'E']) => match s[1..].parse::<i32>() {
            Ok(exp) => 10f64.powi(exp),
            Err(_) => return 0,
        },
        _ => return 0,
    };
    (n * factor * scale as f64).ceil() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(milli("100m"), 100);
        assert_eq!(milli("1.5"), 1500);
        assert_eq!(milli("2"), 2000);
        assert_eq!(value("64Mi"), 64 * 1024 * 1024);
        assert_eq!(value("1G"), 1_000_000_000);
        assert_eq!(value("1e3"), 1000);
        assert_eq!(value("110"), 110);
        assert_eq!(value("bogus"), 0);
    }
}
