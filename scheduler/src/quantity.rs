//! Resource quantities as integers: cpu in millicores, everything else in whole units (bytes, pods).
//! Mirrors the parts of apimachinery's resource.Quantity that the scheduler reads (MilliValue, Value).

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Parses a quantity to an integer scaled by `scale` (1000 for millicores, 1 for plain values),
/// rounding up as upstream's `MilliValue`/`Value` do. Unparseable quantities count as zero.
pub fn parse(q: &Quantity, scale: i64) -> i64 {
    let s = q.0.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let Ok(n) = num.parse::<f64>() else { return 0 };
    let mult: f64 = match suffix {
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
        other if other.starts_with(['e', 'E']) => match other[1..].parse::<i32>() {
            Ok(exp) => 10f64.powi(exp),
            Err(_) => return 0,
        },
        _ => return 0,
    };
    (n * mult * scale as f64).ceil() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_and_memory() {
        assert_eq!(parse(&Quantity("100m".into()), 1000), 100);
        assert_eq!(parse(&Quantity("2".into()), 1000), 2000);
        assert_eq!(parse(&Quantity("1.5".into()), 1000), 1500);
        assert_eq!(parse(&Quantity("1Gi".into()), 1), 1 << 30);
        assert_eq!(parse(&Quantity("128M".into()), 1), 128_000_000);
        assert_eq!(parse(&Quantity("110".into()), 1), 110);
        assert_eq!(parse(&Quantity("1e3".into()), 1), 1000);
        assert_eq!(parse(&Quantity("junk".into()), 1), 0);
    }
}
