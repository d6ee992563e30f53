//! `Config::parse` on arbitrary text, and on the embedded config with one line edited: the first
//! byte picks delete / duplicate / replace, the next two the line, the rest is the new line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::config::Config;

const EMBEDDED: &str = include_str!("../../../config/switchboard.toml");

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Config::parse(text, "fuzz");
    if data.len() < 3 {
        return;
    }
    let mut lines: Vec<&str> = EMBEDDED.lines().collect();
    let i = u16::from_le_bytes([data[1], data[2]]) as usize % lines.len();
    let new_line = std::str::from_utf8(&data[3..]).unwrap_or("");
    match data[0] % 3 {
        0 => {
            lines.remove(i);
        }
        1 => lines.insert(i, lines[i]),
        _ => lines[i] = new_line,
    }
    let _ = Config::parse(&lines.join("\n"), "fuzz");
});
