//! Parsing durations (`250ms`, `25s`, `2m`, `1h`) and sizes (`1MB`, `4MiB`,
//! `1000`) from settings, with errors that name the setting.

use std::time::Duration;

/// A parser for clap that names the environment variable in its error.
pub(crate) fn duration(setting: &'static str) -> impl Fn(&str) -> Result<Duration, String> + Clone {
    move |text| parse_duration(text).ok_or_else(|| format!("{setting}: expected a duration such as 25s, 250ms or 2m"))
}

pub(crate) fn size(setting: &'static str) -> impl Fn(&str) -> Result<usize, String> + Clone {
    move |text| parse_size(text).ok_or_else(|| format!("{setting}: expected a size such as 1MB, 512KiB or 1000"))
}

pub(crate) fn positive(setting: &'static str) -> impl Fn(&str) -> Result<usize, String> + Clone {
    move |text| match text.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{setting}: expected a whole number above zero")),
    }
}

pub(crate) fn rate(setting: &'static str) -> impl Fn(&str) -> Result<f64, String> + Clone {
    move |text| match text.trim().parse::<f64>() {
        Ok(n) if n > 0.0 && n.is_finite() => Ok(n),
        _ => Err(format!("{setting}: expected a number above zero")),
    }
}

pub(crate) fn boolean(setting: &'static str) -> impl Fn(&str) -> Result<bool, String> + Clone {
    move |text| match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" | "" => Ok(false),
        _ => Err(format!("{setting}: expected true or false")),
    }
}

fn split_number(text: &str) -> Option<(f64, &str)> {
    let text = text.trim();
    let end = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let number: f64 = text[..end].parse().ok()?;
    (number.is_finite() && number >= 0.0).then_some((number, text[end..].trim()))
}

pub(crate) fn parse_duration(text: &str) -> Option<Duration> {
    let (number, unit) = split_number(text)?;
    let seconds = match unit {
        "ms" => number / 1000.0,
        "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        "d" => number * 86_400.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(seconds).ok()
}

pub(crate) fn parse_size(text: &str) -> Option<usize> {
    let (number, unit) = split_number(text)?;
    let factor: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = number * factor;
    (bytes >= 1.0 && bytes < usize::MAX as f64).then_some(bytes as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("25s"), Some(Duration::from_secs(25)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("25"), None);
        assert_eq!(parse_duration("abc"), None);
        assert_eq!(parse_duration("-1s"), None);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1MB"), Some(1_000_000));
        assert_eq!(parse_size("4MiB"), Some(4 << 20));
        assert_eq!(parse_size("10KB"), Some(10_000));
        assert_eq!(parse_size("1000"), Some(1000));
        assert_eq!(parse_size("0"), None);
        assert_eq!(parse_size("1XB"), None);
    }

    #[test]
    fn errors_name_the_setting() {
        let err = duration("SWITCHBOARD_PING_INTERVAL")("abc").unwrap_err();
        assert!(err.starts_with("SWITCHBOARD_PING_INTERVAL:"));
    }
}
