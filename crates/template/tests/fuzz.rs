//! Property tests: no text makes the template parser or validator panic.

use omni_template::{parse, validate, Facts};
use proptest::prelude::*;

fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("kind: Cluster\n".to_string()),
        Just("kind: ControlPlane\n".to_string()),
        Just("kind: Workers\n".to_string()),
        Just("name: talos-default\n".to_string()),
        Just("kubernetes:\n  version: v1.28.2\n".to_string()),
        Just("talos:\n  version: v1.5.5\n".to_string()),
        Just("features:\n  backupConfiguration:\n    interval: 1h\n".to_string()),
        Just("    interval: -5m\n".to_string()),
        Just("    interval: 99999999999h\n".to_string()),
        Just("    keepLast: -1\n".to_string()),
        Just("machines:\n  - 1dd4397b-37f1-4196-9c37-becef670b64a\n".to_string()),
        Just("  - ../etc\n".to_string()),
        Just("---\n".to_string()),
        Just("[".to_string()),
        Just("{a: [1, {b: ".to_string()),
        Just("&x ".to_string()),
        Just("*x\n".to_string()),
        Just("!!binary ".to_string()),
        "[a-zA-Z:. \\n\\t-]{0,24}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn parse_never_panics_on_any_text(text in "\\PC{0,300}") {
        let _ = parse(&text);
    }

    #[test]
    fn validate_never_panics_on_template_shaped_text(parts in proptest::collection::vec(piece(), 0..30)) {
        let text = parts.concat();
        let _ = parse(&text);
        let _ = validate(&text, &Facts::default());
    }
}
