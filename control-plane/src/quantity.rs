//! Kubernetes resource quantities (`500m`, `2`, `1.5Gi`, `128974848`, `1e3`) as exact
//! thousandths, for comparing requests and limits against quotas and limit ranges.

/// A quantity in thousandths of its unit (millicores for CPU, millibytes for memory).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Quantity(pub i128);

/// Why a string is not a quantity (Kubernetes' message).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
)]
pub struct QuantityError;

impl Quantity {
    pub fn parse(text: &str) -> Result<Quantity, QuantityError> {
        let text = text.trim();
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
            .unwrap_or(text.len());
        let (number, suffix) = text.split_at(split);
        if number.is_empty() || number == "+" || number == "-" {
            return Err(QuantityError);
        }
        let (negative, digits) = match number.as_bytes()[0] {
            b'-' => (true, &number[1..]),
            b'+' => (false, &number[1..]),
            _ => (false, number),
        };
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        if whole.is_empty() && fraction.is_empty()
            || !whole.bytes().all(|b| b.is_ascii_digit())
            || !fraction.bytes().all(|b| b.is_ascii_digit())
            || whole.len() + fraction.len() > 30
        {
            return Err(QuantityError);
        }
        // The value as an integer scaled by 10^-fraction_digits.
        let mantissa: i128 = format!("{whole}{fraction}").parse().unwrap_or(0);
        let fraction_digits = fraction.len() as i32;
        // (multiplier numerator, decimal exponent) of the suffix.
        let (binary, exponent): (i128, i32) = match suffix {
            "" => (1, 0),
            "m" => (1, -3),
            "u" => (1, -6),
            "n" => (1, -9),
            "k" => (1, 3),
            "M" => (1, 6),
            "G" => (1, 9),
            "T" => (1, 12),
            "P" => (1, 15),
            "E" => (1, 18),
            "Ki" => (1 << 10, 0),
            "Mi" => (1 << 20, 0),
            "Gi" => (1 << 30, 0),
            "Ti" => (1 << 40, 0),
            "Pi" => (1 << 50, 0),
            "Ei" => (1 << 60, 0),
            other => match other.strip_prefix(['e', 'E']) {
                Some(power) => (1, power.parse().map_err(|_| QuantityError)?),
                None => return Err(QuantityError),
            },
        };
        // Thousandths: mantissa * binary * 10^(exponent + 3 - fraction_digits), rounded up
        // as Kubernetes rounds sub-milli values.
        let scale = exponent.checked_add(3 - fraction_digits).ok_or(QuantityError)?;
        let base = mantissa.checked_mul(binary).ok_or(QuantityError)?;
        let value = if scale >= 0 {
            base.checked_mul(10i128.checked_pow(scale as u32).ok_or(QuantityError)?)
                .ok_or(QuantityError)?
        } else {
            let divisor = 10i128.checked_pow((-scale) as u32).ok_or(QuantityError)?;
            (base + divisor - 1) / divisor
        };
        Ok(Quantity(if negative { -value } else { value }))
    }

    /// A canonical rendering: whole units when exact, else thousandths (`500m`).
    pub fn render(self) -> String {
        if self.0 % 1000 == 0 {
            (self.0 / 1000).to_string()
        } else {
            format!("{}m", self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(text: &str) -> i128 {
        Quantity::parse(text).unwrap_or_else(|_| panic!("{text} should parse")).0
    }

    #[test]
    fn parses_kubernetes_suffixes_exactly() {
        assert_eq!(q("500m"), 500);
        assert_eq!(q("2"), 2000);
        assert_eq!(q("0.5"), 500);
        assert_eq!(q("1.5Gi"), 1536 * 1024 * 1024 * 1000);
        assert_eq!(q("128974848"), 128_974_848_000);
        assert_eq!(q("129M"), 129_000_000_000);
        assert_eq!(q("1e3"), 1_000_000);
        assert_eq!(q("1Ki"), 1_024_000);
        assert_eq!(q("-1"), -1000);
        assert_eq!(q("1u"), 1, "sub-milli values round up");
    }

    #[test]
    fn refuses_what_is_not_a_quantity() {
        for bad in ["", "abc", "1.2.3", "5 Gi", "1Qi", "m", "--1", "1e2147483647"] {
            assert!(Quantity::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn renders_whole_units_or_thousandths() {
        assert_eq!(Quantity(2000).render(), "2");
        assert_eq!(Quantity(1500).render(), "1500m");
    }
}
