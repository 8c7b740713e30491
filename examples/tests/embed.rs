//! The embedding example runs to the end and every node agrees.

use std::process::Command;

#[test]
fn embedding_example_replicates_and_hands_over_leadership() {
    let output = Command::new(env!("CARGO_BIN_EXE_embed-raft-core"))
        .output()
        .expect("the example runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "example failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("added 30: total 42"), "{stdout}");
    assert!(stdout.contains("leadership handed to node"), "{stdout}");
    assert!(stdout.contains("all nodes agree: total 40"), "{stdout}");
}
