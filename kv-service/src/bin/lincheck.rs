//! `lincheck FILE...`: checks operation histories (JSON Lines, see
//! `shared/HISTORY.md`) for linearizability.
//!
//! Prints one verdict per file and, for a history that is not linearizable,
//! the longest order that explains a prefix and the operation that cannot
//! come next. Exit status: 0 when every file is linearizable, 1 when one is
//! not, 2 when one could not be decided within the budget or read.
//!
//! Options: `--steps N` (search steps per key, default 50,000,000) and
//! `--seconds N` (time for each file, default 120).

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use kv_service::history::read_history_file;
use kv_service::linearizability::{check, CheckConfig, Explanation, Verdict};

fn usage() -> ExitCode {
    eprintln!("usage: lincheck [--steps N] [--seconds N] FILE...");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut config = CheckConfig::default();
    let mut files = Vec::new();
    let mut arguments = std::env::args().skip(1);
    while let Some(argument) = arguments.next() {
        let number = |value: Option<String>| value.and_then(|text| text.parse::<u64>().ok());
        match argument.as_str() {
            "--steps" => match number(arguments.next()) {
                Some(steps) => config.steps_per_key_max = steps,
                None => return usage(),
            },
            "--seconds" => match number(arguments.next()) {
                Some(seconds) => config.time_max = Some(Duration::from_secs(seconds)),
                None => return usage(),
            },
            "-h" | "--help" => return usage(),
            _ => files.push(argument),
        }
    }
    if files.is_empty() {
        return usage();
    }

    let mut worst = 0u8;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for file in &files {
        let history = match read_history_file(file) {
            Ok(history) => history,
            Err(error) => {
                eprintln!("{file}: {error}");
                worst = worst.max(2);
                continue;
            }
        };
        let report = check(&history, &config);
        let explanation = Explanation {
            report: &report,
            history: &history,
        };
        // A closed stdout is no reason to change the verdict.
        let _ = write!(out, "{file}: {explanation}");
        worst = worst.max(match report.verdict {
            Verdict::Linearizable => 0,
            Verdict::NotLinearizable => 1,
            Verdict::Unknown => 2,
        });
    }
    ExitCode::from(worst)
}
