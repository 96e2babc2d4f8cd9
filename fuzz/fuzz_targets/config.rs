//! Loads arbitrary text as the config file, over the embedded defaults and with no
//! environment variables, through the same path as `lpiotia-mqtt --config FILE`.
//!
//! Settings that load must render with `to_toml_masked` (what `lpiotia-mqtt check-config`
//! prints) and load again from that text to equal settings.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use lpiotia_config::load_from_str;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let path = Path::new("fuzz.toml");
    let Ok(settings) = load_from_str(Some((path, text)), &[]) else { return };

    let rendered = settings.to_toml_masked();
    let reloaded = load_from_str(Some((path, &rendered)), &[])
        .unwrap_or_else(|error| panic!("rendered settings do not load: {error}\n{rendered}"));
    assert_eq!(reloaded, settings, "settings differ after a round trip:\n{rendered}");
});
