//! The `lincheck` command on history files.

use std::path::PathBuf;
use std::process::Command;

fn write_history(name: &str, lines: &[&str]) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, lines.join("\n")).unwrap();
    path
}

const PUT_A: &str = r#"{"client": 1, "op": "put", "key": "k", "value": "a", "expected": null, "output": null, "call": 0, "return": 10, "status": "ok"}"#;
const PUT_B: &str = r#"{"client": 1, "op": "put", "key": "k", "value": "b", "expected": null, "output": null, "call": 20, "return": 30, "status": "ok"}"#;
const GET_B: &str = r#"{"client": 2, "op": "get", "key": "k", "value": null, "expected": null, "output": "b", "call": 40, "return": 50, "status": "ok"}"#;
const GET_A: &str = r#"{"client": 2, "op": "get", "key": "k", "value": null, "expected": null, "output": "a", "call": 40, "return": 50, "status": "ok"}"#;

fn lincheck(arguments: &[&PathBuf]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_lincheck"))
        .args(arguments)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.code().unwrap(), text)
}

#[test]
fn lincheck_accepts_a_linearizable_file_with_status_zero() {
    let good = write_history("cli-good.jsonl", &[PUT_A, PUT_B, GET_B]);
    let (code, text) = lincheck(&[&good]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("Linearizable"), "{text}");
}

#[test]
fn lincheck_rejects_a_stale_read_with_status_one_and_explains_it() {
    let good = write_history("cli-good2.jsonl", &[PUT_A, PUT_B, GET_B]);
    let stale = write_history("cli-stale.jsonl", &[PUT_A, PUT_B, GET_A]);
    let (code, text) = lincheck(&[&good, &stale]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("NotLinearizable"), "{text}");
    assert!(text.contains("cannot then place #2"), "{text}");
}

#[test]
fn lincheck_reports_an_unreadable_file_with_status_two() {
    let broken = write_history("cli-broken.jsonl", &[PUT_A, "{not json"]);
    let (code, text) = lincheck(&[&broken]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("line 2"), "{text}");
}
