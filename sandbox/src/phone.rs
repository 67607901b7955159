//! Phone numbers as the providers take them: E.164 normalisation and mainland detection.

/// The E.164 form of a number SendSms accepts, or `None`.
///
/// `+<country><number>` (1–15 digits after `+`, no leading 0); Chinese mainland numbers must be
/// 11-digit mobiles (`1[3-9]xxxxxxxxx`) and may also be written `0086…`, `86…` or bare.
pub(crate) fn normalize_phone(raw: &str) -> Option<String> {
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let mainland = |national: &str| {
        let b = national.as_bytes();
        (national.len() == 11 && all_digits(national) && b[0] == b'1' && (b'3'..=b'9').contains(&b[1]))
            .then(|| format!("+86{national}"))
    };
    if let Some(digits) = raw.strip_prefix('+') {
        if !all_digits(digits) || !(5..=15).contains(&digits.len()) || digits.starts_with('0') {
            return None;
        }
        return match digits.strip_prefix("86") {
            Some(national) => mainland(national),
            None => Some(raw.to_string()),
        };
    }
    if let Some(national) = raw.strip_prefix("0086") {
        return mainland(national);
    }
    if raw.len() == 13
        && let Some(national) = raw.strip_prefix("86")
    {
        return mainland(national);
    }
    mainland(raw)
}

pub(crate) fn is_mainland(e164: &str) -> bool {
    e164.starts_with("+86")
}

/// A number's E.164 form when it has one, else the number as given (to compare spellings).
pub(crate) fn canonical(raw: &str) -> String {
    normalize_phone(raw).unwrap_or_else(|| raw.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_normalisation() {
        let ok = [
            ("+8613800000000", "+8613800000000"),
            ("008613800000000", "+8613800000000"),
            ("8613800000000", "+8613800000000"),
            ("13800000000", "+8613800000000"),
            ("+85261234567", "+85261234567"),
            ("+14155550100", "+14155550100"),
        ];
        for (raw, e164) in ok {
            assert_eq!(normalize_phone(raw).as_deref(), Some(e164), "{raw}");
        }
        for bad in [
            "",
            "+",
            "+86123",
            "+8612800000000",
            "+86138000000001",
            "12345",
            "+0123456",
            "+86 13800000000",
            "abc",
            "+1234567890123456",
        ] {
            assert_eq!(normalize_phone(bad), None, "{bad}");
        }
    }
}
